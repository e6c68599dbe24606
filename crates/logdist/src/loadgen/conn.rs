//! An agent's own HTTP/1.1 connection: opened on first use, kept alive between packets,
//! and replaced after any failure. An agent sends one request at a time, so it needs no
//! pool: no lookup by host, no checkout, no second task between it and the socket. The
//! connection's I/O runs in a task on the agent's own worker thread.

use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// The connection could not be opened: nothing was sent.
    #[error("connecting to {authority}: {reason}")]
    Connect { authority: String, reason: String },
    /// The connection failed during the exchange.
    #[error("{0}")]
    Exchange(String),
}

/// Where an agent's requests go: what to connect to and what to put in the request line.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header.
    host: HeaderValue,
    /// The request target (origin form).
    path: Uri,
}

impl Target {
    /// The target of an `http` URL.
    pub fn new(uri: &Uri) -> Result<Self, String> {
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{uri}: no host in the URL"))?;
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|e| format!("{uri}: host: {e}"))?;
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(Self {
            address: address(authority),
            host,
            path: Uri::from(path),
        })
    }
}

/// One keep-alive connection to the target.
pub(crate) struct Connection {
    target: Target,
    connect_timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection to `target`, opened on first use.
    pub fn new(target: Target, connect_timeout: Duration) -> Self {
        Self {
            target,
            connect_timeout,
            sender: None,
        }
    }

    /// Sends `request` (its URI and `Host` are set here) and returns the answer's head;
    /// the caller reads the body to the end before the next request. A connection the
    /// server closed while idle is replaced and the request sent on the new one, as
    /// nothing was sent on the old.
    pub async fn send(
        &mut self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, ConnError> {
        *request.uri_mut() = self.target.path.clone();
        request
            .headers_mut()
            .insert(header::HOST, self.target.host.clone());
        let mut sender = self.ready().await?;
        let mut sent = sender.try_send_request(request).await;
        if let Err(e) = &mut sent
            && let Some(request) = e.take_message()
        {
            // Closed before the request went out: send it on a new connection.
            sender = self.open().await?;
            sent = sender.try_send_request(request).await;
        }
        let response = sent.map_err(|e| ConnError::Exchange(crate::error_chain(e.error())))?;
        self.sender = Some(sender);
        Ok(response)
    }

    /// The kept connection once it can take a request (its last answer is read to the
    /// end), or a new one if the server closed it.
    async fn ready(&mut self) -> Result<SendRequest<Full<Bytes>>, ConnError> {
        if let Some(mut sender) = self.sender.take()
            && sender.ready().await.is_ok()
        {
            return Ok(sender);
        }
        self.open().await
    }

    /// Forgets the connection, after an exchange that did not finish (a timeout): the
    /// next request opens a new one rather than read a stale answer.
    pub fn reset(&mut self) {
        self.sender = None;
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, ConnError> {
        let failed = |reason: String| ConnError::Connect {
            authority: self.target.address.clone(),
            reason,
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(&self.target.address),
        )
        .await
        .map_err(|_| failed(format!("no connection within {:?}", self.connect_timeout)))?
        .map_err(|e| failed(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| failed(e.to_string()))?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(crate::error_chain(&e)))?;
        // Ends when the sender is dropped or the peer closes; an error then is the
        // exchange's, reported to the request that was waiting on it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        sender
            .ready()
            .await
            .map_err(|e| failed(crate::error_chain(&e)))?;
        Ok(sender)
    }
}

/// `host:port`, with the scheme's default port when the URL names none.
fn address(authority: &Authority) -> String {
    match authority.port_u16() {
        Some(_) => authority.as_str().to_owned(),
        None => format!("{}:80", authority.host()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_has_a_port_and_the_request_target_is_a_path() {
        let target = Target::new(&"http://127.0.0.1:9000/packets?x=1".parse().unwrap()).unwrap();
        assert_eq!(target.address, "127.0.0.1:9000");
        assert_eq!(target.host, "127.0.0.1:9000");
        assert_eq!(target.path, "/packets?x=1");
        let target = Target::new(&"http://example.test".parse().unwrap()).unwrap();
        assert_eq!(target.address, "example.test:80");
        assert_eq!(target.host, "example.test");
        assert_eq!(target.path, "/");
        assert!(Target::new(&"/packets".parse().unwrap()).is_err());
    }
}
