//! The work queues of the AWS backend as one `WorkQueue`: jobs, batch planning, batch chunks and
//! batch finalization each have their own SQS queue (and dead-letter queue), so each stage gets
//! its own Lambda, concurrency and alarms. Enqueue sends an item to its stage's queue; receive
//! short-polls the four in turn and tags each receipt with its queue, so ack and extend reach
//! the right one. Long-lived consumers drain each queue with its own `SqsWorkQueue` instead.

use std::time::Duration;

use async_trait::async_trait;
use prism_core::StoreError;
use prism_core::ports::{Delivery, Receipt, WorkItem, WorkQueue};

use crate::queue::SqsWorkQueue;

#[derive(Clone)]
pub struct StageQueues {
    pub jobs: SqsWorkQueue,
    pub plan: SqsWorkQueue,
    pub chunks: SqsWorkQueue,
    pub finalize: SqsWorkQueue,
}

const TAGS: [&str; 4] = ["jobs", "plan", "chunks", "finalize"];

impl StageQueues {
    /// The queue an item is sent to.
    pub fn for_item(&self, item: &WorkItem) -> &SqsWorkQueue {
        match item {
            WorkItem::Job(_) => &self.jobs,
            WorkItem::PlanBatch(_) => &self.plan,
            WorkItem::RunChunk { .. } => &self.chunks,
            WorkItem::FinalizeBatch(_) => &self.finalize,
        }
    }

    fn by_tag(&self, tag: &str) -> Option<&SqsWorkQueue> {
        match tag {
            "jobs" => Some(&self.jobs),
            "plan" => Some(&self.plan),
            "chunks" => Some(&self.chunks),
            "finalize" => Some(&self.finalize),
            _ => None,
        }
    }

    fn untag(&self, receipt: &Receipt) -> Option<(&SqsWorkQueue, Receipt)> {
        let (tag, handle) = receipt.0.split_once('|')?;
        Some((self.by_tag(tag)?, Receipt(handle.to_owned())))
    }
}

#[async_trait]
impl WorkQueue for StageQueues {
    async fn enqueue(&self, item: &WorkItem, delay: Duration) -> Result<(), StoreError> {
        self.for_item(item).enqueue(item, delay).await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let mut deliveries = Vec::new();
        for tag in TAGS {
            let room = max.saturating_sub(deliveries.len());
            let Some(queue) = self.by_tag(tag).filter(|_| room > 0) else {
                break;
            };
            for mut delivery in queue.receive(room, visibility).await? {
                delivery.receipt = Receipt(format!("{tag}|{}", delivery.receipt.0));
                deliveries.push(delivery);
            }
        }
        Ok(deliveries)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), StoreError> {
        match self.untag(receipt) {
            Some((queue, receipt)) => queue.ack(&receipt).await,
            None => Ok(()),
        }
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), StoreError> {
        match self.untag(receipt) {
            Some((queue, receipt)) => queue.extend(&receipt, visibility).await,
            None => Ok(()),
        }
    }
}
