//! Logging, metrics and traces for the functions: JSON lines on stdout, which Lambda ships to
//! CloudWatch; Prism's metrics (`prism_core::telemetry`) as CloudWatch Embedded Metric Format
//! lines in the same stream, so metrics cost no API call; and, when the OpenTelemetry variables
//! name a collector, spans exported over OTLP. Both are flushed at the end of each invocation
//! ([`flush_telemetry`]): Lambda freezes the sandbox once the handler returns, and what is still
//! buffered then waits for the next invocation, or is lost with the sandbox.

use std::sync::OnceLock;

use metrics_cloudwatch_embedded::{Builder, Collector};
use opentelemetry_sdk::trace::SdkTracerProvider;
use prism_app::traces::{ExporterBuildError, install_propagator, prism_tracer, tracer_provider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The CloudWatch namespace of Prism's own metrics unless [`METRICS_NAMESPACE_ENV`] names
/// another (the template's `MetricsNamespace`, which its dashboard and alarms read too).
pub const METRICS_NAMESPACE: &str = "Prism";

/// Names the metrics' CloudWatch namespace, so two stacks in one account keep theirs apart.
pub const METRICS_NAMESPACE_ENV: &str = "PRISM_METRICS_NAMESPACE";

/// The collector's traces URL (`http://collector:4318/v1/traces`, OTLP http/protobuf); no
/// export without it. The OpenTelemetry specification's name, as collectors' docs use it.
pub const TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// The `service.name` of the exported spans (default `prism`, as `prism serve`'s `[traces]`).
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";

static METRICS: OnceLock<&'static Collector> = OnceLock::new();
static TRACES: OnceLock<SdkTracerProvider> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP trace exporter for {TRACES_ENDPOINT_ENV}: {0}")]
    Exporter(#[from] ExporterBuildError),
}

/// Installs the global subscriber: one JSON object per line, filtered by `RUST_LOG` (default
/// `info`). No colours, since CloudWatch shows escape codes verbatim, and no timestamp, since
/// CloudWatch stamps every line itself. Every line carries the fields of all the spans it sits
/// in (request, message, job and tenant ids). With [`TRACES_ENDPOINT_ENV`] set, the spans are
/// exported too and queued items carry their trace. Also installs the metrics recorder.
/// Calling it twice keeps the first subscriber.
pub fn init_tracing() -> Result<(), TelemetryError> {
    init_tracing_from(|name| std::env::var(name).ok())
}

fn init_tracing_from(env: impl Fn(&str) -> Option<String>) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_ansi(false)
        .without_time()
        .with_span_list(true)
        .with_writer(std::io::stdout);
    let provider = match non_empty(&env, TRACES_ENDPOINT_ENV) {
        Some(endpoint) if TRACES.get().is_none() => {
            let service = non_empty(&env, SERVICE_NAME_ENV).unwrap_or_else(|| "prism".into());
            Some(tracer_provider(&endpoint, &service)?)
        }
        _ => None,
    };
    let spans = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(prism_tracer(p)));
    // An error only means a subscriber is already installed (a warm test binary, say).
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .with(filter)
        .try_init()
        .is_ok();
    if installed && let Some(provider) = provider {
        let _ = TRACES.set(provider);
        install_propagator();
    }
    install_metrics(&metrics_namespace(&env));
    Ok(())
}

fn non_empty(env: impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).filter(|value| !value.trim().is_empty())
}

fn metrics_namespace(env: impl Fn(&str) -> Option<String>) -> String {
    non_empty(env, METRICS_NAMESPACE_ENV).unwrap_or_else(|| METRICS_NAMESPACE.to_owned())
}

fn install_metrics(namespace: &str) {
    if METRICS.get().is_some() {
        return;
    }
    match Builder::new()
        .cloudwatch_namespace(namespace.to_owned())
        .init()
    {
        Ok(collector) => {
            let _ = METRICS.set(collector);
            prism_core::telemetry::describe_metrics();
        }
        // Another recorder is installed (a test binary): metrics go there instead.
        Err(error) => tracing::debug!(%error, "metrics recorder not installed"),
    }
}

/// What the end of every invocation calls: writes the metrics recorded since the last flush
/// ([`flush_metrics`]) and sends the spans that ended (waiting for the collector's answer, up
/// to the exporter's timeout), before Lambda freezes the sandbox.
pub async fn flush_telemetry() {
    flush_metrics();
    if let Some(provider) = TRACES.get() {
        let provider = provider.clone();
        // Blocks until the exporter's own thread has sent the batch.
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "could not send the invocation's spans");
        }
    }
}

/// Writes what was recorded since the last flush as EMF lines on stdout: one JSON document per
/// label set, counters as the delta since the last flush, histograms as their samples.
pub fn flush_metrics() {
    flush_metrics_to(std::io::stdout().lock());
}

fn flush_metrics_to(writer: impl std::io::Write) {
    if let Some(collector) = METRICS.get()
        && let Err(error) = collector.flush(writer)
    {
        tracing::warn!(%error, "could not write metrics");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use prism_core::telemetry::{JobEvent, WorkKind, count_jobs, record_queue_wait};
    use serde_json::Value;

    use super::*;

    #[test]
    fn metrics_flush_as_emf_documents_with_prisms_names_and_labels_as_dimensions() {
        install_metrics(METRICS_NAMESPACE);
        count_jobs(JobEvent::Completed, WorkKind::Async, "gpt-emf", 2);
        record_queue_wait(WorkKind::Async, "gpt-emf", Duration::from_millis(250));
        let mut out = Vec::new();
        flush_metrics_to(&mut out);
        let documents: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let ours = documents
            .iter()
            .find(|d| d["model"] == "gpt-emf")
            .expect("a document for the model's label set");
        let directive = &ours["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], METRICS_NAMESPACE);
        assert_eq!(
            directive["Dimensions"][0],
            serde_json::json!(["kind", "model"])
        );
        assert!(ours["_aws"]["Timestamp"].is_u64());
        assert_eq!(ours["kind"], "async");
        assert_eq!(ours["prism_jobs_completed_total"], 2);
        assert_eq!(
            ours["prism_job_queue_wait_seconds"],
            serde_json::json!([0.25])
        );
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"prism_jobs_completed_total"), "{names:?}");
        assert!(names.contains(&"prism_job_queue_wait_seconds"), "{names:?}");

        // Counters are deltas: nothing new recorded, nothing written for them.
        let mut again = Vec::new();
        flush_metrics_to(&mut again);
        assert!(!String::from_utf8(again).unwrap().contains("gpt-emf"));
    }

    #[test]
    fn the_namespace_is_prism_unless_the_environment_names_another() {
        let env = |value: &'static str| {
            move |name: &str| (name == METRICS_NAMESPACE_ENV).then(|| value.to_owned())
        };
        assert_eq!(metrics_namespace(|_| None), "Prism");
        assert_eq!(metrics_namespace(env("")), "Prism");
        assert_eq!(metrics_namespace(env("Prism-staging")), "Prism-staging");
    }
}
