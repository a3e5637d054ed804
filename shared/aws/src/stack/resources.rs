//! The typed view of the resources the code cares about: the table, the queues, the functions
//! (with their environment as SAM merges it), the SQS event source mappings, the schedules and
//! the SSM parameters. Defaults are CloudFormation's and SAM's own, so an absent property reads
//! as what AWS would create.

use std::time::Duration;

use super::node::Node;
use super::{Resource, StackError, StackTemplate, Target, Text};

const FUNCTION_TYPES: [&str; 2] = ["AWS::Serverless::Function", "AWS::Lambda::Function"];
const SAM_FUNCTION: &str = "AWS::Serverless::Function";
const QUEUE_TYPE: &str = "AWS::SQS::Queue";

/// The state table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub logical_id: String,
    pub hash_key: KeyAttribute,
    pub range_key: Option<KeyAttribute>,
    pub global_indexes: Vec<IndexSpec>,
    /// The attribute DynamoDB's TTL deletes by, when TTL is enabled.
    pub ttl_attribute: Option<String>,
    pub billing_mode: BillingMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttribute {
    pub name: String,
    pub kind: AttributeKind,
}

/// A key attribute's `AttributeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeKind {
    /// `S`
    String,
    /// `N`
    Number,
    /// `B`
    Binary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub hash_key: KeyAttribute,
    pub range_key: Option<KeyAttribute>,
    pub projection: Projection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    KeysOnly,
    All,
    Include(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingMode {
    PayPerRequest,
    Provisioned,
}

/// One `AWS::SQS::Queue`, with SQS's defaults where the template sets nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub logical_id: String,
    /// `VisibilityTimeout` (SQS default 30).
    pub visibility_seconds: u32,
    /// `MessageRetentionPeriod` (SQS default 4 days).
    pub retention_seconds: u32,
    /// `DelaySeconds` (default 0).
    pub delay_seconds: u32,
    pub redrive: Option<Redrive>,
}

/// A queue's `RedrivePolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// Logical id of the dead-letter queue.
    pub dead_letter_queue: String,
    /// Receives after which SQS moves a message there.
    pub max_receive_count: u32,
}

/// A Lambda function of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The workspace binary it runs (`Metadata.BuildProperties.Binary`, cargo-lambda's build
    /// property); `None` for a function not built from this workspace.
    pub binary: Option<String>,
    /// `Timeout` (own, else `Globals`, else Lambda's default 3).
    pub timeout_seconds: u32,
    /// `MemorySize` (own, else `Globals`, else 128).
    pub memory_mb: u32,
    /// `Environment.Variables`: `Globals` first, then the function's own, which win (SAM
    /// merges the two maps). Variables that come to `AWS::NoValue` are left out.
    pub environment: Vec<(String, EnvSource)>,
}

/// What an environment variable is set to, before the stack exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// A literal, or a parameter's value.
    Literal(String),
    /// `!Ref Resource`: a queue's URL; the name of a table, bucket, parameter, schedule group or
    /// role.
    Ref(String),
    /// `!GetAtt Resource.Arn`.
    Arn(String),
}

/// An SQS event source: Lambda polls `queue` and invokes `function` with batches. Read from
/// `AWS::Lambda::EventSourceMapping` resources and from SAM `SQS` events alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMappingSpec {
    /// The mapping's logical id (for a SAM event: function id + event name, as SAM names it).
    pub logical_id: String,
    /// Logical id of the function.
    pub function: String,
    /// Logical id of the queue.
    pub queue: String,
    /// `BatchSize` (default 10).
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds` (default 0).
    pub max_batching_window_seconds: u32,
    /// `FunctionResponseTypes` has `ReportBatchItemFailures`: the function answers which
    /// records failed, and only those return to the queue.
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency`: most invocations at once (none: Lambda's scaling).
    pub maximum_concurrency: Option<u32>,
    /// `Enabled` (default true).
    pub enabled: bool,
}

