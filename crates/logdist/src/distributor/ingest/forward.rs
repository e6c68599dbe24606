//! Fluent forward in (`--forward-listen`): Fluentd, Fluent Bit, Docker's `fluentd` log
//! driver and the Fluent logger libraries send MessagePack over TCP. Each frame (an event
//! stream, in any of the four modes) is decoded by logdist-core's pure decoder
//! ([`logdist_core::forward::decode`]) into ONE packet, a chunk of N entries a packet of N,
//! and routed as an HTTP packet is ([`super::accept`]).
//!
//! Acknowledgements: a frame whose option carries `chunk` is answered `{"ack": chunk}`
//! only once its packet is acknowledged as `--ack` says (`delivered`: by an analyzer; that
//! is the end-to-end, no-loss acknowledgement Fluentd's `require_ack_response` asks for).
//! A packet that is refused (no analyzer, queue full, shutting down) gets no ack: it is
//! logged and counted in `logdist_rejected_total{format="forward"}`, and the connection
//! is closed, so the client learns at once and sends it again. Without `chunk` the
//! protocol is at most once: a refused frame is lost, as the client asked.
//!
//! Backpressure: a connection's frames are handled one at a time, and the next is not read
//! until the one before is answered, so a slow analyzer stops the reading and TCP pushes
//! back on the client. A connection that sends nothing for `--forward-idle-timeout`, or
//! takes longer than `--body-timeout` to send one frame, is closed. Bytes that are no
//! frame, or a frame larger than `--max-body`, close their connection with a log line and
//! `logdist_rejected_total{reason="bad_request",format="forward"}`; the listener keeps
//! serving. On shutdown the listener stops accepting; each connection answers the frame
//! it is handling (its packet drains with the queues), then closes.
//!
//! Shared key (`--forward-shared-key`): the forward protocol's handshake. On accept the
//! listener sends HELO with a fresh random nonce; the client's first frame must be a PING
//! whose digest proves it knows the key; it is answered PONG (the pure part is
//! [`logdist_core::forward::handshake`]), and only then are event frames read. A wrong
//! key, a first frame that is no PING, or a client claiming the server's own hostname
//! (`--forward-self-hostname`) is answered PONG false with a reason, logged, counted in
//! `logdist_rejected_total{reason="auth",format="forward"}`, and closed. The PING is read
//! under the same idle timeout, frame timeout and size limit as any frame.
//!
//! TLS (`--tls-cert`/`--tls-key`, as HTTP's): each connection is a TLS handshake first
//! (bounded by the frame timeout), then the same protocol inside. One connection handler
//! serves both, over any `AsyncRead + AsyncWrite`.
//!
//! The listener ([`serve`]) is a plain accept loop over a per-connection handler, apart
//! from the forward-specific part ([`Connection`]), so that another stream protocol can
//! share it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use logdist_core::DecodeOptions;
use logdist_core::forward::decode::{Events, Frame, decode_forward, frame};
use logdist_core::forward::encode_ack;
use logdist_core::forward::handshake::{self, NONCE_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{INLINE_DECODE_BYTES, Ingest, Received, accept, epoch_ms, set_aside};
use crate::http::ApiError;
use crate::workers::Workers;

/// The format's name in metrics and logs.
const FORMAT: &str = "forward";

/// The `reason` of bytes that are no forward frame, as HTTP's 400.
const BAD: &str = "bad_request";

/// The most read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// How a forward connection is timed and admitted.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// A connection that sends nothing this long (between frames, or within one) is closed.
    pub idle_timeout: Duration,
    /// The longest one frame may take to arrive once it has begun (`--body-timeout`); it
    /// bounds the TLS handshake too.
    pub frame_timeout: Duration,
    /// The shared key and hostname clients must handshake with (`--forward-shared-key`);
    /// `None`: any client may send.
    pub auth: Option<Arc<handshake::Server>>,
    /// TLS on every connection (`--tls-cert`/`--tls-key`); `None`: plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The hostname the server gives in PONG when `--forward-self-hostname` is not set: this
/// machine's (Linux's `/proc/sys/kernel/hostname`), or `logdist` where there is none.
pub fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "logdist".to_owned())
}

// === The listener ===

