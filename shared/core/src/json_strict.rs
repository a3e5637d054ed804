//! Duplicate keys in JSON objects, and nesting too deep to read. RFC 8259 leaves the meaning of
//! a repeated key open: serde answers a struct field seen twice with an error, a map keeps the
//! last value, and the upstream provider may keep either. Prism refuses them everywhere with one
//! answer, naming the key and where it sits. Nesting past [`MAX_JSON_DEPTH`] is refused too:
//! Prism only skims the parts of a body it reads, so a depth bomb inside a message would
//! otherwise be stored and sent upstream.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::error::ServiceError;

/// The first key found twice in one object, and its path (`messages[0].content`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    pub key: String,
    pub path: String,
}

impl DuplicateKey {
    /// What every answer says, for a request body and a batch input line alike.
    pub fn message(&self) -> String {
        format!(
            "The JSON has the key '{}' more than once (at '{}'); send each key once.",
            self.key, self.path
        )
    }

    /// The 400 every endpoint answers with; `param` is the key's path.
    pub fn into_error(self) -> ServiceError {
        ServiceError::invalid(self.message(), Some(&self.path), Some("duplicate_key"))
    }
}

/// How deeply arrays and objects may nest in a request body: far more than any chat request or
/// JSON schema needs, and below serde_json's own recursion limit (128), so that this check and
/// not a parse error is what answers.
pub const MAX_JSON_DEPTH: usize = 100;

/// Whether a body is a JSON object by its first byte (its parser checks the rest): serde would
/// also read a struct from an array.
pub fn is_json_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Whether `body` is one well-formed JSON value in UTF-8 (RFC 8259). A struct's parser reports
/// the first problem it meets, so an unknown field ahead of a syntax error would hide that the
/// body is not JSON; and skipping a value does not check its strings' UTF-8.
pub fn is_well_formed(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok() && serde_json::from_slice::<de::IgnoredAny>(body).is_ok()
}

/// What the walk stopped at.
#[derive(Debug)]
enum Finding {
    Duplicate(DuplicateKey),
    TooDeep,
}

/// The first duplicated key of `json`, at any depth. Text that is not JSON has none: the caller's
/// own parsing reports it. The walk stops at [`MAX_JSON_DEPTH`].
pub fn find_duplicate_key(json: &[u8]) -> Option<DuplicateKey> {
    match walk(json) {
        Some(Finding::Duplicate(duplicate)) => Some(duplicate),
        Some(Finding::TooDeep) | None => None,
    }
}

fn walk(json: &[u8]) -> Option<Finding> {
    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    // The walk stops at the first finding with an error whose text does not matter: the finding
    // itself is in `found`.
    let _ = Walk {
        path: String::new(),
        depth: 0,
        found: &mut found,
    }
    .deserialize(&mut deserializer);
    found
}

/// A request body as a service answer: `Err` with the 400 when a key repeats, or when the JSON
/// nests deeper than [`MAX_JSON_DEPTH`].
pub fn reject_duplicate_keys(json: &[u8]) -> Result<(), ServiceError> {
    match walk(json) {
        None => Ok(()),
        Some(Finding::Duplicate(duplicate)) => Err(duplicate.into_error()),
        Some(Finding::TooDeep) => Err(ServiceError::invalid(
            format!(
                "We could not parse the JSON body of your request: it nests arrays and objects more than {MAX_JSON_DEPTH} levels deep."
            ),
            None,
            Some("invalid_json"),
        )),
    }
}

/// Longest key and path a [`DuplicateKey`] holds, in bytes. They are echoed into messages (a
/// batch keeps up to 1,000 of them), and every level of the walk holds its path: uncapped, a
/// long key above deep nesting would cost its length once per level.
const MAX_ECHO_BYTES: usize = 256;

