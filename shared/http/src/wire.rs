//! The JSON clients see: the async and scheduled job objects, OpenAI's file, model and list
//! shapes, mapped explicitly from domain types. Each derives its schema in the OpenAPI document.

use prism_core::batches::{Batch, RequestCounts};
use prism_core::clock::format_rfc3339;
use prism_core::files::FileRecord;
use prism_core::list::Page;
use prism_core::metadata::Metadata;
use prism_core::models::ListedModel;
use prism_core::pricing::{Cost, PriceTable};
use prism_core::uploads::{Upload, UploadPart};
use prism_core::{FileId, Job, JobError, JobKind, Timestamp};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::openapi::names;

/// An async job, a one-time scheduled job, or a run of a recurring schedule.
#[derive(Serialize, ToSchema)]
#[schema(as = Job)]
pub struct JobObject<'a> {
    id: &'a str,
    #[schema(schema_with = names::job_object)]
    object: &'static str,
    /// The same as `id`, for clients written against gateways that answer `job_id`.
    job_id: &'a str,
    #[schema(schema_with = names::job_status)]
    status: &'static str,
    /// The endpoint the job calls; `result` is that endpoint's response.
    #[schema(schema_with = names::api_endpoint)]
    endpoint: &'static str,
    model: &'a str,
    /// Scheduled jobs only: RFC 3339 in UTC, as the client wrote it (normalised).
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_at: Option<String>,
    /// Runs of a recurring schedule only: that schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_job_id: Option<&'a str>,
    /// Scheduled jobs only (`null` when none was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Option<Option<&'a Metadata>>,
    created_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    /// The upstream's chat completion, once completed.
    #[schema(value_type = Option<Object>)]
    result: Option<&'a RawValue>,
    error: Option<&'a JobError>,
    /// Upstream attempts begun so far, across deliveries (retries and redeliveries included).
    attempts: u32,
    /// Prism's own fields, absent when it has none to add.
    #[serde(skip_serializing_if = "Option::is_none")]
    prism: Option<PrismExtension>,
}

/// The one extension field on finished jobs and batches (`"prism"`): the OpenAI SDKs keep
/// unknown fields, so clients read it without breaking.
#[derive(Serialize, ToSchema)]
pub struct PrismExtension {
    /// What the work cost in USD, as an exact decimal string, from the `[[prices]]` table.
    cost_usd: String,
}

impl PrismExtension {
    fn of_cost(cost: Option<Cost>) -> Option<Self> {
        cost.map(|cost| PrismExtension {
            cost_usd: cost.to_string(),
        })
    }
}

pub(crate) fn job_object_name(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Async => "async.job",
        JobKind::Scheduled => "scheduled.job",
        JobKind::Response => "response",
    }
}

impl<'a> JobObject<'a> {
    pub fn from_job(job: &'a Job, prices: &PriceTable) -> Self {
        Self {
            id: job.id.as_str(),
            object: job_object_name(job.kind),
            job_id: job.id.as_str(),
            status: job.status.as_str(),
            endpoint: job.endpoint.path(),
            model: &job.model,
            scheduled_at: job.scheduled_at.map(format_rfc3339),
            scheduled_job_id: job.scheduled_job_id.as_ref().map(|id| id.as_str()),
            metadata: (job.kind == JobKind::Scheduled).then_some(job.metadata.as_ref()),
            created_at: job.created_at.unix_seconds(),
            started_at: job.started_at.map(|t| t.unix_seconds()),
            completed_at: job.completed_at.map(|t| t.unix_seconds()),
            // The result was validated as JSON when the upstream sent it.
            result: job
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str::<&RawValue>(r).ok()),
            error: job.error.as_ref(),
            attempts: job.attempts,
            prism: PrismExtension::of_cost(prices.job_cost(job)),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = JobList)]
pub struct ListObject<'a> {
    #[schema(schema_with = names::list)]
    object: &'static str,
    data: Vec<JobObject<'a>>,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

impl<'a> ListObject<'a> {
    pub fn from_page(page: &'a Page<Job>, prices: &PriceTable) -> Self {
        Self {
            object: "list",
            data: page
                .items
                .iter()
                .map(|job| JobObject::from_job(job, prices))
                .collect(),
            first_id: page.items.first().map(|j| j.id.as_str()),
            last_id: page.items.last().map(|j| j.id.as_str()),
            has_more: page.has_more,
        }
    }
}

/// OpenAI's file object. `status` is always `processed`: checks run during the upload.
#[derive(Serialize, ToSchema)]
#[schema(as = OpenAIFile)]
pub struct FileObject<'a> {
    id: &'a str,
    #[schema(schema_with = names::file)]
    object: &'static str,
    bytes: u64,
    created_at: i64,
    filename: &'a str,
    #[schema(schema_with = names::file_purpose)]
    purpose: &'static str,
    #[schema(schema_with = names::file_status)]
    status: &'static str,
    expires_at: Option<i64>,
    #[schema(value_type = Option<String>)]
    status_details: Option<&'static str>,
}