/// A SAM `Schedule` (or `ScheduleV2`) event: the function is invoked on `expression`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRuleSpec {
    /// Logical id of the function.
    pub function: String,
    /// The event's name under `Events`.
    pub event: String,
    /// `rate(1 minute)`, `cron(...)`.
    pub expression: String,
    pub enabled: bool,
}

impl ScheduleRuleSpec {
    /// The period of a `rate(...)` expression; `None` for `cron(...)`.
    pub fn interval(&self) -> Option<Duration> {
        rate_interval(&self.expression)
    }
}

/// The period of an EventBridge `rate(N unit)` expression (`rate(1 minute)`,
/// `rate(5 minutes)`, hours, days); `None` for anything else.
pub fn rate_interval(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (count, unit) = inner.trim().split_once(' ')?;
    let count: u64 = count.parse().ok().filter(|n| *n > 0)?;
    let unit_seconds = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(count.checked_mul(unit_seconds)?))
}

/// An `AWS::SSM::Parameter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmParameterSpec {
    pub logical_id: String,
    /// `Name`, when the template sets it (usually a `!Sub` of the stack name).
    pub name: Option<Text>,
    /// `Value`, rendered by the provisioner.
    pub value: Text,
}

impl StackTemplate {
    /// The one `AWS::DynamoDB::Table`.
    pub fn table(&self) -> Result<TableSpec, StackError> {
        let tables = self.existing(&["AWS::DynamoDB::Table"])?;
        let [table] = tables.as_slice() else {
            return Err(StackError::invalid(
                "Resources",
                format!("expected one AWS::DynamoDB::Table, found {}", tables.len()),
            ));
        };
        let at = format!("Resources.{}.Properties", table.id);
        let props = &table.properties;
        let mut attributes = Vec::new();
        for (i, def) in self
            .list(props, "AttributeDefinitions", &at)?
            .iter()
            .enumerate()
        {
            let at = format!("{at}.AttributeDefinitions[{i}]");
            let name = self.required_string(def, "AttributeName", &at)?;
            let kind = match self.required_string(def, "AttributeType", &at)?.as_str() {
                "S" => AttributeKind::String,
                "N" => AttributeKind::Number,
                "B" => AttributeKind::Binary,
                other => {
                    return Err(StackError::invalid(at, format!("unknown type {other:?}")));
                }
            };
            attributes.push(KeyAttribute { name, kind });
        }
        let (hash_key, range_key) = self.key_schema(props, &attributes, &at)?;
        let mut global_indexes = Vec::new();
        for (i, index) in self
            .list(props, "GlobalSecondaryIndexes", &at)?
            .iter()
            .enumerate()
        {
            let at = format!("{at}.GlobalSecondaryIndexes[{i}]");
            let (hash_key, range_key) = self.key_schema(index, &attributes, &at)?;
            let projection = match self.prop(index, "Projection", &at)? {
                Some(p) => {
                    let at = format!("{at}.Projection");
                    match self
                        .string_prop(p, "ProjectionType", &at)?
                        .as_deref()
                        .unwrap_or("ALL")
                    {
                        "KEYS_ONLY" => Projection::KeysOnly,
                        "ALL" => Projection::All,
                        "INCLUDE" => Projection::Include(
                            self.list(p, "NonKeyAttributes", &at)?
                                .iter()
                                .map(|a| self.scalar(a, &at))
                                .collect::<Result<_, _>>()?,
                        ),
                        other => {
                            return Err(StackError::invalid(
                                at,
                                format!("unknown projection {other:?}"),
                            ));
                        }
                    }
                }
                None => Projection::All,
            };
            global_indexes.push(IndexSpec {
                name: self.required_string(index, "IndexName", &at)?,
                hash_key,
                range_key,
                projection,
            });
        }
        // Not read by anything here; refuse rather than provision a table without them.
        if props.get("LocalSecondaryIndexes").is_some() {
            return Err(StackError::invalid(
                format!("{at}.LocalSecondaryIndexes"),
                "local secondary indexes are not supported by this reader",
            ));
        }
        let ttl_attribute = match self.prop(props, "TimeToLiveSpecification", &at)? {
            Some(ttl) => {
                let at = format!("{at}.TimeToLiveSpecification");
                if self.bool_prop(ttl, "Enabled", &at, false)? {
                    self.string_prop(ttl, "AttributeName", &at)?
                } else {
                    None
                }
            }
            None => None,
        };
        let billing_mode = match self
            .string_prop(props, "BillingMode", &at)?
            .as_deref()
            .unwrap_or("PROVISIONED")
        {
            "PAY_PER_REQUEST" => BillingMode::PayPerRequest,
            "PROVISIONED" => BillingMode::Provisioned,
            other => {
                return Err(StackError::invalid(
                    format!("{at}.BillingMode"),
                    format!("unknown billing mode {other:?}"),
                ));
            }
        };
        Ok(TableSpec {
            logical_id: table.id.clone(),
            hash_key,
            range_key,
            global_indexes,
            ttl_attribute,
            billing_mode,
        })
    }

