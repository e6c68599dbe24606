//! logdist's own delivery protocol: a batch is one `POST {url}/packets` of NDJSON (the
//! packets' lines, sent without a copy), acknowledged by any 2xx; health is
//! `GET {url}/health` answering 2xx. Every request carries the `Logdist-Deadline` and
//! `Logdist-Via` headers, and the admin token when one is set.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{self, HeaderValue};

use super::Outbound;
use super::address::AnalyzerUrl;
use super::batch::Batch;
use super::protocol::{DeliveryError, Failed, Protocol, Sending};
use super::via;
use crate::api::{DEADLINE_HEADER, delivery_deadline};
use crate::distributor::job::Job;
use crate::error_chain;
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

    /// The `Logdist-Via` of a delivery of `jobs`.
    fn via(&self, jobs: &[Job]) -> HeaderValue {
        via::outgoing(&self.outbound.via, &self.outbound.via_header, jobs)
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
        let mut request = Request::post(to.uri("/packets"))
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header(DEADLINE_HEADER, delivery_deadline(timeout))
            .header(via::HEADER, self.via(jobs));
        if let Some(auth) = &self.outbound.auth {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        let request = request
            .body(body)
            .map_err(|e| DeliveryError::Transport(e.to_string()))?;
        let exchange = async {
            let response = client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    DeliveryError::Refused(error_chain(&e))
                } else {
                    DeliveryError::Transport(error_chain(&e))
                }
            })?;
            let status = response.status();
            // Read the answer to the end so the connection goes back to the pool.
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| DeliveryError::Transport(e.to_string()))?
                .to_bytes();
            if status.is_success() {
                Ok(())
            } else {
                Err(DeliveryError::Status(status, reason_of(&body)))
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(DeliveryError::Timeout(timeout)))
    }

    async fn get_health(&self, to: &AnalyzerUrl) -> bool {
        let mut request = Request::get(to.uri("/health"));
        if let Some(auth) = &self.outbound.auth {
            request = request.header(header::AUTHORIZATION, auth.clone());
        }
        let Ok(request) = request.body(Full::new(Bytes::new())) else {
            return false;
        };
        let Ok(response) = self.probes.request(request).await else {
            return false;
        };
        let ok = response.status().is_success();
        response.into_body().collect().await.is_ok() && ok
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
        Box::pin(self.get_health(to))
    }
}

/// Longest part of an analyzer's error answer passed on to an agent.
const MAX_REASON: usize = 300;

/// What an analyzer's error answer says: its JSON `error` field (logdist's analyzer and
/// most HTTP APIs answer so), or else the start of its body as text.
pub fn reason_of(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Error {
        error: serde_json::Value,
    }
    let text = match serde_json::from_slice::<Error>(body) {
        Ok(Error {
            error: serde_json::Value::String(text),
        }) => text,
        Ok(Error { error }) => error.to_string(),
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    if text.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    if text.is_empty() {
        "no reason given".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_read_from_the_answer() {
        assert_eq!(
            reason_of(br#"{"error":"missing field `timestamp` at line 1"}"#),
            "missing field `timestamp` at line 1"
        );
        assert_eq!(reason_of(b"bad things\n"), "bad things");
        assert_eq!(reason_of(b""), "no reason given");
        assert_eq!(reason_of(br#"{"error":{"code":7}}"#), r#"{"code":7}"#);
        let long = reason_of("é".repeat(1000).as_bytes());
        assert!(long.len() <= MAX_REASON + '…'.len_utf8() && long.ends_with('…'));
        assert!(!reason_of(b"a\x1b[31mred").contains('\x1b'));
    }
}
