//! Syslog ingest: `--syslog-listen tcp://ADDR` and `udp://ADDR` (repeatable; off by
//! default). The listeners are [`stream`](super::stream)'s; the framing and the decoding
//! are `logdist_core::syslog`'s, pure.
//!
//! - **TCP**: frames octet-counted or newline-ended, told apart frame by frame. A
//!   connection's messages are batched into packets; a bad frame (over
//!   `--syslog-max-message`, a lying count, not syslog, not UTF-8) closes the connection
//!   after what came before it is routed, logged and counted in
//!   `logdist_rejected_total{format="syslog",reason}`.
//! - **UDP**: one message a datagram, batched per socket. A datagram cannot be answered,
//!   so nothing is acknowledged and what is lost is counted instead:
//!   `logdist_syslog_dropped_total{reason}` for a datagram that is not syslog
//!   (`invalid`) or too long (`oversize`), and for the messages of a packet routing still
//!   refused after [`UDP_PATIENCE`] (`refused`). Datagrams the kernel dropped because the
//!   socket's buffer was full never reach logdist: `netstat -su` counts them
//!   (`receive buffer errors`).
//!
//! Syslog has no acknowledgement, so `--ack delivered` cannot be kept: a message read is
//! routed and queued as with `--ack accepted`. Over TCP a sender is held back while
//! routing refuses (its connection is not read), so nothing is read that cannot be queued.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::{Buf, BytesMut};
use logdist_core::syslog::{Framer, SyslogOptions, decode_message};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::stream::{self, Batch, Connection, Inlet, Read, StreamSettings, Streams};
use super::{Ingest, epoch_ms};
use crate::workers::Workers;

/// Its name in logs and metrics.
pub const FORMAT: &str = "syslog";

/// How long a UDP socket's packet waits for routing to take it before its messages are
/// dropped: longer, and the kernel drops the datagrams that arrive meanwhile instead,
/// uncounted.
pub const UDP_PATIENCE: Duration = Duration::from_secs(1);

/// The transport of a `--syslog-listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// One `--syslog-listen`: `tcp://ADDR` or `udp://ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogListen {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl FromStr for SyslogListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (transport, addr) = if let Some(addr) = text.strip_prefix("tcp://") {
            (Transport::Tcp, addr)
        } else if let Some(addr) = text.strip_prefix("udp://") {
            (Transport::Udp, addr)
        } else {
            return Err(format!(
                "`{text}`: expected tcp://ADDR or udp://ADDR (e.g. tcp://127.0.0.1:6514)"
            ));
        };
        let addr = addr
            .parse()
            .map_err(|e| format!("`{text}`: {e} (an IP address and a port)"))?;
        Ok(Self { transport, addr })
    }
}

impl fmt::Display for SyslogListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        };
        write!(f, "{scheme}://{}", self.addr)
    }
}

/// Binds every `--syslog-listen` and serves them until `shutdown`, tracked by `streams`.
/// A message longer than `max_message` bytes is refused.
pub async fn start(
    ingest: &Arc<Ingest>,
    listen: &[SyslogListen],
    max_message: usize,
    settings: StreamSettings,
    workers: &Arc<Workers>,
    streams: &Streams,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    if listen.is_empty() {
        return Ok(());
    }
    let inlet = Inlet::new(ingest.clone(), FORMAT, settings, streams);
    for spec in listen {
        match spec.transport {
            Transport::Tcp => {
                let listener = TcpListener::bind(spec.addr)
                    .await
                    .with_context(|| format!("--syslog-listen {spec}"))?;
                let addr = listener.local_addr()?;
                info!(%addr, transport = "tcp", max_message, "Syslog listening.");
                stream::serve_tcp(
                    listener,
                    inlet.clone(),
                    workers.clone(),
                    streams,
                    shutdown.clone(),
                    move |connection| tcp_connection(connection, max_message),
                );
            }
            Transport::Udp => {
                let socket = UdpSocket::bind(spec.addr)
                    .await
                    .with_context(|| format!("--syslog-listen {spec}"))?;
                let addr = socket.local_addr()?;
                info!(%addr, transport = "udp", max_message, "Syslog listening; UDP is not acknowledged: see logdist_syslog_dropped_total.");
                let task = udp_socket(socket, inlet.clone(), max_message, shutdown.clone());
                stream::spawn_tracked(workers, streams, task);
            }
        }
    }
    Ok(())
}

/// The decoding options of messages read now.
fn options(inlet: &Inlet) -> SyslogOptions {
    SyslogOptions {
        unit: inlet.ingest().unit,
        now_ms: epoch_ms(SystemTime::now()),
    }
}

