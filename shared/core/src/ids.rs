//! Identifiers: time-sortable (ULID layout, lowercase Crockford base32) behind a type prefix, so
//! that newest-first listing and `after` cursors are plain key order in every store.

use std::fmt;
use std::sync::Mutex;

use rand::Rng;

use crate::clock::Timestamp;
use crate::jobs::JobKind;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BODY_LEN: usize = 26;

/// Makes ULID bodies that strictly increase within a process, even within one millisecond.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: Mutex<(i64, u128)>,
}

impl IdGenerator {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_body(&self, now: Timestamp) -> String {
        let random: u128 = rand::rng().random::<u128>() & ((1u128 << 80) - 1);
        let (ms, rnd) = match self.last.lock() {
            Ok(mut last) => {
                let next = if now.0 <= last.0 {
                    // Same (or earlier) millisecond: keep the last time and bump the random part.
                    (last.0, last.1.wrapping_add(1) & ((1u128 << 80) - 1))
                } else {
                    (now.0, random)
                };
                *last = next;
                next
            }
            Err(_) => (now.0, random),
        };
        encode(ms, rnd)
    }

    pub fn job_id(&self, now: Timestamp) -> JobId {
        JobId(format!("{}{}", JobId::ASYNC_PREFIX, self.next_body(now)))
    }

    /// A background response's id: Prism's own, never the provider's.
    pub fn response_id(&self, now: Timestamp) -> JobId {
        JobId(format!("{}{}", JobId::RESPONSE_PREFIX, self.next_body(now)))
    }

    pub fn scheduled_job_id(&self, now: Timestamp) -> JobId {
        JobId(format!(
            "{}{}",
            JobId::SCHEDULED_PREFIX,
            self.next_body(now)
        ))
    }

    pub fn file_id(&self, now: Timestamp) -> FileId {
        FileId(format!("{}{}", FileId::PREFIX, self.next_body(now)))
    }

    pub fn batch_id(&self, now: Timestamp) -> BatchId {
        BatchId(format!("{}{}", BatchId::PREFIX, self.next_body(now)))
    }

    /// The id of one batch output line (`batch_req_…`).
    pub fn batch_request_id(&self, now: Timestamp) -> String {
        format!("batch_req_{}", self.next_body(now))
    }

    /// A time-sortable id of a kind without its own type (webhook endpoints, events, attempts).
    pub fn prefixed(&self, prefix: &str, now: Timestamp) -> String {
        format!("{prefix}{}", self.next_body(now))
    }

    pub fn upload_id(&self, now: Timestamp) -> UploadId {
        UploadId(format!("{}{}", UploadId::PREFIX, self.next_body(now)))
    }

    pub fn part_id(&self, now: Timestamp) -> PartId {
        PartId(format!("{}{}", PartId::PREFIX, self.next_body(now)))
    }

    pub fn key_id(&self, now: Timestamp) -> KeyId {
        KeyId(format!("{}{}", KeyId::PREFIX, self.next_body(now)))
    }
}

/// The id of the run a recurring schedule makes for one fire time: an async job id whose time
/// part is the fire time and whose random part is taken from the schedule's id, so the same
/// firing delivered twice names the same job (and runs sort by fire time).
pub fn run_job_id(schedule: &JobId, fire_at: Timestamp) -> JobId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(schedule.as_str().as_bytes());
    let random = digest
        .iter()
        .take(10)
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    JobId(format!(
        "{}{}",
        JobId::ASYNC_PREFIX,
        encode(fire_at.0, random)
    ))
}

/// A fresh fencing token for a lease (a job run, a chunk claim, a finalize claim): 128 random
/// bits, so no two claims ever share one.
pub fn new_lease_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

/// An id for one HTTP request, returned as `x-request-id` and put on its log lines.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    format!("req_{}", hex::encode(bytes))
}

fn encode(ms: i64, random: u128) -> String {
    let value: u128 = ((u128::from(ms.max(0) as u64) & ((1u128 << 48) - 1)) << 80) | random;
    let mut out = [0u8; BODY_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (BODY_LEN - 1 - i);
        *slot = ALPHABET[((value >> shift) & 31) as usize];
    }
    out.iter().map(|&b| char::from(b)).collect()
}

