//! One registered analyzer as the distributor sees it: its address, its state, its lane's
//! queue, and its counters. Shared between the registry, its lane and its health watcher.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::address::AnalyzerUrl;
use super::protocol::Kind;
use super::tally::MemberMetrics;
use crate::distributor::job::Job;

/// Weight of a new delivery in the measured rate (an exponential moving average).
const RATE_SMOOTHING: f64 = 0.2;
/// A queue may always hold this much, however slow its analyzer measured.
const MIN_QUEUE_BYTES: usize = 64 * 1024;

/// Where an analyzer stands. Only the registry changes it, under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Routed to.
    Online = 0,
    /// Failed a delivery or its probes: not routed to, probed until it recovers.
    Unhealthy = 1,
    /// Deregistered: not routed to; its queue is being delivered before it is removed.
    Draining = 2,
}

impl State {
    /// The name used in stats and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Unhealthy => "unhealthy",
            Self::Draining => "draining",
        }
    }
}

/// The bounds of one member's queues and deliveries.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Lanes, one per worker.
    pub lanes: usize,
    /// Packets queued at most, over all lanes (`--queue-packets`).
    pub packets: usize,
    /// Deliveries in flight at once, over all lanes (`--lane-concurrency`).
    pub concurrency: usize,
}

/// A registered analyzer.
#[derive(Debug)]
pub struct Member {
    /// Its id.
    pub id: Arc<str>,
    /// Where it listens.
    pub url: AnalyzerUrl,
    /// Given with `--analyzer` at start: stays until deregistered, whatever the cluster's
    /// shared membership says.
    pub pinned: bool,
    /// A [`State`] as `u8`: the lane reads it without the registry lock.
    state: AtomicU8,
    /// The [`Kind`] of protocol its deliveries and probes use, as `u8`.
    protocol: AtomicU8,
    /// Whether its protocol was given (at registration or with `--analyzer`); when not,
    /// detection may change it (see `health`).
    protocol_given: std::sync::atomic::AtomicBool,
    /// Its lanes' queues, one per worker: a packet is queued on the worker that read it.
    queues: Vec<mpsc::UnboundedSender<Job>>,
    /// Packets in its queues, not yet in a delivery: bounded by `capacity`.
    queued: AtomicUsize,
    /// Most packets its queues hold together.
    capacity: usize,
    /// Deliveries in flight to it at once, over all its lanes (`--lane-concurrency`).
    pub in_flight: Arc<Semaphore>,
    /// Its lanes still running; the last to end cancels `drained`.
    lanes_running: AtomicUsize,
    /// Bytes of packets queued or in delivery to it.
    pub queued_bytes: AtomicUsize,
    /// Its measured delivery rate in bytes per second (an `f64`'s bits; 0 until measured).
    drain_rate: AtomicU64,
    /// Messages it acknowledged since the distributor started.
    pub messages_total: AtomicU64,
    /// Packets it acknowledged since the distributor started.
    pub packets_total: AtomicU64,
    /// Cancelled when it leaves: its lane drains and ends, its health watcher ends.
    pub retire: CancellationToken,
    /// Cancelled by its last lane once every queue is empty and nothing is in flight.
    pub drained: CancellationToken,
    /// Cancelled by its health watcher once its first probe has answered (or failed), so
    /// that a registration can answer with the state that probe decided.
    pub probed: CancellationToken,
    /// Whether it has ever been online: a member that has not starts unhealthy and goes
    /// online at its first good probe (so that an address nothing answers at never gets
    /// traffic); one that has needs `--healthy-after` good probes to come back.
    pub joined: std::sync::atomic::AtomicBool,
    /// The largest delivery body it takes, in bytes, learned from its 413s
    /// (`usize::MAX` until it has refused one).
    accepts_at_most: AtomicUsize,
    /// Its outlier state: ejections and when the current one ends.
    ejection: Ejection,
    /// Its metrics: its own counters, rendered under its id by `/metrics` while it is a
    /// member, and gone with it.
    pub metrics: MemberMetrics,
}

/// Outlier detection from deliveries, as Envoy's: a failed delivery ejects the member for
/// a time that doubles with each ejection in a row (from `--eject-base` up to
/// `--eject-max`). Probes keep running meanwhile, but a good probe does not end an
/// ejection early. The count starts again once the member has delivered without a failure
/// for `--eject-max` after its last ejection ended.
///
/// Times are on tokio's clock, which is the monotonic clock unless a test pauses it.
#[derive(Debug)]
struct Ejection {
    /// Ejections in a row.
    count: AtomicU32,
    /// When the current (or last) ejection ends, in milliseconds of [`Ejection::now_ms`].
    until_ms: AtomicU64,
    /// When the member was created: the times above count from it. Its own, not the
    /// process's, so that a test on paused time measures on its own clock alone.
    epoch: Instant,
}

