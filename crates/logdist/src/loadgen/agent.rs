//! One simulated agent: a loop that paces itself, sends a body over its own keep-alive
//! connection (resending it on a retryable failure, with `--retries`), waits for the
//! final answer and records the outcome.
//!
//! Agents share only what must be shared ([`Plan`]): the pool of bodies, the counters,
//! the packet budget and the pacer. Latencies, failure kinds and resends are kept per
//! agent and merged at the end, and `--trace` lines go to a channel, so the hot loop
//! takes no lock.
//!
//! A packet that has started is finished even after the run's stop: its resends go on
//! until it is acknowledged, fails for good, or the drain grace runs out (`abort`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::attempt::{Outgoing, log_failure, send};
use super::conn::Connection;
use super::forward::ForwardConn;
use super::outcome::{Failure, FailureKind};
use super::plan::Plan;
use super::pool::Packet;
use super::retry;
use super::syslog::SyslogSocket;
use super::trace::{TraceLine, TraceOutcome, TraceSender};

/// The HTTP client type every agent uses.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// After a packet fails for good on a connection failure, an agent waits this long
/// before the next packet, so a distributor that is down is not hammered by a tight
/// loop of refused connections.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// What an agent hands back when it stops.
pub(crate) struct AgentResult {
    /// Latency of acknowledged packets, from the first attempt to the acknowledgement,
    /// in microseconds.
    pub latency_us: Histogram<u64>,
    /// Failed attempts by kind (`http_503`, `timeout`, ...), resent or not.
    pub failures: BTreeMap<String, u64>,
    /// Resends, over all packets.
    pub retries: u64,
}

