//! The Batch API services behind the HTTP routes: create (checks, the record, the planning
//! message and the expiry trigger), read, list and cancel. Plain functions over [`Deps`].

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::batches::{Batch, BatchCancelOutcome, BatchRef, COMPLETION_WINDOW, NewBatch, decisions};
use crate::deps::{Deps, trigger_at};
use crate::error::ServiceError;
use crate::files::{EXPIRES_AFTER_SECONDS, FilePurpose};
use crate::ids::{BatchId, FileId, TenantId};
use crate::list::Page;
use crate::metadata::parse_metadata;
use crate::ports::WorkItem;

/// Knobs of batch execution, read once from configuration.
#[derive(Debug, Clone)]
pub struct BatchPolicy {
    /// From creation to expiry: OpenAI's `24h` window (shorter in tests).
    pub completion_window: Duration,
    /// Request lines per chunk (the unit a processor claims).
    pub lines_per_chunk: usize,
    /// Lines of one chunk in flight at once.
    pub line_concurrency: usize,
    /// Lines toward one model in flight at once across the process.
    pub model_concurrency: usize,
    /// Finished lines are committed within this long of the first of them arriving (so a crash
    /// repeats little beyond the calls in flight), and at most this many lines at a time.
    pub checkpoint_every: Duration,
    pub checkpoint_lines: usize,
    /// How long a chunk or finalize claim lasts without renewal.
    pub lease: Duration,
    /// Unfinished batches a tenant may have at once; more answer 429.
    pub max_active_per_tenant: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        Self {
            completion_window: Duration::from_secs(24 * 3600),
            lines_per_chunk: 1000,
            line_concurrency: 100,
            model_concurrency: 500,
            checkpoint_every: Duration::from_millis(250),
            checkpoint_lines: 500,
            lease: Duration::from_secs(60),
            max_active_per_tenant: 100,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody<'a> {
    #[serde(borrow, default)]
    input_file_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    endpoint: Option<&'a RawValue>,
    #[serde(borrow, default)]
    completion_window: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output_expires_after: Option<&'a RawValue>,
}

fn required_string(raw: Option<&RawValue>, name: &str) -> Result<String, ServiceError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Err(ServiceError::invalid(
            format!("Missing required parameter: '{name}'."),
            Some(name),
            Some("missing_required_parameter"),
        ));
    };
    serde_json::from_str::<String>(raw.get()).map_err(|_| {
        ServiceError::invalid(
            format!("Invalid type for '{name}': expected a string."),
            Some(name),
            Some("invalid_type"),
        )
    })
}

fn output_expiry(raw: &RawValue) -> Result<Option<Duration>, ServiceError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExpiresAfter {
        anchor: String,
        seconds: u64,
    }
    if raw.get() == "null" {
        return Ok(None);
    }
    match serde_json::from_str::<ExpiresAfter>(raw.get()) {
        Ok(e) if e.anchor == "created_at" && EXPIRES_AFTER_SECONDS.contains(&e.seconds) => {
            Ok(Some(Duration::from_secs(e.seconds)))
        }
        _ => Err(ServiceError::invalid(
            format!(
                "Invalid 'output_expires_after': expected {{\"anchor\": \"created_at\", \"seconds\": {} to {}}}.",
                EXPIRES_AFTER_SECONDS.start(),
                EXPIRES_AFTER_SECONDS.end()
            ),
            Some("output_expires_after"),
            Some("invalid_value"),
        )),
    }
}