impl Ejection {
    fn new() -> Self {
        Self {
            count: AtomicU32::new(0),
            until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the member was created: a time an atomic can hold.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

impl Member {
    /// A new online member and the receiving ends of its `lanes` queues, which hold
    /// `capacity` packets together; `concurrency` deliveries to it may be in flight.
    pub fn new(
        id: Arc<str>,
        url: AnalyzerUrl,
        pinned: bool,
        queue: QueueLimits,
    ) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Job>>) {
        let (queues, receivers) = (0..queue.lanes.max(1))
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let member = Self {
            metrics: MemberMetrics::default(),
            id,
            url,
            pinned,
            state: AtomicU8::new(State::Unhealthy as u8),
            protocol: AtomicU8::new(Kind::default() as u8),
            protocol_given: std::sync::atomic::AtomicBool::new(false),
            queues,
            queued: AtomicUsize::new(0),
            capacity: queue.packets.max(1),
            in_flight: Arc::new(Semaphore::new(queue.concurrency.max(1))),
            lanes_running: AtomicUsize::new(queue.lanes.max(1)),
            queued_bytes: AtomicUsize::new(0),
            drain_rate: AtomicU64::new(0),
            messages_total: AtomicU64::new(0),
            packets_total: AtomicU64::new(0),
            retire: CancellationToken::new(),
            drained: CancellationToken::new(),
            probed: CancellationToken::new(),
            joined: std::sync::atomic::AtomicBool::new(false),
            accepts_at_most: AtomicUsize::new(usize::MAX),
            ejection: Ejection::new(),
        };
        (Arc::new(member), receivers)
    }

    /// Queues a job on lane `lane`, or gives it back when the queues hold `capacity`
    /// packets already or the lane has ended. The caller (the registry, under its lock)
    /// checks the bytes.
    pub fn enqueue(&self, lane: usize, job: Job) -> Result<(), Job> {
        if self.queue_full() {
            return Err(job);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.queues[lane % self.queues.len()]
            .send(job)
            .map_err(|e| {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                e.0
            })
    }

    /// Called by a lane when it takes `packets` out of its queue into a delivery.
    pub fn dequeued(&self, packets: usize) {
        self.queued.fetch_sub(packets, Ordering::Relaxed);
    }

    /// Called by each lane as it ends; the last one marks the member drained.
    pub fn lane_ended(&self) {
        if self.lanes_running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.cancel();
        }
    }

    /// Its current state.
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            0 => State::Online,
            1 => State::Unhealthy,
            _ => State::Draining,
        }
    }

    /// Sets the state; called by the registry under its lock.
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// The protocol it speaks.
    pub fn protocol(&self) -> Kind {
        Kind::from_u8(self.protocol.load(Ordering::Acquire))
    }

    /// Whether its protocol was given rather than assumed.
    pub fn protocol_given(&self) -> bool {
        self.protocol_given.load(Ordering::Acquire)
    }

    /// Sets its protocol: `given` at registration, or detected. Returns whether that
    /// changed anything.
    pub fn set_protocol(&self, kind: Kind, given: bool) -> bool {
        let before = self.protocol.swap(kind as u8, Ordering::AcqRel);
        let was_given = self.protocol_given.swap(given, Ordering::AcqRel);
        before != kind as u8 || was_given != given
    }

