//! The Fluent forward delivery protocol (`forward`), toward a Fluentd or Fluent Bit
//! aggregator (`in_forward`) at `tcp://host:port`, or `tls://host:port` over TLS (trusting
//! what `--tls-ca` and the system trust). A batch is one PackedForward
//! `[tag, entries, {"chunk": ID, "size": N}]` (see [`logdist_core::forward`]): its
//! messages as `[EventTime, record]` entries under `--forward-tag`, each record the
//! message's JSON object, its EventTime the message's `timestamp` read in
//! `--timestamp-unit`. `ID` is 16 random bytes in base64, new for each delivery. The
//! batch is acknowledged when the server answers `{"ack": ID}`.
//!
//! Connections are kept: each worker holds its own idle connections by analyzer, takes
//! one for a delivery (or connects), and gives it back once the delivery is acknowledged.
//! One found closed while idle is dropped before it is used. One idle longer than
//! [`IDLE`] is closed. Any failure drops the connection it happened on:
//! - a connect refused (or a failed TLS handshake): [`DeliveryError::Refused`], nothing
//!   was sent;
//! - the connection broken or closed before the ack, an ack of another chunk, or an
//!   answer that is no ack: [`DeliveryError::Transport`]; the server may have the events
//!   (in doubt, so routed again: at least once);
//! - no ack within `--delivery-timeout`: [`DeliveryError::Timeout`].
//!
//! Health: a TCP connect, as for `message` (forward has no health request; its
//! heartbeat is UDP, and optional). The protocol is not detected: an aggregator is
//! registered with `forward`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use futures_util::FutureExt as _;
use logdist_core::TimestampUnit;
use logdist_core::forward::encode::PackedForward;
use logdist_core::forward::{AckRead, EventTime, read_ack};
use rand::RngCore as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::address::{AnalyzerUrl, Transport};
use super::protocol::{DeliveryError, Failed, Protocol, Sending, messages_of};
use crate::distributor::job::Job;

/// How long a connection may stay idle before it is closed rather than used.
pub const IDLE: Duration = Duration::from_secs(30);

/// Longest answer read for an ack: an `{"ack": ID}` is a few dozen bytes.
const MAX_ANSWER: usize = 4096;

/// A connection, over TCP or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A kept connection, and since when it is idle.
struct Idle {
    stream: Box<dyn Stream>,
    since: Instant,
}

/// PackedForward over TCP or TLS, one pool of kept connections per worker.
pub struct ForwardOut {
    /// Idle connections, one map per worker (so that a delivery's connection is driven on
    /// the thread that sends on it), by analyzer base URL.
    pools: Vec<Mutex<HashMap<String, Vec<Idle>>>>,
    /// `tls://` connections.
    tls: TlsConnector,
    /// The tag of every event (`--forward-tag`).
    tag: String,
    /// The unit of messages' `timestamp` (`--timestamp-unit`).
    unit: TimestampUnit,
}

impl ForwardOut {
    /// The protocol for `workers` workers, tagging events `tag`, reading times in `unit`,
    /// trusting `tls` for `tls://` analyzers.
    pub fn new(
        workers: usize,
        tls: rustls::ClientConfig,
        tag: String,
        unit: TimestampUnit,
    ) -> Self {
        Self {
            pools: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
            tls: TlsConnector::from(Arc::new(tls)),
            tag,
            unit,
        }
    }