/// `POST /v1/batches`: checks the parameters and the input file, stores the batch
/// (`validating`), queues its planning and arranges its expiry.
#[tracing::instrument(skip_all, fields(tenant = %tenant, batch_id))]
pub async fn create_batch(
    deps: &Deps,
    tenant: &TenantId,
    body: &[u8],
) -> Result<Batch, ServiceError> {
    // serde reads a struct from an array too (`["file-…", "/v1/chat/completions", "24h"]`).
    let is_object = crate::json_strict::is_json_object(body);
    let parsed: CreateBody<'_> = match serde_json::from_slice(body) {
        Ok(parsed) if is_object => parsed,
        // The only data error an object can cause here is an unknown field.
        Err(e) if e.is_data() && is_object && crate::json_strict::is_well_formed(body) => {
            return Err(ServiceError::invalid(
                format!("Unrecognized request argument supplied: {e}."),
                None,
                Some("unknown_parameter"),
            ));
        }
        _ => {
            return Err(ServiceError::invalid(
                "We could not parse the JSON body of your request: expected a JSON object.",
                None,
                Some("invalid_json"),
            ));
        }
    };
    let input_file_id = required_string(parsed.input_file_id, "input_file_id")?;
    let endpoint = required_string(parsed.endpoint, "endpoint")?;
    let Some(endpoint) = crate::ApiEndpoint::batchable(&endpoint) else {
        let supported: Vec<&str> = crate::ApiEndpoint::BATCHABLE
            .iter()
            .map(|e| e.path())
            .collect();
        return Err(ServiceError::invalid(
            format!(
                "Invalid value: '{endpoint}'. Supported values are: '{}'.",
                supported.join("', '")
            ),
            Some("endpoint"),
            Some("invalid_value"),
        ));
    };
    let window = required_string(parsed.completion_window, "completion_window")?;
    if window != COMPLETION_WINDOW {
        return Err(ServiceError::invalid(
            format!("Invalid value: '{window}'. Supported values are: '{COMPLETION_WINDOW}'."),
            Some("completion_window"),
            Some("invalid_value"),
        ));
    }
    let metadata = parsed.metadata.map(parse_metadata).transpose()?.flatten();
    let output_expires_after = parsed
        .output_expires_after
        .map(output_expiry)
        .transpose()?
        .flatten();
    let now = deps.clock.now();
    let not_found = || ServiceError::NotFound {
        what: "file",
        id: input_file_id.clone(),
    };
    let file_id = FileId::parse(&input_file_id).ok_or_else(not_found)?;
    let file = deps
        .files
        .get(tenant, &file_id, now)
        .await?
        .ok_or_else(not_found)?;
    if file.purpose != FilePurpose::Batch {
        return Err(ServiceError::invalid(
            format!(
                "The file '{input_file_id}' has purpose '{}', not 'batch'.",
                file.purpose.as_str()
            ),
            Some("input_file_id"),
            Some("invalid_value"),
        ));
    }
    let active = deps.batches.count_active(tenant).await?;
    if active >= deps.batch_policy.max_active_per_tenant {
        return Err(ServiceError::RateLimited {
            message: format!(
                "You have {active} unfinished batches, the most allowed at once; wait for one to finish."
            ),
        });
    }
    let batch = NewBatch {
        id: deps.ids.batch_id(now),
        tenant: tenant.clone(),
        input_file_id: file_id,
        endpoint,
        completion_window: window,
        metadata,
        output_expires_after,
        created_at: now,
        expires_at: now.plus(deps.batch_policy.completion_window),
    };
    tracing::Span::current().record("batch_id", batch.id.as_str());
    deps.batches.create(&batch).await?;
    // Read again after the write: a delete that raced the read above either finds this batch
    // (and keeps the bytes) or is seen here (see `decisions::create_stands`). Nothing is queued
    // for the batch until it stands. A failed read keeps the batch: planning then fails it
    // cleanly if the bytes went.
    let input_now = deps
        .files
        .get(tenant, &batch.input_file_id, deps.clock.now())
        .await;
    match input_now {
        Ok(input) if !decisions::create_stands(input.as_ref()) => {
            if deps.batches.withdraw(&batch.batch_ref()).await? {
                tracing::info!("input file deleted while the batch was created; batch withdrawn");
                return Err(not_found());
            }
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "could not read the input file again; the batch stands");
        }
    }
    // The record is the truth: a lost message is sent again by the reconciler.
    let batch_ref = batch.batch_ref();
    if let Err(error) = deps
        .queue
        .enqueue(&WorkItem::PlanBatch(batch_ref.clone()), Duration::ZERO)
        .await
    {
        tracing::warn!(%error, "could not queue planning; the reconciler will");
    }
    if let Err(error) =
        trigger_at(deps, &WorkItem::FinalizeBatch(batch_ref), batch.expires_at).await
    {
        tracing::warn!(%error, "could not arrange expiry; the reconciler will expire the batch");
    }
    Ok(Batch::from_new(&batch))
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound {
        what: "batch",
        id: id.to_owned(),
    }
}

