//! Pacing: events spaced evenly over all the tasks that claim them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// Spaces events `1 / rate` apart over all callers, without a lock: the load generator's
/// requests over all agents, the distributor's health probes over all analyzers. A slot
/// missed because nobody claimed it is not made up later (like
/// `MissedTickBehavior::Delay`), so nothing receives a catch-up burst.
#[derive(Debug)]
pub struct Pacer {
    start: Instant,
    period_ns: u64,
    /// Nanoseconds after `start` of the next free slot.
    next_ns: AtomicU64,
}

impl Pacer {
    /// `rate_per_s` events a second.
    pub fn new(rate_per_s: f64) -> Self {
        let period_ns = (1e9 / rate_per_s).clamp(1.0, u64::MAX as f64) as u64;
        Self {
            start: Instant::now(),
            period_ns,
            next_ns: AtomicU64::new(0),
        }
    }

    /// Claims the next slot and returns when it is due.
    pub fn claim(&self) -> Instant {
        self.claim_at(Instant::now())
    }

    /// [`claim`](Self::claim) at a given time; the clock is a parameter so tests are exact.
    fn claim_at(&self, now: Instant) -> Instant {
        let since_start = now.saturating_duration_since(self.start);
        let now_ns = u64::try_from(since_start.as_nanos()).unwrap_or(u64::MAX);
        let update = |next: u64| Some(next.max(now_ns).saturating_add(self.period_ns));
        // The closure always returns Some, so both arms carry the previous value.
        let previous = match self.next_ns.fetch_update(Relaxed, Relaxed, update) {
            Ok(previous) | Err(previous) => previous,
        };
        self.start + Duration::from_nanos(previous.max(now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spaces_slots_and_skips_missed_ones() {
        let pacer = Pacer::new(10.0);
        let start = pacer.start;
        let slots: Vec<Duration> = (0..3).map(|_| pacer.claim_at(start) - start).collect();
        assert_eq!(slots, [0, 100, 200].map(Duration::from_millis));
        // Idle for a second: the next slot is now, not a burst of the missed ones.
        let later = start + Duration::from_secs(1);
        assert_eq!(pacer.claim_at(later), later);
        assert_eq!(pacer.claim_at(later) - later, Duration::from_millis(100));
    }
}
