//! `infra/template.yaml` read by the code, so the template is the one definition of the
//! infrastructure: the emulator stacks of the test suites are provisioned from it
//! ([`crate::provision_stack`]), the local stand-in for Lambda's event source mappings and
//! schedules runs what it declares, and `tests/template.rs` fails when the code and the template
//! disagree.
//!
//! This is a reader, not an implementation of CloudFormation: it resolves only what those uses
//! need (`!Ref` to parameters and resources, `!GetAtt X.Arn`, `!FindInMap`, `!If` with the
//! conditions' `!Equals`/`!Not`/`!And`/`!Or`, `!Sub` through [`Text`]). Resources of other types
//! and intrinsics in properties nobody asks for are skipped without a look, so the template can
//! grow (an API Gateway, alarms) without breaking it; an intrinsic it cannot resolve where a
//! value *is* asked for is an error naming the property, never a guess.

mod node;
mod resources;
mod text;

use std::collections::BTreeMap;

use node::Node;
pub use resources::{
    AttributeKind, BillingMode, EnvSource, FunctionSpec, IndexSpec, KeyAttribute, Projection,
    QueueMappingSpec, QueueSpec, Redrive, ScheduleRuleSpec, SsmParameterSpec, TableSpec,
    rate_interval,
};
pub use text::Text;

/// The repository's `infra/template.yaml`, built into the crate so every binary and test carries
/// the template it was built with.
pub const BUNDLED_TEMPLATE: &str = include_str!("../../../../infra/template.yaml");

/// The `maxReceiveCount` of every redrive policy in the template, for code that needs it at
/// compile time (the emulator suites count receives with it). Provisioning reads the template's
/// own values; `tests/template.rs` fails if any queue there says otherwise.
pub const MAX_RECEIVE_COUNT: u32 = 10;

/// Nesting limit for conditions that name conditions, so a cycle is an error, not a stack
/// overflow.
const MAX_CONDITION_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    #[error("the template is not valid YAML: {0}")]
    Yaml(String),
    /// `at` is the path of the offending value (`Resources.JobsQueue.Properties.VisibilityTimeout`).
    #[error("template {at}: {problem}")]
    Invalid { at: String, problem: String },
}

impl StackError {
    pub(crate) fn invalid(at: impl Into<String>, problem: impl Into<String>) -> Self {
        StackError::Invalid {
            at: at.into(),
            problem: problem.into(),
        }
    }
}

/// One entry of the template's `Parameters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterSpec {
    pub name: String,
    /// `String`, `Number`, ...
    pub kind: String,
    pub default: Option<String>,
    /// Empty when the parameter does not restrict its values to a list.
    pub allowed_values: Vec<String>,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
    /// `AllowedPattern` (a regular expression CloudFormation checks; not checked here).
    pub allowed_pattern: Option<String>,
}

#[derive(Debug, Clone)]
struct Resource {
    id: String,
    kind: String,
    condition: Option<String>,
    properties: Node,
    metadata: Node,
}

/// A parsed template. Parameters take their `Default` unless given with
/// [`StackTemplate::with_parameter`] (as `sam deploy --parameter-overrides` would).
#[derive(Debug, Clone)]
pub struct StackTemplate {
    parameters: Vec<ParameterSpec>,
    values: BTreeMap<String, String>,
    mappings: Node,
    conditions: Node,
    /// `Globals.Function`: what SAM adds to every `AWS::Serverless::Function`.
    function_globals: Node,
    resources: Vec<Resource>,
}

/// Where a `!Ref` or `!GetAtt` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A parameter's value.
    Value(String),
    /// A resource, with the attribute for `!GetAtt` (`None` for `!Ref`).
    Resource {
        id: String,
        attribute: Option<String>,
    },
}

impl StackTemplate {
    /// The repository's `infra/template.yaml` ([`BUNDLED_TEMPLATE`]).
    pub fn bundled() -> Result<Self, StackError> {
        Self::parse(BUNDLED_TEMPLATE)
    }

