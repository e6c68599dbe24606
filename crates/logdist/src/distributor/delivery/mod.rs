//! Delivery: one lane per analyzer and worker drains that analyzer's queue into batches,
//! and the analyzer's [`Protocol`] carries each batch and brings back its
//! acknowledgement, which goes straight to every agent waiting on a packet in it. What a
//! lane cannot hand over goes back upstream through [`Reroute`], the one way back to
//! routing.
//!
//! - [`member`]: an analyzer as the distributor sees it: its address, state, queue,
//!   counters and ejection.
//! - `lane`: batching, and what each outcome means (split, shrink, eject, re-route).
//! - [`protocol`]: the seam; [`ndjson`] is logdist's own protocol, the first entry.

pub mod address;
pub mod batch;
mod lane;
pub mod member;
pub mod ndjson;
pub mod protocol;
pub mod tally;
pub mod via;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

pub use lane::run;
pub use member::{Member, QueueLimits, State};
pub use protocol::Protocol;

use crate::distributor::job::Job;

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
    /// How batches are sent.
    pub protocol: Arc<dyn Protocol>,
    /// Where undeliverable packets go.
    pub routes: Arc<dyn Reroute>,
}

/// What every outgoing request of a distributor carries.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// `Authorization`: the admin token, which analyzers register with and so know (an
    /// analyzer with `--token` requires it on `/packets`).
    pub auth: Option<HeaderValue>,
    /// This distributor's id in `Logdist-Via` (see [`via`]): random, new at each start.
    pub via: Arc<str>,
    /// `Logdist-Via` with this distributor's id alone.
    pub via_header: HeaderValue,
}
