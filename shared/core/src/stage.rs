//! The work stages, listed once: every queue, dead-letter queue, message kind and consumer is
//! one per [`Stage`]. A new stage is a variant here (the compiler then names every `match` to
//! extend) plus its queue in the template. Also what names a [`WorkItem`]: its stage, key and
//! tenant.

use crate::batches::BatchRef;
use crate::ids::TenantId;
use crate::ports::WorkItem;

/// A kind of deferred work, each with its own queue (and dead-letter queue) on AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Async and scheduled jobs.
    Jobs,
    /// Validating and planning a batch.
    Plan,
    /// Running one chunk of a batch.
    Chunks,
    /// Assembling a batch's output.
    Finalize,
    /// Delivering webhook events.
    Webhooks,
}

impl Stage {
    /// In the order a shared receive serves them: interactive jobs before batch stages.
    pub const ALL: [Stage; 5] = [
        Stage::Jobs,
        Stage::Plan,
        Stage::Chunks,
        Stage::Finalize,
        Stage::Webhooks,
    ];

    /// The stage's name in messages and stored queue rows (`job`, `plan`, `chunk`, `finalize`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Jobs => "job",
            Stage::Plan => "plan",
            Stage::Chunks => "chunk",
            Stage::Finalize => "finalize",
            Stage::Webhooks => "webhook",
        }
    }

    pub fn parse(name: &str) -> Option<Stage> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    fn index(self) -> usize {
        match self {
            Stage::Jobs => 0,
            Stage::Plan => 1,
            Stage::Chunks => 2,
            Stage::Finalize => 3,
            Stage::Webhooks => 4,
        }
    }
}

/// One `T` per stage, e.g. each stage's queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PerStage<T>([T; 5]);

impl<T> PerStage<T> {
    /// Builds each stage's value.
    pub fn from_fn(mut make: impl FnMut(Stage) -> T) -> Self {
        PerStage(Stage::ALL.map(&mut make))
    }

    pub fn get(&self, stage: Stage) -> &T {
        &self.0[stage.index()]
    }

    /// Every stage with its value, in [`Stage::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Stage, &T)> {
        Stage::ALL.into_iter().zip(self.0.iter())
    }

    pub fn map<U>(&self, mut f: impl FnMut(Stage, &T) -> U) -> PerStage<U> {
        PerStage::from_fn(|stage| f(stage, self.get(stage)))
    }
}

impl WorkItem {
    /// A short stable name of the item, unique per item (queue de-duplication, schedule names).
    pub fn key(&self) -> String {
        match self {
            WorkItem::Job(job) => job.id.to_string(),
            WorkItem::PlanBatch(b) => format!("plan-{}", b.id),
            WorkItem::RunChunk { batch, chunk } => format!("chunk-{}-{chunk}", batch.id),
            WorkItem::FinalizeBatch(b) => format!("final-{}", b.id),
            WorkItem::Webhook(e) => format!("hook-{}", e.id),
            WorkItem::PollNative { batch, group } => format!("native-{}-{group}", batch.id),
            WorkItem::FireSchedule { schedule, at } => format!("fire-{}-{}", schedule.id, at.0),
        }
    }

    pub fn tenant(&self) -> &TenantId {
        match self {
            WorkItem::Job(job) => &job.tenant,
            WorkItem::PlanBatch(b) | WorkItem::FinalizeBatch(b) => &b.tenant,
            WorkItem::RunChunk { batch, .. } | WorkItem::PollNative { batch, .. } => &batch.tenant,
            WorkItem::Webhook(e) => &e.tenant,
            WorkItem::FireSchedule { schedule, .. } => &schedule.tenant,
        }
    }

    /// The stage that runs the item.
    pub fn stage(&self) -> Stage {
        match self {
            // A firing travels on the jobs queue, where the run it makes goes.
            WorkItem::Job(_) | WorkItem::FireSchedule { .. } => Stage::Jobs,
            WorkItem::PlanBatch(_) => Stage::Plan,
            // A native group's look travels on the chunks queue, beside the chunks it commits to.
            WorkItem::RunChunk { .. } | WorkItem::PollNative { .. } => Stage::Chunks,
            WorkItem::FinalizeBatch(_) => Stage::Finalize,
            WorkItem::Webhook(_) => Stage::Webhooks,
        }
    }

    /// The item of a batch stage; `None` for the jobs stage, or a chunk stage without its index.
    pub fn of_batch(stage: Stage, batch: BatchRef, chunk: Option<u32>) -> Option<WorkItem> {
        match (stage, chunk) {
            (Stage::Plan, _) => Some(WorkItem::PlanBatch(batch)),
            (Stage::Chunks, Some(chunk)) => Some(WorkItem::RunChunk { batch, chunk }),
            (Stage::Finalize, _) => Some(WorkItem::FinalizeBatch(batch)),
            (Stage::Jobs | Stage::Webhooks, _) | (Stage::Chunks, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_round_trip_and_are_distinct() {
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.name()), Some(stage));
        }
        assert_eq!(Stage::parse("jobs"), None);
    }

    #[test]
    fn per_stage_values_are_found_by_their_stage() {
        let names = PerStage::from_fn(Stage::name);
        for stage in Stage::ALL {
            assert_eq!(*names.get(stage), stage.name());
        }
        let order: Vec<Stage> = names.iter().map(|(s, _)| s).collect();
        assert_eq!(order, Stage::ALL);
        assert_eq!(names.map(|_, n| n.len()).get(Stage::Finalize), &8);
    }

    #[test]
    fn a_batch_stage_item_is_rebuilt_from_its_stage() {
        let batch = BatchRef {
            tenant: crate::TenantId::parse("acme").unwrap(),
            id: crate::ids::IdGenerator::new().batch_id(crate::Timestamp(0)),
        };
        for item in [
            WorkItem::PlanBatch(batch.clone()),
            WorkItem::RunChunk {
                batch: batch.clone(),
                chunk: 3,
            },
            WorkItem::FinalizeBatch(batch.clone()),
        ] {
            let chunk = match &item {
                WorkItem::RunChunk { chunk, .. } => Some(*chunk),
                _ => None,
            };
            assert_eq!(
                WorkItem::of_batch(item.stage(), batch.clone(), chunk),
                Some(item)
            );
        }
        assert_eq!(WorkItem::of_batch(Stage::Jobs, batch, None), None);
    }
}
