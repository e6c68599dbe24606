//! logdist's own delivery protocol: a batch is one `POST {url}/packets` of NDJSON (the
//! packets' lines, sent without a copy), acknowledged by any 2xx; health is
//! `GET {url}/health` answering 2xx. Every request carries the `Logdist-Deadline` and
//! `Logdist-Via` headers, and the admin token when one is set.

use std::time::Duration;

use super::address::AnalyzerUrl;
use super::batch::Batch;
use super::over_http::HttpPeers;
use super::protocol::{DeliveryError, Failed, Protocol, Sending};

use crate::distributor::job::Job;

/// NDJSON to `/packets`, over one keep-alive pool per worker.
pub struct NdjsonPackets {
    /// Its connections, and what its requests carry.
    peers: HttpPeers<Batch>,
}

impl NdjsonPackets {
    /// The protocol over `peers`.
    pub fn new(peers: HttpPeers<Batch>) -> Self {
        Self { peers }
    }

    async fn post(
        &self,
        lane: usize,
        to: &AnalyzerUrl,
        jobs: &[Job],
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        // One request body for the whole batch, its large packets sent without a copy.
        let body = Batch::new(jobs.iter().map(|job| &job.packet.ndjson));
        let uri = to.uri("/packets");
        self.peers
            .post(lane, uri, "application/x-ndjson", jobs, body, timeout)
            .await
            .map(drop)
    }
}

impl Protocol for NdjsonPackets {
    fn name(&self) -> &'static str {
        "logdist"
    }

    fn send<'a>(
        &'a self,
        lane: usize,
        to: &'a AnalyzerUrl,
        jobs: &'a [Job],
        timeout: Duration,
    ) -> Sending<'a, Result<(), Failed>> {
        // One request for the batch: a failure acknowledged none of it.
        Box::pin(async move { Ok(self.post(lane, to, jobs, timeout).await?) })
    }

    fn probe<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(self.peers.get_ok(to.uri("/health")))
    }
}
