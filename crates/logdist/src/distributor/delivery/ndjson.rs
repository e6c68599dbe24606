//! logdist's own delivery protocol: a batch is one `POST {url}/packets` of NDJSON (the
//! packets' lines, sent without a copy), acknowledged by any 2xx; health is
//! `GET {url}/health` answering 2xx. Every request carries the `Logdist-Deadline` and
//! `Logdist-Via` headers, and the admin token when one is set.

use std::time::Duration;

use hyper::Request;

use super::Outbound;
use super::address::AnalyzerUrl;
use super::batch::Batch;
use super::over_http::{answers_ok, post_batch};
use super::protocol::{DeliveryError, Failed, Protocol, Sending};

use crate::distributor::job::Job;
use crate::http::HttpClient;

/// NDJSON to `/packets`, over one keep-alive pool per worker.
pub struct NdjsonPackets {
    /// Deliveries, one pool per worker, so that a delivery's connection is driven on the
    /// thread that sends on it.
    clients: Vec<HttpClient<Batch>>,
    /// Probes.
    probes: HttpClient,
    /// What every request carries: the token, and this distributor's `Logdist-Via`.
    outbound: Outbound,
}

impl NdjsonPackets {
    /// The protocol over `clients` (one per worker) and `probes`.
    pub fn new(clients: Vec<HttpClient<Batch>>, probes: HttpClient, outbound: Outbound) -> Self {
        Self {
            clients,
            probes,
            outbound,
        }
    }

    async fn post(
        &self,
        lane: usize,
        to: &AnalyzerUrl,
        jobs: &[Job],
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let client = &self.clients[lane % self.clients.len()];
        // One request body for the whole batch, its large packets sent without a copy.
        let body = Batch::new(jobs.iter().map(|job| &job.packet.ndjson));
        let uri = to.uri("/packets");
        post_batch(
            client,
            &self.outbound,
            uri,
            "application/x-ndjson",
            jobs,
            body,
            timeout,
        )
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
        Box::pin(answers_ok(
            &self.probes,
            &self.outbound,
            Request::get(to.uri("/health")),
        ))
    }
}
