//! `infra/template.yaml` against the code, without an emulator: the environment the template
//! sets against what the code reads, the queues' redrive and visibility rules, the table's key
//! layout against the adapters', the event source mappings against the functions and queues.
//! Drift between the two fails here. `template_reader.rs` pins the reader itself on small
//! templates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use prism_aws::stack::{
    AttributeKind, BillingMode, EnvSource, FunctionSpec, Projection, QueueSpec, StackTemplate,
};
use prism_aws::{AwsSettings, MAX_RECEIVE_COUNT, table_keys};

/// SQS's maximum retention, 14 days: a dead letter keeps its original enqueue time, so its
/// queue must keep it at least as long as the source queue did.
const SQS_MAX_RETENTION: u32 = 14 * 24 * 3600;
/// Lambda's rule for SQS event sources: visibility timeout >= 6 x the function's timeout.
const VISIBILITY_PER_TIMEOUT: u32 = 6;

fn template() -> StackTemplate {
    StackTemplate::bundled().expect("infra/template.yaml reads")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The template's environment of one function with every resource replaced by
/// `ref:<logical id>` / `arn:<logical id>`, read through `AwsSettings::from_lookup`: which
/// resource each settings field names, without retyping a variable name.
fn logical_settings(function: &FunctionSpec) -> AwsSettings {
    let env: HashMap<String, String> = function
        .environment
        .iter()
        .map(|(name, source)| {
            let value = match source {
                EnvSource::Literal(value) => format!("literal:{value}"),
                EnvSource::Ref(id) => format!("ref:{id}"),
                EnvSource::Arn(id) => format!("arn:{id}"),
            };
            (name.clone(), value)
        })
        .collect();
    AwsSettings::from_lookup(|name| env.get(name).cloned()).unwrap_or_else(|e| {
        panic!(
            "{} lacks variables the backend needs: {e}",
            function.logical_id
        )
    })
}

fn queue<'a>(queues: &'a [QueueSpec], id: &str) -> &'a QueueSpec {
    queues
        .iter()
        .find(|q| q.logical_id == id)
        .unwrap_or_else(|| panic!("{id} is not a queue of the template"))
}

/// `ref:<id>` → `<id>`, failing when the variable is not of that form.
fn id_of<'a>(value: &'a str, form: &str, what: &str) -> &'a str {
    value
        .strip_prefix(form)
        .unwrap_or_else(|| panic!("{what} is {value}, expected {form}<logical id>"))
}

/// Every quoted `"PRISM_…"` in `path`, a `.rs` file or a folder of them.
fn quoted_prism_names(path: &Path, out: &mut BTreeMap<String, PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            quoted_prism_names(&entry.path(), out);
        }
        return;
    }
    if path.extension().is_none_or(|e| e != "rs") {
        return;
    }
    let text = std::fs::read_to_string(path).unwrap();
    for piece in text.split('"').skip(1).step_by(2) {
        let is_name = piece.strip_prefix("PRISM_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        if is_name {
            out.entry(piece.to_owned())
                .or_insert_with(|| path.to_path_buf());
        }
    }
}

/// The sources linked into the Lambda functions (not `prism`, tools or test suites).
fn function_sources() -> Vec<PathBuf> {
    let root = workspace();
    let mut dirs: Vec<PathBuf> = ["lambda", "app", "core", "http", "upstream"]
        .iter()
        .map(|c| root.join("shared").join(c).join("src"))
        .collect();
    // prism-aws's library, without its `prism-provision` binary.
    for entry in std::fs::read_dir(root.join("shared/aws/src"))
        .unwrap()
        .flatten()
    {
        if entry.file_name() != "bin" {
            dirs.push(entry.path());
        }
    }
    for entry in std::fs::read_dir(root.join("functions")).unwrap().flatten() {
        dirs.push(entry.path().join("src"));
    }
    dirs
}

fn read_by_functions() -> BTreeMap<String, PathBuf> {
    let mut names = BTreeMap::new();
    for path in function_sources() {
        quoted_prism_names(&path, &mut names);
    }
    names
}

// ---------------------------------------------------------------------------------------------
// Functions and their environment
// ---------------------------------------------------------------------------------------------

