//! OpenTelemetry trace export over OTLP (http/protobuf) and the W3C `traceparent` propagator
//! that carries a trace through queue messages, shared by `prism serve` (`[traces]`) and the
//! Lambda functions (the OpenTelemetry environment variables).

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use prism_core::trace_context::{self, TraceContext, TracePropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use opentelemetry_otlp::ExporterBuildError;

/// A provider whose spans go to `endpoint` (the collector's traces URL, e.g.
/// `http://127.0.0.1:4318/v1/traces`) in batches, from the exporter's own thread.
pub fn tracer_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(10))
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// The tracer the tracing layer turns spans into OpenTelemetry spans with.
pub fn prism_tracer(provider: &SdkTracerProvider) -> SdkTracer {
    provider.tracer("prism")
}

/// Makes queued items carry the current span's trace context, and workers continue it
/// (`prism_core::trace_context`). Only worth installing with an exporter.
pub fn install_propagator() {
    trace_context::install(Box::new(W3cPropagator(TraceContextPropagator::new())));
}

/// The W3C `traceparent` of the current tracing span's OpenTelemetry context.
struct W3cPropagator(TraceContextPropagator);

const TRACEPARENT: &str = "traceparent";

impl TracePropagator for W3cPropagator {
    fn current(&self) -> Option<TraceContext> {
        let context = tracing::Span::current().context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = HashMap::new();
        self.0.inject_context(&context, &mut carrier);
        carrier
            .get(TRACEPARENT)
            .and_then(|value| TraceContext::parse(value))
    }

    fn adopt(&self, span: &tracing::Span, parent: &TraceContext) {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), parent.as_str().to_owned())]);
        if let Err(error) = span.set_parent(self.0.extract(&carrier)) {
            tracing::debug!(%error, "could not continue a queued item's trace");
        }
    }
}
