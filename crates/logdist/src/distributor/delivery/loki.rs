//! The Loki delivery protocol (`loki`): a batch is one `POST {url}/loki/api/v1/push` of a
//! `PushRequest`, protobuf, snappy block-compressed (`Content-Type:
//! application/x-protobuf`), as Promtail, Grafana Alloy and Vector push. Its messages are
//! mapped as [`logdist_core::encode_push`] documents: a stream per `severity` and `source`
//! label set, an entry per message whose line is the message's JSON as sent and whose time
//! is its `timestamp` (in `--timestamp-unit`), the time of the push when it has none.
//!
//! A 2xx acknowledges the batch (Loki answers 204). Loki answers 400 for a push it refuses
//! for its content (an entry too old or too far ahead, a line too long, too many label
//! names...), with its reason as plain text: a refusal of content, which the lane narrows
//! down by halving the batch until the packets refused are alone, each failing by itself
//! with Loki's reason. Loki stores the valid entries of a push it answers 400, so those
//! of a batch it partly refused may reach it again: at least once, as ever. A 429 (rate
//! limited) or 5xx ejects the analyzer and routes its batch again, as for every protocol.
//!
//! Health: `GET {url}/ready` answering 2xx, Loki's readiness endpoint (a logdist
//! distributor serves it too, so that one can stand in for Loki). The protocol is not
//! detected: a Loki is registered with `loki`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use logdist_core::TimestampUnit;

use super::address::AnalyzerUrl;
use super::over_http::HttpPeers;
use super::protocol::{DeliveryError, Failed, Protocol, Sending, messages_of};

use crate::distributor::job::Job;

/// Where Loki takes pushes.
const PATH: &str = "/loki/api/v1/push";

/// Loki's readiness endpoint.
const READY: &str = "/ready";

/// The media type of a protobuf push (snappy-compressed, always, in Loki's push).
const PROTOBUF: &str = "application/x-protobuf";

/// One push a batch to `/loki/api/v1/push`, over one keep-alive pool per worker.
pub struct LokiPush {
    /// Its connections, and what its requests carry.
    peers: HttpPeers,
    /// The unit of messages' `timestamp` (`--timestamp-unit`), to write nanoseconds.
    unit: TimestampUnit,
}

impl LokiPush {
    /// The protocol over `peers`, reading times in `unit`.
    pub fn new(peers: HttpPeers, unit: TimestampUnit) -> Self {
        Self { peers, unit }
    }

    async fn push(
        &self,
        lane: usize,
        to: &AnalyzerUrl,
        jobs: &[Job],
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let messages = jobs.iter().flat_map(|job| messages_of(&job.packet.ndjson));
        let request = logdist_core::encode_push(messages, self.unit, SystemTime::now());
        let body = logdist_core::loki::push_body(&request)
            .map_err(|e| DeliveryError::Transport(format!("could not compress the push: {e}")))?;
        self.peers
            .post(
                lane,
                to.uri(PATH),
                PROTOBUF,
                jobs,
                Full::new(Bytes::from(body)),
                timeout,
            )
            .await
            .map(drop)
    }
}

impl Protocol for LokiPush {
    fn name(&self) -> &'static str {
        "loki"
    }

    fn send<'a>(
        &'a self,
        lane: usize,
        to: &'a AnalyzerUrl,
        jobs: &'a [Job],
        timeout: Duration,
    ) -> Sending<'a, Result<(), Failed>> {
        // One request for the batch: a failure acknowledged none of it.
        Box::pin(async move { Ok(self.push(lane, to, jobs, timeout).await?) })
    }

    fn probe<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(self.peers.get_ok(to.uri(READY)))
    }

    /// Never: `GET /ready` answers 2xx on many servers that are no Loki. Register a Loki
    /// with `loki`.
    fn recognizes<'a>(&'a self, _to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(async { false })
    }
}
