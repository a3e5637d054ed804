//! Creates a stack's resources by API, as `infra/template.yaml` declares them ([`crate::stack`]
//! reads it): the table with its keys, indexes and TTL, every queue with its visibility timeout,
//! retention and redrive policy, the schedule groups, the buckets and the SSM parameters. For the
//! emulator the test suites and `prism-provision` run against, where every test gets its own
//! uniquely named set; deployments use the template itself.
//!
//! What the emulator has no use for (functions, event source mappings, log groups, alarms, IAM
//! policies, an API in front of the functions) is not created and is listed in
//! [`ProvisionedStack::not_provisioned`]; IAM roles get an ARN the emulator accepts without the
//! role existing. The one deliberate difference from the template is
//! [`ProvisionOptions::visibility_override`].

use std::collections::HashMap;

use aws_config::BehaviorVersion;

use crate::settings::{AwsSettings, SettingsError};
use crate::stack::{EnvSource, StackError, StackTemplate};

mod builder;
use builder::Builder;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("could not create {what}: {detail}")]
    Create { what: String, detail: String },
    #[error(transparent)]
    Template(#[from] StackError),
    #[error("cannot name resources with prefix {prefix:?}: {problem}")]
    Name { prefix: String, problem: String },
    #[error("{logical_id} ({resource_type}) is not created on the emulator, so it has no value")]
    NotProvisioned {
        logical_id: String,
        resource_type: String,
    },
    /// The template's `Globals` environment lacks variables the backend needs.
    #[error("the template's environment does not name every resource: {0}")]
    Settings(#[from] SettingsError),
}

fn failed<E>(what: impl Into<String>) -> impl FnOnce(E) -> ProvisionError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let what = what.into();
    move |e| ProvisionError::Create {
        what,
        detail: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    }
}

/// How a provisioned stack may differ from the template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionOptions {
    /// The only override of the template's infrastructure: every queue's visibility timeout, in
    /// seconds. The template's are six times the consumer's Lambda timeout (up to 90 minutes),
    /// so a message a test leaves unacknowledged would not come back within the test; a short
    /// one makes redeliveries come in seconds. `None` keeps the template's values.
    pub visibility_override: Option<u32>,
    /// The TOML put into the configuration parameter (the template's only
    /// `AWS::SSM::Parameter`) instead of the template's own value. Content, not infrastructure:
    /// on AWS the same parameter holds what the operator deploys.
    pub config_toml: Option<String>,
}

/// One resource as created: what `!Ref` and `!GetAtt .Arn` of it come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysicalResource {
    pub logical_id: String,
    pub resource_type: String,
    /// The physical name (queue name, table name, bucket, parameter name, ...).
    pub name: String,
    /// Queues only.
    pub url: Option<String>,
    pub arn: String,
}

impl PhysicalResource {
    /// What CloudFormation's `!Ref` returns: a queue's URL, every other type's name.
    pub fn ref_value(&self) -> &str {
        self.url.as_deref().unwrap_or(&self.name)
    }
}

/// A stack created from the template on the emulator.
#[derive(Debug, Clone)]
pub struct ProvisionedStack {
    /// The prefix of every physical name, and the stack name (`AWS::StackName`).
    pub prefix: String,
    /// What the backend reads from the environment, taken from the template's `Globals`
    /// environment resolved against this stack (plus path-style S3 on an emulator).
    pub settings: AwsSettings,
    template: StackTemplate,
    resources: Vec<PhysicalResource>,
    not_provisioned: Vec<(String, String)>,
}

impl ProvisionedStack {
    /// The template the stack was created from (parameters as provisioned).
    pub fn template(&self) -> &StackTemplate {
        &self.template
    }

    pub fn resource(&self, logical_id: &str) -> Option<&PhysicalResource> {
        self.resources.iter().find(|r| r.logical_id == logical_id)
    }

    /// Every created resource, in creation order.
    pub fn resources(&self) -> &[PhysicalResource] {
        &self.resources
    }

