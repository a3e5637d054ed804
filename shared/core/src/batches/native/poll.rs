//! One look at a native group (`WorkItem::PollNative`), stateless and holding no lease between
//! looks: submit the group's provider batch if it has none (under a short claim of the group's
//! first chunk, so two looks never create two), else ask the provider how it goes and record its
//! counts on the batch, and once it ended commit its lines into their chunks. While the batch is
//! cancelling, a look cancels the provider batch once, follows it until it ends and commits what
//! it finished (core's `native_look` and `claim_allowed` say so). Every look that leaves work
//! queues the next one with a delay (backoff up to [`super::MAX_POLL_DELAY`]) and is
//! acknowledged, so hours of waiting hold no worker, no lease and no receive count.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::collect::{NativeLine, collect};
use super::groups::group_request_lines;
use super::{
    GroupRecord, LineAt, METADATA_BATCH_ID, METADATA_GROUP, NewProviderBatch, ProviderBatch,
    look_is_early, poll_delay, provider_custom_id, read_json, record_key, write_json,
};
use crate::batches::decisions::{NativeLook, native_look};
use crate::batches::input::RequestLine;
use crate::batches::process::{failed_line, finish_chunk, queue_finalize, store_part};
use crate::batches::{
    Batch, BatchRef, BatchStatus, ChunkClaim, ChunkWrite, ClaimPurpose, LineTarget, Part,
    RequestCounts, Usage, encode_part_line, encode_ranges, part_key,
};
use crate::deps::Deps;
use crate::dispatch::QueueAction;
use crate::error::StoreError;
use crate::ids::new_lease_token;
use crate::ports::{Lease, UpstreamError, WorkItem};
use crate::pricing::{LineRun, Tier as PriceTier};
use crate::retry::delay_before_retry;

/// A look that must wait for a chunk another holder has (or for planning) comes back this soon.
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// One look at the batch's native group `group`.
#[tracing::instrument(skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id, group))]
pub async fn poll_group(
    deps: &Deps,
    batch: &BatchRef,
    group: u32,
) -> Result<QueueAction, StoreError> {
    let key = record_key(batch, group);
    let Some(mut record) = read_json::<GroupRecord>(deps, &key).await else {
        // Collected and cleaned up, or the batch ended: nothing left to look at.
        return Ok(QueueAction::Ack);
    };
    let Some(current) = deps.batches.get(&batch.tenant, &batch.id).await? else {
        stop_group(deps, batch, group, &record).await;
        return Ok(QueueAction::Ack);
    };
    let now = deps.clock.now();
    let look = native_look(&current, now);
    // A cancel's wake-up is never early: the provider batch is to be cancelled now, not at the
    // group's next look.
    let cancel_to_send = look == NativeLook::WindDown && !record.cancel_sent;
    if look_is_early(&record, now.0) && !cancel_to_send {
        // A second chain of looks (a redelivered or reconciled message): the group's own look
        // is queued for later, so this one ends here.
        return Ok(QueueAction::Ack);
    }
    if current.status == BatchStatus::Validating {
        return next_look(deps, batch, group, &mut record, BUSY_WAIT).await;
    }
    match look {
        NativeLook::Run => {}
        NativeLook::WindDown => return wind_down(deps, batch, group, &current, record).await,
        NativeLook::Stop => {
            // Expired, finalizing or ended: the group's lines not committed are written by the
            // finalizer (`batch_expired` / `batch_cancelled`); the provider batch is cancelled
            // so nothing more is paid for.
            stop_group(deps, batch, group, &record).await;
            return Ok(QueueAction::Ack);
        }
    }
    let Some(id) = record.provider_batch_id.clone() else {
        return submit(deps, batch, group, &current, record).await;
    };
    follow(deps, batch, group, &current, record, &id, look).await
}

