//! When a worker that keeps its claim alive beside running work must stop renewing it: only
//! while the work shows progress within a bound derived from the upstream attempt timeout. A
//! renewal that ran whatever the work did would keep a hung worker's claim (and its message)
//! forever, and nobody could take the work over or end it.

use std::time::Duration;

/// What a worker does with the claim it holds on running work, decided after each sign of
/// life and whenever the stall limit comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Progress since the last renewal, and half a lease gone: extend the claim.
    Renew,
    /// Nothing to do yet.
    Wait,
    /// No progress for the stall limit: the work is hung. End it (fail it, or let it go for
    /// another worker) rather than renew a claim nothing moves under.
    GiveUp,
}

/// The longest a streamed upstream call may go without progress (its response head, then each
/// event): one attempt's timeout, the bound every unstreamed call has for its whole answer.
pub fn stall_limit(upstream_timeout: Duration) -> Duration {
    upstream_timeout
}

/// The decision for a claim whose work last progressed `since_progress` ago and whose lease was
/// last renewed `since_renewal` ago, under `upstream_timeout` (a lease covers one attempt, so it
/// is renewed every half of one). Only progress since the last renewal earns a renewal: bytes
/// that carry no event, or time alone, never do.
pub fn renewal(
    since_progress: Duration,
    since_renewal: Duration,
    upstream_timeout: Duration,
) -> Renewal {
    if since_progress >= stall_limit(upstream_timeout) {
        Renewal::GiveUp
    } else if since_renewal >= upstream_timeout / 2 && since_progress < since_renewal {
        Renewal::Renew
    } else {
        Renewal::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(300);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_claim_is_renewed_every_half_attempt_while_the_work_progresses() {
        assert_eq!(renewal(secs(1), secs(150), TIMEOUT), Renewal::Renew);
        assert_eq!(renewal(secs(149), secs(150), TIMEOUT), Renewal::Renew);
        assert_eq!(renewal(secs(1), secs(149), TIMEOUT), Renewal::Wait);
    }

    #[test]
    fn time_without_progress_since_the_last_renewal_earns_no_renewal() {
        assert_eq!(renewal(secs(150), secs(150), TIMEOUT), Renewal::Wait);
        assert_eq!(renewal(secs(200), secs(150), TIMEOUT), Renewal::Wait);
    }

    #[test]
    fn work_silent_for_one_attempt_timeout_is_given_up_however_recently_renewed() {
        assert_eq!(renewal(secs(300), secs(0), TIMEOUT), Renewal::GiveUp);
        assert_eq!(renewal(secs(300), secs(299), TIMEOUT), Renewal::GiveUp);
        assert_eq!(renewal(secs(299), secs(0), TIMEOUT), Renewal::Wait);
        assert_eq!(stall_limit(TIMEOUT), TIMEOUT);
    }

    #[test]
    fn a_renewal_loop_over_silent_work_ends_within_one_attempt_timeout() {
        // The loop a streamed response runs: asked every second, renewing when told to; the
        // work shows one sign of life at the start and none after.
        let (mut since_renewal, mut renewals) = (secs(0), 0);
        let mut ended_at = None;
        for now in 0..10_000u64 {
            match renewal(secs(now), since_renewal, TIMEOUT) {
                Renewal::Renew => {
                    renewals += 1;
                    since_renewal = secs(0);
                }
                Renewal::Wait => {}
                Renewal::GiveUp => {
                    ended_at = Some(now);
                    break;
                }
            }
            since_renewal += secs(1);
        }
        assert_eq!(ended_at, Some(300));
        assert_eq!(renewals, 0);
    }
}
