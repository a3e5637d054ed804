//! The work queues of the AWS backend as one `WorkQueue`: each [`Stage`] has its own SQS queue
//! (and dead-letter queue), so each stage gets its own Lambda, concurrency and alarms. Enqueue
//! sends an item to its stage's queue; receive short-polls the queues in [`Stage::ALL`] order and
//! tags each receipt with its stage, so ack and extend reach the right queue. Long-lived
//! consumers drain each queue with its own `SqsWorkQueue` instead.

use std::time::Duration;

use async_trait::async_trait;
use prism_core::ports::{Delivery, Receipt, WorkItem, WorkQueue};
use prism_core::{PerStage, Stage, StoreError};

use crate::queue::SqsWorkQueue;

#[derive(Clone)]
pub struct StageQueues {
    pub queues: PerStage<SqsWorkQueue>,
}

impl StageQueues {
    /// The queue an item is sent to.
    pub fn for_item(&self, item: &WorkItem) -> &SqsWorkQueue {
        self.queues.get(item.stage())
    }

    fn untag(&self, receipt: &Receipt) -> Option<(&SqsWorkQueue, Receipt)> {
        let (tag, handle) = receipt.0.split_once('|')?;
        let stage = Stage::parse(tag)?;
        Some((self.queues.get(stage), Receipt(handle.to_owned())))
    }
}

#[async_trait]
impl WorkQueue for StageQueues {
    async fn enqueue(&self, item: &WorkItem, delay: Duration) -> Result<(), StoreError> {
        self.for_item(item).enqueue(item, delay).await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let mut deliveries = Vec::new();
        for (stage, queue) in self.queues.iter() {
            let room = max.saturating_sub(deliveries.len());
            if room == 0 {
                break;
            }
            for mut delivery in queue.receive(room, visibility).await? {
                delivery.receipt = Receipt(format!("{}|{}", stage.name(), delivery.receipt.0));
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
