//! Delivery: one lane per analyzer and worker drains that analyzer's queue into batches,
//! and the analyzer's [`Protocol`] carries each batch and brings back its
//! acknowledgement, which goes straight to every agent waiting on a packet in it. What a
//! lane cannot hand over goes back upstream through [`Reroute`], the one way back to
//! routing.
//!
//! - [`member`]: an analyzer as the distributor sees it: its address, state, queue,
//!   counters and ejection.
//! - `lane`: batching, and what each outcome means (split, shrink, eject, re-route).
//! - [`protocol`]: the seam; [`ndjson`] is logdist's own protocol, the first entry;
//!   [`message`] the original project's, one message a request; [`otlp`] OpenTelemetry's
//!   OTLP/HTTP logs; [`forward`] Fluent forward over TCP; [`elasticsearch`]
//!   Elasticsearch's `_bulk`; [`loki`] Loki's push.

pub mod address;
pub mod batch;
pub mod elasticsearch;
pub mod forward;
mod lane;
pub mod loki;
pub mod member;
pub mod message;
pub mod ndjson;
pub mod otlp;
mod over_http;
pub mod protocol;
pub mod tally;
pub mod via;

use std::sync::Arc;

use http::HeaderValue;

pub use lane::{LaneSettings, Lanes, Reroute, run};
pub use member::{Member, QueueLimits, State};
pub use over_http::HttpPeers;
pub use protocol::Protocol;

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

impl Outbound {
    /// `request` with the admin token, when one is set: what a probe carries.
    pub fn authorized(&self, request: http::request::Builder) -> http::request::Builder {
        match &self.auth {
            Some(auth) => request.header(http::header::AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    /// A delivery's `POST` to `uri`: its media type, `Logdist-Deadline`, `Logdist-Via`
    /// and the admin token when one is set, as every protocol's delivery carries them.
    pub fn delivery(
        &self,
        uri: http::Uri,
        content_type: &'static str,
        deadline: HeaderValue,
        via: HeaderValue,
    ) -> http::request::Builder {
        self.authorized(
            http::Request::post(uri)
                .header(http::header::CONTENT_TYPE, content_type)
                .header(crate::api::DEADLINE_HEADER, deadline)
                .header(via::HEADER, via),
        )
    }
}
