//! A lane per analyzer and worker: its queue is drained into batched deliveries, each
//! sent by the analyzer's protocol (see [`super::protocol`]). Each delivery's outcome flows back to
//! every agent waiting on a packet in it, on the same thread. The lanes of one analyzer
//! share its queue bound (`--queue-packets`, in the member) and its deliveries in flight
//! (`--lane-concurrency`).
//!
//! Full-queue policy: the queue never blocks and never drops. When it is full, `dispatch`
//! refuses the packet and the agent gets 503 with Retry-After (see the registry).
//!
//! Failure policy, by what the analyzer answered (see [`refuses_content`]), the same for
//! every protocol:
//! - 2xx: every packet of the batch is delivered.
//! - 400, 415 or 422: it refuses something in the batch as bad. That is not a sick
//!   analyzer: the batch is split in halves, and each half delivered, until the packets it
//!   refuses are alone. Each of those fails by itself (its agent gets 422 with the
//!   analyzer's reason; with `--ack accepted` it is counted and logged as dropped); every
//!   other packet is delivered.
//!   When the protocol says of every message whether it was taken or refused
//!   (`elasticsearch` does, item by item; see `Failed::reasons`), nothing is sent again: the packets of messages it took are delivered, and
//!   each packet with a message it refused fails at once, with the reason the protocol
//!   gives for that packet (see `refuse_unacknowledged`); the messages of it that were
//!   taken count as delivered.
//! - 413: the batch is over the analyzer's body limit. The limit is learned, the batch
//!   re-sent in parts under it, and later batches to it are kept under it too. A packet
//!   larger than the limit alone is routed to an analyzer that takes it (413 to its agent
//!   when none does).
//! - anything else (no connection, a broken one, a timeout, 5xx, 401, 404, 429, ...): the
//!   analyzer is ejected for a time that grows with each ejection (see
//!   [`Member::eject`]), and each packet of the batch is routed again, up to
//!   `--max-attempts`; when the protocol knows which messages the analyzer acknowledged
//!   before the failure (`message` does), only the others are (see
//!   `settle_acknowledged`). A packet that cannot be placed is answered 503 if its agent
//!   waits, or parked and retried for a while (see `parked`) and then counted as
//!   dropped if it was already answered 202.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::member::{Member, State};
use super::protocol::{DeliveryError, Protocols, refuses_content, unacknowledged};
use crate::distributor::job::{Job, Refusal, Rejection, fail};

/// The way back to routing, which sits upstream of delivery: packets a delivery could not
/// hand over are routed again, and an analyzer that failed is taken out of rotation.
pub trait Reroute: Send + Sync {
    /// Routes `jobs` again. `in_doubt` when the analyzer may have them already: only such
    /// a delivery counts against `--max-attempts`.
    fn reroute(&self, jobs: Vec<Job>, in_doubt: bool);

    /// Stops routing to `member` until it recovers.
    fn mark_unhealthy(&self, member: &Member, why: &str);
}

/// The settings of every lane (`--batch-bytes`, `--delivery-timeout`, `--eject-*`,
/// `--lane-concurrency`).
#[derive(Debug, Clone)]
pub struct LaneSettings {
    /// Largest delivery body, in bytes (a packet larger than this goes alone).
    pub batch_bytes: usize,
    /// How long an analyzer has to acknowledge a delivery.
    pub delivery_timeout: Duration,
    /// First ejection of a failing analyzer; doubles with each ejection in a row.
    pub eject_base: Duration,
    /// Longest ejection.
    pub eject_max: Duration,
    /// Deliveries in flight at once per analyzer, over all its lanes.
    pub concurrency: usize,
}

/// What every lane of one distributor shares.
pub struct Lanes {
    /// Their settings.
    pub settings: LaneSettings,
    /// How batches are sent: by each member's own protocol.
    pub protocols: Arc<Protocols>,
    /// Where undeliverable packets go.
    pub routes: Arc<dyn Reroute>,
}