    /// Every `AWS::SQS::Queue`, in template order.
    pub fn queues(&self) -> Result<Vec<QueueSpec>, StackError> {
        let mut out = Vec::new();
        for queue in self.existing(&[QUEUE_TYPE])? {
            let at = format!("Resources.{}.Properties", queue.id);
            let props = &queue.properties;
            // A FIFO queue needs a `.fifo` name and other receive semantics; none exists yet.
            if self.bool_prop(props, "FifoQueue", &at, false)? {
                return Err(StackError::invalid(
                    format!("{at}.FifoQueue"),
                    "FIFO queues are not supported by this reader",
                ));
            }
            let redrive = match self.prop(props, "RedrivePolicy", &at)? {
                Some(policy) => {
                    let at = format!("{at}.RedrivePolicy");
                    let target = policy.get("deadLetterTargetArn").ok_or_else(|| {
                        StackError::invalid(&at, "no deadLetterTargetArn (a mapping is expected)")
                    })?;
                    Some(Redrive {
                        dead_letter_queue: self.resource_arn(
                            target,
                            &format!("{at}.deadLetterTargetArn"),
                            &[QUEUE_TYPE],
                        )?,
                        max_receive_count: self.u32_prop(policy, "maxReceiveCount", &at, 10)?,
                    })
                }
                None => None,
            };
            out.push(QueueSpec {
                logical_id: queue.id.clone(),
                visibility_seconds: self.u32_prop(props, "VisibilityTimeout", &at, 30)?,
                retention_seconds: self.u32_prop(props, "MessageRetentionPeriod", &at, 345_600)?,
                delay_seconds: self.u32_prop(props, "DelaySeconds", &at, 0)?,
                redrive,
            });
        }
        Ok(out)
    }

