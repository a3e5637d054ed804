//! Text values that may be `!Sub` templates (`"/${AWS::StackName}/config"`), rendered once the
//! caller knows the values CloudFormation would substitute.

use super::StackError;

/// A text property: a literal, or a `!Sub` template with its `${...}` references left for
/// [`Text::render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Literal(String),
    /// `template` as written; `vars` are the list form's own variables
    /// (`!Sub [template, {Name: value}]`), already resolved.
    Sub {
        template: String,
        vars: Vec<(String, String)>,
    },
}

impl Text {
    /// The text with every `${Name}` (a parameter, a pseudo parameter such as
    /// `AWS::StackName`, a resource's `Ref`) and `${Resource.Attribute}` replaced by what
    /// `lookup` answers for that name, as CloudFormation does; `${!Literal}` stays `${Literal}`.
    /// A name `lookup` does not know is an error rather than an empty string.
    pub fn render(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, StackError> {
        let (template, vars) = match self {
            Text::Literal(text) => return Ok(text.clone()),
            Text::Sub { template, vars } => (template, vars),
        };
        let mut out = String::with_capacity(template.len());
        let mut rest = template.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                StackError::invalid("!Sub", format!("unclosed ${{ in {template:?}"))
            })?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                let value = vars
                    .iter()
                    .find(|(var, _)| var == name.trim())
                    .map(|(_, value)| value.clone())
                    .or_else(|| lookup(name.trim()))
                    .ok_or_else(|| {
                        StackError::invalid("!Sub", format!("no value for ${{{name}}}"))
                    })?;
                out.push_str(&value);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    #[test]
    fn renders_references_escapes_and_list_variables() {
        let text = Text::Sub {
            template: "/${AWS::StackName}/${Own}/${!Kept} ${Q.Arn}".into(),
            vars: vec![("Own".into(), "mine".into())],
        };
        let rendered = text
            .render(|name| match name {
                "AWS::StackName" => Some("s".into()),
                "Q.Arn" => Some("arn".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(rendered, "/s/mine/${Kept} arn");
    }

    #[test]
    fn an_unknown_name_is_an_error() {
        let text = Text::Sub {
            template: "${Nope}".into(),
            vars: vec![],
        };
        assert!(text.render(|_| None).is_err());
    }
}
