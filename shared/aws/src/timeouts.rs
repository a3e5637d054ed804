//! How long an AWS call may take: the SDK's connect, attempt and operation timeouts of every
//! client the backend builds, read once at start from `PRISM_AWS_*_TIMEOUT`. Short for DynamoDB,
//! SQS and the other small calls, longer for S3, whose calls carry parts of up to 5 MiB.
//!
//! Without them a call that never answers (a hung connection to AWS or the emulator) stalls its
//! caller until the work's lease lapses. With them the SDK cuts a hung try after the attempt
//! timeout and tries again (its standard retry classifies timeouts as transient); a call that
//! outlasts the operation timeout fails as every SDK failure does, as the adapter's
//! `StoreError::Unavailable`, so the message reappears and the work is retried.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;

use crate::settings::SettingsError;

/// Connecting to an endpoint: the SDK's own default, set here so it cannot drift unnoticed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);

/// The environment variables of [`AwsTimeouts`]; each takes a duration such as `5s` or
/// `500ms`, and may be absent.
mod var {
    pub const ATTEMPT: &str = "PRISM_AWS_ATTEMPT_TIMEOUT";
    pub const OPERATION: &str = "PRISM_AWS_OPERATION_TIMEOUT";
    pub const S3_ATTEMPT: &str = "PRISM_AWS_S3_ATTEMPT_TIMEOUT";
    pub const S3_OPERATION: &str = "PRISM_AWS_S3_OPERATION_TIMEOUT";
}

/// Every variable of [`AwsTimeouts`].
pub const TIMEOUT_ENV: [&str; 4] = [
    var::ATTEMPT,
    var::OPERATION,
    var::S3_ATTEMPT,
    var::S3_OPERATION,
];

/// The timeouts of the AWS clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// One try of a DynamoDB, SQS, EventBridge Scheduler, SSM or Secrets Manager call.
    pub attempt: Duration,
    /// Such a call with all its tries and the backoff between them.
    pub operation: Duration,
    /// One try of an S3 call (a part upload, an object read up to its first byte).
    pub s3_attempt: Duration,
    /// An S3 call with all its tries.
    pub s3_operation: Duration,
}

impl Default for AwsTimeouts {
    /// DynamoDB and SQS answer in milliseconds: 5 s is a hung try, and 20 s covers the SDK's
    /// three tries with their backoff. An S3 part is up to 5 MiB and completing a large
    /// multipart upload takes seconds, so S3 gets a minute a try.
    fn default() -> Self {
        Self {
            attempt: Duration::from_secs(5),
            operation: Duration::from_secs(20),
            s3_attempt: Duration::from_secs(60),
            s3_operation: Duration::from_secs(180),
        }
    }
}

impl AwsTimeouts {
    /// Reads the variables that are set; the others keep their defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let read = |name: &str, default: Duration| -> Result<Duration, SettingsError> {
            let Some(text) = get(name).filter(|v| !v.is_empty()) else {
                return Ok(default);
            };
            match humantime::parse_duration(&text) {
                Ok(value) if !value.is_zero() => Ok(value),
                Ok(_) => Err(SettingsError::Invalid {
                    name: name.to_owned(),
                    reason: "must be longer than zero".to_owned(),
                }),
                Err(error) => Err(SettingsError::Invalid {
                    name: name.to_owned(),
                    reason: error.to_string(),
                }),
            }
        };
        let defaults = Self::default();
        Ok(Self {
            attempt: read(var::ATTEMPT, defaults.attempt)?,
            operation: read(var::OPERATION, defaults.operation)?,
            s3_attempt: read(var::S3_ATTEMPT, defaults.s3_attempt)?,
            s3_operation: read(var::S3_OPERATION, defaults.s3_operation)?,
        })
    }

    /// The variables that give these timeouts, as [`AwsTimeouts::from_lookup`] reads them.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let text = |d: Duration| humantime::format_duration(d).to_string();
        vec![
            (var::ATTEMPT, text(self.attempt)),
            (var::OPERATION, text(self.operation)),
            (var::S3_ATTEMPT, text(self.s3_attempt)),
            (var::S3_OPERATION, text(self.s3_operation)),
        ]
    }

    /// Every client but S3's.
    pub fn sdk(&self) -> TimeoutConfig {
        timeouts(self.attempt, self.operation)
    }

    /// S3's client.
    pub fn s3(&self) -> TimeoutConfig {
        timeouts(self.s3_attempt, self.s3_operation)
    }
}