/// Runs lane `lane` of one member (on worker `lane`) until the member is retired and the
/// lane's queue is empty.
pub async fn run(
    lanes: Arc<Lanes>,
    member: Arc<Member>,
    mut queue: mpsc::UnboundedReceiver<Job>,
    lane: usize,
) {
    let batch_bytes = lanes.settings.batch_bytes;
    let mut deliveries = JoinSet::new();
    // The lane's own child of the member's token: a token's state sits behind a lock, and
    // the member's is shared by its lanes on every worker.
    let retire = member.retire.child_token();
    // A packet taken from the queue that did not fit in the last batch: the next starts
    // with it.
    let mut held: Option<Job> = None;
    loop {
        let first = match held.take() {
            Some(job) => Some(job),
            None => tokio::select! {
                biased;
                job = queue.recv() => job,
                () = retire.cancelled() => {
                    queue.close();
                    queue.recv().await
                }
            },
        };
        let Some(first) = first else { break };
        // Wait for a delivery slot (shared by the member's lanes) with the packet in hand:
        // more queue up behind it meanwhile and go in the same batch.
        let permit = match member.in_flight.clone().acquire_owned().await {
            Ok(permit) => permit,
            // Never closed; if it were, the packet goes elsewhere rather than nowhere.
            Err(_) => {
                lanes.routes.reroute(vec![first], false);
                break;
            }
        };
        linger(|| queue.len()).await;
        let max_bytes = batch_bytes.min(member.accepts_at_most());
        let (batch, next) = collect(first, || queue.try_recv().ok(), max_bytes);
        held = next;
        member.dequeued(batch.len());
        while deliveries.try_join_next().is_some() {}
        deliveries.spawn(deliver(lanes.clone(), member.clone(), batch, permit, lane));
    }
    // Wait for this lane's deliveries still in flight.
    while deliveries.join_next().await.is_some() {}
    member.lane_ended();
    debug!(analyzer = %member.id, lane, "Lane drained.");
}

/// Most turns of the worker's event loop a lane waits for more packets before it sends a
/// batch (see [`linger`]).
const LINGER_TURNS: usize = 4;

/// Lets the worker's event loop turn while each turn brings more packets into the queue
/// (`queued` says how many are there), [`LINGER_TURNS`] times at most, and returns how many
/// turns it waited. A turn runs the worker's other ready tasks and polls its sockets once:
/// the requests already readable on its connections are read, validated and queued, and
/// join the batch. So an idle worker sends at once (its first turn brings nothing), and a
/// busy one sends fewer, larger deliveries. With `--ack delivered` that is what a delivery
/// costs, at the distributor and at the analyzer: per request far more than per packet.
async fn linger(queued: impl Fn() -> usize) -> usize {
    let mut before = queued();
    for turn in 1..=LINGER_TURNS {
        tokio::task::yield_now().await;
        let now = queued();
        if now == before {
            return turn;
        }
        before = now;
    }
    LINGER_TURNS
}

/// Takes what is already queued (`next` gives it, without waiting) behind `first`, while
/// the batch stays within `max_bytes`: the lane has waited for a delivery slot and
/// lingered before, and under load the queue fills while deliveries are in flight, which
/// is what makes batches large. Returns the batch and the packet that would have taken it
/// over `max_bytes`, if one was taken: it starts the next batch. Only `first` alone can be
/// over `max_bytes`.
fn collect(
    first: Job,
    mut next: impl FnMut() -> Option<Job>,
    max_bytes: usize,
) -> (Vec<Job>, Option<Job>) {
    let mut bytes = first.packet.ndjson.len();
    let mut batch = vec![first];
    while bytes < max_bytes {
        let Some(job) = next() else { break };
        let len = job.packet.ndjson.len();
        if bytes + len > max_bytes {
            return (batch, Some(job));
        }
        bytes += len;
        batch.push(job);
    }
    (batch, None)
}

/// The NDJSON bytes of some packets.
fn bytes_of(jobs: &[Job]) -> usize {
    jobs.iter().map(|j| j.packet.ndjson.len()).sum()
}