/// The batch is cancelling: no submit. A group with a provider batch (recorded, or found by its
/// key: one a crash left unrecorded) has it cancelled once and is followed until the provider
/// ends it, then collected like any ended batch: the lines it finished are kept. A group with
/// none has nothing to collect and is dropped; the finalizer writes its lines `batch_cancelled`.
async fn wind_down(
    deps: &Deps,
    batch: &BatchRef,
    group: u32,
    current: &Batch,
    mut record: GroupRecord,
) -> Result<QueueAction, StoreError> {
    let id = match record.provider_batch_id.clone() {
        Some(id) => id,
        None => {
            let since = u64::try_from(current.created_at.unix_seconds()).unwrap_or(0);
            match deps
                .provider_batches
                .find_batch(&record.provider, METADATA_GROUP, &record.key, since)
                .await
            {
                Ok(Some(found)) => {
                    record.provider_batch_id = Some(found.id.clone());
                    found.id
                }
                Ok(None) => {
                    clean_up(deps, batch, group, &record, None).await;
                    return queue_finalize(deps, batch).await;
                }
                Err(error) => {
                    tracing::info!(%error, "could not look for a provider batch to cancel");
                    record.polls += 1;
                    let wait = delay_before_retry(record.polls, error.retry_after());
                    return next_look(deps, batch, group, &mut record, wait).await;
                }
            }
        }
    };
    if !record.cancel_sent {
        match deps
            .provider_batches
            .cancel_batch(&record.provider, &id)
            .await
        {
            Ok(_) => {
                tracing::info!(provider_batch = %id, "provider batch asked to cancel");
                record.cancel_sent = true;
                // The provider ends a cancelled batch within minutes: look again soon.
                record.polls = 0;
            }
            // Ended already (a 409), or not reachable now: the look below tells which; a
            // running batch is asked again at the next look.
            Err(error) => {
                tracing::info!(%error, provider_batch = %id, "could not cancel a provider batch")
            }
        }
    }
    follow(
        deps,
        batch,
        group,
        current,
        record,
        &id,
        NativeLook::WindDown,
    )
    .await
}

/// Asks the provider how the group's batch goes: while it runs, records its counts and queues
/// the next look; once it ended, collects its files and commits its lines.
async fn follow(
    deps: &Deps,
    batch: &BatchRef,
    group: u32,
    current: &Batch,
    mut record: GroupRecord,
    id: &str,
    look: NativeLook,
) -> Result<QueueAction, StoreError> {
    let seen = match deps
        .provider_batches
        .retrieve_batch(&record.provider, id)
        .await
    {
        Ok(seen) => seen,
        Err(error) => {
            tracing::info!(%error, provider_batch = %id, "could not look at a provider batch");
            let wait = delay_before_retry(record.polls.max(1), error.retry_after());
            record.polls += 1;
            return next_look(deps, batch, group, &mut record, wait).await;
        }
    };
    if !seen.status.is_terminal() {
        let counts = RequestCounts {
            total: record.lines.len() as u64,
            completed: seen.counts.completed,
            failed: seen.counts.failed,
        };
        deps.batches
            .record_provider_counts(batch, group, &counts)
            .await?;
        let wait = poll_delay(record.polls);
        record.polls += 1;
        return next_look(deps, batch, group, &mut record, wait).await;
    }
    let lines = group_request_lines(deps, current, &record).await?;
    let custom_ids: HashMap<LineAt, String> = lines
        .into_iter()
        .map(|(at, line)| (at, line.custom_id))
        .collect();
    let results = match collect(deps, &record, &seen, &custom_ids).await {
        Ok(results) => results,
        Err(error) => {
            tracing::info!(%error, provider_batch = %id, "could not read a provider batch's files");
            record.polls += 1;
            let wait = delay_before_retry(record.polls, error.retry_after());
            return next_look(deps, batch, group, &mut record, wait).await;
        }
    };
    tracing::info!(provider_batch = %id, status = seen.status.as_str(), "provider batch ended");
    commit_group(deps, batch, group, record, results, Some(&seen), look).await
}

/// Records when the next look is due and queues it (a fresh message, so the queue's receive
/// count never counts looks).
async fn next_look(
    deps: &Deps,
    batch: &BatchRef,
    group: u32,
    record: &mut GroupRecord,
    wait: Duration,
) -> Result<QueueAction, StoreError> {
    let wait = wait.min(super::MAX_POLL_DELAY);
    record.next_poll_at = Some(deps.clock.now().plus(wait).0);
    write_json(deps, &record_key(batch, group), record).await?;
    let item = WorkItem::PollNative {
        batch: batch.clone(),
        group,
    };
    deps.queue.enqueue(&item, wait).await?;
    Ok(QueueAction::Ack)
}