fn timeouts(attempt: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build()
}

/// The timeouts of a long poll that may wait `wait` for a message before it answers: waiting is
/// what it was asked to do, so each try and the whole call get that much longer than `base`.
pub fn for_long_poll(base: &TimeoutConfig, wait: Duration) -> TimeoutConfig {
    let mut config = base.to_builder();
    config.set_operation_attempt_timeout(base.operation_attempt_timeout().map(|t| t + wait));
    config.set_operation_timeout(base.operation_timeout().map(|t| t + wait));
    config.build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)] // test code

    use std::collections::HashMap;

    use super::*;

    #[test]
    fn unset_variables_keep_the_defaults_and_set_ones_are_read_as_durations() {
        assert_eq!(
            AwsTimeouts::from_lookup(|_| None).unwrap(),
            AwsTimeouts::default()
        );
        let env = HashMap::from([(var::ATTEMPT, "750ms"), (var::S3_OPERATION, "5m")]);
        let read = AwsTimeouts::from_lookup(|name| env.get(name).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(read.attempt, Duration::from_millis(750));
        assert_eq!(read.s3_operation, Duration::from_secs(300));
        assert_eq!(read.operation, AwsTimeouts::default().operation);
    }

    #[test]
    fn to_env_reads_back_as_the_same_timeouts() {
        let timeouts = AwsTimeouts {
            attempt: Duration::from_millis(1_500),
            operation: Duration::from_secs(90),
            s3_attempt: Duration::from_secs(61),
            s3_operation: Duration::from_secs(3_600),
        };
        let env: HashMap<&str, String> = timeouts.to_env().into_iter().collect();
        let names: Vec<&str> = env.keys().copied().collect();
        assert!(TIMEOUT_ENV.iter().all(|name| names.contains(name)));
        assert_eq!(
            AwsTimeouts::from_lookup(|name| env.get(name).cloned()).unwrap(),
            timeouts
        );
    }

    #[test]
    fn a_zero_or_unreadable_timeout_is_refused_by_name() {
        for bad in ["0s", "soon", "5"] {
            let Err(SettingsError::Invalid { name, .. }) =
                AwsTimeouts::from_lookup(|name| (name == var::OPERATION).then(|| bad.to_owned()))
            else {
                panic!("{bad} was accepted");
            };
            assert_eq!(name, var::OPERATION);
        }
    }

    #[test]
    fn every_client_gets_attempt_and_operation_timeouts_and_s3_longer_ones() {
        let timeouts = AwsTimeouts::default();
        for config in [timeouts.sdk(), timeouts.s3()] {
            assert_eq!(config.connect_timeout(), Some(CONNECT_TIMEOUT));
            assert!(config.operation_attempt_timeout() < config.operation_timeout());
        }
        assert!(
            timeouts.s3().operation_attempt_timeout() > timeouts.sdk().operation_attempt_timeout()
        );
    }

    #[test]
    fn a_long_poll_gets_its_wait_on_top_of_each_timeout() {
        let base = AwsTimeouts::default().sdk();
        let wait = Duration::from_secs(20);
        let polled = for_long_poll(&base, wait);
        assert_eq!(
            polled.operation_attempt_timeout(),
            Some(Duration::from_secs(25))
        );
        assert_eq!(polled.operation_timeout(), Some(Duration::from_secs(40)));
        assert_eq!(polled.connect_timeout(), Some(CONNECT_TIMEOUT));
    }
}