    async fn deliver(
        &self,
        lane: usize,
        to: &AnalyzerUrl,
        jobs: &[Job],
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let chunk = chunk_id();
        let capacity = jobs.iter().map(|job| job.packet.ndjson.len()).sum();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .and_then(|since| EventTime::from_nanos(since.as_nanos() as i128))
            .unwrap_or(EventTime {
                seconds: 0,
                nanoseconds: 0,
            });
        let mut packed = PackedForward::new(&self.tag, self.unit, now, capacity);
        for job in jobs {
            for message in messages_of(&job.packet.ndjson) {
                packed.push(&message);
            }
        }
        let body = packed.finish(&chunk);
        let pool = &self.pools[lane % self.pools.len()];
        let exchange = async {
            let mut stream = match take_idle(pool, &to.base) {
                Some(stream) => stream,
                None => self.connect(to).await?,
            };
            let clean = send_and_wait_ack(&mut stream, &body, &chunk).await?;
            if clean {
                give_back(pool, &to.base, stream);
            }
            Ok(())
        };
        // On a timeout the exchange is dropped, and its connection with it.
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(DeliveryError::Timeout(timeout)))
    }

    /// A new connection to `to`, over TLS for `tls://`.
    async fn connect(&self, to: &AnalyzerUrl) -> Result<Box<dyn Stream>, DeliveryError> {
        let tcp = TcpStream::connect((to.bare_host(), to.port))
            .await
            .map_err(|e| DeliveryError::Refused(format!("connecting to {}: {e}", to.base)))?;
        let _ = tcp.set_nodelay(true);
        if to.transport() != Transport::Tls {
            return Ok(Box::new(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(to.bare_host().to_owned())
            .map_err(|e| DeliveryError::Refused(format!("{}: {e}", to.base)))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| DeliveryError::Refused(format!("TLS with {}: {e}", to.base)))?;
        Ok(Box::new(tls))
    }
}

/// A new chunk id: 16 random bytes in base64.
fn chunk_id() -> String {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    base64::engine::general_purpose::STANDARD.encode(id)
}

/// An idle connection to `base` that is still open, if the pool has one. Those idle too
/// long, or found closed (or with bytes no request asked for), are dropped on the way.
fn take_idle(pool: &Mutex<HashMap<String, Vec<Idle>>>, base: &str) -> Option<Box<dyn Stream>> {
    let mut pool = pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Every analyzer's stale connections go, those of analyzers gone with them.
    pool.retain(|_, idle| {
        idle.retain(|c| c.since.elapsed() < IDLE);
        !idle.is_empty()
    });
    let idle = pool.get_mut(base)?;
    while let Some(mut kept) = idle.pop() {
        let mut byte = [0u8; 1];
        // Pending means open and quiet; anything else (closed, broken, or bytes no
        // request asked for) means it cannot carry a delivery.
        if kept.stream.read(&mut byte).now_or_never().is_none() {
            return Some(kept.stream);
        }
    }
    None
}

/// Keeps `stream` for the next delivery to `base`.
fn give_back(pool: &Mutex<HashMap<String, Vec<Idle>>>, base: &str, stream: Box<dyn Stream>) {
    let mut pool = pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    pool.entry(base.to_owned()).or_default().push(Idle {
        stream,
        since: Instant::now(),
    });
}

/// Writes `body` and reads the answer until it acknowledges `chunk`. `Ok(true)` when the
/// connection can be used again, `Ok(false)` when the ack came with bytes after it.
async fn send_and_wait_ack(
    stream: &mut Box<dyn Stream>,
    body: &[u8],
    chunk: &str,
) -> Result<bool, DeliveryError> {
    let broken = |e: std::io::Error| DeliveryError::Transport(format!("sending the chunk: {e}"));
    stream.write_all(body).await.map_err(broken)?;
    stream.flush().await.map_err(broken)?;
    let mut answer = Vec::with_capacity(64);
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| {
            DeliveryError::Transport(format!("waiting for the ack of chunk {chunk}: {e}"))
        })?;
        if n == 0 {
            return Err(DeliveryError::Transport(format!(
                "the connection was closed before chunk {chunk} was acknowledged"
            )));
        }
        answer.extend_from_slice(&buf[..n]);
        match read_ack(&answer) {
            AckRead::Incomplete if answer.len() <= MAX_ANSWER => {}
            AckRead::Incomplete => {
                return Err(DeliveryError::Transport(format!(
                    "the answer to chunk {chunk} is over {MAX_ANSWER} bytes and no ack"
                )));
            }
            AckRead::Ack { chunk: acked, len } if acked == chunk => {
                return Ok(len == answer.len());
            }
            AckRead::Ack { chunk: acked, .. } => {
                return Err(DeliveryError::Transport(format!(
                    "chunk {acked} was acknowledged, not {chunk}"
                )));
            }
            AckRead::Invalid(why) => {
                return Err(DeliveryError::Transport(format!(
                    "the answer to chunk {chunk} is no ack: {why}"
                )));
            }
        }
    }
}

impl Protocol for ForwardOut {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn send<'a>(
        &'a self,
        lane: usize,
        to: &'a AnalyzerUrl,
        jobs: &'a [Job],
        timeout: Duration,
    ) -> Sending<'a, Result<(), Failed>> {
        // One chunk for the batch: a failure acknowledged none of it.
        Box::pin(async move { Ok(self.deliver(lane, to, jobs, timeout).await?) })
    }

    fn probe<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(async move { TcpStream::connect((to.bare_host(), to.port)).await.is_ok() })
    }

    /// Never: a TCP listener is all a probe could find. Register an aggregator with
    /// `forward`.
    fn recognizes<'a>(&'a self, _to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(async { false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_are_new_base64_of_16_bytes() {
        let (a, b) = (chunk_id(), chunk_id());
        assert_ne!(a, b);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&a)
            .unwrap();
        assert_eq!(bytes.len(), 16);
    }

    /// An in-memory peer: what the server answers decides the outcome.
    async fn outcome(answer: &[u8], close: bool) -> Result<bool, DeliveryError> {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let answer = answer.to_vec();
        let peer = tokio::spawn(async move {
            let mut got = vec![0u8; 3];
            server.read_exact(&mut got).await.unwrap();
            server.write_all(&answer).await.unwrap();
            if !close {
                // Keeps the connection open until the client is done.
                let _ = server.read(&mut got).await;
            }
        });
        let mut stream: Box<dyn Stream> = Box::new(client);
        let outcome = send_and_wait_ack(&mut stream, b"abc", "c1").await;
        drop(stream);
        peer.await.unwrap();
        outcome
    }

    #[tokio::test]
    async fn only_an_ack_of_the_chunk_acknowledges() {
        use logdist_core::forward::encode_ack;
        assert!(outcome(&encode_ack("c1"), false).await.unwrap());
        let mut twice = encode_ack("c1");
        twice.extend_from_slice(&encode_ack("c1"));
        assert!(!outcome(&twice, false).await.unwrap(), "not reused");
        for (answer, close, why) in [
            (encode_ack("c2"), false, "acknowledged, not c1"),
            (b"HTTP/1.1 400 Bad Request\r\n".to_vec(), false, "no ack"),
            (Vec::new(), true, "closed before"),
            (encode_ack("c1")[..4].to_vec(), true, "closed before"),
        ] {
            match outcome(&answer, close).await {
                Err(DeliveryError::Transport(text)) => assert!(text.contains(why), "{text}"),
                other => panic!("{answer:?}: {other:?}"),
            }
        }
    }
}