/// Counts `messages` dropped for `reason`.
fn dropped(reason: &'static str, messages: u64) {
    metrics::counter!("logdist_syslog_dropped_total", "reason" => reason).increment(messages);
}

/// Routes the batch, if it holds anything; a packet given up is logged and counted.
async fn flush(inlet: &Inlet, batch: &mut Batch, patience: Option<Duration>) {
    let packet = batch.take();
    let messages = packet.messages;
    if let Err(why) = inlet.route(packet, None, patience).await {
        warn!(format = FORMAT, messages, reason = %why, "Dropping syslog messages routing refused.");
        dropped("refused", u64::from(messages));
    }
}

/// One TCP connection: frames cut, decoded and batched until the peer ends, goes idle,
/// sends a bad frame, or the distributor shuts down; what was read is routed in every case.
async fn tcp_connection(mut connection: Connection, max_message: usize) {
    let inlet = connection.inlet.clone();
    let settings = inlet.settings.clone();
    let framer = Framer {
        max_len: max_message,
    };
    let mut buf = BytesMut::new();
    let mut batch = Batch::default();
    let peer = connection.peer;
    loop {
        let options = options(&inlet);
        loop {
            let frame = match framer.next(&buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    flush(&inlet, &mut batch, None).await;
                    inlet.reject(peer, e.reason(), &e);
                    return;
                }
            };
            if let Err(e) = decode_message(&buf[frame.start..frame.end], &options, &mut batch.out) {
                flush(&inlet, &mut batch, None).await;
                inlet.reject(peer, e.reason(), &e);
                return;
            }
            batch.added();
            buf.advance(frame.consumed);
            if batch.is_full(&settings) {
                flush(&inlet, &mut batch, None).await;
            }
        }
        match connection.read(&mut buf, batch.due(&settings)).await {
            Ok(Read::Data) => {}
            Ok(Read::Due) => flush(&inlet, &mut batch, None).await,
            Ok(Read::Closed) => {
                match framer.last(&buf) {
                    Ok(None) => {}
                    Ok(Some(frame)) => {
                        match decode_message(&buf[frame.start..frame.end], &options, &mut batch.out)
                        {
                            Ok(()) => batch.added(),
                            Err(e) => inlet.reject(peer, e.reason(), &e),
                        }
                    }
                    Err(e) => inlet.reject(peer, e.reason(), &e),
                }
                flush(&inlet, &mut batch, None).await;
                return;
            }
            Ok(Read::Idle) => {
                debug!(format = FORMAT, %peer, "Closing an idle connection.");
                flush(&inlet, &mut batch, None).await;
                return;
            }
            Ok(Read::Shutdown) => {
                flush(&inlet, &mut batch, None).await;
                return;
            }
            Err(e) => {
                debug!(format = FORMAT, %peer, error = %e, "A connection failed.");
                flush(&inlet, &mut batch, None).await;
                return;
            }
        }
    }
}

/// One UDP socket: a message a datagram, batched; a bad datagram is dropped and counted.
async fn udp_socket(
    socket: UdpSocket,
    inlet: Arc<Inlet>,
    max_message: usize,
    shutdown: CancellationToken,
) {
    let settings = inlet.settings.clone();
    // One byte more than the limit, to tell a datagram over it.
    let mut datagram = vec![0u8; max_message.min(65_535) + 1];
    let mut batch = Batch::default();
    loop {
        let due = batch.due(&settings);
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = sleep_until(due) => {
                flush(&inlet, &mut batch, Some(UDP_PATIENCE)).await;
                continue;
            }
            received = socket.recv_from(&mut datagram) => received,
        };
        let (len, peer) = match received {
            Ok(received) => received,
            Err(e) => {
                warn!(format = FORMAT, error = %e, "Could not receive a datagram.");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if len > max_message {
            debug!(format = FORMAT, %peer, len, max_message, "Dropping a datagram over --syslog-max-message.");
            dropped("oversize", 1);
            continue;
        }
        match decode_message(&datagram[..len], &options(&inlet), &mut batch.out) {
            Ok(()) => batch.added(),
            Err(e) => {
                debug!(format = FORMAT, %peer, error = %e, "Dropping a datagram that is not syslog.");
                dropped("invalid", 1);
                continue;
            }
        }
        if batch.is_full(&settings) {
            flush(&inlet, &mut batch, Some(UDP_PATIENCE)).await;
        }
    }
    flush(&inlet, &mut batch, Some(UDP_PATIENCE)).await;
}

/// Sleeps until `due`, or forever without one.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