/// A pooled client, for the requests around the run (the distributor's stats).
pub(crate) fn client(timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

/// Runs agent number `index` until the plan says stop; `latency_us` is an empty
/// histogram to record into, and `trace` receives each packet's outcome.
pub(crate) async fn run_agent(
    index: usize,
    plan: Arc<Plan>,
    latency_us: Histogram<u64>,
    trace: Option<TraceSender>,
) -> AgentResult {
    let mut conn = Connection::new(plan.target.clone(), plan.timeout);
    let mut syslog = plan
        .syslog_target
        .map(|target| SyslogSocket::new(plan.protocol, target));
    let mut forward = plan.forward_target.clone().map(ForwardConn::new);
    // The agent's own token: waiting on it locks only this agent's node of the token
    // tree, where waiting on `plan.abort` itself would take one lock that every agent on
    // every worker takes twice a request.
    let abort = plan.abort.child_token();
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut result = AgentResult {
        latency_us,
        failures: BTreeMap::new(),
        retries: 0,
    };
    // Agents start at different places in the pool so they do not send in lockstep.
    let mut next = index.wrapping_mul(7919);
    let mut seq: u64 = 0;
    loop {
        if plan.stop.is_cancelled() {
            break;
        }
        if plan
            .budget
            .as_ref()
            .is_some_and(|budget| !budget.try_claim())
        {
            break;
        }
        if let Some(pacer) = &plan.pacer {
            tokio::select! {
                _ = tokio::time::sleep_until(pacer.claim()) => {}
                _ = plan.stop.cancelled() => break,
            }
        }
        let packet = plan.pool.get(next);
        next = next.wrapping_add(1);
        let key = plan.ids.as_ref().map(|ids| ids.packet_key(index, seq));
        seq += 1;
        plan.counters.sent(packet.messages);
        let started = Instant::now();
        let delivery = match outgoing(&plan, packet, key.as_deref()) {
            Ok(outgoing) => {
                let conn = match (&mut syslog, &mut forward) {
                    (Some(socket), _) => Conn::Syslog(socket),
                    (None, Some(forward)) => Conn::Forward(forward),
                    (None, None) => Conn::Http(&mut conn),
                };
                deliver(conn, &plan, &abort, &outgoing, &mut rng, &mut result).await
            }
            Err(failure) => {
                *result.failures.entry(failure.kind.key()).or_default() += 1;
                log_failure(&plan, &failure);
                Delivery {
                    outcome: Err(failure),
                    attempts: 0,
                }
            }
        };
        match &delivery.outcome {
            Ok(_) => {
                plan.counters.acked(packet.messages);
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                result.latency_us.saturating_record(micros.max(1));
            }
            Err(_) => plan.counters.failed(packet.messages),
        }
        let refused = matches!(&delivery.outcome, Err(f) if f.kind == FailureKind::Connect);
        if let (Some(trace), Some(key)) = (&trace, key) {
            trace.send(delivery.trace_line(key, packet.messages)).await;
        }
        if refused {
            tokio::select! {
                _ = tokio::time::sleep(CONNECT_BACKOFF) => {}
                _ = plan.stop.cancelled() => {}
            }
        }
    }
    result
}

/// Where an agent's packets go: its HTTP connection, its syslog socket, or its Fluent
/// forward connection.
enum Conn<'a> {
    Http(&'a mut Connection),
    Syslog(&'a mut SyslogSocket),
    Forward(&'a mut ForwardConn),
}

/// The final outcome of one packet.
struct Delivery {
    /// The acknowledging status, or the last attempt's failure.
    outcome: Result<StatusCode, Failure>,
    /// Requests sent: 1 plus the resends (0 when the body could not be built).
    attempts: u32,
}

impl Delivery {
    /// The packet's line in the `--trace` file.
    fn trace_line(&self, key: String, messages: u64) -> TraceLine {
        let (outcome, status, failure) = match &self.outcome {
            Ok(status) => (TraceOutcome::Acked, Some(status.as_u16()), None),
            Err(failure) => (
                TraceOutcome::Failed,
                failure.kind.status(),
                Some(failure.kind.key()),
            ),
        };
        TraceLine {
            key,
            messages,
            outcome,
            status,
            failure,
            attempts: self.attempts,
        }
    }
}

/// What every attempt at `packet` sends: its body (with ids stamped in when the pool
/// carries id slots) and its `Idempotency-Key`.
fn outgoing(plan: &Plan, packet: &Packet, key: Option<&str>) -> Result<Outgoing, Failure> {
    let Some(key) = key else {
        return Ok(Outgoing {
            body: packet.body.clone(),
            idempotency_key: None,
        });
    };
    let body = packet
        .stamped(key, plan.encoding)
        .map_err(|e| Failure::new(FailureKind::Other, format!("building the body: {e}")))?;
    let idempotency_key = if plan.idempotency_keys {
        // A key is visible ASCII (the prefix is checked), so this always succeeds.
        let value = HeaderValue::from_str(key)
            .map_err(|e| Failure::new(FailureKind::Other, format!("idempotency key: {e}")))?;
        Some(value)
    } else {
        None
    };
    Ok(Outgoing {
        body,
        idempotency_key,
    })
}

/// Sends `outgoing` until it is acknowledged, fails for good, has been resent
/// `plan.retries` times, or the run aborts. Each failed attempt is counted in
/// `result.failures`, each resend in `result.retries`. `abort` is the agent's child of
/// `plan.abort`.
async fn deliver(
    mut conn: Conn<'_>,
    plan: &Plan,
    abort: &CancellationToken,
    outgoing: &Outgoing,
    rng: &mut SmallRng,
    result: &mut AgentResult,
) -> Delivery {
    let mut attempts: u32 = 0;
    loop {
        attempts = attempts.saturating_add(1);
        let outcome = tokio::select! {
            outcome = async {
                match &mut conn {
                    Conn::Http(conn) => send(conn, plan, outgoing).await,
                    Conn::Syslog(socket) => socket.send(&outgoing.body).await,
                    Conn::Forward(forward) => forward.send(plan, &outgoing.body).await,
                }
            } => outcome,
            _ = abort.cancelled() => {
                Err(Failure::new(FailureKind::Aborted, "stopped while in flight"))
            }
        };
        let failure = match outcome {
            Ok(status) => {
                return Delivery {
                    outcome: Ok(status),
                    attempts,
                };
            }
            Err(failure) => failure,
        };
        *result.failures.entry(failure.kind.key()).or_default() += 1;
        log_failure(plan, &failure);
        if attempts > plan.retries || !failure.kind.is_retryable() {
            return Delivery {
                outcome: Err(failure),
                attempts,
            };
        }
        let wait = retry::delay(failure.retry_after, attempts, rng);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Abandoned while waiting: the last attempt's failure is the outcome.
            _ = abort.cancelled() => {
                return Delivery {
                    outcome: Err(failure),
                    attempts,
                };
            }
        }
        result.retries += 1;
    }
}
