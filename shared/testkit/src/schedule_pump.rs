//! What EventBridge Scheduler does and the emulator does not: fire due schedules. The pump reads
//! each schedule of a group, and for every `at(...)` that has fallen due sends the target's
//! input to the target queue and deletes the schedule (`ActionAfterCompletion: DELETE`); for
//! every enabled recurring `cron(...)` it sends the input for the latest fire time due (within
//! its start and end dates, in its time zone) that it has not sent yet, with
//! `<aws.scheduler.scheduled-time>` replaced by that time, as EventBridge does.
//! Test code only: the product relies on EventBridge itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures panic

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prism_core::Timestamp;
use prism_core::clock::{format_rfc3339, parse_rfc3339};
use prism_core::recurring::cron::{latest_fire_until, parse_cron, parse_zone};

/// What EventBridge replaces in a target's input with the invocation's scheduled time.
const SCHEDULED_TIME: &str = "<aws.scheduler.scheduled-time>";

#[derive(Clone)]
pub struct EmulatorSchedulePump {
    scheduler: aws_sdk_scheduler::Client,
    sqs: aws_sdk_sqs::Client,
    group: String,
    /// The latest fire time sent per recurring schedule.
    fired: Arc<Mutex<HashMap<String, Timestamp>>>,
}

/// An EventBridge `cron(min hour dom month dow year)` as the 5-field POSIX expression Prism
/// reads (weekdays renumbered back: EventBridge Sunday = 1, POSIX Sunday = 0).
pub fn posix_from_eventbridge(expression: &str) -> String {
    let inner = expression
        .strip_prefix("cron(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a cron expression: {expression}"));
    let fields: Vec<&str> = inner.split_whitespace().collect();
    assert_eq!(fields.len(), 6, "{expression}");
    let day = |d: &str| match d.parse::<u8>() {
        Ok(n) => (n - 1).to_string(),
        Err(_) => d.to_owned(),
    };
    let dow: Vec<String> = fields[4]
        .split(',')
        .map(|item| {
            if item == "?" || item.starts_with('*') {
                return item.replace('?', "*");
            }
            let (base, step) = item.split_once('/').map_or((item, ""), |(b, s)| (b, s));
            let step = if step.is_empty() {
                String::new()
            } else {
                format!("/{step}")
            };
            let base = if let Some((d, nth)) = base.split_once('#') {
                format!("{}#{nth}", day(d))
            } else if let Some(d) = base.strip_suffix('L').filter(|d| !d.is_empty()) {
                format!("{}L", day(d))
            } else if let Some((a, b)) = base.split_once('-') {
                format!("{}-{}", day(a), day(b))
            } else {
                day(base)
            };
            format!("{base}{step}")
        })
        .collect();
    format!(
        "{} {} {} {} {}",
        fields[0],
        fields[1],
        fields[2].replace('?', "*"),
        fields[3],
        dow.join(",")
    )
}

impl EmulatorSchedulePump {
    /// Clients from the standard environment (`AWS_ENDPOINT_URL` names the emulator).
    pub async fn connect(group: &str) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self {
            scheduler: aws_sdk_scheduler::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            group: group.to_owned(),
            fired: Arc::default(),
        }
    }

    /// Names of the group's schedules.
    pub async fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .scheduler
                .list_schedules()
                .group_name(&self.group)
                .set_next_token(token)
                .send()
                .await
                .unwrap();
            names.extend(
                out.schedules()
                    .iter()
                    .filter_map(|s| s.name().map(str::to_owned)),
            );
            match out.next_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return names,
            }
        }
    }

    /// One schedule as EventBridge holds it.
    pub async fn schedule(
        &self,
        name: &str,
    ) -> aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput {
        self.scheduler
            .get_schedule()
            .group_name(&self.group)
            .name(name)
            .send()
            .await
            .unwrap()
    }

    /// A schedule's state (`ENABLED` or `DISABLED`).
    pub async fn state(&self, name: &str) -> Option<String> {
        self.schedule(name)
            .await
            .state()
            .map(|s| s.as_str().to_owned())
    }

    /// Fires every schedule due at `now` (in the schedule's own `at(...)` time); returns how many.
    pub async fn fire_due(&self, now: Timestamp) -> usize {
        let mut fired = 0;
        for name in self.names().await {
            let schedule = self.schedule(&name).await;
            let expression = schedule.schedule_expression().unwrap_or_default();
            if expression.starts_with("cron(") {
                fired += usize::from(self.fire_recurring(&name, &schedule, now).await);
                continue;
            }
            let at = expression
                .strip_prefix("at(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|local| parse_rfc3339(&format!("{local}Z")))
                .unwrap_or_else(|| {
                    panic!("schedule {name} has no one-time expression: {expression}")
                });
            assert_eq!(schedule.schedule_expression_timezone(), Some("UTC"));
            if at > now {
                continue;
            }
            let target = schedule.target().expect("schedule without a target");
            self.send(target.arn(), target.input().unwrap_or_default())
                .await;
            self.scheduler
                .delete_schedule()
                .group_name(&self.group)
                .name(&name)
                .send()
                .await
                .unwrap();
            fired += 1;
        }
        fired
    }

    async fn send(&self, queue_arn: &str, body: &str) {
        let queue_name = queue_arn.rsplit(':').next().unwrap_or_default();
        let queue_url = self
            .sqs
            .get_queue_url()
            .queue_name(queue_name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        self.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Sends one invocation of recurring schedule `name` for fire time `at`, whatever was sent
    /// before (what an EventBridge retry or a duplicate delivery looks like).
    pub async fn invoke_recurring(&self, name: &str, at: Timestamp) {
        let schedule = self.schedule(name).await;
        let target = schedule.target().expect("schedule without a target");
        let input = target
            .input()
            .unwrap_or_default()
            .replace(SCHEDULED_TIME, &format_rfc3339(at));
        self.send(target.arn(), &input).await;
    }

    /// Sends the latest fire time due at `now` of an enabled recurring schedule, once.
    async fn fire_recurring(
        &self,
        name: &str,
        schedule: &aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput,
        now: Timestamp,
    ) -> bool {
        if schedule.state() == Some(&aws_sdk_scheduler::types::ScheduleState::Disabled) {
            return false;
        }
        let posix = posix_from_eventbridge(schedule.schedule_expression().unwrap_or_default());
        let cron = parse_cron(&posix).unwrap();
        let zone = parse_zone(schedule.schedule_expression_timezone().unwrap_or("UTC")).unwrap();
        let millis =
            |d: &aws_sdk_scheduler::primitives::DateTime| Timestamp(d.to_millis().unwrap());
        let upto = schedule.end_date().map_or(now, |end| now.min(millis(end)));
        let created = schedule.creation_date().map_or(Timestamp(0), millis);
        let floor = schedule
            .start_date()
            .map_or(created, |start| created.max(millis(start)));
        let last = self.fired.lock().unwrap().get(name).copied();
        let after = last.map_or(floor, |l| l.max(floor));
        let Some(at) = latest_fire_until(&cron, zone, after, upto) else {
            return false;
        };
        self.fired.lock().unwrap().insert(name.to_owned(), at);
        self.invoke_recurring(name, at).await;
        true
    }
}
