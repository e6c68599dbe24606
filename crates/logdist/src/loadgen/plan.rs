//! What the agents of one run share ([`Plan`]): where and how to send, the pool of
//! bodies, the counters, and the limits on new packets ([`Budget`] for `--packets`,
//! [`Pacer`] for `--rate`). Built once by the run, read by every agent and attempt.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, Uri};
use tokio_util::sync::CancellationToken;

use super::args::Encoding;
use super::conn::Target;
use super::counters::Counters;
use super::ids::IdPrefix;
use super::pool::PacketPool;
use super::protocol::Protocol;
use crate::pacer::Pacer;

/// Everything the agents of one run share.
pub(crate) struct Plan {
    /// Full URL of the endpoint to post to.
    pub uri: Uri,
    /// The same, as each agent's connection uses it.
    pub target: Target,
    /// How packets are written, and so how a success answer is read.
    pub protocol: Protocol,
    /// Where `--protocol syslog-*` sends (`--syslog-target`), resolved.
    pub syslog_target: Option<std::net::SocketAddr>,
    /// Where forward frames go (`--forward-target`), for the forward protocols.
    pub forward_target: Option<String>,
    /// The protocol's media type, `application/json` for single messages.
    pub content_type: HeaderValue,
    /// Set when the bodies sent are compressed.
    pub content_encoding: Option<HeaderValue>,
    /// `Bearer TOKEN`, for a distributor that requires it.
    pub authorization: Option<HeaderValue>,
    /// The bodies to send.
    pub pool: PacketPool,
    /// How bodies stamped with ids are compressed per send (the pool's own bodies are
    /// compressed already).
    pub encoding: Encoding,
    /// The prefix of packet keys, when packets have keys (`--trace` or
    /// `--idempotency-keys`); `None` keeps the hot path free of per-send work.
    pub ids: Option<IdPrefix>,
    /// `--idempotency-keys`: send the packet key as `Idempotency-Key`.
    pub idempotency_keys: bool,
    /// `--retries`: resends of a packet after retryable failures.
    pub retries: u32,
    /// Per request, connection included.
    pub timeout: Duration,
    /// Live totals, read by the progress bar and in-process callers.
    pub counters: Arc<Counters>,
    /// `--packets`: the total number of packets to send, if limited.
    pub budget: Option<Budget>,
    /// `--rate`: spaces new packets over all agents, if limited (resends are spaced by
    /// their backoff instead).
    pub pacer: Option<Pacer>,
    /// Cancelled when no new packet may start (duration reached or shutdown).
    pub stop: CancellationToken,
    /// Cancelled when packets still unfinished after the stop are to be abandoned.
    pub abort: CancellationToken,
    /// Failure kinds already logged, so each is logged once per run, not per request.
    pub logged: Mutex<std::collections::BTreeSet<String>>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_hands_out_exactly_the_limit() {
        let budget = Budget::new(3);
        let claimed = (0..10).filter(|_| budget.try_claim()).count();
        assert_eq!(claimed, 3);
    }
}
