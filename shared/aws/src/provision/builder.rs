//! The builder behind [`super::provision_template`]: one create call per resource of the
//! template, recording what `!Ref` and `!GetAtt` of each come to.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode as DynamoBillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection as DynamoProjection, ProjectionType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use super::{
    MAX_BUCKET_NAME, MAX_OTHER_NAME, MAX_QUEUE_NAME, PhysicalResource, ProvisionError,
    ProvisionOptions, STAND_IN_SECRET, failed, kebab,
};
use crate::stack::{
    AttributeKind, BillingMode, KeyAttribute, Projection, QueueSpec, StackError, StackTemplate,
    TableSpec,
};

pub(super) struct Builder<'a> {
    pub(super) config: &'a SdkConfig,
    pub(super) prefix: &'a str,
    /// With the stand-in parameter values, if any were needed.
    pub(super) template: StackTemplate,
    pub(super) region: String,
    /// Learnt from the first ARN the emulator returns.
    pub(super) account: Option<String>,
    pub(super) resources: Vec<PhysicalResource>,
}

impl Builder<'_> {
    /// `<prefix>-<logical id in kebab case>`, or the template's own name for the resource.
    pub(super) fn name(&self, logical_id: &str, limit: usize) -> Result<String, ProvisionError> {
        let name = match self.template.explicit_name(logical_id)? {
            Some(text) => text.render(|var| self.substitute(var))?,
            None => format!("{}-{}", self.prefix, kebab(logical_id)),
        };
        if name.len() > limit {
            return Err(ProvisionError::Name {
                prefix: self.prefix.to_owned(),
                problem: format!("{name} (for {logical_id}) is longer than {limit} characters"),
            });
        }
        Ok(name)
    }

    /// What `!Sub` substitutes for `var` on this stack: parameters, pseudo parameters and the
    /// resources created so far.
    pub(super) fn substitute(&self, var: &str) -> Option<String> {
        match var {
            "AWS::StackName" => Some(self.prefix.to_owned()),
            "AWS::Region" => Some(self.region.clone()),
            "AWS::AccountId" => self.account.clone(),
            "AWS::Partition" => Some("aws".into()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            _ => {
                if let Some(value) = self.template.parameter_value(var) {
                    return Some(value.to_owned());
                }
                let (id, attribute) = match var.split_once('.') {
                    Some((id, attribute)) => (id, Some(attribute)),
                    None => (var, None),
                };
                let resource = self.resources.iter().find(|r| r.logical_id == id)?;
                match attribute {
                    None => Some(resource.ref_value().to_owned()),
                    Some("Arn") => Some(resource.arn.clone()),
                    Some(_) => None,
                }
            }
        }
    }

    pub(super) fn learn_account(&mut self, arn: &str) {
        if self.account.is_none() {
            let account = arn.split(':').nth(4).unwrap_or_default();
            if !account.is_empty() {
                self.account = Some(account.to_owned());
            }
        }
    }

    pub(super) fn record(
        &mut self,
        logical_id: &str,
        name: String,
        url: Option<String>,
        arn: String,
    ) {
        self.learn_account(&arn);
        self.resources.push(PhysicalResource {
            logical_id: logical_id.to_owned(),
            resource_type: self
                .template
                .resource_type(logical_id)
                .unwrap_or_default()
                .to_owned(),
            name,
            url,
            arn,
        });
    }

    pub(super) async fn table(&mut self, spec: &TableSpec) -> Result<(), ProvisionError> {
        let dynamo = aws_sdk_dynamodb::Client::new(self.config);
        let name = self.name(&spec.logical_id, MAX_OTHER_NAME)?;
        if spec.billing_mode != BillingMode::PayPerRequest {
            return Err(StackError::invalid(
                format!("Resources.{}.Properties.BillingMode", spec.logical_id),
                "only PAY_PER_REQUEST tables are provisioned (no throughput is read)",
            )
            .into());
        }
        // Every key attribute once (the table's and the indexes' may repeat).
        let keys = std::iter::once(&spec.hash_key)
            .chain(spec.range_key.iter())
            .chain(
                spec.global_indexes
                    .iter()
                    .flat_map(|i| std::iter::once(&i.hash_key).chain(i.range_key.iter())),
            );
        let mut attributes: Vec<&KeyAttribute> = Vec::new();
        for key in keys {
            if !attributes.iter().any(|a| a.name == key.name) {
                attributes.push(key);
            }
        }
        let mut create = dynamo
            .create_table()
            .table_name(&name)
            .billing_mode(DynamoBillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&spec.hash_key, spec.range_key.as_ref())?));
        for attribute in attributes {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&attribute.name)
                    .attribute_type(match attribute.kind {
                        AttributeKind::String => ScalarAttributeType::S,
                        AttributeKind::Number => ScalarAttributeType::N,
                        AttributeKind::Binary => ScalarAttributeType::B,
                    })
                    .build()
                    .map_err(failed("attribute definition"))?,
            );
        }
        for index in &spec.global_indexes {
            let projection = match &index.projection {
                Projection::KeysOnly => DynamoProjection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
                Projection::All => DynamoProjection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
                Projection::Include(names) => DynamoProjection::builder()
                    .projection_type(ProjectionType::Include)
                    .set_non_key_attributes(Some(names.clone()))
                    .build(),
            };
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(&index.name)
                    .set_key_schema(Some(key_schema(&index.hash_key, index.range_key.as_ref())?))
                    .projection(projection)
                    .build()
                    .map_err(failed(format!("index {}", index.name)))?,
            );
        }
        let created = create
            .send()
            .await
            .map_err(failed(format!("table {name}")))?;
        if let Some(attribute) = &spec.ttl_attribute {
            dynamo
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()
                        .map_err(failed("ttl"))?,
                )
                .send()
                .await
                .map_err(failed(format!("ttl of {name}")))?;
        }
        let arn = created
            .table_description
            .and_then(|d| d.table_arn)
            .unwrap_or_default();
        self.record(&spec.logical_id, name, None, arn);
        Ok(())
    }

    /// Dead-letter queues first: a redrive policy names its target's ARN.
    pub(super) async fn queues(
        &mut self,
        mut pending: Vec<QueueSpec>,
        options: &ProvisionOptions,
    ) -> Result<(), ProvisionError> {
        let sqs = aws_sdk_sqs::Client::new(self.config);
        while !pending.is_empty() {
            let (ready, waiting): (Vec<QueueSpec>, Vec<QueueSpec>) =
                pending.into_iter().partition(|q| {
                    q.redrive.as_ref().is_none_or(|r| {
                        self.resources
                            .iter()
                            .any(|c| c.logical_id == r.dead_letter_queue)
                    })
                });
            if ready.is_empty() {
                let ids: Vec<String> = waiting.iter().map(|q| q.logical_id.clone()).collect();
                return Err(StackError::invalid(
                    "Resources",
                    format!("the redrive policies of {} form a cycle", ids.join(", ")),
                )
                .into());
            }
            let mut creates = Vec::new();
            for queue in &ready {
                let name = self.name(&queue.logical_id, MAX_QUEUE_NAME)?;
                let visibility = options
                    .visibility_override
                    .unwrap_or(queue.visibility_seconds);
                let mut request = sqs
                    .create_queue()
                    .queue_name(&name)
                    .attributes(
                        QueueAttributeName::VisibilityTimeout,
                        visibility.to_string(),
                    )
                    .attributes(
                        QueueAttributeName::MessageRetentionPeriod,
                        queue.retention_seconds.to_string(),
                    )
                    .attributes(
                        QueueAttributeName::DelaySeconds,
                        queue.delay_seconds.to_string(),
                    );
                if let Some(redrive) = &queue.redrive {
                    let target = self
                        .resources
                        .iter()
                        .find(|c| c.logical_id == redrive.dead_letter_queue)
                        .map(|c| c.arn.clone())
                        .unwrap_or_default();
                    let policy = serde_json::json!({
                        "deadLetterTargetArn": target,
                        "maxReceiveCount": redrive.max_receive_count,
                    });
                    request =
                        request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
                }
                let sqs = &sqs;
                creates.push(async move {
                    let url = request
                        .send()
                        .await
                        .map_err(failed(format!("queue {name}")))?
                        .queue_url
                        .unwrap_or_default();
                    let arn = queue_arn(sqs, &url).await?;
                    Ok::<_, ProvisionError>((name, url, arn))
                });
            }
            let created = futures::future::try_join_all(creates).await?;
            for (queue, (name, url, arn)) in ready.iter().zip(created) {
                self.record(&queue.logical_id, name, Some(url), arn);
            }
            pending = waiting;
        }
        Ok(())
    }

    pub(super) async fn schedule_groups(&mut self) -> Result<(), ProvisionError> {
        let scheduler = aws_sdk_scheduler::Client::new(self.config);
        let ids: Vec<String> = self
            .template
            .resources_of_type("AWS::Scheduler::ScheduleGroup")?
            .into_iter()
            .map(str::to_owned)
            .collect();
        for id in ids {
            let name = self.name(&id, MAX_OTHER_NAME)?;
            let created = scheduler
                .create_schedule_group()
                .name(&name)
                .send()
                .await
                .map_err(failed(format!("schedule group {name}")))?;
            self.record(&id, name, None, created.schedule_group_arn);
        }
        Ok(())
    }

    pub(super) async fn buckets(&mut self) -> Result<(), ProvisionError> {
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(self.config)
                .force_path_style(true)
                .build(),
        );
        let ids: Vec<String> = self
            .template
            .resources_of_type("AWS::S3::Bucket")?
            .into_iter()
            .map(str::to_owned)
            .collect();
        for id in ids {
            let name = self.name(&id, MAX_BUCKET_NAME)?;
            s3.create_bucket()
                .bucket(&name)
                .send()
                .await
                .map_err(failed(format!("bucket {name}")))?;
            let arn = format!("arn:aws:s3:::{name}");
            self.record(&id, name, None, arn);
        }
        Ok(())
    }

    /// Roles are not created: emulators accept any role ARN, and nothing on them checks what a
    /// role may do.
    pub(super) fn roles(&mut self) -> Result<(), ProvisionError> {
        let ids: Vec<String> = self
            .template
            .resources_of_type("AWS::IAM::Role")?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let account = self
            .account
            .clone()
            .unwrap_or_else(|| "000000000000".into());
        for id in ids {
            let name = self.name(&id, MAX_OTHER_NAME)?;
            let arn = format!("arn:aws:iam::{account}:role/{name}");
            self.record(&id, name, None, arn);
        }
        Ok(())
    }

    /// Every SSM parameter with the template's value, except that the configuration parameter
    /// (the template's only one) takes [`ProvisionOptions::config_toml`] when given.
    pub(super) async fn ssm_parameters(
        &mut self,
        options: &ProvisionOptions,
    ) -> Result<(), ProvisionError> {
        let specs = self.template.ssm_parameters()?;
        if options.config_toml.is_some() && specs.len() != 1 {
            return Err(StackError::invalid(
                "Resources",
                format!(
                    "a configuration text needs exactly one AWS::SSM::Parameter to go to, \
                     found {}",
                    specs.len()
                ),
            )
            .into());
        }
        if options.config_toml.is_none() {
            self.stand_in_secrets().await?;
        }
        let ssm = aws_sdk_ssm::Client::new(self.config);
        for spec in specs {
            let name = match &spec.name {
                Some(text) => text.render(|var| self.substitute(var))?,
                None => format!("{}-{}", self.prefix, kebab(&spec.logical_id)),
            };
            let value = match &options.config_toml {
                Some(toml) => toml.clone(),
                None => spec.value.render(|var| self.substitute(var))?,
            };
            ssm.put_parameter()
                .name(&name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .send()
                .await
                .map_err(failed(format!("parameter {name}")))?;
            let account = self.account.clone().unwrap_or_default();
            let path = if name.starts_with('/') {
                name.clone()
            } else {
                format!("/{name}")
            };
            let arn = format!("arn:aws:ssm:{}:{account}:parameter{path}", self.region);
            self.record(&spec.logical_id, name, None, arn);
        }
        Ok(())
    }

    /// A parameter without a value whose `AllowedPattern` says it is the ARN of an existing
    /// Secrets Manager secret (the provider key) gets a stand-in secret, so the template's
    /// configuration renders and a function reading it finds its secret.
    pub(super) async fn stand_in_secrets(&mut self) -> Result<(), ProvisionError> {
        let wanted: Vec<String> = self
            .template
            .parameters()
            .iter()
            .filter(|p| self.template.parameter_value(&p.name).is_none())
            .filter(|p| {
                p.allowed_pattern
                    .as_deref()
                    .is_some_and(|pattern| pattern.contains(":secretsmanager:"))
            })
            .map(|p| p.name.clone())
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let secrets = aws_sdk_secretsmanager::Client::new(self.config);
        for parameter in wanted {
            let name = format!("{}-{}", self.prefix, kebab(&parameter));
            let arn = secrets
                .create_secret()
                .name(&name)
                .secret_string(STAND_IN_SECRET)
                .send()
                .await
                .map_err(failed(format!("secret {name}")))?
                .arn
                .unwrap_or_default();
            self.template = self.template.with_parameter(&parameter, &arn)?;
        }
        Ok(())
    }
}

fn key_schema(
    hash: &KeyAttribute,
    range: Option<&KeyAttribute>,
) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    let element = |key: &KeyAttribute, kind| {
        KeySchemaElement::builder()
            .attribute_name(&key.name)
            .key_type(kind)
            .build()
            .map_err(failed("key schema"))
    };
    let mut schema = vec![element(hash, KeyType::Hash)?];
    if let Some(range) = range {
        schema.push(element(range, KeyType::Range)?);
    }
    Ok(schema)
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, ProvisionError> {
    Ok(sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(failed("queue attributes"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default())
}