impl<'a> FileObject<'a> {
    pub fn from_record(file: &'a FileRecord) -> Self {
        Self {
            id: file.id.as_str(),
            object: "file",
            bytes: file.bytes,
            created_at: file.created_at.unix_seconds(),
            filename: &file.filename,
            purpose: file.purpose.as_str(),
            status: "processed",
            expires_at: file.expires_at.map(|t| t.unix_seconds()),
            status_details: None,
        }
    }
}

/// OpenAI's upload object; `file` is the completed file, null before.
#[derive(Serialize, ToSchema)]
#[schema(as = Upload)]
pub struct UploadObject<'a> {
    id: &'a str,
    #[schema(schema_with = names::upload)]
    object: &'static str,
    bytes: u64,
    created_at: i64,
    expires_at: i64,
    filename: &'a str,
    #[schema(schema_with = names::file_purpose)]
    purpose: &'static str,
    #[schema(schema_with = names::upload_status)]
    status: &'static str,
    file: Option<FileObject<'a>>,
}

impl<'a> UploadObject<'a> {
    /// As seen now: a pending upload past its expiry shows `expired`.
    pub fn new(upload: &'a Upload, file: Option<&'a FileRecord>, now: Timestamp) -> Self {
        Self {
            id: upload.id.as_str(),
            object: "upload",
            bytes: upload.bytes,
            created_at: upload.created_at.unix_seconds(),
            expires_at: upload.expires_at.unix_seconds(),
            filename: &upload.filename,
            purpose: upload.purpose.as_str(),
            status: upload.status_at(now).as_str(),
            file: file.map(FileObject::from_record),
        }
    }
}

/// OpenAI's upload part object.
#[derive(Serialize, ToSchema)]
#[schema(as = UploadPart)]
pub struct UploadPartObject<'a> {
    id: &'a str,
    #[schema(schema_with = names::upload_part)]
    object: &'static str,
    created_at: i64,
    upload_id: &'a str,
}