/// Delivers a batch, and then its parts as the analyzer's answers ask (see the module
/// documentation): halves of a batch with a packet it refuses, parts under its limit
/// after a 413. Parts go one after the other, in order, on the same delivery slot.
async fn deliver(
    lanes: Arc<Lanes>,
    member: Arc<Member>,
    batch: Vec<Job>,
    _permit: OwnedSemaphorePermit,
    lane: usize,
) {
    // The parts still to send, the next one last.
    let mut parts = vec![batch];
    while let Some(part) = parts.pop() {
        if member.state() == State::Unhealthy {
            // Queued before the analyzer turned unhealthy: send it elsewhere instead.
            for part in std::iter::once(part).chain(parts.drain(..)) {
                member
                    .queued_bytes
                    .fetch_sub(bytes_of(&part), Ordering::Relaxed);
                member
                    .metrics
                    .packets_rerouted
                    .fetch_add(part.len() as u64, Ordering::Relaxed);
                lanes.routes.reroute(part, false);
            }
            return;
        }
        let bytes = bytes_of(&part);
        let started = Instant::now();
        let timeout = lanes.settings.delivery_timeout;
        let protocol = lanes.protocols.of(member.protocol());
        let (outcome, acknowledged, reasons) =
            match protocol.send(lane, &member.url, &part, timeout).await {
                Ok(()) => (Ok(()), Vec::new(), Vec::new()),
                Err(failed) => (Err(failed.error), failed.acknowledged, failed.reasons),
            };
        let elapsed = started.elapsed();
        // The member's queued bytes count each packet until it leaves: delivered,
        // refused, or routed elsewhere. Parts put back stay counted.
        let gone = |jobs: &[Job]| {
            member
                .queued_bytes
                .fetch_sub(bytes_of(jobs), Ordering::Relaxed)
        };
        match outcome {
            Ok(()) => {
                gone(&part);
                delivered(&lanes, &member, part, bytes, elapsed);
            }
            Err(DeliveryError::Status(status, reason))
                if refuses_content(status) && !reasons.is_empty() =>
            {
                // The analyzer judged every message, and the protocol says what it took:
                // nothing is sent again.
                gone(&part);
                refuse_unacknowledged(&member, part, &acknowledged, &reasons, status, &reason);
            }
            Err(DeliveryError::Status(status, reason)) if refuses_content(status) => {
                if part.len() > 1 {
                    debug!(analyzer = %member.id, %status, %reason, packets = part.len(), "Analyzer refused a batch; sending it in halves to find the packets it refuses.");
                    member
                        .metrics
                        .deliveries_retried
                        .fetch_add(2, Ordering::Relaxed);
                    requeue(&mut parts, halves(part));
                } else {
                    gone(&part);
                    for job in part {
                        rejected(&member, job, status, reason.clone());
                    }
                }
            }
            Err(DeliveryError::Status(http::StatusCode::PAYLOAD_TOO_LARGE, _)) => {
                let limit = member.refused_size(bytes);
                warn!(analyzer = %member.id, bytes, limit, "Analyzer refused a delivery as too large (413); sending less at a time.");
                let (fit, too_large): (Vec<_>, Vec<_>) = part
                    .into_iter()
                    .partition(|j| j.packet.ndjson.len() <= limit);
                // Larger than it takes, even alone: routing gives it to an analyzer that
                // takes it, if one does. Nothing was delivered, so it costs no attempt.
                gone(&too_large);
                member
                    .metrics
                    .packets_rerouted
                    .fetch_add(too_large.len() as u64, Ordering::Relaxed);
                lanes.routes.reroute(too_large, false);
                let fit = pack(fit, limit);
                member
                    .metrics
                    .deliveries_retried
                    .fetch_add(fit.len() as u64, Ordering::Relaxed);
                requeue(&mut parts, fit);
            }
            Err(e) => {
                member
                    .metrics
                    .deliveries_failed
                    .fetch_add(1, Ordering::Relaxed);
                let looped = matches!(e, DeliveryError::Status(http::StatusCode::LOOP_DETECTED, _));
                let time = if looped {
                    error!(analyzer = %member.id, url = %member.url.base, error = %e, "This analyzer leads back to this distributor (508 Loop Detected); ejecting it for --eject-max.");
                    member.eject(lanes.settings.eject_max, lanes.settings.eject_max)
                } else {
                    member.eject(lanes.settings.eject_base, lanes.settings.eject_max)
                };
                warn!(analyzer = %member.id, protocol = protocol.name(), error = %e, packets = part.len(), ejected_for = ?time, "Delivery failed; ejecting the analyzer and re-routing its packets.");
                lanes.routes.mark_unhealthy(&member, &e.to_string());
                // A refused connection delivered nothing for sure: trying elsewhere costs no
                // attempt (each refusal takes an analyzer out, so this ends). Parts not sent
                // yet cost none either.
                let in_doubt = !matches!(e, DeliveryError::Refused(_)) && !looped;
                gone(&part);
                let part = settle_acknowledged(&member, part, &acknowledged);
                let rerouted = part.len() + parts.iter().map(Vec::len).sum::<usize>();
                member
                    .metrics
                    .packets_rerouted
                    .fetch_add(rerouted as u64, Ordering::Relaxed);
                lanes.routes.reroute(part, in_doubt);
                for rest in parts.drain(..).rev() {
                    gone(&rest);
                    lanes.routes.reroute(rest, false);
                }
                return;
            }
        }
    }
}

