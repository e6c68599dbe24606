//! The seam of ingest that is not HTTP: protocols whose agents hold a TCP connection (or
//! send datagrams) and write records one after another, syslog ([`super::syslog`]) now,
//! the Fluent forward protocol next. What every such protocol needs, and nothing of any
//! one of them:
//!
//! - [`serve_tcp`]: the accept loop, under `--max-connections`, each connection on the
//!   worker serving the fewest, tracked so that shutdown can wait for it;
//! - [`Connection::read`]: a read that ends on data, the end of the stream, the
//!   connection's idle timeout (`--stream-idle-timeout`), the batch's linger, or shutdown;
//! - [`Batch`]: a connection's records gathered into one packet, under a size and a time
//!   bound (`--stream-batch`, `--stream-linger`, and `--batch-bytes`): routing counts
//!   messages, so many small records cost one routing decision;
//! - [`Inlet::route`]: the packet into the same routing as HTTP's, counted in
//!   `logdist_packets_received_total{format}` and `logdist_messages_received_total{format}`.
//!   While routing refuses (no analyzer online, or its queue full) it waits and tries
//!   again, and the connection is not read meanwhile: that is TCP's backpressure, and
//!   nothing is accepted that cannot be queued. It gives up only at the end of the
//!   shutdown grace, or on a packet no analyzer will take (too large);
//! - [`Inlet::reject`]: a connection closed on a bad frame is logged (with the peer and
//!   why) and counted in `logdist_rejected_total{reason,format}`, as HTTP's refusals.
//!
//! A protocol is a handler of a [`Connection`]: it owns its framing and decoding (pure, in
//! `logdist-core`) and, if it answers its agents (forward's acks), the writing back; the
//! packet's [`AckSender`] is how it learns the outcome.
//!
//! Shutdown: when the distributor's token is cancelled, the listeners stop accepting and
//! each connection stops reading, routes what it has read, and ends; the distributor waits
//! for them ([`Streams::wait`]) before it drains the analyzers' queues, so what was read
//! is delivered. At the end of the grace, [`Inlet::route`] gives up what it still holds.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use logdist_core::Packet;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{Ingest, Received};
use crate::distributor::job::{AckSender, Job, Refusal};
use crate::workers::Workers;

/// The bounds every stream protocol batches and reads under.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// The most messages a packet of one connection holds (`--stream-batch`).
    pub batch_messages: u32,
    /// The most NDJSON bytes it holds: the delivery batch (`--batch-bytes`) or the body
    /// limit (`--max-body`), whichever is less, so that an analyzer takes it as it takes
    /// an HTTP packet.
    pub batch_bytes: usize,
    /// How long the first record of a packet waits for others (`--stream-linger`).
    pub linger: Duration,
    /// How long a connection may send nothing before it is closed
    /// (`--stream-idle-timeout`).
    pub idle_timeout: Duration,
    /// The most connections one listener serves at once (`--max-connections`); one more
    /// is closed at once.
    pub max_connections: usize,
}

/// The connections of every stream listener, for shutdown.
#[derive(Debug, Default, Clone)]
pub struct Streams {
    /// Every listener's accept loop and connection.
    tracker: TaskTracker,
    /// Cancelled at the end of the grace: packets still refused are given up.
    give_up: CancellationToken,
}

impl Streams {
    /// Waits until every listener and connection has ended (they end when the
    /// distributor's shutdown token is cancelled, once they have routed what they read),
    /// or `deadline`; then packets still waiting for routing are given up.
    pub async fn wait(&self, deadline: Instant) {
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                "Grace period over with stream connections still routing; giving up their packets."
            );
            self.give_up.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
        }
    }
}

/// One stream protocol's door into routing.
pub struct Inlet {
    ingest: Arc<Ingest>,
    /// Its name in logs and metrics (`format` label).
    pub format: &'static str,
    received: Received,
    /// The bounds it batches and reads under.
    pub settings: StreamSettings,
    streams: Streams,
}

impl Inlet {
    /// The inlet of `format`, into `ingest`'s routing.
    pub fn new(
        ingest: Arc<Ingest>,
        format: &'static str,
        settings: StreamSettings,
        streams: &Streams,
    ) -> Arc<Self> {
        Arc::new(Self {
            ingest,
            format,
            received: Received::new(format),
            settings,
            streams: streams.clone(),
        })
    }

    /// The unit and schema decoders write with.
    pub fn ingest(&self) -> &super::IngestSettings {
        &self.ingest.settings
    }