    /// `(logical id, type)` of every resource of the template that was not created.
    pub fn not_provisioned(&self) -> &[(String, String)] {
        &self.not_provisioned
    }

    /// The URL of a queue, by logical id.
    pub fn queue_url(&self, logical_id: &str) -> Option<&str> {
        self.resource(logical_id).and_then(|r| r.url.as_deref())
    }

    /// The environment the template gives one function (by logical id or binary name), resolved
    /// as CloudFormation would against this stack: `!Ref` of a queue is its URL, of a table,
    /// bucket, parameter, schedule group or role its name, `!GetAtt .Arn` its ARN. Only what
    /// the template sets: add [`Self::client_env`] to run the function against the emulator.
    pub fn function_env(&self, function: &str) -> Result<Vec<(String, String)>, ProvisionError> {
        let spec = self.template.function(function)?;
        spec.environment
            .into_iter()
            .map(|(name, source)| Ok((name, resolve(&self.template, &self.resources, &source)?)))
            .collect()
    }

    /// Replaces the configuration parameter's text (the template's only `AWS::SSM::Parameter`),
    /// as an operator changes a deployed stack's configuration: functions read it at init, so
    /// it takes effect in the sandboxes started after.
    pub async fn put_config(&self, toml: &str) -> Result<(), ProvisionError> {
        let parameter = self
            .resources
            .iter()
            .find(|r| r.resource_type == "AWS::SSM::Parameter")
            .ok_or_else(|| ProvisionError::Create {
                what: "the configuration parameter".into(),
                detail: "the stack has no AWS::SSM::Parameter".into(),
            })?;
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        aws_sdk_ssm::Client::new(&config)
            .put_parameter()
            .name(&parameter.name)
            .value(toml)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .map_err(failed(format!("parameter {}", parameter.name)))?;
        Ok(())
    }

    /// What a process needs besides the template's environment to reach this stack's
    /// resources: path-style S3 addressing on an emulator.
    pub fn client_env(&self) -> Vec<(String, String)> {
        let name = AwsSettings::OPTIONAL_ENV[0];
        vec![(
            name.to_owned(),
            self.settings.s3_force_path_style.to_string(),
        )]
    }
}

/// Creates the resources of the repository's template ([`StackTemplate::bundled`]) named
/// `<prefix>-…`, and returns their settings: the existing callers' entry point, with every
/// queue's visibility timeout set to `visibility_seconds`.
pub async fn provision(
    prefix: &str,
    visibility_seconds: u32,
) -> Result<AwsSettings, ProvisionError> {
    let options = ProvisionOptions {
        visibility_override: Some(visibility_seconds),
        config_toml: None,
    };
    Ok(provision_stack(prefix, &options).await?.settings)
}

/// Creates the resources of the repository's template, named `<prefix>-…`.
pub async fn provision_stack(
    prefix: &str,
    options: &ProvisionOptions,
) -> Result<ProvisionedStack, ProvisionError> {
    provision_template(&StackTemplate::bundled()?, prefix, options).await
}

/// The value of a secret the template expects to exist already (the provider key's
/// `ProviderKeySecretArn`), when the emulator's stack creates a stand-in for it.
const STAND_IN_SECRET: &str = "emulator-stand-in-provider-key";
/// SQS's limit on queue names.
const MAX_QUEUE_NAME: usize = 80;
/// S3's limit on bucket names.
const MAX_BUCKET_NAME: usize = 63;
/// The schedule group, role and table names' limits (table names may be longer; 64 is plenty).
const MAX_OTHER_NAME: usize = 64;