    /// Every Lambda function, in template order.
    pub fn functions(&self) -> Result<Vec<FunctionSpec>, StackError> {
        let globals = &self.function_globals;
        let mut out = Vec::new();
        for function in self.existing(&FUNCTION_TYPES)? {
            let at = format!("Resources.{}.Properties", function.id);
            let props = &function.properties;
            let sam = function.kind == SAM_FUNCTION;
            let mut environment = if sam {
                self.environment(globals, "Globals.Function")?
            } else {
                Vec::new()
            };
            for (name, source) in self.environment(props, &at)? {
                match environment.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = source,
                    None => environment.push((name, source)),
                }
            }
            // SAM's globals are defaults for its own functions only.
            let with_globals = |key: &str, default: u32| -> Result<u32, StackError> {
                if props.get(key).is_none() && sam {
                    self.u32_prop(globals, key, "Globals.Function", default)
                } else {
                    self.u32_prop(props, key, &at, default)
                }
            };
            let binary = match function.metadata.get("BuildProperties") {
                Some(build) => self.string_prop(
                    build,
                    "Binary",
                    &format!("Resources.{}.Metadata.BuildProperties", function.id),
                )?,
                None => None,
            };
            out.push(FunctionSpec {
                logical_id: function.id.clone(),
                binary,
                timeout_seconds: with_globals("Timeout", 3)?,
                memory_mb: with_globals("MemorySize", 128)?,
                environment,
            });
        }
        Ok(out)
    }

    /// One function, by logical id (`AsyncWorkerFunction`) or binary (`async-worker`).
    pub fn function(&self, logical_id_or_binary: &str) -> Result<FunctionSpec, StackError> {
        let functions = self.functions()?;
        let names: Vec<String> = functions.iter().map(|f| f.logical_id.clone()).collect();
        functions
            .into_iter()
            .find(|f| {
                f.logical_id == logical_id_or_binary
                    || f.binary.as_deref() == Some(logical_id_or_binary)
            })
            .ok_or_else(|| {
                StackError::invalid(
                    "Resources",
                    format!(
                        "no function {logical_id_or_binary:?} (by logical id or binary); the \
                         template has {}",
                        names.join(", ")
                    ),
                )
            })
    }

    /// `Globals.Function.Environment.Variables`: what every SAM function gets.
    pub fn global_environment(&self) -> Result<Vec<(String, EnvSource)>, StackError> {
        self.environment(&self.function_globals, "Globals.Function")
    }

    /// Every SQS event source: `AWS::Lambda::EventSourceMapping` resources whose source is a
    /// queue of this template, then SAM `SQS` events, in template order. Mappings of other
    /// sources (streams) are not queue mappings and are left out.
    pub fn queue_mappings(&self) -> Result<Vec<QueueMappingSpec>, StackError> {
        let mut out = Vec::new();
        for mapping in self.existing(&["AWS::Lambda::EventSourceMapping"])? {
            let at = format!("Resources.{}.Properties", mapping.id);
            let props = &mapping.properties;
            let source_at = format!("{at}.EventSourceArn");
            let source = self
                .prop(props, "EventSourceArn", &source_at)?
                .ok_or_else(|| StackError::invalid(&source_at, "missing"))?;
            // A literal ARN names a queue outside the stack: nothing of this template.
            if !matches!(source, Node::Fn(kind, _) if kind == "GetAtt" || kind == "Ref") {
                continue;
            }
            let queue = match self.target(source, &source_at)? {
                Target::Resource { id, .. } if self.resource_type(&id) == Some(QUEUE_TYPE) => {
                    self.resource_arn(source, &source_at, &[QUEUE_TYPE])?
                }
                _ => continue,
            };
            let function_at = format!("{at}.FunctionName");
            let function = self
                .prop(props, "FunctionName", &function_at)?
                .ok_or_else(|| StackError::invalid(&function_at, "missing"))?;
            let function = match self.target(function, &function_at)? {
                Target::Resource { id, attribute }
                    if attribute.as_deref().is_none_or(|a| a == "Arn")
                        && self
                            .resource_type(&id)
                            .is_some_and(|t| FUNCTION_TYPES.contains(&t)) =>
                {
                    id
                }
                _ => {
                    return Err(StackError::invalid(
                        function_at,
                        "expected !Ref or !GetAtt .Arn of a function of this template",
                    ));
                }
            };
            out.push(self.mapping(mapping.id.clone(), function, queue, props, &at)?);
        }
        for function in self.existing(&[SAM_FUNCTION])? {
            for (event, def, at) in self.sam_events(function, &["SQS"])? {
                let queue_at = format!("{at}.Queue");
                let queue = self
                    .prop(&def, "Queue", &queue_at)?
                    .ok_or_else(|| StackError::invalid(&queue_at, "missing"))?;
                let queue = self.resource_arn(queue, &queue_at, &[QUEUE_TYPE])?;
                out.push(self.mapping(
                    format!("{}{event}", function.id),
                    function.id.clone(),
                    queue,
                    &def,
                    &at,
                )?);
            }
        }
        Ok(out)
    }

    /// Every SAM `Schedule` / `ScheduleV2` event of every function.
    pub fn schedule_rules(&self) -> Result<Vec<ScheduleRuleSpec>, StackError> {
        let mut out = Vec::new();
        for function in self.existing(&[SAM_FUNCTION])? {
            for (event, props, at) in self.sam_events(function, &["Schedule", "ScheduleV2"])? {
                let expression = match self.string_prop(&props, "Schedule", &at)? {
                    Some(expression) => expression,
                    None => self.required_string(&props, "ScheduleExpression", &at)?,
                };
                // `State` (ENABLED / DISABLED) wins over the older `Enabled`.
                let enabled = match self.string_prop(&props, "State", &at)? {
                    Some(state) => state == "ENABLED",
                    None => self.bool_prop(&props, "Enabled", &at, true)?,
                };
                out.push(ScheduleRuleSpec {
                    function: function.id.clone(),
                    event,
                    expression,
                    enabled,
                });
            }
        }
        Ok(out)
    }

    /// Every `AWS::SSM::Parameter`.
    pub fn ssm_parameters(&self) -> Result<Vec<SsmParameterSpec>, StackError> {
        let mut out = Vec::new();
        for parameter in self.existing(&["AWS::SSM::Parameter"])? {
            let at = format!("Resources.{}.Properties", parameter.id);
            let value_at = format!("{at}.Value");
            let value = self
                .prop(&parameter.properties, "Value", &value_at)?
                .ok_or_else(|| StackError::invalid(&value_at, "missing"))?;
            out.push(SsmParameterSpec {
                logical_id: parameter.id.clone(),
                name: self.explicit_name(&parameter.id)?,
                value: self.text(value, &value_at)?,
            });
        }
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------

    fn mapping(
        &self,
        logical_id: String,
        function: String,
        queue: String,
        props: &Node,
        at: &str,
    ) -> Result<QueueMappingSpec, StackError> {
        let mut report_batch_item_failures = false;
        for kind in self.list(props, "FunctionResponseTypes", at)? {
            if self.scalar(kind, &format!("{at}.FunctionResponseTypes"))?
                == "ReportBatchItemFailures"
            {
                report_batch_item_failures = true;
            }
        }
        let maximum_concurrency = match self.prop(props, "ScalingConfig", at)? {
            Some(scaling) => {
                let at = format!("{at}.ScalingConfig");
                match self.prop(scaling, "MaximumConcurrency", &at)? {
                    Some(_) => Some(self.u32_prop(scaling, "MaximumConcurrency", &at, 0)?),
                    None => None,
                }
            }
            None => None,
        };
        Ok(QueueMappingSpec {
            logical_id,
            function,
            queue,
            batch_size: self.u32_prop(props, "BatchSize", at, 10)?,
            max_batching_window_seconds: self.u32_prop(
                props,
                "MaximumBatchingWindowInSeconds",
                at,
                0,
            )?,
            report_batch_item_failures,
            maximum_concurrency,
            enabled: self.bool_prop(props, "Enabled", at, true)?,
        })
    }

    /// A function's `Events` of the given types: (name, properties, path of the properties).
    fn sam_events(
        &self,
        function: &Resource,
        types: &[&str],
    ) -> Result<Vec<(String, Node, String)>, StackError> {
        let mut out = Vec::new();
        let at = format!("Resources.{}.Properties.Events", function.id);
        let Some(events) = self.prop(&function.properties, "Events", &at)? else {
            return Ok(out);
        };
        for (name, event) in events.entries() {
            let at = format!("{at}.{name}");
            let Some(kind) = self.string_prop(event, "Type", &at)? else {
                continue;
            };
            if types.contains(&kind.as_str()) {
                let props = self
                    .prop(event, "Properties", &at)?
                    .cloned()
                    .unwrap_or(Node::Null);
                out.push((name.clone(), props, format!("{at}.Properties")));
            }
        }
        Ok(out)
    }

    /// `Environment.Variables` of a function's properties (or of `Globals.Function`).
    fn environment(&self, props: &Node, at: &str) -> Result<Vec<(String, EnvSource)>, StackError> {
        let at = format!("{at}.Environment");
        let Some(environment) = self.prop(props, "Environment", &at)? else {
            return Ok(Vec::new());
        };
        let at = format!("{at}.Variables");
        let Some(variables) = self.prop(environment, "Variables", &at)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (name, value) in variables.entries() {
            let at = format!("{at}.{name}");
            let Some(value) = self.eval(value, &at)? else {
                continue;
            };
            let source = match value {
                Node::Fn(kind, _) if kind == "Ref" || kind == "GetAtt" => {
                    match self.target(value, &at)? {
                        Target::Value(literal) => EnvSource::Literal(literal),
                        Target::Resource {
                            id,
                            attribute: None,
                        } => EnvSource::Ref(id),
                        Target::Resource {
                            id,
                            attribute: Some(attribute),
                        } if attribute == "Arn" => EnvSource::Arn(id),
                        Target::Resource {
                            attribute: Some(attribute),
                            ..
                        } => {
                            return Err(StackError::invalid(
                                at,
                                format!("!GetAtt .{attribute} is not supported (only .Arn)"),
                            ));
                        }
                    }
                }
                other => EnvSource::Literal(self.scalar(other, &at)?),
            };
            out.push((name.clone(), source));
        }
        Ok(out)
    }

    /// The logical id behind `!GetAtt X.Arn` (or `!Ref X`, for types whose Ref is the ARN),
    /// checked to be one of `types`.
    fn resource_arn(&self, node: &Node, at: &str, types: &[&str]) -> Result<String, StackError> {
        match self.target(node, at)? {
            Target::Resource { id, attribute }
                if attribute.as_deref() == Some("Arn")
                    && self.resource_type(&id).is_some_and(|t| types.contains(&t)) =>
            {
                Ok(id)
            }
            _ => Err(StackError::invalid(
                at,
                format!("expected !GetAtt <{}>.Arn", types.join(" | ")),
            )),
        }
    }

    fn key_schema(
        &self,
        props: &Node,
        attributes: &[KeyAttribute],
        at: &str,
    ) -> Result<(KeyAttribute, Option<KeyAttribute>), StackError> {
        let (mut hash, mut range) = (None, None);
        for (i, key) in self.list(props, "KeySchema", at)?.iter().enumerate() {
            let at = format!("{at}.KeySchema[{i}]");
            let name = self.required_string(key, "AttributeName", &at)?;
            let attribute = attributes
                .iter()
                .find(|a| a.name == name)
                .cloned()
                .ok_or_else(|| {
                    StackError::invalid(&at, format!("{name} is not in AttributeDefinitions"))
                })?;
            match self.required_string(key, "KeyType", &at)?.as_str() {
                "HASH" => hash = Some(attribute),
                "RANGE" => range = Some(attribute),
                other => {
                    return Err(StackError::invalid(
                        at,
                        format!("unknown key type {other:?}"),
                    ));
                }
            }
        }
        let hash = hash.ok_or_else(|| StackError::invalid(at, "KeySchema has no HASH key"))?;
        Ok((hash, range))
    }

    /// A list property (absent = empty).
    fn list<'a>(&self, props: &'a Node, key: &str, at: &str) -> Result<&'a [Node], StackError> {
        let at = format!("{at}.{key}");
        match self.prop(props, key, &at)? {
            Some(Node::Seq(items)) => Ok(items),
            Some(other) => Err(StackError::invalid(
                at,
                format!("expected a list, found {}", other.describe()),
            )),
            None => Ok(&[]),
        }
    }

    fn required_string(&self, props: &Node, key: &str, at: &str) -> Result<String, StackError> {
        self.string_prop(props, key, at)?
            .ok_or_else(|| StackError::invalid(format!("{at}.{key}"), "missing"))
    }
}
