//! One analyzer's own counters: plain atomics that its lanes update on every delivery and
//! `/metrics` renders (see `exposition`) while it is a member.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the delivery-duration buckets in seconds, from 100 µs (loopback) to
/// 10 s (a timeout): the same as every other `_seconds` histogram of the process.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// One member's counters.
#[derive(Debug, Default)]
pub struct MemberMetrics {
    /// Deliveries it acknowledged.
    pub deliveries_ok: AtomicU64,
    /// Deliveries that failed or timed out.
    pub deliveries_failed: AtomicU64,
    /// Packets it refused as bad when sent alone (400, 415, 422).
    pub packets_rejected: AtomicU64,
    /// Times it was ejected after a failed delivery.
    pub ejections: AtomicU64,
    /// Packets routed away from it to another analyzer: those of its failed deliveries (but
    /// for the messages it acknowledged), and those queued for it when it turned unhealthy.
    pub packets_rerouted: AtomicU64,
    /// Deliveries sent to it again in parts: the halves of a batch it refused for its
    /// content, the parts of one over its body limit.
    pub deliveries_retried: AtomicU64,
    /// How long its acknowledged deliveries took.
    pub duration: Histogram,
    /// Its last health probe, for the dashboard.
    pub last_probe: LastProbe,
}

/// When a member was last probed and whether it answered well: Unix milliseconds shifted
/// left by one, the outcome in the low bit; 0 before the first probe.
#[derive(Debug, Default)]
pub struct LastProbe(AtomicU64);

impl LastProbe {
    /// Records a probe that ended now.
    pub fn record(&self, ok: bool) {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.0.store((ms << 1) | u64::from(ok), Ordering::Relaxed);
    }

    /// The last probe's outcome and when it ended, if there was one.
    pub fn get(&self) -> Option<(bool, std::time::SystemTime)> {
        let bits = self.0.load(Ordering::Relaxed);
        (bits != 0).then(|| {
            (
                bits & 1 == 1,
                std::time::UNIX_EPOCH + Duration::from_millis(bits >> 1),
            )
        })
    }
}

/// A fixed-bucket histogram of durations, updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at most each bound (not cumulative; summed when rendered).
    pub buckets: [AtomicU64; BUCKETS.len()],
    /// Observations above the last bound.
    pub over: AtomicU64,
    /// The sum of all observations, in nanoseconds.
    pub sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        match BUCKETS.iter().position(|&bound| secs <= bound) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_when_rendered() {
        let h = Histogram::default();
        h.record(Duration::from_micros(50));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(60));
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(
            h.buckets[5].load(Ordering::Relaxed),
            1,
            "3 ms is under 5 ms"
        );
        assert_eq!(h.over.load(Ordering::Relaxed), 1);
    }
}
