//! Packets already answered 202 (`--ack accepted`) that no analyzer could take when they
//! were routed again: they have nobody to tell, so they wait here and are offered to
//! routing every [`RETRY_EVERY`] for [`RETRY_FOR`], then counted as dropped. One task
//! ([`super::Routing::retry_parked`]) retries them all, the queue is bounded (a packet that finds it full is dropped at
//! once, and said so), and at shutdown what is still here is dropped and counted.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::distributor::job::Job;

/// How long a parked packet is retried.
pub const RETRY_FOR: Duration = Duration::from_secs(30);
/// How often the parked packets are offered to routing.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);

/// The parked packets, each with when it gives up.
#[derive(Debug)]
pub struct Parked {
    jobs: Mutex<VecDeque<(Instant, Job)>>,
    limit: usize,
}

impl Parked {
    /// Room for `limit` packets.
    pub fn new(limit: usize) -> Self {
        Self {
            jobs: Mutex::new(VecDeque::new()),
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Job)>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks a packet, or gives it back when the queue is full.
    pub fn park(&self, job: Job) -> Result<(), Job> {
        let mut jobs = self.lock();
        if jobs.len() >= self.limit {
            return Err(job);
        }
        jobs.push_back((Instant::now() + RETRY_FOR, job));
        Ok(())
    }

    /// Packets parked now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Takes every parked packet out, each with when it gives up.
    pub fn take_all(&self) -> Vec<(Instant, Job)> {
        self.lock().drain(..).collect()
    }

    /// Puts back a packet taken out that is still to be retried, keeping its deadline.
    pub fn put_back(&self, until: Instant, job: Job) {
        self.lock().push_back((until, job));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn job() -> Job {
        Job::of(Bytes::from_static(b"{}\n"))
    }

    #[test]
    fn the_queue_is_bounded() {
        let parked = Parked::new(2);
        assert!(parked.park(job()).is_ok());
        assert!(parked.park(job()).is_ok());
        assert!(parked.park(job()).is_err(), "full: given back");
        assert_eq!(parked.len(), 2);
    }
}
