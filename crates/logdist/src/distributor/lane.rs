//! A lane per analyzer and worker: its queue is drained into batched deliveries, one NDJSON
//! request each, over the worker's keep-alive pool. Each delivery's outcome flows back to
//! every agent waiting on a packet in it, on the same thread. The lanes of one analyzer
//! share its queue bound (`--queue-packets`, in the member) and its deliveries in flight
//! (`--lane-concurrency`).
//!
//! Full-queue policy: the queue never blocks and never drops. When it is full, `dispatch`
//! refuses the packet and the agent gets 503 with Retry-After (see the registry).
//!
//! Failure policy: a failed or timed-out delivery marks the analyzer unhealthy, and each of
//! its packets is routed again (to the analyzers still online) up to `--max-attempts`.
//! A packet that cannot be placed is answered 503 if its agent waits, or retried for a
//! while and then counted as dropped if it was already answered 202.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::Request;
use hyper::header::{self, HeaderName, HeaderValue};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::batch::Batch;
use super::member::{Job, Member, Refusal, State};
use super::{DeliveryClient, Shared};
use crate::error_chain;

/// How long a packet already answered 202 is retried when no analyzer can take it.
const ACCEPTED_RETRY_FOR: Duration = Duration::from_secs(30);

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No answer within `--delivery-timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Could not connect: nothing was sent, so nothing can have been delivered.
    #[error("{0}")]
    Refused(String),
    /// The connection broke: the analyzer may or may not have the packets.
    #[error("{0}")]
    Transport(String),
    /// The analyzer answered with an error status.
    #[error("analyzer answered {0}")]
    Status(http::StatusCode),
}

/// Runs lane `lane` of one member (on worker `lane`) until the member is retired and the
/// lane's queue is empty.
pub async fn run(
    shared: Arc<Shared>,
    member: Arc<Member>,
    mut queue: mpsc::UnboundedReceiver<Job>,
    lane: usize,
) {
    let max_bytes = shared.config.batch_bytes.as_u64() as usize;
    let mut deliveries = JoinSet::new();
    // The lane's own child of the member's token: a token's state sits behind a lock, and
    // the member's is shared by its lanes on every worker.
    let retire = member.retire.child_token();
    loop {
        let first = tokio::select! {
            biased;
            job = queue.recv() => job,
            () = retire.cancelled() => {
                queue.close();
                queue.recv().await
            }
        };
        let Some(first) = first else { break };
        // Wait for a delivery slot (shared by the member's lanes) with the packet in hand:
        // more queue up behind it meanwhile and go in the same batch.
        let permit = match member.in_flight.clone().acquire_owned().await {
            Ok(permit) => permit,
            // Never closed; if it were, the packet goes elsewhere rather than nowhere.
            Err(_) => {
                reroute(&shared, vec![first], false);
                break;
            }
        };
        linger(|| queue.len()).await;
        let batch = collect(first, &mut queue, max_bytes);
        member.dequeued(batch.len());
        while deliveries.try_join_next().is_some() {}
        deliveries.spawn(deliver(shared.clone(), member.clone(), batch, permit, lane));
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

/// Takes what is already queued, up to `max_bytes`, behind `first`, without waiting (the
/// lane has waited for a delivery slot and lingered before): under load the queue fills
/// while deliveries are in flight, which is what makes batches large.
fn collect(first: Job, queue: &mut mpsc::UnboundedReceiver<Job>, max_bytes: usize) -> Vec<Job> {
    let mut bytes = first.packet.ndjson.len();
    let mut batch = vec![first];
    while bytes < max_bytes {
        match queue.try_recv() {
            Ok(job) => {
                bytes += job.packet.ndjson.len();
                batch.push(job);
            }
            Err(_) => break,
        }
    }
    batch
}

async fn deliver(
    shared: Arc<Shared>,
    member: Arc<Member>,
    batch: Vec<Job>,
    _permit: OwnedSemaphorePermit,
    lane: usize,
) {
    let bytes: usize = batch.iter().map(|j| j.packet.ndjson.len()).sum();
    let outcome = if member.state() == State::Unhealthy {
        // Queued before the analyzer turned unhealthy: send it elsewhere instead.
        None
    } else {
        // One request body for the whole batch, its large packets sent without a copy.
        let body = Batch::new(batch.iter().map(|job| &job.packet.ndjson));
        let started = Instant::now();
        let result = post(&shared, shared.lane_client(lane), &member, body).await;
        Some((result, started.elapsed()))
    };
    member.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
    match outcome {
        Some((Ok(()), elapsed)) => {
            let messages: u64 = batch.iter().map(|j| u64::from(j.packet.messages)).sum();
            member.messages_total.fetch_add(messages, Ordering::Relaxed);
            member
                .packets_total
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let m = &member.metrics;
            m.messages.increment(messages);
            m.packets.increment(batch.len() as u64);
            m.ok.increment(1);
            m.duration.record(elapsed);
            member.record_delivery(bytes, elapsed, shared.config.lane_concurrency);
            for job in batch {
                job.finish(Ok(member.id.clone()));
            }
        }
        Some((Err(e), _)) => {
            member.metrics.failed.increment(1);
            warn!(analyzer = %member.id, error = %e, packets = batch.len(), "Delivery failed; re-routing its packets.");
            shared.registry.mark_unhealthy(&member, &e.to_string());
            // A refused connection delivered nothing for sure: trying elsewhere costs no
            // attempt (each refusal takes an analyzer out, so this ends).
            let in_doubt = !matches!(e, DeliveryError::Refused(_));
            reroute(&shared, batch, in_doubt);
        }
        None => reroute(&shared, batch, false),
    }
}

async fn post(
    shared: &Shared,
    client: &DeliveryClient,
    member: &Member,
    body: Batch,
) -> Result<(), DeliveryError> {
    let timeout = shared.config.delivery_timeout;
    let request = Request::post(member.url.packets.clone())
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(DEADLINE_HEADER, delivery_deadline(timeout))
        .body(body)
        .map_err(|e| DeliveryError::Transport(e.to_string()))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                DeliveryError::Refused(error_chain(&e))
            } else {
                DeliveryError::Transport(error_chain(&e))
            }
        })?;
        let status = response.status();
        // Read the answer to the end so the connection goes back to the pool.
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| DeliveryError::Transport(e.to_string()))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status))
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(DeliveryError::Timeout(timeout)))
}

/// The header telling an analyzer when the distributor gives up on a delivery, in Unix
/// milliseconds. An analyzer that was hung (stopped, swapping, paused) and reads the
/// request only after that drops it instead of keeping a copy the distributor has already
/// sent elsewhere: no duplicate.
pub const DEADLINE_HEADER: HeaderName = HeaderName::from_static("logdist-deadline");

/// The [`DEADLINE_HEADER`] of a delivery starting now: a margin before the timeout, so
/// that an analyzer that takes it just in time still answers before the distributor
/// gives up.
pub fn delivery_deadline(timeout: Duration) -> HeaderValue {
    let margin = (timeout / 10).min(Duration::from_millis(500));
    let at = std::time::SystemTime::now() + timeout.saturating_sub(margin);
    let millis = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    HeaderValue::from(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// Routes the packets of a failed or abandoned delivery again. Only a delivery whose
/// outcome is in doubt counts against `--max-attempts`.
pub fn reroute(shared: &Arc<Shared>, batch: Vec<Job>, in_doubt: bool) {
    for mut job in batch {
        if in_doubt {
            job.attempts = job.attempts.saturating_add(1);
        }
        if job.attempts >= shared.config.max_attempts.max(1) {
            fail(job, Refusal::DeliveryFailed);
            continue;
        }
        metrics::counter!("logdist_packets_rerouted_total").increment(1);
        if let Err((job, why)) = shared.dispatch(job) {
            if job.ack.is_some() {
                job.finish(Err(why));
            } else {
                tokio::spawn(retry_accepted(shared.clone(), job));
            }
        }
    }
}

/// A packet already answered 202 has nobody to tell: keep trying for a while.
async fn retry_accepted(shared: Arc<Shared>, mut job: Job) {
    let deadline = Instant::now() + ACCEPTED_RETRY_FOR;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match shared.dispatch(job) {
            Ok(()) => return,
            Err((back, _)) => job = back,
        }
    }
    fail(job, Refusal::DeliveryFailed);
}

fn fail(job: Job, why: Refusal) {
    if job.ack.is_none() {
        error!(
            messages = job.packet.messages,
            reason = why.message(),
            "Dropping an accepted packet."
        );
        metrics::counter!("logdist_messages_dropped_total")
            .increment(u64::from(job.packet.messages));
    }
    job.finish(Err(why));
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
