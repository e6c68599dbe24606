//! What the protocols that deliver over HTTP share: their connections ([`HttpPeers`]); a
//! batch's `POST` with every header a delivery carries, bounded by the delivery timeout
//! ([`HttpPeers::post`]); a probe answered 2xx ([`answers_ok`]); one request's exchange; and the
//! reason an analyzer gives when it refuses.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Body;

use super::Outbound;
use super::protocol::DeliveryError;
use super::via;
use crate::api::delivery_deadline;
use crate::distributor::job::Job;
use crate::error_chain;
use crate::http::{HttpClient, http_client};

/// The connections of a protocol that delivers over HTTP, and what its requests carry.
pub struct HttpPeers<B = Full<Bytes>> {
    /// Deliveries, one keep-alive pool per worker, so that a delivery's connection is
    /// driven on the thread that sends on it.
    clients: Vec<HttpClient<B>>,
    /// Probes.
    pub probes: HttpClient,
    /// What every request carries: the token, and this distributor's `Logdist-Via`.
    pub outbound: Outbound,
}

impl<B> HttpPeers<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    /// A pool for each of `workers` and one for probes, connecting within
    /// `connect_timeout`, over `tls`.
    pub fn new(
        workers: usize,
        connect_timeout: Duration,
        tls: &rustls::ClientConfig,
        outbound: Outbound,
    ) -> Self {
        Self {
            clients: (0..workers.max(1))
                .map(|_| http_client(connect_timeout, tls.clone()))
                .collect(),
            probes: http_client(connect_timeout, tls.clone()),
            outbound,
        }
    }

    /// The pool of worker `lane`.
    pub fn client(&self, lane: usize) -> &HttpClient<B> {
        &self.clients[lane % self.clients.len()]
    }

    /// One delivery of `jobs` from worker `lane` over HTTP: `POST uri` of `body` as
    /// `content_type`, with the headers of [`Outbound::delivery`] (`Logdist-Deadline` from
    /// `timeout`, the jobs' `Logdist-Via`, the token), its answer read to the end within
    /// `timeout`. The 2xx answer's body, for a protocol that reads it.
    pub async fn post(
        &self,
        lane: usize,
        uri: http::Uri,
        content_type: &'static str,
        jobs: &[Job],
        body: B,
        timeout: Duration,
    ) -> Result<Bytes, DeliveryError>
    where
        B: Unpin,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let outbound = &self.outbound;
        let via = via::outgoing(&outbound.via, &outbound.via_header, jobs);
        let request = outbound
            .delivery(uri, content_type, delivery_deadline(timeout), via)
            .body(body)
            .map_err(|e| DeliveryError::Transport(e.to_string()))?;
        tokio::time::timeout(timeout, exchange_answer(self.client(lane), request))
            .await
            .unwrap_or(Err(DeliveryError::Timeout(timeout)))
    }

    /// Whether `GET uri` is answered 2xx: the probe of most HTTP protocols.
    pub async fn get_ok(&self, uri: http::Uri) -> bool {
        self.answers_ok(Request::get(uri)).await
    }

    /// Whether `request` (given the token) with an empty body is answered 2xx.
    pub async fn answers_ok(&self, request: http::request::Builder) -> bool {
        answers_ok(&self.probes, &self.outbound, request).await
    }
}

/// A probe: whether `request` (given the token) with an empty body is answered 2xx, the
/// answer read to the end so that the connection goes back to the pool.
async fn answers_ok(
    client: &HttpClient,
    outbound: &Outbound,
    request: http::request::Builder,
) -> bool {
    let Ok(request) = outbound.authorized(request).body(Full::new(Bytes::new())) else {
        return false;
    };
    let Ok(response) = client.request(request).await else {
        return false;
    };
    let ok = response.status().is_success();
    response.into_body().collect().await.is_ok() && ok
}

/// Sends `request` and reads the answer to its end, so that the connection goes back to
/// the pool: `Ok` for a 2xx, else the analyzer's status and [`reason_of`] its body. A
/// connection refused is [`DeliveryError::Refused`], any other failure to exchange
/// [`DeliveryError::Transport`].
pub async fn exchange<B>(client: &HttpClient<B>, request: Request<B>) -> Result<(), DeliveryError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    exchange_answer(client, request).await.map(drop)
}

/// [`exchange`], with the body of the 2xx answer (a protocol that reads its answer).
pub async fn exchange_answer<B>(
    client: &HttpClient<B>,
    request: Request<B>,
) -> Result<Bytes, DeliveryError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let response = client.request(request).await.map_err(|e| {
        if e.is_connect() {
            DeliveryError::Refused(error_chain(&e))
        } else {
            DeliveryError::Transport(error_chain(&e))
        }
    })?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| DeliveryError::Transport(e.to_string()))?
        .to_bytes();
    if status.is_success() {
        Ok(body)
    } else {
        Err(DeliveryError::Status(status, reason_of(&body)))
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
