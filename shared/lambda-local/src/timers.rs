//! Time-driven stand-ins for the local stack: the EventBridge rule that invokes a function on a
//! `rate(...)` (the reconciler's), and EventBridge Scheduler's deliveries of due one-time
//! schedules, which the emulator stores but never fires (the testkit's schedule pump).

use std::time::Duration;

use prism_core::{Clock, SystemClock};
use prism_testkit::schedule_pump::EmulatorSchedulePump;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::invoke::Invoker;

/// Invokes the function with a "Scheduled Event" every `every`, first after one period, as a
/// rule does. An invocation that fails is logged; the next period tries again.
pub fn spawn_rule(
    invoker: Invoker,
    rule: String,
    every: Duration,
    region: String,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            let event = json!({
                "version": "0",
                "id": format!("local-{}", SystemClock.now().millis()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": prism_core::clock::format_rfc3339(SystemClock.now()),
                "region": region,
                "resources": [format!("arn:aws:events:{region}:123456789012:rule/{rule}")],
                "detail": {},
            });
            if let Err(error) = invoker.invoke(&event).await {
                tracing::warn!(%rule, %error, "scheduled invocation failed");
            }
        }
    })
}

/// Fires the group's due one-time schedules every `every`.
pub fn spawn_schedule_pump(
    group: String,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pump = EmulatorSchedulePump::connect(&group).await;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            // The pump is test code that panics on an emulator error: contain it to one round.
            let round = pump.clone();
            if let Err(error) =
                tokio::spawn(async move { round.fire_due(SystemClock.now()).await }).await
            {
                tracing::warn!(%group, %error, "schedule pump round failed");
            }
        }
    })
}