/// Puts parts back to be sent next, the first of them first, on the same delivery slot.
/// Their bytes stay counted in the member's queue until each part is answered.
fn requeue(parts: &mut Vec<Vec<Job>>, new: Vec<Vec<Job>>) {
    parts.extend(new.into_iter().rev());
}

/// A batch in two halves by packets, in order.
fn halves(mut part: Vec<Job>) -> Vec<Vec<Job>> {
    let second = part.split_off(part.len() / 2);
    vec![part, second]
}

/// Packs packets in order into parts of at most `limit` bytes (a packet over it alone).
fn pack(jobs: Vec<Job>, limit: usize) -> Vec<Vec<Job>> {
    let mut parts: Vec<Vec<Job>> = Vec::new();
    let mut bytes = 0;
    for job in jobs {
        let len = job.packet.ndjson.len();
        match parts.last_mut() {
            Some(last) if bytes + len <= limit => last.push(job),
            _ => {
                parts.push(vec![job]);
                bytes = 0;
            }
        }
        bytes += len;
    }
    parts
}

/// An acknowledged delivery: counts it, and answers every packet's agent.
fn delivered(lanes: &Lanes, member: &Member, part: Vec<Job>, bytes: usize, elapsed: Duration) {
    let messages: u64 = part.iter().map(|j| u64::from(j.packet.messages)).sum();
    member.messages_total.fetch_add(messages, Ordering::Relaxed);
    member
        .packets_total
        .fetch_add(part.len() as u64, Ordering::Relaxed);
    let m = &member.metrics;
    m.deliveries_ok.fetch_add(1, Ordering::Relaxed);
    m.duration.record(elapsed);
    member.record_delivery(bytes, elapsed, lanes.settings.concurrency);
    member.delivered_well(lanes.settings.eject_max);
    for job in part {
        job.finish(Ok(member.id.clone()));
    }
}

/// What of a failed delivery is left to route again, given what the analyzer
/// acknowledged of it (per job, per message; empty when the protocol does not know): a
/// packet it acknowledged whole is delivered (its agent is answered), one it acknowledged
/// in part goes on with the rest of its messages only, and each acknowledged message is
/// counted as delivered here.
fn settle_acknowledged(member: &Member, part: Vec<Job>, acknowledged: &[Vec<bool>]) -> Vec<Job> {
    if acknowledged.is_empty() {
        return part;
    }
    part.into_iter()
        .zip(per_job(acknowledged))
        .filter_map(|(job, acked)| settle(member, job, acked))
        .collect()
}

/// Each job's flags of `per_job` in order, then none for jobs past its end.
fn per_job<T>(flags: &[Vec<T>]) -> impl Iterator<Item = &[T]> {
    flags
        .iter()
        .map(Vec::as_slice)
        .chain(std::iter::repeat(&[][..]))
}

/// One job of [`settle_acknowledged`]: `None` when the analyzer acknowledged all of it
/// (it is delivered), else the job with the messages it did not acknowledge.
fn settle(member: &Member, mut job: Job, acked: &[bool]) -> Option<Job> {
    let count = acked.iter().filter(|a| **a).count() as u64;
    match unacknowledged(&job.packet, acked) {
        None => {
            member
                .messages_total
                .fetch_add(u64::from(job.packet.messages), Ordering::Relaxed);
            member.packets_total.fetch_add(1, Ordering::Relaxed);
            job.finish(Ok(member.id.clone()));
            None
        }
        Some(rest) => {
            if count > 0 {
                member.messages_total.fetch_add(count, Ordering::Relaxed);
                debug!(analyzer = %member.id, acknowledged = count, left = rest.messages, "Leaving only the messages of a packet the analyzer did not acknowledge.");
                job.packet = rest;
            }
            Some(job)
        }
    }
}

/// A refusal of content that says what the analyzer took (per job, per message): each
/// packet it took whole is delivered, and each other fails by itself, with its own reason
/// when the protocol gave one (`reasons`, per job), else `reason`. What it took of a
/// packet that fails counts as delivered; the packet fails with the rest (what an
/// `--ack accepted` drop counts).
fn refuse_unacknowledged(
    member: &Member,
    part: Vec<Job>,
    acknowledged: &[Vec<bool>],
    reasons: &[Option<String>],
    status: http::StatusCode,
    reason: &str,
) {
    let reasons = reasons
        .iter()
        .map(Option::as_deref)
        .chain(std::iter::repeat(None));
    for ((job, acked), own) in part.into_iter().zip(per_job(acknowledged)).zip(reasons) {
        if let Some(job) = settle(member, job, acked) {
            rejected(member, job, status, own.unwrap_or(reason).to_owned());
        }
    }
}