    /// Any template text (tests use small ones).
    pub fn parse(yaml: &str) -> Result<Self, StackError> {
        let root = Node::parse(yaml)?;
        let mut parameters = Vec::new();
        for (name, def) in root.get("Parameters").map(Node::entries).unwrap_or(&[]) {
            let at = format!("Parameters.{name}");
            let text = |key: &str| -> Result<Option<String>, StackError> {
                def.get(key)
                    .map(|v| literal(v, &format!("{at}.{key}")))
                    .transpose()
            };
            let number = |key: &str| -> Result<Option<i64>, StackError> {
                text(key)?
                    .map(|v| {
                        v.parse().map_err(|_| {
                            StackError::invalid(format!("{at}.{key}"), "not an integer")
                        })
                    })
                    .transpose()
            };
            let allowed_values = match def.get("AllowedValues") {
                Some(Node::Seq(items)) => items
                    .iter()
                    .map(|v| literal(v, &format!("{at}.AllowedValues")))
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(StackError::invalid(
                        format!("{at}.AllowedValues"),
                        format!("expected a list, found {}", other.describe()),
                    ));
                }
                None => Vec::new(),
            };
            parameters.push(ParameterSpec {
                name: name.clone(),
                kind: text("Type")?.unwrap_or_else(|| "String".into()),
                default: text("Default")?,
                allowed_values,
                min_value: number("MinValue")?,
                max_value: number("MaxValue")?,
                allowed_pattern: text("AllowedPattern")?,
            });
        }
        let mut resources = Vec::new();
        for (id, def) in root.get("Resources").map(Node::entries).unwrap_or(&[]) {
            let at = format!("Resources.{id}");
            let kind = def
                .get("Type")
                .and_then(Node::as_str)
                .ok_or_else(|| StackError::invalid(&at, "no Type"))?;
            let condition = def
                .get("Condition")
                .map(|c| {
                    c.as_str().map(str::to_owned).ok_or_else(|| {
                        StackError::invalid(format!("{at}.Condition"), "not a condition name")
                    })
                })
                .transpose()?;
            resources.push(Resource {
                id: id.clone(),
                kind: kind.to_owned(),
                condition,
                properties: def.get("Properties").cloned().unwrap_or(Node::Null),
                metadata: def.get("Metadata").cloned().unwrap_or(Node::Null),
            });
        }
        if resources.is_empty() {
            return Err(StackError::invalid("Resources", "no resources"));
        }
        Ok(Self {
            parameters,
            values: BTreeMap::new(),
            mappings: root.get("Mappings").cloned().unwrap_or(Node::Null),
            conditions: root.get("Conditions").cloned().unwrap_or(Node::Null),
            function_globals: root
                .get("Globals")
                .and_then(|g| g.get("Function"))
                .cloned()
                .unwrap_or(Node::Null),
            resources,
        })
    }

    pub fn parameters(&self) -> &[ParameterSpec] {
        &self.parameters
    }

    /// The parameter's value: the one given with [`Self::with_parameter`], else its `Default`.
    pub fn parameter_value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .or_else(|| self.parameter(name)?.default.as_deref())
    }

    /// The same template with `name` set to `value`, checked against the parameter's
    /// `AllowedValues`, `MinValue` and `MaxValue` as CloudFormation would.
    pub fn with_parameter(&self, name: &str, value: &str) -> Result<Self, StackError> {
        let at = format!("Parameters.{name}");
        let spec = self
            .parameter(name)
            .ok_or_else(|| StackError::invalid(&at, "no such parameter"))?;
        if !spec.allowed_values.is_empty() && !spec.allowed_values.iter().any(|v| v == value) {
            return Err(StackError::invalid(
                &at,
                format!("{value:?} is not one of {:?}", spec.allowed_values),
            ));
        }
        if spec.min_value.is_some() || spec.max_value.is_some() {
            let number: i64 = value
                .parse()
                .map_err(|_| StackError::invalid(&at, format!("{value:?} is not a number")))?;
            if spec.min_value.is_some_and(|min| number < min)
                || spec.max_value.is_some_and(|max| number > max)
            {
                return Err(StackError::invalid(&at, format!("{value} is out of range")));
            }
        }
        let mut next = self.clone();
        next.values.insert(name.to_owned(), value.to_owned());
        Ok(next)
    }

    /// Every resource whose `Condition` (if any) holds, as `(logical id, type)`.
    pub fn resources(&self) -> Result<Vec<(&str, &str)>, StackError> {
        let mut out = Vec::new();
        for resource in &self.resources {
            if self.exists(resource)? {
                out.push((resource.id.as_str(), resource.kind.as_str()));
            }
        }
        Ok(out)
    }

    /// The type of a resource the template declares (whatever its condition).
    pub fn resource_type(&self, logical_id: &str) -> Option<&str> {
        self.resource(logical_id).map(|r| r.kind.as_str())
    }

    /// Logical ids of the existing resources of one type, in template order.
    pub fn resources_of_type(&self, kind: &str) -> Result<Vec<&str>, StackError> {
        Ok(self
            .resources()?
            .into_iter()
            .filter(|(_, k)| *k == kind)
            .map(|(id, _)| id)
            .collect())
    }

    /// The physical name the template gives a resource, if it gives one (`QueueName`,
    /// `TableName`, `BucketName`, `RoleName`, or `Name` for the other types); CloudFormation
    /// generates one otherwise.
    pub fn explicit_name(&self, logical_id: &str) -> Result<Option<Text>, StackError> {
        let resource = self.resource(logical_id).ok_or_else(|| {
            StackError::invalid(format!("Resources.{logical_id}"), "no such resource")
        })?;
        let key = match resource.kind.as_str() {
            "AWS::SQS::Queue" => "QueueName",
            "AWS::DynamoDB::Table" => "TableName",
            "AWS::S3::Bucket" => "BucketName",
            "AWS::IAM::Role" => "RoleName",
            _ => "Name",
        };
        let at = format!("Resources.{logical_id}.Properties.{key}");
        match self.prop(&resource.properties, key, &at)? {
            Some(node) => self.text(node, &at).map(Some),
            None => Ok(None),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Resolution
    // ---------------------------------------------------------------------------------------

    fn parameter(&self, name: &str) -> Option<&ParameterSpec> {
        self.parameters.iter().find(|p| p.name == name)
    }

    fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }

    fn exists(&self, resource: &Resource) -> Result<bool, StackError> {
        match &resource.condition {
            Some(name) => self.condition(name, 0),
            None => Ok(true),
        }
    }

    /// The existing resources of one of `kinds`.
    fn existing<'a>(&'a self, kinds: &[&str]) -> Result<Vec<&'a Resource>, StackError> {
        let mut out = Vec::new();
        for resource in &self.resources {
            if kinds.contains(&resource.kind.as_str()) && self.exists(resource)? {
                out.push(resource);
            }
        }
        Ok(out)
    }

    fn condition(&self, name: &str, depth: usize) -> Result<bool, StackError> {
        let at = format!("Conditions.{name}");
        if depth > MAX_CONDITION_DEPTH {
            return Err(StackError::invalid(
                at,
                "conditions nest too deep (a cycle?)",
            ));
        }
        let node = self
            .conditions
            .get(name)
            .ok_or_else(|| StackError::invalid(&at, "no such condition"))?;
        self.truth(node, &at, depth + 1)
    }

    fn truth(&self, node: &Node, at: &str, depth: usize) -> Result<bool, StackError> {
        let args = |arg: &Node| match arg {
            Node::Seq(items) => Ok(items.clone()),
            other => Err(StackError::invalid(
                at,
                format!("expected a list, found {}", other.describe()),
            )),
        };
        match node {
            Node::Bool(b) => Ok(*b),
            Node::Fn(name, arg) => match name.as_str() {
                "Equals" => match args(arg)?.as_slice() {
                    [a, b] => Ok(self.scalar(a, at)? == self.scalar(b, at)?),
                    _ => Err(StackError::invalid(at, "!Equals takes two values")),
                },
                "Not" => match args(arg)?.as_slice() {
                    [c] => Ok(!self.truth(c, at, depth)?),
                    _ => Err(StackError::invalid(at, "!Not takes one condition")),
                },
                "And" => args(arg)?
                    .iter()
                    .try_fold(true, |all, c| Ok(all && self.truth(c, at, depth)?)),
                "Or" => args(arg)?
                    .iter()
                    .try_fold(false, |any, c| Ok(any || self.truth(c, at, depth)?)),
                "Condition" => match arg.as_ref() {
                    Node::Str(other) => self.condition(other, depth),
                    _ => Err(StackError::invalid(at, "!Condition takes a name")),
                },
                other => Err(StackError::invalid(
                    at,
                    format!("!{other} is not a condition function"),
                )),
            },
            other => Err(StackError::invalid(
                at,
                format!("{} is not a condition", other.describe()),
            )),
        }
    }

    /// Applies `!If` and drops `!Ref AWS::NoValue` (`None`), as CloudFormation does before it
    /// reads a property.
    fn eval<'a>(&self, node: &'a Node, at: &str) -> Result<Option<&'a Node>, StackError> {
        match node {
            Node::Fn(name, arg) if name == "If" => match arg.as_ref() {
                Node::Seq(items) => match items.as_slice() {
                    [Node::Str(condition), then, otherwise] => {
                        if self.condition(condition, 0)? {
                            self.eval(then, at)
                        } else {
                            self.eval(otherwise, at)
                        }
                    }
                    _ => Err(StackError::invalid(
                        at,
                        "!If takes [condition, value, value]",
                    )),
                },
                _ => Err(StackError::invalid(at, "!If takes a list")),
            },
            Node::Fn(name, arg) if name == "Ref" && arg.as_str() == Some("AWS::NoValue") => {
                Ok(None)
            }
            other => Ok(Some(other)),
        }
    }

    /// A property of `props`, after [`Self::eval`].
    fn prop<'a>(
        &self,
        props: &'a Node,
        key: &str,
        at: &str,
    ) -> Result<Option<&'a Node>, StackError> {
        match props.get(key) {
            Some(node) => self.eval(node, at),
            None => Ok(None),
        }
    }

    /// A value that must come to text before anything is deployed: literals, parameters,
    /// `!FindInMap`, and `!Sub` over parameters.
    fn scalar(&self, node: &Node, at: &str) -> Result<String, StackError> {
        let node = self
            .eval(node, at)?
            .ok_or_else(|| StackError::invalid(at, "is AWS::NoValue"))?;
        match node {
            Node::Fn(name, arg) => match name.as_str() {
                "Ref" | "GetAtt" => match self.target(node, at)? {
                    Target::Value(value) => Ok(value),
                    Target::Resource { id, .. } => Err(StackError::invalid(
                        at,
                        format!("refers to resource {id}, which has no value before it exists"),
                    )),
                },
                "FindInMap" => self.find_in_map(arg, at),
                "Sub" => self
                    .text(node, at)?
                    .render(|name| self.parameter_value(name).map(str::to_owned)),
                other => Err(StackError::invalid(
                    at,
                    format!("!{other} is not supported here"),
                )),
            },
            other => literal(other, at),
        }
    }

    fn find_in_map(&self, arg: &Node, at: &str) -> Result<String, StackError> {
        let Node::Seq(parts) = arg else {
            return Err(StackError::invalid(at, "!FindInMap takes a list"));
        };
        let [map, key, attribute] = parts.as_slice() else {
            return Err(StackError::invalid(
                at,
                "!FindInMap takes [map, key, attribute]",
            ));
        };
        let (map, key, attribute) = (
            self.scalar(map, at)?,
            self.scalar(key, at)?,
            self.scalar(attribute, at)?,
        );
        let value = self
            .mappings
            .get(&map)
            .and_then(|m| m.get(&key))
            .and_then(|k| k.get(&attribute))
            .ok_or_else(|| {
                StackError::invalid(at, format!("Mappings.{map} has no {key:?}.{attribute}"))
            })?;
        literal(value, &format!("Mappings.{map}.{key}.{attribute}"))
    }

    /// `!Ref` / `!GetAtt`: a parameter's value or a resource (which must be declared).
    fn target(&self, node: &Node, at: &str) -> Result<Target, StackError> {
        let Node::Fn(name, arg) = node else {
            return Err(StackError::invalid(
                at,
                format!("expected !Ref or !GetAtt, found {}", node.describe()),
            ));
        };
        let (id, attribute) = match (name.as_str(), arg.as_ref()) {
            ("Ref", Node::Str(id)) => {
                if let Some(param) = self.parameter(id) {
                    return self
                        .parameter_value(&param.name)
                        .map(|v| Target::Value(v.to_owned()))
                        .ok_or_else(|| {
                            StackError::invalid(
                                at,
                                format!("parameter {id} has no Default and no value was given"),
                            )
                        });
                }
                (id.clone(), None)
            }
            ("GetAtt", Node::Str(path)) => match path.split_once('.') {
                Some((id, attribute)) => (id.to_owned(), Some(attribute.to_owned())),
                None => return Err(StackError::invalid(at, "!GetAtt takes Resource.Attribute")),
            },
            ("GetAtt", Node::Seq(parts)) => match parts.as_slice() {
                [Node::Str(id), attribute] => (id.clone(), Some(self.scalar(attribute, at)?)),
                _ => {
                    return Err(StackError::invalid(
                        at,
                        "!GetAtt takes [Resource, Attribute]",
                    ));
                }
            },
            (name, arg) => {
                return Err(StackError::invalid(
                    at,
                    format!("!{name} {} is not a reference", arg.describe()),
                ));
            }
        };
        if id.starts_with("AWS::") {
            return Err(StackError::invalid(
                at,
                format!("{id} is only known once the stack is deployed"),
            ));
        }
        if self.resource(&id).is_none() {
            return Err(StackError::invalid(at, format!("no resource named {id}")));
        }
        Ok(Target::Resource { id, attribute })
    }

    /// A text property, `!Sub` left unrendered.
    fn text(&self, node: &Node, at: &str) -> Result<Text, StackError> {
        match node {
            Node::Fn(name, arg) if name == "Sub" => match arg.as_ref() {
                Node::Str(template) => Ok(Text::Sub {
                    template: template.clone(),
                    vars: Vec::new(),
                }),
                Node::Seq(parts) => match parts.as_slice() {
                    [Node::Str(template), vars] => Ok(Text::Sub {
                        template: template.clone(),
                        vars: vars
                            .entries()
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), self.scalar(v, at)?)))
                            .collect::<Result<_, StackError>>()?,
                    }),
                    _ => Err(StackError::invalid(
                        at,
                        "!Sub takes text or [text, variables]",
                    )),
                },
                other => Err(StackError::invalid(
                    at,
                    format!("!Sub takes text, found {}", other.describe()),
                )),
            },
            other => self.scalar(other, at).map(Text::Literal),
        }
    }

    fn u32_prop(&self, props: &Node, key: &str, at: &str, default: u32) -> Result<u32, StackError> {
        let at = format!("{at}.{key}");
        match self.prop(props, key, &at)? {
            Some(node) => {
                let text = self.scalar(node, &at)?;
                text.parse().map_err(|_| {
                    StackError::invalid(&at, format!("{text:?} is not a whole number"))
                })
            }
            None => Ok(default),
        }
    }

    fn bool_prop(
        &self,
        props: &Node,
        key: &str,
        at: &str,
        default: bool,
    ) -> Result<bool, StackError> {
        let at = format!("{at}.{key}");
        match self.prop(props, key, &at)? {
            Some(node) => match self.scalar(node, &at)?.as_str() {
                "true" | "True" => Ok(true),
                "false" | "False" => Ok(false),
                other => Err(StackError::invalid(
                    at,
                    format!("{other:?} is not a boolean"),
                )),
            },
            None => Ok(default),
        }
    }

    fn string_prop(&self, props: &Node, key: &str, at: &str) -> Result<Option<String>, StackError> {
        let at = format!("{at}.{key}");
        self.prop(props, key, &at)?
            .map(|node| self.scalar(node, &at))
            .transpose()
    }
}

/// A literal scalar as CloudFormation reads it: every scalar is text.
fn literal(node: &Node, at: &str) -> Result<String, StackError> {
    match node {
        Node::Str(s) => Ok(s.clone()),
        Node::Int(i) => Ok(i.to_string()),
        Node::Float(f) => Ok(f.to_string()),
        Node::Bool(b) => Ok(b.to_string()),
        other => Err(StackError::invalid(
            at,
            format!("expected a value, found {}", other.describe()),
        )),
    }
}
