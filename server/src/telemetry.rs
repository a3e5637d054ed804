//! `prism serve`'s telemetry: logging, the optional OTLP trace export (`prism_app::traces`, with
//! the propagator that carries a trace through queue messages), and the Prometheus recorder
//! with its own `/metrics` listener.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_sdk::trace::SdkTracerProvider;
use prism_app::config::TraceSection;
use prism_app::traces::{install_propagator, prism_tracer, tracer_provider};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::cli::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP trace exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error("cannot serve metrics on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// Keeps the trace exporter alive; [`TraceExport::shutdown`] flushes what is still buffered.
pub struct TraceExport(Option<SdkTracerProvider>);

impl TraceExport {
    /// Sends the spans still buffered. The exporter's blocking HTTP client must not be dropped
    /// on a runtime thread, hence the blocking task.
    pub async fn shutdown(self) {
        if let Some(provider) = self.0 {
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(error)) = flushed {
                tracing::warn!(%error, "trace exporter did not shut down cleanly");
            }
        }
    }
}

/// Installs the global subscriber: log lines on stderr (filtered by `PRISM_LOG`, default
/// `info`) and, with `traces` given an endpoint, spans exported over OTLP.
pub fn init_tracing(
    format: LogFormat,
    traces: Option<&TraceSection>,
) -> Result<TraceExport, TelemetryError> {
    let filter = EnvFilter::try_from_env("PRISM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = match traces {
        Some(TraceSection {
            otlp_endpoint: Some(endpoint),
            service_name,
        }) => Some(tracer_provider(endpoint, service_name)?),
        _ => None,
    };
    let spans = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(prism_tracer(p)));
    // An error only means a subscriber is already installed.
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .with(filter)
        .try_init();
    if provider.is_some() {
        install_propagator();
    }
    Ok(TraceExport(provider))
}

/// Bucket bounds (seconds) of every histogram: from a fast HTTP answer to a long queue wait.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder and serves `GET /metrics` on `listen` until `shutdown`.
/// Returns once the listener is bound, with the bound address.
pub async fn serve_metrics(
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> Result<SocketAddr, TelemetryError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)?
        .install_recorder()?;
    prism_core::telemetry::describe_metrics();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| TelemetryError::Listen(listen, e))?;
    let local = listener
        .local_addr()
        .map_err(|e| TelemetryError::Listen(listen, e))?;
    tracing::info!(address = %local, "metrics listening");
    tokio::spawn(upkeep(handle.clone(), shutdown.clone()));
    let app = Router::new().route("/metrics", get(move || render(handle.clone())));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "metrics listener stopped");
        }
    });
    Ok(local)
}

async fn render(handle: PrometheusHandle) -> String {
    handle.render()
}

async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => handle.run_upkeep(),
        }
    }
}