/// Accepts connections on `listener` until `shutdown`, each handed to the least busy of
/// `workers` (where its packets are routed and delivered, as an HTTP connection's are);
/// then waits for the connections to finish what they were handling.
pub async fn serve(
    listener: TcpListener,
    ingest: Arc<Ingest>,
    settings: ForwardSettings,
    workers: Arc<Workers>,
    shutdown: CancellationToken,
) {
    let received = Arc::new(Received::new(FORMAT));
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: wait a little rather than spin.
                    tracing::warn!(error = %e, "Could not accept a forward connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Registered with the accepting runtime's reactor: taken out, so that the worker
        // registers it with its own.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "Handing a forward connection to a worker failed.");
                continue;
            }
        };
        let (ingest, received, shutdown) = (ingest.clone(), received.clone(), shutdown.clone());
        let settings = settings.clone();
        workers.spawn_connection(Box::pin(connections.track_future(async move {
            let Ok(stream) = TcpStream::from_std(stream) else {
                return;
            };
            let Some(acceptor) = settings.tls.clone().map(TlsAcceptor::from) else {
                Connection::new(stream, peer, ingest, received, settings, shutdown)
                    .run()
                    .await;
                return;
            };
            let limit = settings.frame_timeout.min(settings.idle_timeout);
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = tokio::time::timeout(limit, acceptor.accept(stream)) => accepted,
            };
            let stream = match accepted {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "Forward TLS handshake failed.");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "Forward TLS handshake not finished in time; closing.");
                    return;
                }
            };
            Connection::new(stream, peer, ingest, received, settings, shutdown)
                .run()
                .await;
        })));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

// === One connection ===

/// A forward client's connection, over TCP or TLS.
struct Connection<S> {
    stream: S,
    peer: SocketAddr,
    ingest: Arc<Ingest>,
    /// `logdist_packets_received_total{format="forward"}` and its messages.
    received: Arc<Received>,
    settings: ForwardSettings,
    shutdown: CancellationToken,
    /// Bytes read and not yet a whole frame.
    buf: BytesMut,
    /// When the frame being read began, if one is.
    started: Option<Instant>,
}