/// Submits the group under a claim of its first chunk: the claim is what keeps two looks from
/// both finding no provider batch and both creating one.
async fn submit(
    deps: &Deps,
    batch: &BatchRef,
    group: u32,
    current: &Batch,
    mut record: GroupRecord,
) -> Result<QueueAction, StoreError> {
    let anchor = record.lines.first().map_or(0, |at| at.chunk());
    let now = deps.clock.now();
    let lease = Lease {
        token: new_lease_token(),
        expires_at: now.plus(deps.batch_policy.lease),
    };
    match deps
        .batches
        .claim_chunk(batch, anchor, &lease, ClaimPurpose::Run, now)
        .await?
    {
        ChunkClaim::Claimed { .. } => {}
        ChunkClaim::Busy { lease_expires_at } => {
            let wait = now.until(lease_expires_at).clamp(BUSY_WAIT, BUSY_WAIT * 5);
            return next_look(deps, batch, group, &mut record, wait).await;
        }
        ChunkClaim::Done | ChunkClaim::Closed => {
            stop_group(deps, batch, group, &record).await;
            return Ok(QueueAction::Ack);
        }
    }
    let outcome = submit_held(deps, batch, group, current, &mut record, &lease.token).await;
    if let Err(error) = deps
        .batches
        .release_chunk(batch, anchor, &lease.token)
        .await
    {
        tracing::warn!(%error, "could not release a chunk after submitting; its lease will lapse");
    }
    match outcome? {
        Submitted::Yes => {
            let counts = RequestCounts {
                total: record.lines.len() as u64,
                ..RequestCounts::default()
            };
            deps.batches
                .record_provider_counts(batch, group, &counts)
                .await?;
            record.polls = 0;
            next_look(deps, batch, group, &mut record, poll_delay(0)).await
        }
        Submitted::Retry(error) => {
            tracing::info!(%error, "a provider batch could not be submitted; trying again later");
            record.polls += 1;
            let wait = delay_before_retry(record.polls, error.retry_after());
            next_look(deps, batch, group, &mut record, wait).await
        }
        Submitted::Refused(error) => {
            tracing::info!(%error, "the provider refused a group; its lines fail");
            let lines = group_request_lines(deps, current, &record).await?;
            let results = record
                .lines
                .iter()
                .map(|&at| {
                    let custom_id = lines.get(&at).map_or("", |l| l.custom_id.as_str());
                    NativeLine {
                        at,
                        target: LineTarget::Error,
                        json: failed_line(deps, custom_id, &error),
                        usage: Usage::default(),
                    }
                })
                .collect();
            commit_group(deps, batch, group, record, results, None, NativeLook::Run).await
        }
    }
}

enum Submitted {
    Yes,
    Retry(UpstreamError),
    Refused(UpstreamError),
}

/// With the anchor chunk held: reads the record again (a look that got the claim first may
/// have submitted), asks the provider for a batch carrying the group's key (one a crash left
/// unrecorded), and only when there is none uploads the sub-file and creates it; the record then
/// gets the provider batch's id.
async fn submit_held(
    deps: &Deps,
    batch: &BatchRef,
    group: u32,
    current: &Batch,
    record: &mut GroupRecord,
    token: &str,
) -> Result<Submitted, StoreError> {
    let key = record_key(batch, group);
    if let Some(latest) = read_json::<GroupRecord>(deps, &key).await
        && latest.provider_batch_id.is_some()
    {
        *record = latest;
        return Ok(Submitted::Yes);
    }
    let api = &deps.provider_batches;
    let since = u64::try_from(current.created_at.unix_seconds()).unwrap_or(0);
    let found = match api
        .find_batch(&record.provider, METADATA_GROUP, &record.key, since)
        .await
    {
        Ok(found) => found,
        Err(error) => return Ok(Submitted::Retry(error)),
    };
    let created = match found {
        Some(existing) => {
            tracing::info!(group = %record.key, provider_batch = %existing.id, "found the provider batch a crash left unrecorded");
            existing
        }
        None => {
            let lines = group_request_lines(deps, current, record).await?;
            match create(deps, batch, current, &lines, record, token).await {
                Ok(created) => created,
                Err(error) if error.is_retryable() => return Ok(Submitted::Retry(error)),
                Err(error) => return Ok(Submitted::Refused(error)),
            }
        }
    };
    record.provider_batch_id = Some(created.id);
    write_json(deps, &key, record).await?;
    Ok(Submitted::Yes)
}

