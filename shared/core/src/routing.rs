//! Model-name patterns for provider routing: `*` matches any run of characters, `?` one.

/// Glob match over bytes; model names are ASCII in practice and a non-ASCII byte only ever
/// matches itself or a wildcard.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                backtrack = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match backtrack {
                Some((star_p, star_n)) => {
                    pi = star_p + 1;
                    ni = star_n + 1;
                    backtrack = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn star_and_question_mark_match_like_shell_globs() {
        assert!(glob_matches("*", "gpt-4o"));
        assert!(glob_matches("gpt-*", "gpt-4o-mini"));
        assert!(glob_matches("*-mini", "gpt-4o-mini"));
        assert!(glob_matches("gpt-?o", "gpt-4o"));
        assert!(glob_matches("mock-*-x*", "mock-1-2-x3"));
        assert!(!glob_matches("gpt-*", "claude-3"));
        assert!(!glob_matches("gpt-4o", "gpt-4o-mini"));
        assert!(!glob_matches("", "a"));
        assert!(glob_matches("", ""));
    }
}
