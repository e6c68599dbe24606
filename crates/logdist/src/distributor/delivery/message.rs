//! The original project's delivery protocol (`message`): each message of a batch is one
//! `POST {url}/message/process` with `{"data": <the message as it was sent>}` and
//! `Content-Type: application/json`, acknowledged by a 2xx. A batch is acknowledged when
//! every message of it is; up to `--message-concurrency` of its messages are in flight at
//! once (so, with `--lane-concurrency` deliveries, at most their product per analyzer).
//!
//! The original analyzer serves no health endpoint: its health is a TCP connect to its
//! address. It is recognized (see [`Protocol::recognizes`]) by its answer to
//! `POST /message/process` with an empty body, which it refuses with 400 and which
//! delivers nothing.
//!
//! When one message fails, sending stops (what is in flight is abandoned) and the
//! delivery fails, saying which messages the analyzer acknowledged (see
//! [`super::protocol::Failed`]): the lane routes again only the others. A message that
//! was in flight at the failure is in doubt, and routed again: at least once.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{self, HeaderValue};

use super::address::AnalyzerUrl;
use super::over_http::{HttpPeers, exchange};
use super::protocol::{DeliveryError, Failed, Protocol, Sending, messages_of};
use super::via;
use crate::api::delivery_deadline;
use crate::distributor::job::Job;
use crate::http::HttpClient;

/// Where the original analyzer takes a message.
const PATH: &str = "/message/process";

/// One message a request to `/message/process`, over one keep-alive pool per worker.
pub struct MessageProcess {
    /// Its connections, and what its requests carry.
    peers: HttpPeers,
    /// Messages of one delivery in flight at once (`--message-concurrency`).
    concurrency: usize,
}

impl MessageProcess {
    /// The protocol over `peers`, `concurrency` messages
    /// of a delivery in flight at once.
    pub fn new(peers: HttpPeers, concurrency: usize) -> Self {
        Self {
            peers,
            concurrency: concurrency.max(1),
        }
    }

    async fn post_all(
        &self,
        lane: usize,
        to: &AnalyzerUrl,
        jobs: &[Job],
        timeout: Duration,
    ) -> Result<(), Failed> {
        let client = self.peers.client(lane);
        let via = via::outgoing(
            &self.peers.outbound.via,
            &self.peers.outbound.via_header,
            jobs,
        );
        let deadline = delivery_deadline(timeout);
        // Each message's body, with where it sits: its job, and its place in the packet.
        let mut bodies = Vec::new();
        let mut acknowledged: Vec<Vec<bool>> = Vec::with_capacity(jobs.len());
        for (j, job) in jobs.iter().enumerate() {
            let before = bodies.len();
            bodies.extend(
                messages(&job.packet.ndjson)
                    .enumerate()
                    .map(|(m, b)| (j, m, b)),
            );
            acknowledged.push(vec![false; bodies.len() - before]);
        }
        let acked = &mut acknowledged;
        let (via, deadline) = (&via, &deadline);
        let all = async move {
            let mut sends = futures_util::stream::iter(bodies)
                .map(|(j, m, body)| async move {
                    (j, m, self.post_one(client, to, body, via, deadline).await)
                })
                .buffer_unordered(self.concurrency);
            while let Some((j, m, outcome)) = sends.next().await {
                // The first failure fails the batch; what is still in flight is dropped.
                outcome?;
                acked[j][m] = true;
            }
            Ok(())
        };
        let outcome = tokio::time::timeout(timeout, all)
            .await
            .unwrap_or(Err(DeliveryError::Timeout(timeout)));
        outcome.map_err(|error| Failed {
            error,
            acknowledged,
            reasons: Vec::new(),
        })
    }

    async fn post_one(
        &self,
        client: &HttpClient,
        to: &AnalyzerUrl,
        body: Bytes,
        via: &HeaderValue,
        deadline: &HeaderValue,
    ) -> Result<(), DeliveryError> {
        let request = self
            .peers
            .outbound
            .delivery(
                to.uri(PATH),
                "application/json",
                deadline.clone(),
                via.clone(),
            )
            .body(Full::new(body))
            .map_err(|e| DeliveryError::Transport(e.to_string()))?;
        exchange(client, request).await
    }

    /// Whether something listens at `to`'s address.
    async fn connect(to: &AnalyzerUrl) -> bool {
        tokio::net::TcpStream::connect((to.bare_host(), to.port))
            .await
            .is_ok()
    }

    /// Whether `POST /message/process` with an empty body is refused as the original
    /// analyzer refuses it: with 400.
    async fn answers_as_original(&self, to: &AnalyzerUrl) -> bool {
        let request = Request::post(to.uri(PATH))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::new()));
        let Ok(request) = request else { return false };
        let Ok(response) = self.peers.probes.request(request).await else {
            return false;
        };
        let status = response.status();
        response.into_body().collect().await.is_ok() && status == http::StatusCode::BAD_REQUEST
    }
}

/// The request bodies of a packet's messages: `{"data": LINE}` for each NDJSON line, the
/// line as it was sent.
pub fn messages(ndjson: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    messages_of(ndjson).map(|line| {
        let mut body = BytesMut::with_capacity(line.len() + 10);
        body.put_slice(b"{\"data\":");
        body.put_slice(&line);
        body.put_u8(b'}');
        body.freeze()
    })
}

impl Protocol for MessageProcess {
    fn name(&self) -> &'static str {
        "message"
    }

    fn send<'a>(
        &'a self,
        lane: usize,
        to: &'a AnalyzerUrl,
        jobs: &'a [Job],
        timeout: Duration,
    ) -> Sending<'a, Result<(), Failed>> {
        Box::pin(self.post_all(lane, to, jobs, timeout))
    }

    fn probe<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(Self::connect(to))
    }

    fn recognizes<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(self.answers_as_original(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_is_wrapped_as_it_was_sent() {
        let ndjson = Bytes::from_static(
            b"{\"timestamp\":1,\"severity\":\"WARN\",\"source\":\"a\",\"message\":\"x\"}\n\n{\"a\": [1, 2]}\r\n",
        );
        let bodies: Vec<Bytes> = messages(&ndjson).collect();
        assert_eq!(bodies.len(), 2);
        assert_eq!(
            bodies[0],
            "{\"data\":{\"timestamp\":1,\"severity\":\"WARN\",\"source\":\"a\",\"message\":\"x\"}}"
        );
        let second: serde_json::Value = serde_json::from_slice(&bodies[1]).unwrap();
        assert_eq!(second, serde_json::json!({"data": {"a": [1, 2]}}));
    }
}
