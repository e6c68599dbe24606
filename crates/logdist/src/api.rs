//! The JSON shapes of the HTTP APIs, shared by the servers that produce them and the
//! clients (load generator, demo, tests) that read them.

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
}

/// The body of `POST /analyzer/deregister`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deregistration {
    /// The id given at registration.
    pub id: String,
}

/// The answer to an accepted packet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketAck {
    /// Messages in the packet.
    pub messages: u32,
    /// `delivered` (an analyzer acknowledged it) or `accepted` (queued for delivery).
    pub status: String,
    /// The analyzer that acknowledged it, when delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyzer: Option<String>,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong and where.
    pub error: String,
}