#[test]
fn every_function_runs_a_binary_of_the_workspace() {
    let functions = template().functions().unwrap();
    assert!(!functions.is_empty());
    for function in &functions {
        let binary = function
            .binary
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no BuildProperties.Binary", function.logical_id));
        let manifest = workspace()
            .join("functions")
            .join(binary)
            .join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let manifest: toml::Value = toml::from_str(&text).unwrap();
        let bins: Vec<&str> = manifest
            .get("bin")
            .and_then(|b| b.as_array())
            .map(|bins| {
                bins.iter()
                    .filter_map(|b| b.get("name")?.as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            bins.contains(&binary),
            "{} runs {binary}, which functions/{binary} does not build (bins: {bins:?})",
            function.logical_id
        );
    }
}

#[test]
fn every_variable_the_backend_reads_is_set_for_every_function() {
    let wanted: Vec<&str> = AwsSettings::REQUIRED_ENV
        .iter()
        .copied()
        .chain([prism_app::aws::CONFIG_PARAMETER_ENV])
        .collect();
    for function in template().functions().unwrap() {
        let set: Vec<&str> = function
            .environment
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let missing: Vec<&&str> = wanted.iter().filter(|n| !set.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "{} lacks {missing:?}",
            function.logical_id
        );
        logical_settings(&function);
    }
}

#[test]
fn every_prism_variable_the_functions_read_is_set_by_the_template() {
    let template = template();
    let read = read_by_functions();
    // The scan must see the names the settings read, or it scans the wrong place.
    for name in AwsSettings::REQUIRED_ENV {
        assert!(read.contains_key(name), "the source scan missed {name}");
    }
    for function in template.functions().unwrap() {
        for (name, file) in &read {
            let set = function.environment.iter().any(|(n, _)| n == name);
            let optional = AwsSettings::OPTIONAL_ENV.contains(&name.as_str())
                || prism_aws::TIMEOUT_ENV.contains(&name.as_str());
            assert!(
                set || optional,
                "{} reads {name} ({}), which the template does not set for {}",
                file.strip_prefix(workspace()).unwrap_or(file).display(),
                name,
                function.logical_id
            );
        }
    }
}

#[test]
fn every_prism_variable_the_template_sets_is_read() {
    let template = template();
    let mut read: BTreeSet<String> = read_by_functions().into_keys().collect();
    read.extend(AwsSettings::REQUIRED_ENV.iter().map(|n| n.to_string()));
    read.insert(prism_app::aws::CONFIG_PARAMETER_ENV.to_owned());
    let mut set = BTreeSet::new();
    for function in template.functions().unwrap() {
        set.extend(
            function
                .environment
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| n.starts_with("PRISM_")),
        );
    }
    for name in &set {
        assert!(
            read.contains(name),
            "the template sets {name}, which no function reads"
        );
    }
}

#[test]
fn the_environment_names_the_right_resources() {
    let template = template();
    let queues = template.queues().unwrap();
    let table = template.table().unwrap();
    for function in template.functions().unwrap() {
        let s = logical_settings(&function);
        let what = &function.logical_id;
        assert_eq!(
            id_of(&s.table, "ref:", "PRISM_TABLE"),
            table.logical_id,
            "{what}"
        );
        // Each work queue's DLQ variable names the queue its redrive policy targets.
        for stage in prism_core::Stage::ALL {
            let (work, dlq) = (s.queue_urls.get(stage), s.dlq_urls.get(stage));
            let work = queue(&queues, id_of(work, "ref:", "a work queue URL"));
            let dlq = id_of(dlq, "ref:", "a DLQ URL");
            let redrive = work.redrive.as_ref().expect("a work queue redrives");
            assert_eq!(
                redrive.dead_letter_queue, dlq,
                "{what}: {}",
                work.logical_id
            );
        }
        // Schedules deliver to the jobs queue and the finalize queue by ARN.
        assert_eq!(
            id_of(&s.schedules.queue_arn, "arn:", "the jobs queue ARN"),
            id_of(
                s.queue_urls.get(prism_core::Stage::Jobs),
                "ref:",
                "the jobs queue URL"
            ),
            "{what}"
        );
        assert_eq!(
            id_of(
                &s.schedules.finalize_queue_arn,
                "arn:",
                "the finalize queue ARN"
            ),
            id_of(
                s.queue_urls.get(prism_core::Stage::Finalize),
                "ref:",
                "the finalize queue URL"
            ),
            "{what}"
        );
        let kind = |value: &str, form: &str, what: &str| {
            let id = id_of(value, form, what);
            template.resource_type(id).unwrap().to_owned()
        };
        assert_eq!(
            kind(&s.schedules.dead_letter_arn, "arn:", "the schedules DLQ"),
            "AWS::SQS::Queue"
        );
        assert_eq!(
            kind(&s.schedules.role_arn, "arn:", "the scheduler role"),
            "AWS::IAM::Role"
        );
        assert_eq!(
            kind(&s.schedules.group, "ref:", "the schedule group"),
            "AWS::Scheduler::ScheduleGroup"
        );
        assert_eq!(kind(&s.bucket, "ref:", "the bucket"), "AWS::S3::Bucket");
        // The configuration parameter is the template's one SSM parameter.
        let config = function
            .environment
            .iter()
            .find(|(n, _)| n == prism_app::aws::CONFIG_PARAMETER_ENV)
            .map(|(_, s)| s.clone());
        let parameters = template.ssm_parameters().unwrap();
        assert_eq!(parameters.len(), 1);
        assert_eq!(
            config,
            Some(EnvSource::Ref(parameters[0].logical_id.clone())),
            "{what}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------------------------

/// Redrive targets, plus the schedules' DLQ (Scheduler's own dead-letter target).
fn dead_letter_queues(template: &StackTemplate) -> BTreeSet<String> {
    let mut dlqs: BTreeSet<String> = template
        .queues()
        .unwrap()
        .iter()
        .filter_map(|q| q.redrive.as_ref().map(|r| r.dead_letter_queue.clone()))
        .collect();
    let any = &template.functions().unwrap()[0];
    let schedules_dlq = logical_settings(any).schedules.dead_letter_arn;
    dlqs.insert(id_of(&schedules_dlq, "arn:", "the schedules DLQ").to_owned());
    dlqs
}

#[test]
fn every_queue_but_a_dead_letter_queue_redrives_after_the_same_receives() {
    let template = template();
    let dlqs = dead_letter_queues(&template);
    let queues = template.queues().unwrap();
    for queue in &queues {
        match &queue.redrive {
            Some(redrive) => {
                assert!(
                    !dlqs.contains(&queue.logical_id),
                    "{} is a DLQ with a DLQ",
                    queue.logical_id
                );
                assert_eq!(
                    redrive.max_receive_count, MAX_RECEIVE_COUNT,
                    "{}",
                    queue.logical_id
                );
            }
            None => assert!(
                dlqs.contains(&queue.logical_id),
                "{} has no redrive policy",
                queue.logical_id
            ),
        }
    }
    // The embedded backend dead-letters after the same count (prism-core's default policy).
    assert_eq!(
        prism_core::deps::WorkPolicy::default().max_receives,
        MAX_RECEIVE_COUNT
    );
}

#[test]
fn dead_letter_queues_keep_messages_for_the_sqs_maximum() {
    let template = template();
    let queues = template.queues().unwrap();
    for dlq in dead_letter_queues(&template) {
        assert_eq!(
            queue(&queues, &dlq).retention_seconds,
            SQS_MAX_RETENTION,
            "{dlq}"
        );
    }
    for work in &queues {
        if let Some(redrive) = &work.redrive {
            assert!(
                queue(&queues, &redrive.dead_letter_queue).retention_seconds
                    >= work.retention_seconds,
                "{}'s dead letters would expire before they arrive",
                work.logical_id
            );
        }
    }
}

/// Every value CloudFormation would accept for each parameter: its allowed values, or its
/// bounds, or just its default.
fn parameter_variants(template: &StackTemplate) -> Vec<(String, StackTemplate)> {
    let mut variants = vec![("defaults".to_owned(), template.clone())];
    for parameter in template.parameters() {
        let mut values = parameter.allowed_values.clone();
        values.extend(parameter.min_value.map(|v| v.to_string()));
        values.extend(parameter.max_value.map(|v| v.to_string()));
        for value in values {
            variants.push((
                format!("{}={value}", parameter.name),
                template.with_parameter(&parameter.name, &value).unwrap(),
            ));
        }
    }
    variants
}

#[test]
fn queue_visibility_is_six_times_the_consumer_timeout_for_every_parameter_value() {
    for (variant, template) in parameter_variants(&template()) {
        let queues = template.queues().unwrap();
        let functions = template.functions().unwrap();
        for mapping in template.queue_mappings().unwrap() {
            let function = functions
                .iter()
                .find(|f| f.logical_id == mapping.function)
                .unwrap();
            let queue = queue(&queues, &mapping.queue);
            assert!(
                queue.visibility_seconds >= VISIBILITY_PER_TIMEOUT * function.timeout_seconds,
                "with {variant}: {} (visibility {} s) feeds {} (timeout {} s)",
                queue.logical_id,
                queue.visibility_seconds,
                function.logical_id,
                function.timeout_seconds
            );
        }
    }
}

#[test]
fn event_source_mappings_name_functions_and_queues_and_each_queue_has_one_consumer() {
    let template = template();
    let functions = template.functions().unwrap();
    let queues = template.queues().unwrap();
    let mappings = template.queue_mappings().unwrap();
    assert!(!mappings.is_empty());
    let mut consumers: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for mapping in &mappings {
        assert!(
            functions.iter().any(|f| f.logical_id == mapping.function),
            "{}: no function {}",
            mapping.logical_id,
            mapping.function
        );
        queue(&queues, &mapping.queue);
        // The handlers answer batchItemFailures (shared/lambda): without this Lambda would
        // retry the whole batch for one failed record.
        assert!(
            mapping.report_batch_item_failures,
            "{} does not report batch item failures",
            mapping.logical_id
        );
        assert!(mapping.enabled, "{} is disabled", mapping.logical_id);
        consumers
            .entry(mapping.queue.as_str())
            .or_default()
            .push(&mapping.logical_id);
    }
    let schedules_dlq = {
        let s = logical_settings(&functions[0]);
        id_of(&s.schedules.dead_letter_arn, "arn:", "the schedules DLQ").to_owned()
    };
    for queue in &queues {
        let found = consumers
            .get(queue.logical_id.as_str())
            .cloned()
            .unwrap_or_default();
        // The schedules' DLQ is for inspection: nothing drains it (the reconciler still runs
        // the jobs whose schedules failed).
        let expected = usize::from(queue.logical_id != schedules_dlq);
        assert_eq!(
            found.len(),
            expected,
            "{} has consumers {found:?}",
            queue.logical_id
        );
    }
}

#[test]
fn every_schedule_has_a_period_and_a_binary_to_run() {
    let template = template();
    let rules = template.schedule_rules().unwrap();
    assert!(!rules.is_empty(), "the reconciler runs on a schedule");
    for rule in rules {
        let function = template.function(&rule.function).unwrap();
        assert!(function.binary.is_some(), "{}", rule.function);
        let period = rule.interval().unwrap_or_else(|| {
            panic!(
                "{}.{}: {} is not a rate",
                rule.function, rule.event, rule.expression
            )
        });
        // The reconciler's run fits between two ticks.
        assert!(
            Duration::from_secs(u64::from(function.timeout_seconds)) <= period,
            "{} may still run at its next tick",
            rule.function
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Table
// ---------------------------------------------------------------------------------------------

#[test]
fn the_table_has_the_adapters_key_layout() {
    let table = template().table().unwrap();
    assert_eq!(table.hash_key.name, table_keys::PARTITION_KEY);
    assert_eq!(table.hash_key.kind, AttributeKind::String);
    let range = table.range_key.expect("a sort key");
    assert_eq!(range.name, table_keys::SORT_KEY);
    assert_eq!(range.kind, AttributeKind::String);
    let [index] = table.global_indexes.as_slice() else {
        panic!("one index: {:?}", table.global_indexes);
    };
    assert_eq!(index.name, table_keys::RECONCILE_INDEX);
    assert_eq!(index.hash_key.name, table_keys::RC_PK);
    assert_eq!(index.hash_key.kind, AttributeKind::String);
    let range = index.range_key.as_ref().expect("the index sorts by time");
    assert_eq!(range.name, table_keys::RC_AT);
    // The adapters write rc_at as a number of milliseconds and query it with `<`.
    assert_eq!(range.kind, AttributeKind::Number);
    // The reconciler reads only the keys, then gets each item.
    assert_eq!(index.projection, Projection::KeysOnly);
    assert_eq!(
        table.ttl_attribute.as_deref(),
        Some(table_keys::TTL_ATTRIBUTE)
    );
    assert_eq!(table.billing_mode, BillingMode::PayPerRequest);
}
