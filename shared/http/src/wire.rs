//! The JSON clients see: the async and scheduled job objects, OpenAI's file objects and list
//! shape, mapped explicitly from domain types.

use prism_core::files::FileRecord;
use prism_core::job::Metadata;
use prism_core::list::Page;
use prism_core::scheduled::format_rfc3339;
use prism_core::{FileId, Job, JobError, JobKind};
use serde::Serialize;
use serde_json::value::RawValue;

#[derive(Serialize)]
pub struct JobObject<'a> {
    id: &'a str,
    object: &'static str,
    /// The same as `id`, for clients written against gateways that answer `job_id`.
    job_id: &'a str,
    status: &'static str,
    model: &'a str,
    /// Scheduled jobs only: RFC 3339 in UTC, as the client wrote it (normalised).
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduled_at: Option<String>,
    /// Scheduled jobs only (`null` when none was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Option<&'a Metadata>>,
    created_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    result: Option<&'a RawValue>,
    error: Option<&'a JobError>,
}

fn object_name(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Async => "async.job",
        JobKind::Scheduled => "scheduled.job",
    }
}

impl<'a> JobObject<'a> {
    pub fn from_job(job: &'a Job) -> Self {
        Self {
            id: job.id.as_str(),
            object: object_name(job.kind),
            job_id: job.id.as_str(),
            status: job.status.as_str(),
            model: &job.model,
            scheduled_at: job.scheduled_at.map(format_rfc3339),
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
        }
    }
}

#[derive(Serialize)]
pub struct ListObject<'a> {
    object: &'static str,
    data: Vec<JobObject<'a>>,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

impl<'a> ListObject<'a> {
    pub fn from_page(page: &'a Page<Job>) -> Self {
        Self {
            object: "list",
            data: page.items.iter().map(JobObject::from_job).collect(),
            first_id: page.items.first().map(|j| j.id.as_str()),
            last_id: page.items.last().map(|j| j.id.as_str()),
            has_more: page.has_more,
        }
    }
}

/// OpenAI's file object. `status` is always `processed`: checks run during the upload.
#[derive(Serialize)]
pub struct FileObject<'a> {
    id: &'a str,
    object: &'static str,
    bytes: u64,
    created_at: i64,
    filename: &'a str,
    purpose: &'static str,
    status: &'static str,
    expires_at: Option<i64>,
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

#[derive(Serialize)]
pub struct FileList<'a> {
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

#[derive(Serialize)]
pub struct FileDeleted<'a> {
    id: &'a str,
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
