//! When and how long an agent waits before resending a packet (`--retries`): which
//! failures are worth a resend, the `Retry-After` a distributor may ask for, and the
//! exponential backoff with jitter used otherwise. Pure functions; the RNG is a
//! parameter so tests are exact.

use std::time::Duration;

use rand::Rng;

use super::outcome::FailureKind;

/// First backoff, before jitter.
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(100);
/// Largest backoff, before jitter.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Longest `Retry-After` honoured: a distributor asking for more still gets a resend
/// after this long, so a run's drain is not spent waiting.
pub(crate) const RETRY_AFTER_CAP: Duration = Duration::from_secs(5);

impl FailureKind {
    /// Whether resending the same packet may succeed: the distributor was busy or
    /// unreachable (503, 429, 502, 504, 408, connect, timeout, a broken connection).
    /// Any other status is an answer about the packet itself and final, as is a
    /// request abandoned at the end of the run.
    pub fn is_retryable(self) -> bool {
        match self {
            Self::Status(code) => matches!(code, 408 | 429 | 502 | 503 | 504),
            Self::Timeout | Self::Connect | Self::Other => true,
            // Resending would deliver the records that were taken again.
            Self::Partial(_) | Self::Aborted => false,
        }
    }
}

/// Reads `Retry-After` in its delay-seconds form, capped at [`RETRY_AFTER_CAP`]. The
/// HTTP-date form and anything unreadable give `None` (then the backoff applies).
pub(crate) fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let seconds: u64 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(RETRY_AFTER_CAP))
}

/// The backoff before resend number `retry` (from 1): [`BACKOFF_START`] doubled per
/// resend up to [`BACKOFF_CAP`], plus a random jitter of up to half of that, so agents
/// turned away together do not come back together.
pub(crate) fn backoff(retry: u32, rng: &mut impl Rng) -> Duration {
    let doublings = retry.saturating_sub(1).min(16);
    let base = BACKOFF_START
        .saturating_mul(1 << doublings)
        .min(BACKOFF_CAP);
    let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    base + Duration::from_millis(rng.random_range(0..=base_ms / 2))
}

/// How long to wait before resend number `retry`: the answer's `Retry-After` if it had
/// one, else [`backoff`].
pub(crate) fn delay(retry_after: Option<Duration>, retry: u32, rng: &mut impl Rng) -> Duration {
    match retry_after {
        Some(wait) => wait.min(RETRY_AFTER_CAP),
        None => backoff(retry, rng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn busy_and_unreachable_are_retried_other_answers_are_final() {
        for code in [408, 429, 502, 503, 504] {
            assert!(FailureKind::Status(code).is_retryable(), "{code}");
        }
        for code in [
            100, 201, 301, 400, 401, 403, 404, 409, 413, 415, 422, 500, 501,
        ] {
            assert!(!FailureKind::Status(code).is_retryable(), "{code}");
        }
        for kind in [
            FailureKind::Timeout,
            FailureKind::Connect,
            FailureKind::Other,
        ] {
            assert!(kind.is_retryable(), "{kind:?}");
        }
        assert!(!FailureKind::Aborted.is_retryable());
    }

    #[test]
    fn retry_after_is_whole_seconds_capped() {
        let parse = |s: &'static str| parse_retry_after(s.as_bytes());
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse("5"), Some(RETRY_AFTER_CAP));
        assert_eq!(parse("120"), Some(RETRY_AFTER_CAP));
        assert_eq!(parse("99999999999999999999"), None);
        for unreadable in ["", "-1", "1.5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse(unreadable), None, "{unreadable:?}");
        }
        assert_eq!(parse_retry_after(b"\xff1"), None);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let mut rng = SmallRng::seed_from_u64(7);
        let expected_base = [100, 200, 400, 800, 1600, 2000, 2000];
        for (i, base_ms) in expected_base.into_iter().enumerate() {
            let retry = i as u32 + 1;
            let base = Duration::from_millis(base_ms);
            for _ in 0..200 {
                let wait = backoff(retry, &mut rng);
                assert!(
                    wait >= base && wait <= base + base / 2,
                    "retry {retry}: {wait:?}"
                );
            }
        }
        for retry in [0, 40, u32::MAX] {
            let wait = backoff(retry, &mut rng);
            assert!(wait <= BACKOFF_CAP + BACKOFF_CAP / 2, "{retry}: {wait:?}");
        }
        let waits: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff(3, &mut rng)).collect();
        assert!(waits.len() > 5, "jitter spreads the waits: {waits:?}");
    }

    #[test]
    fn retry_after_takes_precedence_over_backoff() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(delay(Some(Duration::ZERO), 4, &mut rng), Duration::ZERO);
        assert_eq!(
            delay(Some(Duration::from_secs(60)), 1, &mut rng),
            RETRY_AFTER_CAP
        );
        let wait = delay(None, 1, &mut rng);
        assert!(wait >= BACKOFF_START && wait <= BACKOFF_START * 3 / 2);
    }
}
