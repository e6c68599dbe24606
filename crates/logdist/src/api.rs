//! The wire contract: the JSON shapes of the HTTP APIs, shared by the servers that
//! produce them and the clients (load generator, demo, tests) that read them, and the
//! header that tells an analyzer when a delivery is given up.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// One analyzer as `GET /analyzer/stats` shows it (see the contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyzerStats {
    /// The id it registered with.
    pub id: String,
    /// Its base URL; packets go to `{url}/packets`.
    pub url: String,
    /// Its relative weight as registered.
    pub weight: f64,
    /// `online`, `unhealthy` or `draining`.
    pub state: String,
    /// The delivery protocol it is sent by: `logdist`, `message`, `otlp` or `loki`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Its weight over the total weight of online analyzers; 0 when not online.
    pub target_share: f64,
    /// Messages routed to it since the last membership change (the counting window).
    pub messages_sent: u64,
    /// Its fraction of the messages routed in the counting window.
    pub share: f64,
    /// Messages delivered to it since the distributor started.
    pub messages_total: u64,
    /// Packets delivered to it since the distributor started.
    pub packets_total: u64,
    /// Cluster mode: each distributor's view of its state (distributor -> state). Only the
    /// distributor's own view decides where it routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_states: Option<std::collections::BTreeMap<String, String>>,
}

/// The protocol of an analyzer whose stats do not say (from an older distributor).
fn default_protocol() -> String {
    "logdist".to_owned()
}

/// The body of `POST /analyzer/register`. `port` is the form the original Python analyzer
/// sent (the host is then the caller's address); `url` names the host explicitly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Unique id of the analyzer, e.g. `analyzer_1`.
    pub id: String,
    /// Relative weight, positive and finite.
    pub weight: f64,
    /// Port on the caller's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Base URL, `http://host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The delivery protocol it speaks: `logdist` (NDJSON to `/packets`) or `message`
    /// (the original project's `/message/process`). When absent, `logdist` until the
    /// distributor detects otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// The body of `POST /analyzer/deregister`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deregistration {
    /// The id given at registration.
    pub id: String,
}

/// The answer to an accepted packet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PacketAck {
    /// Messages in the packet.
    pub messages: u32,
    /// `delivered` (an analyzer acknowledged it) or `accepted` (queued for delivery).
    pub status: String,
    /// The analyzer that acknowledged it, when delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyzer: Option<String>,
    /// Bad records of the body that were dropped (`--on-invalid drop` or `dead-letter`):
    /// not delivered, and not to be sent again. Absent when there were none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: usize,
    /// Where and why, for the first [`DROPPED_ERRORS_SHOWN`] of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// How many dropped records a [`PacketAck`] names.
pub const DROPPED_ERRORS_SHOWN: usize = 10;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong and where.
    pub error: String,
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
