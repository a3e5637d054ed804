//! The closed sets of strings the wire objects carry (`object` names, statuses, policies), as
//! schemas built from the core enums that own them, so the document lists what the code does.

use prism_core::batches::BatchStatus;
use prism_core::files::FilePurpose;
use prism_core::recurring::{CatchUpPolicy, OverlapPolicy, RecurringStatus};
use prism_core::responses::ResponseStatus;
use prism_core::uploads::UploadStatus;
use prism_core::webhooks::{EndpointStatus, EventKind};
use prism_core::{ApiEndpoint, JobKind, JobStatus};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::wire::job_object_name;

/// A string schema that admits exactly `values`.
pub fn one_of<I: IntoIterator<Item = &'static str>>(values: I) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

/// One function per constant `object` name, for `#[schema(schema_with = ...)]`.
macro_rules! constants {
    ($($name:ident => $value:literal),* $(,)?) => {
        $(pub fn $name() -> Object { one_of([$value]) })*
    };
}

constants! {
    list => "list",
    file => "file",
    upload => "upload",
    upload_part => "upload.part",
    batch => "batch",
    scheduled_job => "scheduled.job",
    chat_completion => "chat.completion",
    webhook_endpoint => "webhook_endpoint",
    webhook_endpoint_deleted => "webhook_endpoint.deleted",
    webhook_delivery => "webhook_endpoint.delivery",
    event => "event",
    response => "response",
    model => "model",
    processed => "processed",
    completion_window => "24h",
}

/// The endpoints a batch may name.
pub fn batch_endpoint() -> Object {
    one_of(ApiEndpoint::BATCHABLE.map(ApiEndpoint::path))
}

/// The endpoints a job (async, scheduled, a recurring schedule's runs) may call.
pub fn api_endpoint() -> Object {
    one_of(ApiEndpoint::ALL.map(ApiEndpoint::path))
}

pub fn job_object() -> Object {
    one_of([JobKind::Async, JobKind::Scheduled].map(job_object_name))
}

pub fn job_status() -> Object {
    one_of(JobStatus::ALL.map(JobStatus::as_str))
}

pub fn response_status() -> Object {
    one_of(ResponseStatus::ALL.map(ResponseStatus::as_str))
}

pub fn batch_status() -> Object {
    one_of(BatchStatus::ALL.map(BatchStatus::as_str))
}

pub fn recurring_status() -> Object {
    one_of(RecurringStatus::ALL.map(RecurringStatus::as_str))
}

pub fn upload_status() -> Object {
    one_of(UploadStatus::ALL.map(UploadStatus::as_str))
}

pub fn file_purpose() -> Object {
    one_of(FilePurpose::ALL.map(FilePurpose::as_str))
}

/// What clients may upload (`batch_output` files are Prism's).
pub fn client_purpose() -> Object {
    one_of([FilePurpose::Batch.as_str()])
}

/// Files are checked while they upload, so every file a client sees is `processed`.
pub fn file_status() -> Object {
    processed()
}

pub fn overlap_policy() -> Object {
    one_of(OverlapPolicy::ALL.map(OverlapPolicy::as_str))
}

pub fn catch_up_policy() -> Object {
    one_of(CatchUpPolicy::ALL.map(CatchUpPolicy::as_str))
}

pub fn event_kind() -> Object {
    one_of(EventKind::ALL.map(EventKind::as_str))
}

pub fn endpoint_status() -> Object {
    one_of(EndpointStatus::ALL.map(EndpointStatus::as_str))
}

pub fn sort_order() -> Object {
    one_of(["asc", "desc"])
}

/// `x-prism-async`: `true` or `false`, in any case.
pub fn boolean_header() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"))
        .build()
}