    /// Folds one delivery into the measured rate: `bytes` acknowledged after `elapsed`,
    /// with `in_flight` deliveries sharing the analyzer.
    pub fn record_delivery(&self, bytes: usize, elapsed: Duration, in_flight: usize) {
        let sample = bytes as f64 * in_flight.max(1) as f64 / elapsed.as_secs_f64().max(1e-6);
        let old = f64::from_bits(self.drain_rate.load(Ordering::Relaxed));
        let rate = if old == 0.0 {
            sample
        } else {
            old + RATE_SMOOTHING * (sample - old)
        };
        self.drain_rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Bytes its queue may hold: `max_bytes`, and no more than it delivers in `wait` at
    /// its measured rate (but always a batch's worth, so a slow analyzer still gets work).
    pub fn queue_limit(&self, max_bytes: usize, wait: Duration) -> usize {
        let rate = f64::from_bits(self.drain_rate.load(Ordering::Relaxed));
        if rate == 0.0 {
            return max_bytes;
        }
        let by_time = (rate * wait.as_secs_f64()) as usize;
        by_time.clamp(MIN_QUEUE_BYTES.min(max_bytes), max_bytes)
    }

    /// Whether its queues hold all the packets they may (`--queue-packets`).
    pub fn queue_full(&self) -> bool {
        self.queued.load(Ordering::Relaxed) >= self.capacity
    }

    /// Packets waiting in its queues.
    pub fn queued_packets(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The largest delivery it is known to take, in bytes.
    pub fn accepts_at_most(&self) -> usize {
        self.accepts_at_most.load(Ordering::Relaxed)
    }

    /// Learns from a 413 that it refuses a delivery of `bytes`; returns the new bound.
    pub fn refused_size(&self, bytes: usize) -> usize {
        let bound = bytes.saturating_sub(1);
        self.accepts_at_most.fetch_min(bound, Ordering::Relaxed);
        self.accepts_at_most()
    }

    /// Ejects it after a failed delivery: returns for how long (`base` doubled for each
    /// ejection in a row, at most `max`). A failure while it is ejected already (another
    /// delivery of the same stall, in flight at once) does not eject it again.
    pub fn eject(&self, base: Duration, max: Duration) -> Duration {
        let now = self.ejection.now_ms();
        let until = self.ejection.until_ms.load(Ordering::Acquire);
        if until > now {
            return Duration::from_millis(until - now);
        }
        let count = self.ejection.count.load(Ordering::Relaxed);
        let time = base
            .saturating_mul(1u32 << count.min(20))
            .min(max.max(base));
        let end = now + time.as_millis() as u64;
        // One ejection per stall, whichever lane sees its failure first.
        match self.ejection.until_ms.compare_exchange(
            until,
            end,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                self.ejection.count.fetch_add(1, Ordering::Relaxed);
                self.metrics.ejections.fetch_add(1, Ordering::Relaxed);
                time
            }
            Err(other) => Duration::from_millis(other.saturating_sub(now)),
        }
    }

    /// How long its current ejection still runs (zero when it is not ejected).
    pub fn ejected_for(&self) -> Duration {
        let until = self.ejection.until_ms.load(Ordering::Relaxed);
        Duration::from_millis(until.saturating_sub(self.ejection.now_ms()))
    }

    /// A delivery succeeded: once it has gone `max` since its last ejection ended, the
    /// next ejection is short again.
    pub fn delivered_well(&self, max: Duration) {
        if self.ejection.count.load(Ordering::Relaxed) > 0 {
            let until = self.ejection.until_ms.load(Ordering::Relaxed);
            if self.ejection.now_ms() >= until + max.as_millis() as u64 {
                self.ejection.count.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> Arc<Member> {
        let limits = QueueLimits {
            lanes: 1,
            packets: 1,
            concurrency: 1,
        };
        let url = "http://127.0.0.1:9".parse().unwrap();
        Member::new(Arc::from("a"), url, false, limits).0
    }

    fn ejections(m: &Member) -> u64 {
        m.metrics.ejections.load(Ordering::Relaxed)
    }

    /// Each stall ejects once, for `--eject-base` doubled per ejection in a row up to
    /// `--eject-max`; the failures of its other deliveries in flight meanwhile get the
    /// time it still runs, and eject it no longer.
    #[tokio::test(start_paused = true)]
    async fn ejections_double_from_the_base_to_the_longest_one_per_stall() {
        let m = member();
        let (base, max) = (Duration::from_secs(2), Duration::from_secs(10));
        let ms = Duration::from_millis;
        let mut ejected = Vec::new();
        for _ in 0..5 {
            let time = m.eject(base, max);
            ejected.push(time);
            assert_eq!(m.ejected_for(), time);
            // Another delivery of the same stall fails halfway through the ejection.
            tokio::time::advance(time / 2).await;
            assert_eq!(m.eject(base, max), time - time / 2, "the same ejection");
            assert_eq!(m.ejected_for(), time - time / 2);
            // A millisecond before its end it is still ejected; at its end it is not.
            tokio::time::advance(time - time / 2 - ms(1)).await;
            assert_eq!(m.ejected_for(), ms(1));
            tokio::time::advance(ms(1)).await;
            assert!(m.ejected_for().is_zero());
        }
        assert_eq!(ejected, [2, 4, 8, 10, 10].map(Duration::from_secs));
        assert_eq!(ejections(&m), 5, "one per stall");
    }

    /// The count of ejections in a row starts again only once the member has delivered
    /// well for `--eject-max` after its last ejection ended.
    #[tokio::test(start_paused = true)]
    async fn good_deliveries_for_the_longest_ejection_make_the_next_short_again() {
        let m = member();
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(8));
        let ms = Duration::from_millis;
        assert_eq!(m.eject(base, max), base);
        // Its ejection ends at 1s: good deliveries until 8s later are not enough.
        tokio::time::advance(base + max - ms(1)).await;
        m.delivered_well(max);
        assert_eq!(m.eject(base, max), base * 2, "a second ejection in a row");
        tokio::time::advance(base * 2 + max - ms(1)).await;
        m.delivered_well(max);
        tokio::time::advance(ms(1)).await;
        m.delivered_well(max);
        assert_eq!(m.eject(base, max), base, "counted afresh");
        assert_eq!(ejections(&m), 3);
    }

    #[test]
    fn ejections_stop_at_the_longest() {
        let m = member();
        m.ejection.count.store(30, Ordering::Relaxed);
        let (base, max) = (Duration::from_millis(1), Duration::from_millis(50));
        assert_eq!(m.eject(base, max), max);
    }

    #[test]
    fn a_learned_limit_only_falls() {
        let m = member();
        assert_eq!(m.accepts_at_most(), usize::MAX);
        assert_eq!(m.refused_size(100_000), 99_999);
        assert_eq!(m.refused_size(200_000), 99_999);
        assert_eq!(m.refused_size(70_000), 69_999);
    }
}
