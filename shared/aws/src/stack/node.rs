//! The template as a plain tree: YAML turned into [`Node`]s, with CloudFormation's intrinsic
//! functions in one form whichever way they are written (`!GetAtt A.Arn` or
//! `Fn::GetAtt: [A, Arn]`). The only module that knows the YAML crate, so replacing it touches
//! this file alone.

use saphyr::{LoadableYamlNode, Scalar, Yaml};

use super::StackError;

/// One value of the template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in document order; scalar keys are kept as text (`"30":` and `30:` are one key, as
    /// in CloudFormation, which reads every key as a string).
    Map(Vec<(String, Node)>),
    /// An intrinsic function by its short name (`Ref`, `GetAtt`, `Sub`, `FindInMap`, `If`, ...),
    /// and its argument. Any `!Name` tag lands here, so tags this reader has no use for are kept
    /// and ignored rather than rejected.
    Fn(String, Box<Node>),
}

impl Node {
    /// Parses the first document of `yaml`.
    pub(crate) fn parse(yaml: &str) -> Result<Self, StackError> {
        let docs = Yaml::load_from_str(yaml).map_err(|e| StackError::Yaml(e.to_string()))?;
        let doc = docs
            .into_iter()
            .next()
            .ok_or_else(|| StackError::Yaml("the template is empty".into()))?;
        convert(&doc, "")
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The entries of a mapping; nothing for anything else (an absent section reads as empty).
    pub(crate) fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Map(entries) => entries,
            _ => &[],
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short description for error messages (`!GetAtt`, `a mapping`, ...).
    pub(crate) fn describe(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => b.to_string(),
            Node::Int(i) => i.to_string(),
            Node::Float(f) => f.to_string(),
            Node::Str(s) => format!("{s:?}"),
            Node::Seq(_) => "a list".into(),
            Node::Map(_) => "a mapping".into(),
            Node::Fn(name, _) => format!("!{name}"),
        }
    }
}

fn convert(yaml: &Yaml<'_>, at: &str) -> Result<Node, StackError> {
    Ok(match yaml {
        Yaml::Value(scalar) => scalar_node(scalar),
        // Only produced when early parsing is off, which `load_from_str` does not do; read the
        // text as the string it is rather than fail.
        Yaml::Representation(text, _, _) => Node::Str(text.to_string()),
        Yaml::Sequence(items) => Node::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (key, value) in map {
                let key = match key {
                    Yaml::Value(scalar) => scalar_text(scalar),
                    Yaml::Representation(text, _, _) => text.to_string(),
                    _ => {
                        return Err(StackError::invalid(at, "a mapping key is not a scalar"));
                    }
                };
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                let value = convert(value, &path)?;
                entries.push((key, value));
            }
            long_form(entries)
        }
        Yaml::Tagged(tag, inner) => {
            let inner = convert(inner, at)?;
            if tag.handle == "!" {
                Node::Fn(tag.suffix.clone(), Box::new(inner))
            } else {
                // `!!str` and friends are resolved by the parser; any other handle is not
                // CloudFormation's, so the value stands for itself.
                inner
            }
        }
        // CloudFormation rejects anchors and aliases, so a template never has them.
        Yaml::Alias(_) => return Err(StackError::invalid(at, "YAML aliases are not supported")),
        Yaml::BadValue => return Err(StackError::invalid(at, "unreadable value")),
    })
}

/// `{Ref: X}` and `{Fn::Name: arg}`, the long forms, become the same [`Node::Fn`] as the tags.
fn long_form(mut entries: Vec<(String, Node)>) -> Node {
    if entries.len() == 1 {
        let name = entries[0].0.as_str();
        let short = if name == "Ref" {
            Some("Ref".to_owned())
        } else {
            name.strip_prefix("Fn::").map(str::to_owned)
        };
        if let Some(short) = short
            && let Some((_, arg)) = entries.pop()
        {
            return Node::Fn(short, Box::new(arg));
        }
    }
    Node::Map(entries)
}

fn scalar_node(scalar: &Scalar<'_>) -> Node {
    match scalar {
        Scalar::Null => Node::Null,
        Scalar::Boolean(b) => Node::Bool(*b),
        Scalar::Integer(i) => Node::Int(*i),
        Scalar::FloatingPoint(f) => Node::Float(f.into_inner()),
        Scalar::String(s) => Node::Str(s.to_string()),
    }
}

fn scalar_text(scalar: &Scalar<'_>) -> String {
    match scalar {
        Scalar::Null => String::new(),
        Scalar::Boolean(b) => b.to_string(),
        Scalar::Integer(i) => i.to_string(),
        Scalar::FloatingPoint(f) => f.into_inner().to_string(),
        Scalar::String(s) => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    #[test]
    fn short_and_long_forms_are_one_node() {
        let node = Node::parse(
            "a: !GetAtt Q.Arn\nb: {\"Fn::GetAtt\": [Q, Arn]}\nc: {Ref: P}\nd: !Ref P\n\"30\": 1\n",
        )
        .unwrap();
        assert_eq!(
            node.get("a"),
            Some(&Node::Fn(
                "GetAtt".into(),
                Box::new(Node::Str("Q.Arn".into()))
            ))
        );
        assert!(matches!(node.get("b"), Some(Node::Fn(name, _)) if name == "GetAtt"));
        assert_eq!(node.get("c"), node.get("d"));
        assert_eq!(node.get("30"), Some(&Node::Int(1)));
    }

    #[test]
    fn unknown_tags_are_kept_not_rejected() {
        let node = Node::parse("x: !Base64 {\"Fn::Join\": [\"\", [a, b]]}\n").unwrap();
        assert!(matches!(node.get("x"), Some(Node::Fn(name, _)) if name == "Base64"));
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        assert!(Node::parse("a: 1\na: 2\n").is_err());
    }
}