/// A packet the analyzer refused as bad, sent alone: it fails by itself.
fn rejected(member: &Member, job: Job, status: http::StatusCode, reason: String) {
    member
        .metrics
        .packets_rejected
        .fetch_add(1, Ordering::Relaxed);
    warn!(analyzer = %member.id, %status, %reason, messages = job.packet.messages, "Analyzer refused a packet as bad; failing that packet alone.");
    let why = Refusal::Rejected(Arc::new(Rejection {
        analyzer: member.id.clone(),
        status: status.as_u16(),
        reason,
    }));
    fail(job, why);
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// Runs `linger` on a current-thread runtime beside a task that queues one packet a
    /// turn, `arrivals` times; returns the turns it waited and the packets queued by then.
    fn linger_beside(arrivals: usize) -> (usize, usize) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let queued = Rc::new(Cell::new(0));
            let arriving = queued.clone();
            tokio::task::spawn_local(async move {
                for _ in 0..arrivals {
                    arriving.set(arriving.get() + 1);
                    tokio::task::yield_now().await;
                }
            });
            let turns = linger(|| queued.get()).await;
            (turns, queued.get())
        })
    }

    fn job(bytes: usize) -> Job {
        let mut line = vec![b'x'; bytes.max(1)];
        *line.last_mut().unwrap() = b'\n';
        Job::of(bytes::Bytes::from(line))
    }

    fn sizes(jobs: &[Job]) -> Vec<usize> {
        jobs.iter().map(|j| j.packet.ndjson.len()).collect()
    }

    proptest::proptest! {
        /// A batch stays within the byte limit (but for a first packet over it, alone),
        /// keeps the queue's order, and holds back the packet that would overshoot.
        #[test]
        fn batches_never_exceed_the_limit(
            lens in proptest::collection::vec(1usize..5000, 1..60),
            limit in 1usize..20_000,
        ) {
            let mut queue = lens.iter().map(|&n| job(n)).collect::<std::collections::VecDeque<_>>();
            let mut seen = Vec::new();
            let mut held = None;
            while let Some(first) = held.take().or_else(|| queue.pop_front()) {
                let (batch, next) = collect(first, || queue.pop_front(), limit);
                let bytes = bytes_of(&batch);
                proptest::prop_assert!(bytes <= limit || batch.len() == 1, "{bytes} > {limit}");
                if let Some(next) = &next {
                    proptest::prop_assert!(bytes + next.packet.ndjson.len() > limit);
                }
                seen.extend(sizes(&batch));
                held = next;
            }
            proptest::prop_assert_eq!(seen, lens);
        }

        /// Parts after a 413 keep the order and stay within the learned limit (but for a
        /// packet over it, alone); halves keep the order and are never empty.
        #[test]
        fn parts_keep_order_and_limits(
            lens in proptest::collection::vec(1usize..5000, 2..60),
            limit in 1usize..20_000,
        ) {
            let parts = pack(lens.iter().map(|&n| job(n)).collect(), limit);
            for part in &parts {
                proptest::prop_assert!(bytes_of(part) <= limit || part.len() == 1);
                proptest::prop_assert!(!part.is_empty());
            }
            let flat: Vec<usize> = parts.iter().flat_map(|p| sizes(p)).collect();
            proptest::prop_assert_eq!(&flat, &lens);
            let two = halves(lens.iter().map(|&n| job(n)).collect());
            proptest::prop_assert!(two.iter().all(|h| !h.is_empty()));
            let flat: Vec<usize> = two.iter().flat_map(|p| sizes(p)).collect();
            proptest::prop_assert_eq!(flat, lens);
        }
    }

    #[test]
    fn an_idle_worker_sends_after_one_turn() {
        assert_eq!(linger_beside(0), (1, 0));
    }

    #[test]
    fn a_busy_worker_waits_while_packets_keep_coming() {
        // The first turn brings one, the second one more, the third none.
        let (turns, queued) = linger_beside(2);
        assert_eq!((turns, queued), (3, 2));
    }

    #[test]
    fn lingering_is_bounded() {
        let (turns, queued) = linger_beside(1000);
        assert_eq!(turns, LINGER_TURNS);
        assert!(
            (LINGER_TURNS..=LINGER_TURNS + 1).contains(&queued),
            "{queued} packets queued in {LINGER_TURNS} turns"
        );
    }
}