    /// Routes `packet`, waiting while routing refuses for a reason that may pass (no
    /// analyzer online, a full queue), as long as `patience` allows (`None`: until the
    /// end of the shutdown grace). `ack` learns the delivery's outcome, for a protocol
    /// that answers its agents. The refusal is returned when it gave up.
    pub async fn route(
        &self,
        packet: Packet,
        ack: Option<AckSender>,
        patience: Option<Duration>,
    ) -> Result<(), Refusal> {
        let messages = packet.messages;
        if messages == 0 {
            return Ok(());
        }
        let give_up_at = patience.map(|p| Instant::now() + p);
        let mut job = Job {
            packet,
            ack,
            attempts: 0,
            via: None,
            spooled: None,
        };
        let mut pause = Duration::from_millis(5);
        loop {
            let refused = match self.ingest.spooling() {
                Some(spool) => {
                    let routing = &self.ingest.routing;
                    let spooled = routing.accept_spooled(spool, job.packet.clone(), None);
                    spooled.await.err().map(|why| (job, why))
                }
                None => self.ingest.routing.dispatch(job).err(),
            };
            let Some((back, why)) = refused else {
                self.received.packets.increment(1);
                self.received.messages.increment(u64::from(messages));
                return Ok(());
            };
            let out_of_patience = give_up_at.is_some_and(|at| Instant::now() >= at);
            if !why.is_retryable() || out_of_patience || self.streams.give_up.is_cancelled() {
                back.finish(Err(why.clone()));
                return Err(why);
            }
            job = back;
            // Not reading is the backpressure: the sender's writes wait in the socket.
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.streams.give_up.cancelled() => {}
            }
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Logs and counts a connection (or datagram) refused for `reason`.
    pub fn reject(&self, peer: SocketAddr, reason: &'static str, error: &dyn fmt::Display) {
        warn!(format = self.format, %peer, reason, error = %error, "Closing a connection on a bad frame.");
        metrics::counter!("logdist_rejected_total", "reason" => reason, "format" => self.format)
            .increment(1);
    }
}

/// A connection's records on their way to being one packet.
#[derive(Debug, Default)]
pub struct Batch {
    /// The messages, one NDJSON line each: decoders append to it.
    pub out: Vec<u8>,
    messages: u32,
    /// When the first message came: the linger runs from it.
    since: Option<Instant>,
}

impl Batch {
    /// Counts one message the decoder appended to [`Batch::out`].
    pub fn added(&mut self) {
        self.messages += 1;
        self.since.get_or_insert_with(Instant::now);
    }

    /// Whether the packet is as large as it may be.
    pub fn is_full(&self, settings: &StreamSettings) -> bool {
        self.messages >= settings.batch_messages || self.out.len() >= settings.batch_bytes
    }

    /// When the packet must go, if it holds anything.
    pub fn due(&self, settings: &StreamSettings) -> Option<Instant> {
        self.since.map(|since| since + settings.linger)
    }

    /// The packet, leaving the batch empty.
    pub fn take(&mut self) -> Packet {
        self.since = None;
        Packet {
            ndjson: Bytes::from(std::mem::take(&mut self.out)),
            messages: std::mem::take(&mut self.messages),
        }
    }
}

/// What a read of a connection gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// More bytes in the buffer.
    Data,
    /// The peer ended the stream.
    Closed,
    /// The batch is due: route it, and read again.
    Due,
    /// Nothing came within the idle timeout.
    Idle,
    /// The distributor is shutting down: stop reading.
    Shutdown,
}

/// One accepted connection of a stream protocol.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// Who it is, for logs.
    pub peer: SocketAddr,
    /// Where its packets go.
    pub inlet: Arc<Inlet>,
    /// The distributor's shutdown.
    shutdown: CancellationToken,
    /// Its place under `--max-connections`.
    _permit: OwnedSemaphorePermit,
}

/// Bytes read at a time: enough for a few hundred usual log lines.
const READ_CHUNK: usize = 64 * 1024;

impl Connection {
    /// Reads more into `buf`, until `due` when the batch holds something.
    pub async fn read(
        &mut self,
        buf: &mut BytesMut,
        due: Option<Instant>,
    ) -> std::io::Result<Read> {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let idle = Instant::now() + self.inlet.settings.idle_timeout;
        let (until, on_timeout) = match due {
            Some(due) if due < idle => (due, Read::Due),
            _ => (idle, Read::Idle),
        };
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Ok(Read::Shutdown),
            read = tokio::time::timeout_at(until, self.stream.read_buf(buf)) => match read {
                Err(_) => Ok(on_timeout),
                Ok(Ok(0)) => Ok(Read::Closed),
                Ok(Ok(_)) => Ok(Read::Data),
                Ok(Err(e)) => Err(e),
            },
        }
    }
}

/// Serves `listener` until `shutdown`: each connection is given to `handler` on the
/// worker serving the fewest connections.
pub fn serve_tcp<H, F>(
    listener: TcpListener,
    inlet: Arc<Inlet>,
    workers: Arc<Workers>,
    streams: &Streams,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Connection) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let tracker = streams.tracker.clone();
    let slots = Arc::new(Semaphore::new(inlet.settings.max_connections.max(1)));
    let accept = async move {
        let addr = listener.local_addr().ok();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    warn!(format = inlet.format, error = %e, "Could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                debug!(format = inlet.format, %peer, "Refusing a connection: --max-connections are open.");
                metrics::counter!("logdist_rejected_total", "reason" => "connections", "format" => inlet.format)
                    .increment(1);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let connection = Connection {
                stream,
                peer,
                inlet: inlet.clone(),
                shutdown: shutdown.clone(),
                _permit: permit,
            };
            workers.spawn_connection(tracker.track_future(handler(connection)));
        }
        info!(format = inlet.format, addr = ?addr, "Stream listener stopped accepting.");
    };
    streams.tracker.spawn(accept);
}

/// Runs `task` (a datagram listener) tracked, on one worker.
pub fn spawn_tracked<F>(workers: &Arc<Workers>, streams: &Streams, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    workers.spawn_connection(streams.tracker.track_future(task));
}
