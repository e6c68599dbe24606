//! One simulated agent: a loop that paces itself, sends a pre-built body over its own
//! keep-alive connection, waits for the answer and records the outcome.
//!
//! Agents share only what must be shared ([`Plan`]): the pool of bodies, the counters,
//! the packet budget and the pacer. Latencies and failure kinds are kept per agent and
//! merged at the end, so the hot loop takes no lock.

use crate::error_chain;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::counters::Counters;
use super::pool::{Packet, PacketPool};

/// The HTTP client type every agent uses.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// After a connection failure an agent waits this long before trying again, so a
/// distributor that is down is not hammered by a tight loop of refused connections.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// Everything the agents of one run share.
pub(crate) struct Plan {
    /// Full URL of the endpoint to post to.
    pub uri: Uri,
    /// `application/x-ndjson` for packets, `application/json` for single messages.
    pub content_type: HeaderValue,
    /// Set when the pool's bodies are compressed.
    pub content_encoding: Option<HeaderValue>,
    /// `Bearer TOKEN`, for a distributor that requires it.
    pub authorization: Option<HeaderValue>,
    /// The bodies to send.
    pub pool: PacketPool,
    /// Per request, connection included.
    pub timeout: Duration,
    /// Live totals, read by the progress bar and in-process callers.
    pub counters: Arc<Counters>,
    /// `--packets`: the total number of requests to send, if limited.
    pub budget: Option<Budget>,
    /// `--rate`: spaces requests over all agents, if limited.
    pub pacer: Option<Pacer>,
    /// Cancelled when no new request may start (duration reached or shutdown).
    pub stop: CancellationToken,
    /// Cancelled when requests still in flight after the stop are to be abandoned.
    pub abort: CancellationToken,
    /// Failure kinds already logged, so each is logged once per run, not per request.
    pub logged: Mutex<std::collections::BTreeSet<String>>,
}

/// What an agent hands back when it stops.
pub(crate) struct AgentResult {
    /// Latency of acknowledged requests, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Failed requests by kind (`http_503`, `timeout`, ...).
    pub failures: BTreeMap<String, u64>,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Answered with a status other than 200 or 202.
    Status(u16),
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection could not be established.
    Connect,
    /// Still in flight when the run stopped and the drain grace ran out.
    Aborted,
    /// Anything else: a reset connection, a malformed answer.
    Other,
}

impl FailureKind {
    /// The key in the report's `failures` object.
    pub fn key(self) -> String {
        match self {
            Self::Status(code) => format!("http_{code}"),
            Self::Timeout => "timeout".to_owned(),
            Self::Connect => "connect".to_owned(),
            Self::Aborted => "aborted".to_owned(),
            Self::Other => "other".to_owned(),
        }
    }
}

/// A shared packet budget for `--packets`: agents claim one request at a time.
pub(crate) struct Budget {
    limit: u64,
    claimed: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            claimed: AtomicU64::new(0),
        }
    }

    /// Claims one request; false once the budget is spent.
    pub fn try_claim(&self) -> bool {
        self.claimed.fetch_add(1, Relaxed) < self.limit
    }
}

/// Spaces requests `1 / rate` apart over all agents. A slot missed because every agent
/// was busy is not made up later (like `MissedTickBehavior::Delay`), so a slow
/// distributor never receives a catch-up burst.
pub(crate) struct Pacer {
    start: Instant,
    period_ns: u64,
    /// Nanoseconds after `start` of the next free slot.
    next_ns: AtomicU64,
}

impl Pacer {
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

/// Builds the client of one agent: one keep-alive connection, Nagle off.
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
/// histogram to record into.
pub(crate) async fn run_agent(
    index: usize,
    plan: Arc<Plan>,
    latency_us: Histogram<u64>,
) -> AgentResult {
    let client = client(plan.timeout);
    let mut result = AgentResult {
        latency_us,
        failures: BTreeMap::new(),
    };
    // Agents start at different places in the pool so they do not send in lockstep.
    let mut next = index.wrapping_mul(7919);
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
        plan.counters.sent(packet.messages);
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = send(&client, &plan, packet) => outcome,
            _ = plan.abort.cancelled() => {
                Err((FailureKind::Aborted, "stopped while in flight".to_owned()))
            }
        };
        match outcome {
            Ok(()) => {
                plan.counters.acked(packet.messages);
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                result.latency_us.saturating_record(micros.max(1));
            }
            Err((kind, detail)) => {
                plan.counters.failed(packet.messages);
                *result.failures.entry(kind.key()).or_default() += 1;
                log_failure(&plan, kind, &detail);
                if kind == FailureKind::Connect {
                    tokio::select! {
                        _ = tokio::time::sleep(CONNECT_BACKOFF) => {}
                        _ = plan.stop.cancelled() => {}
                    }
                }
            }
        }
    }
    result
}

/// Sends one body and reads the whole answer; Ok for 200 and 202.
async fn send(
    client: &HttpClient,
    plan: &Plan,
    packet: &Packet,
) -> Result<(), (FailureKind, String)> {
    let mut request = Request::post(plan.uri.clone())
        .header(CONTENT_TYPE, plan.content_type.clone())
        .body(Full::new(packet.body.clone()))
        .map_err(|e| (FailureKind::Other, e.to_string()))?;
    let headers = request.headers_mut();
    if let Some(encoding) = &plan.content_encoding {
        headers.insert(CONTENT_ENCODING, encoding.clone());
    }
    if let Some(authorization) = &plan.authorization {
        headers.insert(AUTHORIZATION, authorization.clone());
    }
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            let kind = if e.is_connect() {
                FailureKind::Connect
            } else {
                FailureKind::Other
            };
            (kind, error_chain(&e))
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| (FailureKind::Other, format!("reading the answer: {e}")))?
            .to_bytes();
        if status == StatusCode::OK || status == StatusCode::ACCEPTED {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            Err((FailureKind::Status(status.as_u16()), text))
        }
    };
    match tokio::time::timeout(plan.timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err((
            FailureKind::Timeout,
            format!("no answer within {:?}", plan.timeout),
        )),
    }
}

/// Logs the first failure of each kind at WARN, the rest at DEBUG.
fn log_failure(plan: &Plan, kind: FailureKind, detail: &str) {
    let key = kind.key();
    let first = match plan.logged.lock() {
        Ok(mut logged) => logged.insert(key.clone()),
        Err(_) => false,
    };
    if first {
        tracing::warn!(
            kind = %key,
            detail,
            "Request failed; further failures of this kind are logged at debug level."
        );
    } else {
        tracing::debug!(kind = %key, detail, "Request failed.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_hands_out_exactly_the_limit() {
        let budget = Budget::new(3);
        let claimed = (0..10).filter(|_| budget.try_claim()).count();
        assert_eq!(claimed, 3);
    }

    #[test]
    fn failure_keys() {
        assert_eq!(FailureKind::Status(503).key(), "http_503");
        assert_eq!(FailureKind::Status(400).key(), "http_400");
        assert_eq!(FailureKind::Timeout.key(), "timeout");
        assert_eq!(FailureKind::Connect.key(), "connect");
    }

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
