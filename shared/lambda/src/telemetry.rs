//! Logging and metrics for the functions: JSON lines on stdout, which Lambda ships to CloudWatch,
//! and Prism's metrics (`prism_core::telemetry`) as CloudWatch Embedded Metric Format lines in
//! the same stream, flushed at the end of each invocation, so metrics cost no API call.

use std::sync::OnceLock;

use metrics_cloudwatch_embedded::{Builder, Collector};
use tracing_subscriber::EnvFilter;

/// The CloudWatch namespace of Prism's own metrics (the template's dashboard and alarms read it).
pub const METRICS_NAMESPACE: &str = "Prism";

static METRICS: OnceLock<&'static Collector> = OnceLock::new();

/// Installs the global subscriber: one JSON object per line, filtered by `RUST_LOG` (default
/// `info`). No colours, since CloudWatch shows escape codes verbatim, and no timestamp, since
/// CloudWatch stamps every line itself. Every line carries the fields of all the spans it sits
/// in (request, message, job and tenant ids). Also installs the metrics recorder whose lines
/// [`flush_metrics`] writes.
/// Calling it twice keeps the first subscriber.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // An error only means a subscriber is already installed (a warm test binary, say).
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_span_list(true)
        .try_init();
    install_metrics();
}

fn install_metrics() {
    if METRICS.get().is_some() {
        return;
    }
    match Builder::new()
        .cloudwatch_namespace(METRICS_NAMESPACE)
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
        install_metrics();
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
}
