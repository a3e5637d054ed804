//! The work queue and the scheduler in memory, with SQS's semantics (the stricter backend):
//! at-least-once delivery, a visibility timeout, receipts that go stale, and every enqueue a
//! message of its own. The scheduler holds one delivery per item until the clock reaches it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use prism_core::ports::{Delivery, Receipt, Scheduler, WorkItem, WorkQueue};
use prism_core::{Clock, StoreError, Timestamp};

use super::lock;

#[derive(Debug, Clone)]
struct Message {
    id: u64,
    item: WorkItem,
    visible_at: Timestamp,
    receipt: Option<String>,
    receives: u32,
}

#[derive(Default)]
struct State {
    next_id: u64,
    next_receipt: u64,
    messages: Vec<Message>,
}

pub struct MemoryQueue {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Enqueues still to refuse: a lost trigger, for the reconciler's tests.
    refuse: AtomicUsize,
}

impl MemoryQueue {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
            refuse: AtomicUsize::new(0),
        }
    }

    /// The next `n` enqueues fail as an unreachable queue would.
    pub fn refuse_enqueues(&self, n: usize) {
        self.refuse.store(n, Ordering::SeqCst);
    }

    /// Every message still in the queue (in flight or waiting), in send order.
    pub fn items(&self) -> Vec<WorkItem> {
        lock(&self.state)
            .messages
            .iter()
            .map(|m| m.item.clone())
            .collect()
    }

    /// Messages a receive would return now.
    pub fn visible(&self) -> Vec<WorkItem> {
        let now = self.clock.now();
        lock(&self.state)
            .messages
            .iter()
            .filter(|m| m.visible_at <= now)
            .map(|m| m.item.clone())
            .collect()
    }

    /// When the earliest waiting message becomes visible.
    pub fn next_visible_at(&self) -> Option<Timestamp> {
        lock(&self.state)
            .messages
            .iter()
            .map(|m| m.visible_at)
            .min()
    }
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn enqueue(&self, item: &WorkItem, delay: Duration) -> Result<(), StoreError> {
        let refused = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(StoreError::Unavailable("queue unreachable (test)".into()));
        }
        let visible_at = self.clock.now().plus(delay);
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = state.next_id;
        state.messages.push(Message {
            id,
            item: item.clone(),
            visible_at,
            receipt: None,
            receives: 0,
        });
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let mut due: Vec<(Timestamp, u64)> = state
            .messages
            .iter()
            .filter(|m| m.visible_at <= now)
            .map(|m| (m.visible_at, m.id))
            .collect();
        due.sort();
        due.truncate(max);
        let mut deliveries = Vec::with_capacity(due.len());
        for (_, id) in due {
            state.next_receipt += 1;
            let receipt = format!("{id}:{}", state.next_receipt);
            if let Some(message) = state.messages.iter_mut().find(|m| m.id == id) {
                message.receipt = Some(receipt.clone());
                message.receives += 1;
                message.visible_at = now.plus(visibility);
                deliveries.push(Delivery {
                    item: message.item.clone(),
                    receipt: Receipt(receipt),
                    receive_count: message.receives,
                    trace: None,
                    claim: None,
                });
            }
        }
        Ok(deliveries)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), StoreError> {
        lock(&self.state)
            .messages
            .retain(|m| m.receipt.as_deref() != Some(receipt.0.as_str()));
        Ok(())
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), StoreError> {
        let visible_at = self.clock.now().plus(visibility);
        let mut state = lock(&self.state);
        if let Some(message) = state
            .messages
            .iter_mut()
            .find(|m| m.receipt.as_deref() == Some(receipt.0.as_str()))
        {
            message.visible_at = visible_at;
        }
        Ok(())
    }
}

/// The `Scheduler` port in memory: one pending delivery per item (scheduling it again replaces
/// it), handed to the queue by [`MemoryScheduler::fire_due`] once the clock reaches its time,
/// as EventBridge Scheduler (or the emulator's pump) does.
pub struct MemoryScheduler {
    clock: Arc<dyn Clock>,
    queue: Arc<MemoryQueue>,
    pending: Mutex<BTreeMap<String, (WorkItem, Timestamp)>>,
}

impl MemoryScheduler {
    pub fn new(clock: Arc<dyn Clock>, queue: Arc<MemoryQueue>) -> Self {
        Self {
            clock,
            queue,
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sends every schedule whose time has come to the queue; returns how many.
    pub async fn fire_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let due: Vec<WorkItem> = {
            let mut pending = lock(&self.pending);
            let keys: Vec<String> = pending
                .iter()
                .filter(|(_, (_, at))| *at <= now)
                .map(|(key, _)| key.clone())
                .collect();
            keys.iter()
                .filter_map(|key| pending.remove(key).map(|(item, _)| item))
                .collect()
        };
        for item in &due {
            self.queue.enqueue(item, Duration::ZERO).await?;
        }
        Ok(due.len())
    }

    /// The items waiting for their time, with it.
    pub fn pending(&self) -> Vec<(WorkItem, Timestamp)> {
        lock(&self.pending).values().cloned().collect()
    }
}

#[async_trait]
impl Scheduler for MemoryScheduler {
    async fn schedule(&self, item: &WorkItem, at: Timestamp) -> Result<(), StoreError> {
        lock(&self.pending).insert(item.key(), (item.clone(), at));
        Ok(())
    }

    async fn unschedule(&self, item: &WorkItem) -> Result<(), StoreError> {
        lock(&self.pending).remove(&item.key());
        Ok(())
    }
}