/// Why a connection ends.
enum End {
    /// The client closed it, or it was idle, or the distributor is shutting down.
    Quiet(&'static str),
    /// The client sent what cannot be read: counted by the reason's label, logged.
    Bad(&'static str, String),
    /// A frame with `chunk` was refused: no ack, so the client sends it again.
    Refused(ApiError),
    /// The socket failed.
    Io(std::io::Error),
    /// The client failed the shared-key handshake: counted as `auth`, logged.
    Auth(String),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn new(
        stream: S,
        peer: SocketAddr,
        ingest: Arc<Ingest>,
        received: Arc<Received>,
        settings: ForwardSettings,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            stream,
            peer,
            ingest,
            received,
            settings,
            shutdown,
            buf: BytesMut::with_capacity(READ_CHUNK),
            started: None,
        }
    }

    async fn run(mut self) {
        let end = self.serve().await;
        let peer = self.peer;
        match end {
            End::Quiet(why) => tracing::debug!(%peer, why, "Forward connection closed."),
            End::Bad(reason, error) => {
                reject(reason);
                tracing::warn!(%peer, %error, "Closed a forward connection: its bytes are no forward frame.");
            }
            End::Refused(error) => {
                tracing::warn!(%peer, %error, "Closed a forward connection: its chunk was refused, not acknowledged; the client sends it again.");
            }
            End::Io(error) => tracing::debug!(%peer, %error, "Forward connection failed."),
            End::Auth(error) => {
                reject("auth");
                tracing::warn!(%peer, %error, "Closed a forward connection: it failed the shared-key handshake.");
            }
        }
        // A TLS client is told the end (close_notify); a TCP one sees the socket close.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }

    async fn serve(&mut self) -> End {
        if let Some(server) = self.settings.auth.clone()
            && let Err(end) = self.handshake(&server).await
        {
            return end;
        }
        loop {
            let bytes = match self.next_frame().await {
                Ok(bytes) => bytes,
                Err(end) => return end,
            };
            if let Some(end) = self.handle(bytes).await {
                return end;
            }
        }
    }

    /// HELO, the client's PING, PONG: `Ok` when the client is in.
    async fn handshake(&mut self, server: &handshake::Server) -> Result<(), End> {
        // `rand::random` draws from the thread's CSPRNG (ChaCha12, seeded by the OS): a
        // nonce no client can guess, so a PING recorded on one connection is worthless on
        // another.
        let nonce: [u8; NONCE_LEN] = rand::random();
        self.write(&handshake::helo(&nonce)).await?;
        let answer = match self.next_frame().await {
            Ok(ping) => handshake::answer_ping(&ping, &nonce, server),
            // Bytes that are no MessagePack array: no PING either.
            Err(End::Bad(BAD, error)) => {
                let refusal = handshake::Refusal::NotPing(error);
                let pong = handshake::pong(false, refusal.reason(), "", b"");
                let _ = self.write(&pong).await;
                return Err(End::Auth(refusal.to_string()));
            }
            Err(end) => return Err(end),
        };
        self.write(&answer.pong).await?;
        match (answer.outcome, answer.client) {
            (Ok(()), client) => {
                tracing::debug!(peer = %self.peer, ?client, "Forward client authenticated.");
                Ok(())
            }
            (Err(refusal), Some(client)) => Err(End::Auth(format!("client `{client}`: {refusal}"))),
            (Err(refusal), None) => Err(End::Auth(refusal.to_string())),
        }
    }

    /// Writes an answer, under the idle timeout.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), End> {
        let write = tokio::time::timeout(self.settings.idle_timeout, async {
            self.stream.write_all(bytes).await?;
            // TLS holds what is written until flushed.
            self.stream.flush().await
        });
        match write.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Io(e)),
            Err(_) => Err(End::Quiet("the client did not read its answer")),
        }
    }

    /// Reads until the buffer holds a whole frame, and takes it; `Err` ends the
    /// connection.
    async fn next_frame(&mut self) -> Result<Bytes, End> {
        let max_len = self.ingest.settings.max_body;
        loop {
            let need = match frame(&self.buf, max_len) {
                Ok(Frame::Complete(n)) => {
                    self.started = None;
                    return Ok(self.buf.split_to(n).freeze());
                }
                Ok(Frame::Partial { at_least }) => at_least,
                Err(e) => return Err(End::Bad(BAD, e.to_string())),
            };
            // What was read is answered; a frame not yet whole is the client's to resend.
            if self.shutdown.is_cancelled() {
                return Err(End::Quiet("shutting down"));
            }
            let now = Instant::now();
            let mut deadline = now + self.settings.idle_timeout;
            if !self.buf.is_empty() {
                let begun = *self.started.get_or_insert(now);
                deadline = deadline.min(begun + self.settings.frame_timeout);
            }
            self.buf
                .reserve((need - self.buf.len()).clamp(1, READ_CHUNK));
            let read = tokio::select! {
                () = self.shutdown.cancelled() => return Err(End::Quiet("shutting down")),
                read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)) => read,
            };
            match read {
                Err(_) if self.buf.is_empty() => return Err(End::Quiet("idle")),
                Err(_) => {
                    return Err(End::Bad(
                        "timeout",
                        format!(
                            "a frame took longer than {:?} to arrive",
                            self.settings.frame_timeout.min(self.settings.idle_timeout)
                        ),
                    ));
                }
                Ok(Ok(0)) if self.buf.is_empty() => return Err(End::Quiet("closed by the client")),
                Ok(Ok(0)) => {
                    return Err(End::Bad(
                        BAD,
                        format!(
                            "the connection closed within a frame ({} bytes of it read)",
                            self.buf.len()
                        ),
                    ));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(End::Io(e)),
            }
        }
    }

    /// Decodes, routes and answers one frame; `Some` ends the connection.
    async fn handle(&mut self, bytes: Bytes) -> Option<End> {
        let ingest = &self.ingest;
        let settings = &ingest.settings;
        let now_ms = epoch_ms(SystemTime::now());
        let options = DecodeOptions {
            validation: settings.validation,
            unit: settings.unit,
            now_ms,
            max_len: settings.max_body,
            schema: settings.schema.clone(),
            index: None,
        };
        let decoded = if bytes.len() <= INLINE_DECODE_BYTES {
            decode_forward(&bytes, &options)
        } else {
            // Megabytes of gzip and mapping take milliseconds: off the async workers.
            match tokio::task::spawn_blocking(move || decode_forward(&bytes, &options)).await {
                Ok(decoded) => decoded,
                Err(e) => return Some(End::Bad("internal", format!("decoding failed: {e}"))),
            }
        };
        let Events {
            tag,
            decoded,
            chunk,
            entries,
        } = match decoded {
            Ok(events) => events,
            Err(e) => return Some(End::Bad(BAD, e.to_string())),
        };
        if !decoded.rejected.is_empty()
            && let Err(e) = set_aside(ingest, FORMAT, false, now_ms, &decoded.rejected)
        {
            // `--on-invalid reject`: the frame is refused whole; the client is told the
            // only way forward has, by the connection's end.
            return Some(End::Bad(e.reason(), format!("tag `{tag}`: {e}")));
        }
        tracing::trace!(peer = %self.peer, tag, entries, chunk = chunk.is_some(), "Forward frame.");
        match accept(ingest, &self.received, decoded.packet, None).await {
            Ok(_) => {}
            Err(e) => {
                reject(e.reason());
                return match chunk {
                    Some(_) => Some(End::Refused(e)),
                    None => {
                        tracing::warn!(peer = %self.peer, tag, error = %e, "Dropped a forward frame without `chunk`: refused, and its client does not resend.");
                        None
                    }
                };
            }
        }
        let chunk = chunk?;
        self.write(&encode_ack(&chunk)).await.err()
    }
}

/// Counts a refused frame.
fn reject(reason: &'static str) {
    metrics::counter!("logdist_rejected_total", "reason" => reason, "format" => FORMAT)
        .increment(1);
}
