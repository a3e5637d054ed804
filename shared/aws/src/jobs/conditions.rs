//! Core's job rules stated as DynamoDB conditions: what a claim may take, what a lease holder's
//! write needs, what a cancel or a dead letter may still end, and when an idempotency record may
//! be taken over. Each names the `decisions` rule it states.

use prism_core::JobStatus;

use crate::attrs::s;

/// `decisions::claim_refusal`'s "take it" as a condition (binds `:now`, `:pending`, `:running`):
/// a live, unfinished job that is due, pending or running on a lease that was released or ran
/// out.
pub(super) const CLAIMABLE: &str = "attribute_exists(pk) AND attribute_not_exists(expires_at) AND \
     (attribute_not_exists(scheduled_at) OR scheduled_at <= :now) AND \
     (#s = :pending OR (#s = :running AND (attribute_not_exists(lease_token) OR lease_expires_at <= :now)))";

/// `decisions::holds` as a condition: the job runs on the caller's lease (binds `:running`,
/// `:token`), for the writes of a lease holder.
pub(super) const HOLDS_LEASE: &str = "#s = :running AND lease_token = :token";

pub(super) type UpdateJob =
    aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;

/// `update` conditioned on [`HOLDS_LEASE`] for `token`.
pub(super) fn holding(update: UpdateJob, token: &str) -> UpdateJob {
    update
        .condition_expression(HOLDS_LEASE)
        .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
        .expression_attribute_values(":token", s(token))
}

/// `update` conditioned on the job being one of `JobStatus::UNFINISHED` (binding `:u0`..),
/// after `prefix` (`""` or a condition ending in `AND`): what a cancel or a dead letter may still
/// end.
pub(super) fn unfinished(update: UpdateJob, prefix: &str) -> UpdateJob {
    const PLACEHOLDERS: [&str; JobStatus::UNFINISHED.len()] = [":u0", ":u1"];
    let listed = PLACEHOLDERS.join(", ");
    PLACEHOLDERS.iter().zip(JobStatus::UNFINISHED).fold(
        update.condition_expression(format!("{prefix} #s IN ({listed})").trim_start().to_owned()),
        |update, (placeholder, status)| {
            update.expression_attribute_values(*placeholder, s(status.as_str()))
        },
    )
}

/// The condition a create's put of [`idempotency_record`](super::idempotency_record) carries: a record whose key no longer
/// holds (`decisions::idempotency_key_holds`, negated) may be taken over by a new create.
pub(crate) const IDEMPOTENCY_RECORD_FREE: &str = "attribute_not_exists(pk) OR expires_at <= :now";