/// Creates the resources of `template` (see the module's comment for what is created).
pub async fn provision_template(
    template: &StackTemplate,
    prefix: &str,
    options: &ProvisionOptions,
) -> Result<ProvisionedStack, ProvisionError> {
    check_prefix(prefix)?;
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let mut builder = Builder {
        config: &config,
        prefix,
        template: template.clone(),
        region: config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into()),
        account: None,
        resources: Vec::new(),
    };
    builder.table(&template.table()?).await?;
    builder.queues(template.queues()?, options).await?;
    builder.schedule_groups().await?;
    builder.buckets().await?;
    builder.roles()?;
    builder.ssm_parameters(options).await?;

    let created: Vec<&str> = builder
        .resources
        .iter()
        .map(|r| r.logical_id.as_str())
        .collect();
    let not_provisioned = template
        .resources()?
        .into_iter()
        .filter(|(id, _)| !created.contains(id))
        .map(|(id, kind)| (id.to_owned(), kind.to_owned()))
        .collect();
    let resolved = |source: &EnvSource| resolve(&builder.template, &builder.resources, source);
    let mut env = HashMap::new();
    for (name, source) in builder.template.global_environment()? {
        // A variable naming something the emulator lacks is not one the backend reads.
        if let Ok(value) = resolved(&source) {
            env.insert(name, value);
        }
    }
    let mut settings = AwsSettings::from_lookup(|name| env.get(name).cloned())?;
    // Emulators serve S3 by path; AWS by virtual host.
    settings.s3_force_path_style = config.endpoint_url().is_some();
    Ok(ProvisionedStack {
        prefix: prefix.to_owned(),
        settings,
        template: builder.template,
        resources: builder.resources,
        not_provisioned,
    })
}

/// What an environment variable comes to on a stack of `resources`.
fn resolve(
    template: &StackTemplate,
    resources: &[PhysicalResource],
    source: &EnvSource,
) -> Result<String, ProvisionError> {
    let physical = |id: &str| {
        resources
            .iter()
            .find(|r| r.logical_id == id)
            .ok_or_else(|| ProvisionError::NotProvisioned {
                logical_id: id.to_owned(),
                resource_type: template.resource_type(id).unwrap_or("?").to_owned(),
            })
    };
    Ok(match source {
        EnvSource::Literal(value) => value.clone(),
        EnvSource::Ref(id) => physical(id)?.ref_value().to_owned(),
        EnvSource::Arn(id) => physical(id)?.arn.clone(),
    })
}

/// Bucket names are the strictest: lowercase letters, digits and hyphens.
fn check_prefix(prefix: &str) -> Result<(), ProvisionError> {
    let problem = if prefix.is_empty() {
        Some("it is empty")
    } else if !prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("use lowercase letters, digits and hyphens (bucket names allow no more)")
    } else if !prefix.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("it must start with a letter or digit")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ProvisionError::Name {
            prefix: prefix.to_owned(),
            problem: problem.to_owned(),
        }),
        None => Ok(()),
    }
}

/// `BatchFinalizeDeadLetterQueue` → `batch-finalize-dead-letter-queue`: physical names stay
/// readable and stable while the logical id does.
pub(crate) fn kebab(logical_id: &str) -> String {
    let chars: Vec<char> = logical_id.chars().collect();
    let mut out = String::with_capacity(logical_id.len() + 8);
    for (i, c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| chars.get(p));
        let next = chars.get(i + 1);
        if c.is_ascii_uppercase() {
            let after_word = prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            let acronym_ends = prev.is_some_and(char::is_ascii_uppercase)
                && next.is_some_and(char::is_ascii_lowercase);
            if after_word || acronym_ends {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(*c);
        } else {
            out.push('-');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_ids_become_kebab_case() {
        assert_eq!(kebab("JobsQueue"), "jobs-queue");
        assert_eq!(
            kebab("BatchFinalizeDeadLetterQueue"),
            "batch-finalize-dead-letter-queue"
        );
        assert_eq!(kebab("APIGatewayStage2"), "api-gateway-stage2");
    }

    #[test]
    fn prefixes_must_make_valid_bucket_names() {
        assert!(check_prefix("e2e-12-3").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("Upper").is_err());
        assert!(check_prefix("-lead").is_err());
        assert!(check_prefix("a_b").is_err());
    }
}
