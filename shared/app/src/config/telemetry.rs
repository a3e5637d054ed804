//! `[metrics]` and `[traces]`: where `prism serve`'s metrics and spans go.

use serde::Deserialize;

/// `[metrics]`: `prism serve`'s Prometheus endpoint. Off unless `listen` is set: it answers
/// anyone who reaches it, so it gets its own address (loopback, or a network only the scraper
/// reaches), never the API's listener nor its keys. The Lambda functions write CloudWatch
/// Embedded Metric Format lines instead and ignore this section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Where `GET /metrics` is served, e.g. `127.0.0.1:9464`.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[traces]`: optional OpenTelemetry export over OTLP (http/protobuf). Off unless
/// `otlp_endpoint` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSection {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
}

impl Default for TraceSection {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "prism".into(),
        }
    }
}