fn is_body(s: &str) -> bool {
    s.len() == BODY_LEN && s.bytes().all(|b| ALPHABET.contains(&b))
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// Accepts only ids of this kind's shape, so a malformed id is a 404 before any IO.
            pub fn parse(s: &str) -> Option<Self> {
                s.strip_prefix(Self::PREFIX)
                    .filter(|body| is_body(body))
                    .map(|_| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not an id of this kind"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(KeyId, "key_");
prefixed_id!(FileId, "file-");
prefixed_id!(BatchId, "batch_");
prefixed_id!(UploadId, "upload_");
prefixed_id!(PartId, "part_");

/// A job's id. The prefix names the kind (`job_` async, `sched_` scheduled), so the id alone
/// routes a message and a kind's jobs are one key range in every store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(String);

impl JobId {
    pub const ASYNC_PREFIX: &'static str = "job_";
    pub const SCHEDULED_PREFIX: &'static str = "sched_";
    pub const RESPONSE_PREFIX: &'static str = "resp_";

    pub fn prefix(kind: JobKind) -> &'static str {
        match kind {
            JobKind::Async => Self::ASYNC_PREFIX,
            JobKind::Scheduled => Self::SCHEDULED_PREFIX,
            JobKind::Response => Self::RESPONSE_PREFIX,
        }
    }

    /// Accepts an id of either kind; a malformed id is a 404 before any IO.
    pub fn parse(s: &str) -> Option<Self> {
        [JobKind::Async, JobKind::Scheduled, JobKind::Response]
            .into_iter()
            .find_map(|kind| Self::parse_kind(s, kind))
    }

    /// Accepts only ids of `kind`, so `/v1/async/sched_…` is a 404 like any unknown id.
    pub fn parse_kind(s: &str, kind: JobKind) -> Option<Self> {
        s.strip_prefix(Self::prefix(kind))
            .filter(|body| is_body(body))
            .map(|_| Self(s.to_owned()))
    }

    pub fn kind(&self) -> JobKind {
        if self.0.starts_with(Self::SCHEDULED_PREFIX) {
            JobKind::Scheduled
        } else if self.0.starts_with(Self::RESPONSE_PREFIX) {
            JobKind::Response
        } else {
            JobKind::Async
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant is named by an operator (`prism keys create --tenant NAME`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// Tenant names are short, printable and free of separators used in storage keys.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation_time_and_strictly_increase_within_a_millisecond() {
        let ids = IdGenerator::new();
        let a = ids.job_id(Timestamp(1_000));
        let b = ids.job_id(Timestamp(1_000));
        let c = ids.job_id(Timestamp(2_000));
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn parse_accepts_generated_ids_and_rejects_other_shapes() {
        let id = IdGenerator::new().job_id(Timestamp(1_700_000_000_000));
        assert_eq!(JobId::parse(id.as_str()), Some(id.clone()));
        assert!(JobId::parse("job_123").is_none());
        assert!(JobId::parse(&id.as_str().replace("job_", "key_")).is_none());
        assert!(KeyId::parse(id.as_str()).is_none());
    }

    #[test]
    fn job_ids_name_their_kind() {
        let ids = IdGenerator::new();
        let scheduled = ids.scheduled_job_id(Timestamp(1_700_000_000_000));
        assert!(scheduled.as_str().starts_with("sched_"));
        assert_eq!(
            JobId::parse(scheduled.as_str()).map(|id| id.kind()),
            Some(JobKind::Scheduled)
        );
        assert!(JobId::parse_kind(scheduled.as_str(), JobKind::Async).is_none());
        let async_id = ids.job_id(Timestamp(1_700_000_000_000));
        assert_eq!(async_id.kind(), JobKind::Async);
    }

    #[test]
    fn tenant_names_reject_separators_and_empty_strings() {
        assert!(TenantId::parse("acme-prod_1").is_some());
        assert!(TenantId::parse("").is_none());
        assert!(TenantId::parse("a#b").is_none());
    }
}
