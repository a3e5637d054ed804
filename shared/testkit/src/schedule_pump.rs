//! What EventBridge Scheduler does and the emulator does not: fire due one-time schedules. The
//! pump reads each schedule of a group, and for every `at(...)` that has fallen due sends the
//! target's input to the target queue and deletes the schedule (`ActionAfterCompletion: DELETE`).
//! Test code only: the product relies on EventBridge itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures panic

use prism_core::Timestamp;
use prism_core::clock::parse_rfc3339;

#[derive(Clone)]
pub struct EmulatorSchedulePump {
    scheduler: aws_sdk_scheduler::Client,
    sqs: aws_sdk_sqs::Client,
    group: String,
}

impl EmulatorSchedulePump {
    /// Clients from the standard environment (`AWS_ENDPOINT_URL` names the emulator).
    pub async fn connect(group: &str) -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self {
            scheduler: aws_sdk_scheduler::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            group: group.to_owned(),
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

    /// Fires every schedule due at `now` (in the schedule's own `at(...)` time); returns how many.
    pub async fn fire_due(&self, now: Timestamp) -> usize {
        let mut fired = 0;
        for name in self.names().await {
            let schedule = self.schedule(&name).await;
            let expression = schedule.schedule_expression().unwrap_or_default();
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
            let queue_name = target.arn().rsplit(':').next().unwrap_or_default();
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
                .message_body(target.input().unwrap_or_default())
                .send()
                .await
                .unwrap();
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
}