pub async fn get_batch(deps: &Deps, tenant: &TenantId, id: &str) -> Result<Batch, ServiceError> {
    let batch_id = BatchId::parse(id).ok_or_else(|| not_found(id))?;
    deps.batches
        .get(tenant, &batch_id)
        .await?
        .ok_or_else(|| not_found(id))
}

pub const DEFAULT_BATCH_LIST_LIMIT: usize = 20;
pub const MAX_BATCH_LIST_LIMIT: usize = 100;

pub async fn list_batches(
    deps: &Deps,
    tenant: &TenantId,
    limit: Option<&str>,
    after: Option<&str>,
) -> Result<Page<Batch>, ServiceError> {
    let limit = match limit {
        None => DEFAULT_BATCH_LIST_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_BATCH_LIST_LIMIT).contains(&n) => n,
            _ => {
                return Err(ServiceError::invalid(
                    format!(
                        "Invalid 'limit': expected an integer from 1 to {MAX_BATCH_LIST_LIMIT}."
                    ),
                    Some("limit"),
                    Some("invalid_value"),
                ));
            }
        },
    };
    let after = match after {
        None | Some("") => None,
        Some(s) => Some(BatchId::parse(s).ok_or_else(|| {
            ServiceError::invalid(
                "Invalid 'after': not a batch id.",
                Some("after"),
                Some("invalid_value"),
            )
        })?),
    };
    Ok(deps.batches.list(tenant, limit, after.as_ref()).await?)
}

/// `POST /v1/batches/{id}/cancel`: no new line starts from now on; the finalizer writes what
/// finished and marks the rest `batch_cancelled` once no processor holds a chunk.
#[tracing::instrument(skip_all, fields(tenant = %tenant, batch_id = id))]
pub async fn cancel_batch(deps: &Deps, tenant: &TenantId, id: &str) -> Result<Batch, ServiceError> {
    let batch_id = BatchId::parse(id).ok_or_else(|| not_found(id))?;
    match deps
        .batches
        .request_cancel(tenant, &batch_id, deps.clock.now())
        .await?
    {
        BatchCancelOutcome::Accepted(batch) => {
            if !batch.status.is_terminal() {
                let batch_ref = BatchRef {
                    tenant: tenant.clone(),
                    id: batch_id,
                };
                // The native groups' provider batches are cancelled now, not at their next look
                // (up to minutes away); the finalizer waits for what they finished.
                if let Err(error) =
                    crate::batches::native::groups::wake_groups(deps, &batch_ref).await
                {
                    tracing::warn!(%error, "could not wake the native groups; their next looks will cancel");
                }
                let item = WorkItem::FinalizeBatch(batch_ref);
                if let Err(error) = deps.queue.enqueue(&item, Duration::ZERO).await {
                    tracing::warn!(%error, "could not queue the cancel's finalization; the reconciler will");
                }
            }
            Ok(batch)
        }
        BatchCancelOutcome::Finished(batch) => Err(ServiceError::BatchConflict {
            status: batch.status,
        }),
        BatchCancelOutcome::NotFound => Err(not_found(id)),
    }
}
