//! A small JSON-over-HTTP client for the control plane: registration, stats, deregistration.
//! The hot paths (delivery, load generation) use the hyper client directly.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::distributor::{HttpClient, http_client};

/// A keep-alive client with a per-request timeout and an optional bearer token.
#[derive(Clone)]
pub struct JsonClient {
    inner: HttpClient,
    timeout: Duration,
    token: Option<String>,
}

impl JsonClient {
    /// A client whose requests fail after `timeout`, speaking HTTPS with `tls`.
    pub fn new(timeout: Duration, token: Option<String>, tls: rustls::ClientConfig) -> Self {
        Self {
            inner: http_client(timeout, tls),
            timeout,
            token,
        }
    }

    /// POSTs `body` as JSON; returns the status and the answer's body.
    pub async fn post<B: Serialize>(
        &self,
        url: &str,
        body: &B,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let body = Bytes::from(serde_json::to_vec(body)?);
        self.send(Method::POST, url, body).await
    }

    /// GETs `url` and parses a 2xx answer as JSON.
    pub async fn get<T: DeserializeOwned>(&self, url: &str) -> anyhow::Result<T> {
        let (status, body) = self.send(Method::GET, url, Bytes::new()).await?;
        if !status.is_success() {
            bail!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url} answered invalid JSON"))
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let mut request = Request::builder().method(method).uri(url);
        if !body.is_empty() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(body))
            .with_context(|| format!("bad URL `{url}`"))?;
        let exchange = async {
            let response = self.inner.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .with_context(|| format!("{url} did not answer within {:?}", self.timeout))?
            .with_context(|| format!("request to {url} failed"))
    }
}