impl<'a> UploadPartObject<'a> {
    pub fn new(part: &'a UploadPart) -> Self {
        Self {
            id: part.id.as_str(),
            object: "upload.part",
            created_at: part.created_at.unix_seconds(),
            upload_id: part.upload_id.as_str(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FileList<'a> {
    #[schema(schema_with = names::list)]
    object: &'static str,
    data: Vec<FileObject<'a>>,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

impl<'a> FileList<'a> {
    pub fn from_page(page: &'a Page<FileRecord>) -> Self {
        Self {
            object: "list",
            data: page.items.iter().map(FileObject::from_record).collect(),
            first_id: page.items.first().map(|f| f.id.as_str()),
            last_id: page.items.last().map(|f| f.id.as_str()),
            has_more: page.has_more,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FileDeleted<'a> {
    id: &'a str,
    #[schema(schema_with = names::file)]
    object: &'static str,
    deleted: bool,
}

impl<'a> FileDeleted<'a> {
    pub fn new(id: &'a FileId) -> Self {
        Self {
            id: id.as_str(),
            object: "file",
            deleted: true,
        }
    }
}

/// OpenAI's batch object: every key always present (null when unset), `request_counts` from the
/// start, as the SDKs' types and their users expect.
#[derive(Serialize, ToSchema)]
#[schema(as = Batch)]
pub struct BatchObject<'a> {
    id: &'a str,
    #[schema(schema_with = names::batch)]
    object: &'static str,
    #[schema(schema_with = names::batch_endpoint)]
    endpoint: &'static str,
    model: Option<&'a str>,
    errors: Option<BatchErrorList<'a>>,
    input_file_id: &'a str,
    completion_window: &'a str,
    #[schema(schema_with = names::batch_status)]
    status: &'static str,
    output_file_id: Option<&'a str>,
    error_file_id: Option<&'a str>,
    created_at: i64,
    in_progress_at: Option<i64>,
    expires_at: Option<i64>,
    finalizing_at: Option<i64>,
    completed_at: Option<i64>,
    failed_at: Option<i64>,
    expired_at: Option<i64>,
    cancelling_at: Option<i64>,
    cancelled_at: Option<i64>,
    request_counts: RequestCounts,
    usage: UsageObject,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Option<&'a Metadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prism: Option<PrismExtension>,
}

#[derive(Serialize, ToSchema)]
struct BatchErrorList<'a> {
    #[schema(schema_with = names::list)]
    object: &'static str,
    data: Vec<BatchErrorObject<'a>>,
}

#[derive(Serialize, ToSchema)]
struct BatchErrorObject<'a> {
    code: &'a str,
    #[schema(value_type = String)]
    message: std::borrow::Cow<'a, str>,
    param: Option<&'a str>,
    line: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = BatchUsage)]
struct UsageObject {
    input_tokens: u64,
    input_tokens_details: CachedTokens,
    output_tokens: u64,
    output_tokens_details: ReasoningTokens,
    total_tokens: u64,
}

#[derive(Serialize, ToSchema)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize, ToSchema)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

fn seconds(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::unix_seconds)
}

impl<'a> BatchObject<'a> {
    pub fn from_batch(batch: &'a Batch, prices: &PriceTable) -> Self {
        let errors = batch.errors.as_ref().map(|errors| {
            let mut data: Vec<BatchErrorObject<'a>> = errors
                .data
                .iter()
                .map(|e| BatchErrorObject {
                    code: &e.code,
                    message: std::borrow::Cow::Borrowed(&e.message),
                    param: e.param.as_deref(),
                    line: e.line,
                })
                .collect();
            let hidden = errors.total.saturating_sub(errors.data.len() as u64);
            if hidden > 0 {
                // The list is capped; say how much more the file has.
                data.push(BatchErrorObject {
                    code: "too_many_errors",
                    message: std::borrow::Cow::Owned(format!(
                        "{hidden} more errors were found and are not listed ({} in all).",
                        errors.total
                    )),
                    param: None,
                    line: None,
                });
            }
            BatchErrorList {
                object: "list",
                data,
            }
        });
        Self {
            id: batch.id.as_str(),
            object: "batch",
            endpoint: batch.endpoint.path(),
            model: batch.model.as_deref(),
            errors,
            input_file_id: batch.input_file_id.as_str(),
            completion_window: &batch.completion_window,
            status: batch.status.as_str(),
            output_file_id: batch.output_file_id.as_ref().map(FileId::as_str),
            error_file_id: batch.error_file_id.as_ref().map(FileId::as_str),
            created_at: batch.created_at.unix_seconds(),
            in_progress_at: seconds(batch.in_progress_at),
            expires_at: Some(batch.expires_at.unix_seconds()),
            finalizing_at: seconds(batch.finalizing_at),
            completed_at: seconds(batch.completed_at),
            failed_at: seconds(batch.failed_at),
            expired_at: seconds(batch.expired_at),
            cancelling_at: seconds(batch.cancelling_at),
            cancelled_at: seconds(batch.cancelled_at),
            request_counts: batch.counts,
            usage: UsageObject {
                input_tokens: batch.usage.input_tokens,
                input_tokens_details: CachedTokens {
                    cached_tokens: batch.usage.cached_tokens,
                },
                output_tokens: batch.usage.output_tokens,
                output_tokens_details: ReasoningTokens {
                    reasoning_tokens: batch.usage.reasoning_tokens,
                },
                total_tokens: batch.usage.total_tokens,
            },
            metadata: batch.metadata.as_ref(),
            prism: PrismExtension::of_cost(prices.batch_cost(batch)),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BatchList<'a> {
    #[schema(schema_with = names::list)]
    object: &'static str,
    data: Vec<BatchObject<'a>>,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

impl<'a> BatchList<'a> {
    pub fn from_page(page: &'a Page<Batch>, prices: &PriceTable) -> Self {
        Self {
            object: "list",
            data: page
                .items
                .iter()
                .map(|batch| BatchObject::from_batch(batch, prices))
                .collect(),
            first_id: page.items.first().map(|b| b.id.as_str()),
            last_id: page.items.last().map(|b| b.id.as_str()),
            has_more: page.has_more,
        }
    }
}

/// OpenAI's model object.
#[derive(Serialize, ToSchema)]
#[schema(as = Model)]
pub struct ModelObject<'a> {
    id: &'a str,
    #[schema(schema_with = names::model)]
    object: &'static str,
    created: i64,
    owned_by: &'a str,
}

impl<'a> ModelObject<'a> {
    pub fn from_model(model: &'a ListedModel) -> Self {
        Self {
            id: &model.id,
            object: "model",
            created: model.created,
            owned_by: &model.owned_by,
        }
    }
}

/// OpenAI's model list: `{"object": "list", "data": [...]}`, never paged.
#[derive(Serialize, ToSchema)]
pub struct ModelList<'a> {
    #[schema(schema_with = names::list)]
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

impl<'a> ModelList<'a> {
    pub fn from_models(models: &'a [ListedModel]) -> Self {
        Self {
            object: "list",
            data: models.iter().map(ModelObject::from_model).collect(),
        }
    }
}
