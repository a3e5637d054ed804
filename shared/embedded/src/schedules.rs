//! The `Scheduler` port embedded: the SQLite queue carries a delivery delay of any length and
//! keeps it across restarts, so a schedule is a delayed message on the item's row.

use std::sync::Arc;

use async_trait::async_trait;
use prism_core::ports::{Scheduler, WorkItem, WorkQueue};
use prism_core::{Clock, StoreError, Timestamp};

use crate::queue::SqliteWorkQueue;

#[derive(Clone)]
pub struct SqliteScheduler {
    queue: SqliteWorkQueue,
    clock: Arc<dyn Clock>,
}

impl SqliteScheduler {
    pub fn new(queue: SqliteWorkQueue, clock: Arc<dyn Clock>) -> Self {
        Self { queue, clock }
    }
}

#[async_trait]
impl Scheduler for SqliteScheduler {
    async fn schedule(&self, item: &WorkItem, at: Timestamp) -> Result<(), StoreError> {
        self.queue.enqueue(item, self.clock.now().until(at)).await
    }

    async fn unschedule(&self, item: &WorkItem) -> Result<(), StoreError> {
        self.queue.drop_waiting(item).await
    }
}
