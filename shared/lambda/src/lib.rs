//! Glue shared by Prism's Lambda functions: telemetry, turning SQS events into core deliveries
//! and outcomes into partial batch responses, and one handler per trigger over the core. Every
//! piece is a plain function, so it is tested without AWS; the `functions/*` binaries only wire.

mod deadline;
mod handlers;
mod sqs;
mod telemetry;
mod work_queue;

pub use deadline::{DEADLINE_MARGIN, worker_deadline};
pub use handlers::{handle_dead_letter_event, handle_job_event, handle_reconcile_event};
pub use sqs::{Record, RecordOutcome, batch_response, deliveries_from_event};
pub use telemetry::init_tracing;
pub use work_queue::serve_work_queue;
