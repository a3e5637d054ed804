//! Glue shared by Prism's Lambda functions: telemetry, the binaries' flags, turning SQS events
//! into core deliveries and outcomes into partial batch responses, one handler per trigger over
//! the core, and keeping the API Gateway stage out of the HTTP router's paths. Every piece is a
//! plain function, so it is tested without AWS; the `functions/*` binaries only wire.

pub mod cli;
mod deadline;
mod handlers;
mod sqs;
mod stage;
mod telemetry;
mod work_queue;

pub use deadline::{DEADLINE_MARGIN, MAX_INVOCATION, worker_deadline};
pub use handlers::{handle_dead_letter_event, handle_reconcile_event, handle_work_event};
pub use prism_core::Stage;
pub use sqs::{Record, RecordOutcome, batch_response, deliveries_from_event};
pub use stage::{path_without_stage, strip_stage};
pub use telemetry::{
    METRICS_NAMESPACE, METRICS_NAMESPACE_ENV, SERVICE_NAME_ENV, TRACES_ENDPOINT_ENV,
    TelemetryError, flush_metrics, flush_telemetry, init_tracing,
};
pub use work_queue::serve_work_queue;