/// `text` cut to [`MAX_ECHO_BYTES`] at a character boundary, marked with `...` when cut.
fn capped(mut text: String) -> String {
    if text.len() > MAX_ECHO_BYTES {
        let mut cut = MAX_ECHO_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Visits one value without building it, noting the first duplicated key or excessive depth.
struct Walk<'f> {
    path: String,
    /// Arrays and objects around this value.
    depth: usize,
    found: &'f mut Option<Finding>,
}

impl Walk<'_> {
    /// Refuses to enter one more array or object past the limit.
    fn enter<E: de::Error>(&mut self) -> Result<usize, E> {
        if self.depth >= MAX_JSON_DEPTH {
            *self.found = Some(Finding::TooDeep);
            return Err(E::custom("too deep"));
        }
        Ok(self.depth + 1)
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let mut index = 0usize;
        loop {
            let element = Walk {
                path: capped(format!("{}[{index}]", self.path)),
                depth,
                found: &mut *self.found,
            };
            if seq.next_element_seed(element)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let depth = self.enter()?;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = capped(if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            });
            if !seen.insert(key.clone()) {
                *self.found = Some(Finding::Duplicate(DuplicateKey {
                    key: capped(key),
                    path,
                }));
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(Walk {
                path,
                depth,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(json: &str) -> Option<(String, String)> {
        find_duplicate_key(json.as_bytes()).map(|d| (d.key, d.path))
    }

    #[test]
    fn a_top_level_key_sent_twice_is_found_by_name() {
        assert_eq!(
            duplicate(r#"{"model":"a","messages":[],"model":"b"}"#),
            Some(("model".into(), "model".into()))
        );
    }

    #[test]
    fn a_nested_duplicate_is_found_with_its_path() {
        assert_eq!(
            duplicate(r#"{"request":{"messages":[{"role":"user"},{"role":"user","role":"x"}]}}"#),
            Some(("role".into(), "request.messages[1].role".into()))
        );
    }

    #[test]
    fn an_escaped_spelling_of_the_same_key_is_a_duplicate() {
        assert_eq!(
            duplicate(r#"{"model":"a","mod\u0065l":"b"}"#),
            Some(("model".into(), "model".into()))
        );
    }

    #[test]
    fn the_same_key_in_sibling_objects_is_not_a_duplicate() {
        assert_eq!(
            duplicate(r#"{"messages":[{"role":"user"},{"role":"assistant"}],"n":1.5,"x":null}"#),
            None
        );
    }

    #[test]
    fn text_that_is_not_json_has_no_duplicate_to_report() {
        assert_eq!(duplicate("{\"a\":1,"), None);
        assert_eq!(duplicate("not json"), None);
    }

    #[test]
    fn a_batch_line_with_a_duplicate_in_its_body_names_the_body_path() {
        let line = br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[],"model":"x"}}"#;
        let duplicate = find_duplicate_key(line).unwrap();
        assert_eq!(duplicate.path, "body.model");
        assert!(duplicate.message().contains("'model'"));
    }

    fn nested(depth: usize) -> String {
        format!(
            r#"{{"model":"m","messages":[{{"content":{}{}}}]}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    }

    #[test]
    fn nesting_past_the_limit_is_a_400_and_up_to_it_is_fine() {
        // The body's object, `messages` and its message object are three levels.
        assert!(reject_duplicate_keys(nested(MAX_JSON_DEPTH - 3).as_bytes()).is_ok());
        for depth in [MAX_JSON_DEPTH - 2, 200, 100_000] {
            match reject_duplicate_keys(nested(depth).as_bytes()) {
                Err(ServiceError::InvalidRequest { param, code, .. }) => {
                    assert_eq!(param, None);
                    assert_eq!(code.as_deref(), Some("invalid_json"));
                }
                other => panic!("depth {depth}: expected a 400, got {other:?}"),
            }
        }
        assert_eq!(find_duplicate_key(nested(100_000).as_bytes()), None);
    }

    #[test]
    fn a_long_key_and_a_deep_path_are_echoed_cut_short() {
        let key = "k".repeat(100_000);
        let json = format!(
            "{{\"{key}\":{}{{\"{key}\":1,\"{key}\":2}}{}}}",
            "[".repeat(90),
            "]".repeat(90)
        );
        let duplicate = find_duplicate_key(json.as_bytes()).unwrap();
        assert!(duplicate.key.starts_with("kkk") && duplicate.key.ends_with("..."));
        assert_eq!(duplicate.key.len(), MAX_ECHO_BYTES + 3);
        assert_eq!(duplicate.path.len(), MAX_ECHO_BYTES + 3);
        assert!(duplicate.message().len() < 4 * MAX_ECHO_BYTES);
    }

    #[test]
    fn the_error_is_a_400_naming_the_key_and_its_path() {
        match reject_duplicate_keys(br#"{"a":{"b":1,"b":2}}"#) {
            Err(ServiceError::InvalidRequest {
                message,
                param,
                code,
            }) => {
                assert!(message.contains("'b'"), "{message}");
                assert_eq!(param.as_deref(), Some("a.b"));
                assert_eq!(code.as_deref(), Some("duplicate_key"));
            }
            other => panic!("expected a 400, got {other:?}"),
        }
    }
}