async fn create(
    deps: &Deps,
    batch: &BatchRef,
    current: &Batch,
    lines: &HashMap<LineAt, RequestLine>,
    record: &GroupRecord,
    token: &str,
) -> Result<ProviderBatch, UpstreamError> {
    let api = deps.provider_batches.as_ref();
    let mut file = Vec::new();
    for at in &record.lines {
        let Some(line) = lines.get(at) else {
            continue;
        };
        let body = String::from_utf8_lossy(&line.body);
        let body = RawValue::from_string(body.into_owned())
            .map_err(|e| UpstreamError::InvalidResponse(e.to_string()))?;
        let json = serde_json::json!({
            "custom_id": provider_custom_id(*at),
            "method": "POST",
            "url": current.endpoint,
            "body": body,
        });
        serde_json::to_writer(&mut file, &json)
            .map_err(|e| UpstreamError::InvalidResponse(e.to_string()))?;
        file.push(b'\n');
    }
    let filename = format!("{}.jsonl", record.key);
    let input_file_id = api
        .upload_batch_file(&record.provider, &filename, Bytes::from(file))
        .await?;
    // The upload may take as long as it must; the create may not. Renewing the claim first
    // leaves the whole lease for the create's bounded call, so no other look can take the claim
    // and look for the batch while this create may still land.
    let anchor = record.lines.first().map_or(0, |at| at.chunk());
    let until = deps.clock.now().plus(deps.batch_policy.lease);
    if !matches!(
        deps.batches.renew_chunk(batch, anchor, token, until).await,
        Ok(ChunkWrite::Running)
    ) {
        // The claim is lost (taken over, or the batch stopped running): no batch will be
        // created over this upload, so it goes now rather than wait out the provider's 30 days.
        if let Err(error) = api.delete_file(&record.provider, &input_file_id).await {
            tracing::info!(%error, file = %input_file_id, "could not delete an unused provider upload");
        }
        return Err(UpstreamError::Timeout);
    }
    let request = NewProviderBatch {
        input_file_id,
        endpoint: current.endpoint.path().to_owned(),
        metadata: vec![
            (METADATA_BATCH_ID.to_owned(), current.id.to_string()),
            (METADATA_GROUP.to_owned(), record.key.clone()),
        ],
    };
    let created = tokio::time::timeout(
        deps.batch_policy.lease / 3,
        api.create_batch(&record.provider, &request),
    )
    .await
    .unwrap_or(Err(UpstreamError::Timeout))?;
    tracing::info!(group = %record.key, provider = %record.provider, provider_batch = %created.id, lines = record.lines.len(), "provider batch created");
    Ok(created)
}

/// Commits the group's lines into their chunks, each under a collect claim of its own (a chunk
/// whose every line is now in is completed), then cleans the group up; winding down for a
/// cancel, it then asks for the finalization that waits on it. A chunk held elsewhere is tried
/// again on the next look; the lines committed already are skipped then.
async fn commit_group(
    deps: &Deps,
    batch: &BatchRef,
    group: u32,
    mut record: GroupRecord,
    results: Vec<NativeLine>,
    ended: Option<&ProviderBatch>,
    look: NativeLook,
) -> Result<QueueAction, StoreError> {
    // Native lines count here, at their final outcome, never in their commits.
    let completed = results
        .iter()
        .filter(|l| l.target == LineTarget::Output)
        .count() as u64;
    let counts = RequestCounts {
        total: record.lines.len() as u64,
        completed,
        failed: results.len() as u64 - completed,
    };
    deps.batches
        .record_provider_counts(batch, group, &counts)
        .await?;
    let mut by_chunk: BTreeMap<u32, Vec<NativeLine>> = BTreeMap::new();
    for line in results {
        by_chunk.entry(line.at.chunk()).or_default().push(line);
    }
    let mut wait = None;
    for (chunk, lines) in by_chunk {
        match commit_into_chunk(deps, batch, chunk, lines).await? {
            Committed::Yes => {}
            Committed::Busy(until) => wait = Some(until),
            Committed::Closed => break,
        }
    }
    if let Some(wait) = wait {
        return next_look(deps, batch, group, &mut record, wait).await;
    }
    clean_up(deps, batch, group, &record, ended).await;
    if look == NativeLook::WindDown {
        return queue_finalize(deps, batch).await;
    }
    Ok(QueueAction::Ack)
}

enum Committed {
    Yes,
    Busy(Duration),
    /// The batch takes no more results: the finalizer writes what is not in.
    Closed,
}

