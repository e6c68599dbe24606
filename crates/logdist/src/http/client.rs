//! A small JSON-over-HTTP client for the control plane: registration, stats, deregistration.
//! The hot paths (delivery, load generation) use the hyper client directly.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// An HTTP client with one keep-alive pool, speaking HTTPS to `https://` hosts: the
/// distributor's probes and deliveries (with its own body type), and [`JsonClient`].
pub type HttpClient<B = Full<Bytes>> = Client<HttpsConnector<HttpConnector>, B>;

/// A client with `TCP_NODELAY` (deliveries are single writes that must not wait for
/// Nagle), TLS for `https://` analyzers, and a keep-alive pool large enough for every
/// lane's concurrent deliveries.
pub fn http_client<B>(connect_timeout: Duration, tls: rustls::ClientConfig) -> HttpClient<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    connector.set_connect_timeout(Some(connect_timeout.max(Duration::from_millis(100))));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(connector)
}
