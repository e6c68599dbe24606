//! Live counters of a load-generation run, shared by the agents and whoever watches them
//! (the progress bar, or the `demo` subcommand's own table).
//!
//! Plain relaxed atomics: each value is read on its own, so a snapshot taken mid-run may
//! be off by the requests in flight, which is fine for display. The final report is taken
//! after every agent has stopped, when the counters are exact.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Running totals, updated by the agents as requests are sent and answered.
///
/// Create one with `Arc::new(Counters::default())`, hand a clone to
/// [`run_with_counters`](super::run_with_counters) and read it with
/// [`Counters::snapshot`] as often as you like; it costs a few atomic loads.
#[derive(Debug, Default)]
pub struct Counters {
    packets_sent: AtomicU64,
    messages_sent: AtomicU64,
    packets_acked: AtomicU64,
    messages_acked: AtomicU64,
    packets_failed: AtomicU64,
    messages_failed: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Requests started (a request to `/message/send` counts as a packet of one).
    pub packets_sent: u64,
    /// Messages in the requests started.
    pub messages_sent: u64,
    /// Requests answered 200 or 202.
    pub packets_acked: u64,
    /// Messages in the acknowledged requests.
    pub messages_acked: u64,
    /// Requests that got another status, timed out, or could not connect.
    pub packets_failed: u64,
    /// Messages in the failed requests.
    pub messages_failed: u64,
}

impl Counters {
    /// Reads every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            packets_sent: self.packets_sent.load(Relaxed),
            messages_sent: self.messages_sent.load(Relaxed),
            packets_acked: self.packets_acked.load(Relaxed),
            messages_acked: self.messages_acked.load(Relaxed),
            packets_failed: self.packets_failed.load(Relaxed),
            messages_failed: self.messages_failed.load(Relaxed),
        }
    }

    /// A packet of `messages` messages is about to be sent.
    pub(crate) fn sent(&self, messages: u64) {
        self.packets_sent.fetch_add(1, Relaxed);
        self.messages_sent.fetch_add(messages, Relaxed);
    }

    /// The distributor acknowledged a packet of `messages` messages.
    pub(crate) fn acked(&self, messages: u64) {
        self.packets_acked.fetch_add(1, Relaxed);
        self.messages_acked.fetch_add(messages, Relaxed);
    }

    /// A packet of `messages` messages failed.
    pub(crate) fn failed(&self, messages: u64) {
        self.packets_failed.fetch_add(1, Relaxed);
        self.messages_failed.fetch_add(messages, Relaxed);
    }
}

impl CounterSnapshot {
    /// Requests sent but not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.packets_sent
            .saturating_sub(self.packets_acked + self.packets_failed)
    }

    /// The change since `earlier`, so counters shared across runs still report one run.
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            packets_sent: self.packets_sent.saturating_sub(earlier.packets_sent),
            messages_sent: self.messages_sent.saturating_sub(earlier.messages_sent),
            packets_acked: self.packets_acked.saturating_sub(earlier.packets_acked),
            messages_acked: self.messages_acked.saturating_sub(earlier.messages_acked),
            packets_failed: self.packets_failed.saturating_sub(earlier.packets_failed),
            messages_failed: self.messages_failed.saturating_sub(earlier.messages_failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_differences() {
        let counters = Counters::default();
        let start = counters.snapshot();
        counters.sent(10);
        counters.sent(5);
        counters.sent(1);
        counters.acked(10);
        counters.failed(5);
        let now = counters.snapshot().since(&start);
        assert_eq!(now.packets_sent, 3);
        assert_eq!(now.messages_sent, 16);
        assert_eq!(now.messages_acked, 10);
        assert_eq!(now.messages_failed, 5);
        assert_eq!(now.in_flight(), 1);
    }
}
