//! A rate limit that keeps a flood of registrations from one place from crowding out the
//! rest: a token bucket per source address. Pure bookkeeping behind a short lock; the
//! caller passes the time. (Health probes are paced with [`crate::pacer::Pacer`].)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources remembered at most; past it, the sources whose buckets are full again (they
/// have not registered for a second or more) are forgotten.
const MAX_SOURCES: usize = 4096;

/// A token bucket per source address: `rate` a second, in bursts of up to `rate`.
#[derive(Debug)]
pub struct PerSource {
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl PerSource {
    /// `rate` requests a second per source (at least one).
    pub fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `source` at `now`: `Ok` when there was one, or how long until
    /// there is.
    pub fn take(&self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&source) {
            let (rate, full) = (self.rate, self.rate);
            buckets.retain(|_, b| b.tokens + rate * now.duration_since(b.at).as_secs_f64() < full);
        }
        let full = self.rate;
        let bucket = buckets.entry(source).or_insert(Bucket {
            tokens: full,
            at: now,
        });
        let refilled = bucket.tokens + self.rate * now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = refilled.min(full);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_a_burst_then_the_rate() {
        let limit = PerSource::new(10);
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..10 {
            assert!(limit.take(a, t0).is_ok());
        }
        let wait = limit.take(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        assert!(
            limit.take(b, t0).is_ok(),
            "another source has its own bucket"
        );
        assert!(limit.take(a, t0 + Duration::from_millis(100)).is_ok());
        assert!(limit.take(a, t0 + Duration::from_millis(100)).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..10 {
            assert!(limit.take(a, later).is_ok());
        }
        assert!(limit.take(a, later).is_err());
    }

    #[test]
    fn sources_are_bounded() {
        let limit = PerSource::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 * 3) {
            let source = IpAddr::from(i.to_be_bytes());
            let _ = limit.take(source, t0 + Duration::from_secs(u64::from(i / 1000) * 2));
        }
        assert!(limit.buckets.lock().unwrap().len() <= MAX_SOURCES + 1);
    }
}