async fn commit_into_chunk(
    deps: &Deps,
    batch: &BatchRef,
    index: u32,
    lines: Vec<NativeLine>,
) -> Result<Committed, StoreError> {
    let now = deps.clock.now();
    let token = new_lease_token();
    let lease = Lease {
        token: token.clone(),
        expires_at: now.plus(deps.batch_policy.lease),
    };
    let chunk = match deps
        .batches
        .claim_chunk(batch, index, &lease, ClaimPurpose::Collect, now)
        .await?
    {
        ChunkClaim::Claimed { chunk, .. } => chunk,
        ChunkClaim::Busy { lease_expires_at } => {
            return Ok(Committed::Busy(
                now.until(lease_expires_at).clamp(BUSY_WAIT, BUSY_WAIT * 5),
            ));
        }
        ChunkClaim::Done => return Ok(Committed::Yes),
        ChunkClaim::Closed => return Ok(Committed::Closed),
    };
    let mut done = chunk.done_lines();
    let mut body = Vec::new();
    let mut indexes = Vec::new();
    let mut usage = Usage::default();
    let (mut completed, mut failed) = (0u64, 0u64);
    for line in lines {
        let Some(slot) = done.get_mut(line.at.line() as usize) else {
            continue;
        };
        if *slot {
            continue;
        }
        *slot = true;
        // Lines the provider's Batch API ran bill at its batch price.
        let tier = (line.target == LineTarget::Output)
            .then(|| PriceTier::of_batch_line(LineRun::ProviderBatch, None));
        encode_part_line(line.target, line.at.line(), tier, &line.json, &mut body);
        indexes.push(line.at.line());
        usage.add(&line.usage);
        match line.target {
            LineTarget::Output => completed += 1,
            LineTarget::Error => failed += 1,
        }
    }
    if !indexes.is_empty() {
        let key = part_key(batch, index, &token, 0);
        store_part(deps, &key, body).await?;
        let part = Part {
            key: key.clone(),
            lines: u32::try_from(indexes.len()).unwrap_or(u32::MAX),
            // Counted by the group's recorded counts instead (`live_counts`).
            completed: 0,
            failed: 0,
            usage,
            done: encode_ranges(&indexes),
        };
        let until = now.plus(deps.batch_policy.lease);
        match deps
            .batches
            .checkpoint(batch, index, &token, &part, until, now)
            .await?
        {
            ChunkWrite::Refused => {
                if let Err(error) = deps.blobs.delete(&key).await {
                    tracing::debug!(%error, "could not delete an unreferenced part");
                }
                return Ok(Committed::Closed);
            }
            // Kept either way: a cancelling batch keeps the lines its provider batch finished.
            ChunkWrite::Running | ChunkWrite::Stopping => {
                crate::telemetry::count_batch_lines(completed, failed);
            }
        }
    }
    if done.iter().all(|d| *d) {
        finish_chunk(deps, batch, index, &token).await?;
    } else {
        deps.batches.release_chunk(batch, index, &token).await?;
    }
    Ok(Committed::Yes)
}

/// The batch stopped taking results: the provider batch is cancelled (best effort; one a
/// cancel's look asked already is only looked at, for its files) and the group's record and
/// provider files go.
async fn stop_group(deps: &Deps, batch: &BatchRef, group: u32, record: &GroupRecord) {
    let mut ended = None;
    if let Some(id) = &record.provider_batch_id {
        let api = &deps.provider_batches;
        let seen = if record.cancel_sent {
            api.retrieve_batch(&record.provider, id).await
        } else {
            api.cancel_batch(&record.provider, id).await
        };
        match seen {
            Ok(seen) => {
                tracing::info!(provider_batch = %id, "provider batch cancelled");
                ended = Some(seen);
            }
            Err(error) => {
                tracing::info!(%error, provider_batch = %id, "could not cancel a provider batch")
            }
        }
    }
    clean_up(deps, batch, group, record, ended.as_ref()).await;
}

/// After the group's lines are committed (or the batch ended): the provider's files go (best
/// effort: the provider deletes them itself in 30 days), then the record.
async fn clean_up(
    deps: &Deps,
    batch: &BatchRef,
    group: u32,
    record: &GroupRecord,
    ended: Option<&ProviderBatch>,
) {
    if let Some(ended) = ended {
        let files = [
            &ended.input_file_id,
            &ended.output_file_id,
            &ended.error_file_id,
        ];
        for file in files.into_iter().flatten() {
            if let Err(error) = deps
                .provider_batches
                .delete_file(&record.provider, file)
                .await
            {
                tracing::debug!(%error, "could not delete a provider file");
            }
        }
    }
    if let Err(error) = deps.blobs.delete(&record_key(batch, group)).await {
        tracing::debug!(%error, "could not delete a native group record");
    }
}
