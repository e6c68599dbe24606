//! The spool (`--spool DIR`): with `--ack accepted`, a packet is written here before its
//! agent is answered 202, and released once an analyzer has it, so that a crash loses
//! nothing that was answered.
//!
//! The directory holds segments, append-only files of checksummed records, and a release
//! file beside each listing the records delivered (the format is
//! [`logdist_core::spool`]'s). New packets go to the *active* segment; past
//! `--spool-segment-bytes` it is sealed and the next one opened. A sealed segment whose
//! every record is delivered is deleted, with its release file.
//!
//! - **Writing** happens on the caller's thread, under one short lock: a `write` of the
//!   record into the page cache. When it is on disk depends on `--spool-fsync`
//!   ([`Fsync`]): the [`keeper`] thread calls `fdatasync` for every packet (and the
//!   agent waits for it), every N milliseconds, or never (the OS decides).
//! - **At start**, every record not released is read back and queued in the *backlog*,
//!   from which routing takes packets as analyzers have room ([`Spool::next_deferred`]).
//!   The backlog also takes the packets accepted while an analyzer's queue is full, and
//!   those delivery gave up on: only their place on disk is kept in memory.
//! - **Bounds:** `--spool-max-bytes` of segments. A full spool refuses with 503; so does a
//!   spool that failed to write (a full disk, an I/O error), for a second before it is
//!   tried again. A failed `fdatasync` stops the spool for good: what was written since the
//!   last one may not be on disk, and the distributor must not say otherwise.

mod keeper;
mod recover;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use logdist_core::Packet;
use logdist_core::spool::{self as format, SEGMENT_MAGIC};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

/// When the spool's writes are forced to disk (`--spool-fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before each packet is answered: survives a power cut, at the cost of an
    /// `fdatasync` per packet (concurrent packets share one).
    Always,
    /// Every so often: a crash of the process loses nothing (the page cache holds what
    /// was written), a power cut up to this much.
    Every(Duration),
    /// Never by logdist: the OS writes back within its own interval (30 s on Linux by
    /// default). A crash of the process loses nothing; a power cut up to that.
    Os,
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "os" => Ok(Self::Os),
            _ => match humantime::parse_duration(s) {
                Ok(every) if !every.is_zero() => Ok(Self::Every(every)),
                _ => Err(format!(
                    "`{s}`: expected `always`, `os`, or an interval such as `10ms`"
                )),
            },
        }
    }
}

/// `--spool`, `--spool-fsync`, `--spool-max-bytes`, `--spool-segment-bytes`.
#[derive(Debug, Clone)]
pub struct SpoolSettings {
    /// The directory, created if missing.
    pub dir: PathBuf,
    /// When writes are forced to disk.
    pub fsync: Fsync,
    /// The most the segments may hold, in bytes.
    pub max_bytes: u64,
    /// When the active segment is sealed and the next one opened.
    pub segment_bytes: u64,
}

/// Why a packet could not be spooled. Both are "try again": the agent gets 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds `--spool-max-bytes` already.
    #[error("the spool is full ({max} bytes); retry shortly")]
    Full {
        /// `--spool-max-bytes`.
        max: u64,
    },
    /// Writing failed (a full disk, an I/O error); nothing was acknowledged.
    #[error("the spool cannot be written: {0}")]
    Failed(Arc<str>),
}

/// One spooled packet: where it is on disk. Released when an analyzer has it
/// ([`Ticket::release`]), or handed to the backlog to be sent again ([`Ticket::keep`]). A
/// ticket dropped otherwise (at shutdown) leaves its packet on disk, for the next start.
#[derive(Debug)]
pub struct Ticket {
    spool: Arc<Spool>,
    segment: u64,
    offset: u64,
    /// The record's bytes, header included.
    len: u32,
    /// Its messages.
    messages: u32,
}

impl Ticket {
    /// The packet was delivered (or refused for good): its record is released.
    pub fn release(self) {
        self.spool.release(self.segment, self.offset);
    }

    /// The packet must be sent again: its place joins the backlog, and the memory of
    /// its bytes can go.
    pub fn keep(self) {
        let spool = self.spool.clone();
        spool.defer(self);
    }
}

/// The spool of one distributor.
#[derive(Debug)]
pub struct Spool {
    settings: SpoolSettings,
    /// Segments, sizes and what is outstanding: taken for every write and release.
    state: Mutex<State>,
    /// Wakes the keeper: a packet waits for its fsync, or the spool is closing.
    wake: Condvar,
    /// How far the keeper's last fsync reached, in bytes ever written; `None` once an
    /// fsync failed.
    synced: watch::Sender<Option<u64>>,
    /// Packets on disk waiting for routing, oldest first, and the wake-up of the task that
    /// routes them.
    backlog: Backlog,
    /// Whether the last write of release entries failed: the next failure is not logged.
    releases_failing: AtomicBool,
    /// The keeper thread, joined at close.
    keeper: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Holds the directory's lock for the spool's life: one distributor per spool.
    _lock: File,
}

/// What the spool's lock guards.
#[derive(Debug)]
struct State {
    /// The segment new records go to.
    active: Active,
    /// Every segment on disk, the active one included, by id.
    segments: BTreeMap<u64, Segment>,
    /// The bytes of every segment.
    bytes: u64,
    /// Bytes ever written (the position fsyncs are measured in).
    written: u64,
    /// A write failed: new packets are refused until then.
    failing_until: Option<Instant>,
    /// The spool is closing: the keeper ends.
    closing: bool,
}

/// The segment being written.
#[derive(Debug)]
struct Active {
    id: u64,
    len: u64,
}

/// One segment on disk.
#[derive(Debug)]
struct Segment {
    /// Written to while the segment is active, read back from by the backlog. The only
    /// lasting handle: the segment's space is freed when it is deleted.
    file: Arc<File>,
    bytes: u64,
    /// The records not yet released, with when each was written (ms since the epoch).
    outstanding: BTreeMap<u64, u64>,
    /// Release entries not yet written to the release file (the keeper writes them).
    releases: Vec<u8>,
    /// The release file, once the keeper opened it.
    release_file: Option<File>,
    sealed: bool,
}

impl Spool {
    /// Opens the spool in `settings.dir`, recovering what an earlier run left: every record
    /// not released goes to the backlog. Fails when the directory cannot be used or another
    /// process holds it.
    pub fn open(settings: SpoolSettings) -> anyhow::Result<Arc<Self>> {
        let recovered = recover::recover(&settings)?;
        let (synced, _) = watch::channel(Some(0));
        let spool = Arc::new(Self {
            state: Mutex::new(State {
                active: recovered.active,
                segments: recovered.found.segments,
                bytes: recovered.found.bytes,
                written: 0,
                failing_until: None,
                closing: false,
            }),
            wake: Condvar::new(),
            synced,
            backlog: Backlog::default(),
            releases_failing: AtomicBool::new(false),
            keeper: Mutex::new(None),
            _lock: recovered.lock,
            settings,
        });
        Metrics::get()
            .replayed
            .increment(recovered.found.pending.len() as u64);
        Metrics::get()
            .corrupt_bytes
            .increment(recovered.found.corrupt_bytes);
        for place in recovered.found.pending {
            spool.backlog.push_back(Ticket {
                spool: spool.clone(),
                segment: place.segment,
                offset: place.offset,
                len: place.len,
                messages: place.messages,
            });
        }
        keeper::start(&spool)?;
        Metrics::get().report(&spool.lock());
        Ok(spool)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `packet`, and returns once it is as safe as `--spool-fsync` says: written
    /// (`os`, an interval) or on disk (`always`).
    pub async fn append(self: &Arc<Self>, packet: &Packet) -> Result<Ticket, SpoolError> {
        let (ticket, end) = self.write(packet)?;
        if self.settings.fsync == Fsync::Always {
            self.wake.notify_one();
            let mut synced = self.synced.subscribe();
            let on_disk = synced
                .wait_for(|synced| synced.is_none_or(|at| at >= end))
                .await
                .map(|synced| synced.is_some());
            if !matches!(on_disk, Ok(true)) {
                // Not acknowledged: the agent sends it again. Its record may be on disk, and
                // would then be delivered twice after a restart, never lost.
                return Err(SpoolError::Failed("an fsync of the spool failed".into()));
            }
        }
        Ok(ticket)
    }

    /// Writes the record of `packet` to the active segment: its ticket, and the position
    /// its fsync must reach.
    fn write(self: &Arc<Self>, packet: &Packet) -> Result<(Ticket, u64), SpoolError> {
        let payload = &packet.ndjson[..];
        let len = format::record_len(payload.len());
        if !format::fits(payload.len()) {
            return Err(SpoolError::Failed(
                format!("a packet of {len} bytes is larger than a spool record can be").into(),
            ));
        }
        let mut state = self.lock();
        if self.synced.borrow().is_none() {
            return Err(SpoolError::Failed(
                "an fsync of the spool failed; restart the distributor".into(),
            ));
        }
        let retrying = match state.failing_until {
            Some(until) if Instant::now() < until => {
                return Err(SpoolError::Failed(
                    "the last write failed; retrying shortly".into(),
                ));
            }
            Some(_) => {
                state.failing_until = None;
                true
            }
            None => false,
        };
        let len = len as u64;
        let header = SEGMENT_MAGIC.len() as u64;
        let active_full =
            state.active.len + len > self.settings.segment_bytes && state.active.len > header;
        // Short of room (the spool's or the disk's) while the active segment is all
        // delivered: sealing it deletes it.
        let short =
            (state.bytes + len > self.settings.max_bytes || retrying) && active_is_done(&state);
        // A roll that deleted the active segment and then failed to create the next.
        let gone = !state.segments.contains_key(&state.active.id);
        if active_full || short || gone {
            self.roll(&mut state)
                .map_err(|e| self.write_failed(&mut state, &e))?;
        }
        if state.bytes + len > self.settings.max_bytes {
            Metrics::get().full.increment(1);
            return Err(SpoolError::Full {
                max: self.settings.max_bytes,
            });
        }
        let offset = state.active.len;
        let header = format::record_header(packet.messages, payload);
        let file = &state.segments[&state.active.id].file;
        if let Err(e) = write_at_end(file, &header, payload) {
            // A torn record would be skipped by its checksum; cut it off all the same, so
            // the next record follows a whole one.
            let _ = file.set_len(offset);
            return Err(self.write_failed(&mut state, &e));
        }
        state.active.len += len;
        state.bytes += len;
        state.written += len;
        let segment = state.active.id;
        let now = epoch_ms(SystemTime::now());
        let active = state
            .segments
            .get_mut(&segment)
            .expect("the active segment is listed");
        active.bytes += len;
        active.outstanding.insert(offset, now);
        let end = state.written;
        drop(state);
        Ok((
            Ticket {
                spool: self.clone(),
                segment,
                offset,
                len: len as u32,
                messages: packet.messages,
            },
            end,
        ))
    }

    /// Logs a failed write, and refuses new packets for a second.
    fn write_failed(&self, state: &mut State, e: &io::Error) -> SpoolError {
        if state.failing_until.is_none() {
            error!(dir = %self.settings.dir.display(), error = %e, "Could not write to the spool; refusing accepted packets with 503 until it can be written again.");
        }
        Metrics::get().errors.increment(1);
        state.failing_until = Some(Instant::now() + Duration::from_secs(1));
        SpoolError::Failed(e.to_string().into())
    }

    /// Seals the active segment (on disk first, unless `--spool-fsync os`) and opens the
    /// next one.
    fn roll(&self, state: &mut State) -> io::Result<()> {
        let sealed = state.active.id;
        if let Some(segment) = state.segments.get_mut(&sealed) {
            if self.settings.fsync != Fsync::Os {
                segment.file.sync_data()?;
            }
            segment.sealed = true;
        }
        // Deleted (and closed: the segment held its only handle) first if all delivered:
        // on a full disk, that is the room the next one needs.
        self.delete_if_done(state, sealed);
        let id = sealed + 1;
        let file = Arc::new(recover::create_segment(&self.settings.dir, id)?);
        if self.settings.fsync != Fsync::Os {
            File::open(&self.settings.dir)?.sync_all()?;
        }
        let header = SEGMENT_MAGIC.len() as u64;
        state.active = Active { id, len: header };
        state
            .segments
            .insert(id, Segment::new(file, header, BTreeMap::new()));
        state.bytes += header;
        Ok(())
    }

    /// The record at `segment`/`offset` was delivered.
    fn release(&self, segment: u64, offset: u64) {
        let mut state = self.lock();
        let Some(s) = state.segments.get_mut(&segment) else {
            return;
        };
        if s.outstanding.remove(&offset).is_none() {
            return;
        }
        if s.sealed && s.outstanding.is_empty() {
            self.delete_if_done(&mut state, segment);
        } else {
            s.releases
                .extend_from_slice(&format::encode_release(offset));
        }
    }

    /// Deletes `segment` and its release file if it is sealed and all delivered.
    fn delete_if_done(&self, state: &mut State, segment: u64) {
        let done = state
            .segments
            .get(&segment)
            .is_some_and(|s| s.sealed && s.outstanding.is_empty());
        if !done {
            return;
        }
        let s = state.segments.remove(&segment).expect("checked above");
        state.bytes -= s.bytes;
        for path in [
            recover::segment_path(&self.settings.dir, segment),
            recover::release_path(&self.settings.dir, segment),
        ] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                warn!(path = %path.display(), error = %e, "Could not delete a delivered spool segment.");
            }
        }
    }

    /// Reads back the packet of `ticket` from its segment. `None` when its bytes no longer
    /// check out (damaged on disk since they were written): it is logged and counted, and
    /// the ticket released, since it can never be delivered.
    pub fn read(&self, ticket: &Ticket) -> Option<Packet> {
        let file = self.lock().segments.get(&ticket.segment)?.file.clone();
        let mut frame = vec![0; ticket.len as usize];
        let read = file.read_exact_at(&mut frame, ticket.offset);
        let packet = read.ok().and_then(|()| {
            format::read_record(&frame).map(|(messages, payload)| Packet {
                messages,
                ndjson: bytes::Bytes::copy_from_slice(payload),
            })
        });
        if packet.is_none() {
            error!(
                segment = ticket.segment,
                offset = ticket.offset,
                messages = ticket.messages,
                "A spooled packet cannot be read back: it is damaged on disk, and lost."
            );
            Metrics::get().corrupt_records.increment(1);
            self.release(ticket.segment, ticket.offset);
        }
        packet
    }

    /// Puts `ticket` at the back of the backlog.
    fn defer(&self, ticket: Ticket) {
        Metrics::get().deferred.increment(1);
        self.backlog.push_back(ticket);
    }

    /// Puts `ticket` back at the front of the backlog: routing had no room for it.
    pub fn put_back(&self, ticket: Ticket) {
        self.backlog.edit(|queue| queue.push_front(ticket));
    }

    /// Whether packets wait in the backlog: a new packet then queues behind them. Asked
    /// for every packet: an atomic load, not the backlog's lock.
    pub fn is_backlogged(&self) -> bool {
        self.backlog.len.load(Ordering::Acquire) > 0
    }

    /// The oldest packet of the backlog, waiting for one if there is none.
    pub async fn next_deferred(&self) -> Ticket {
        loop {
            let notified = self.backlog.ready.notified();
            if let Some(ticket) = self.backlog.edit(VecDeque::pop_front) {
                return ticket;
            }
            notified.await;
        }
    }

    /// What the spool holds now, for metrics and the dashboard.
    pub fn stats(&self) -> SpoolStats {
        let state = self.lock();
        stats_of(&state)
    }

    /// Writes the pending release entries, forces the segments to disk (unless `os`), and
    /// stops the keeper. What was not released stays for the next start.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closing = true;
        drop(state);
        self.wake.notify_all();
        keeper::join(self);
        let stats = self.stats();
        info!(dir = %self.settings.dir.display(), packets = stats.packets, bytes = stats.bytes, "Spool closed; undelivered packets are sent at the next start.");
    }
}

impl Segment {
    /// A segment of `bytes` in `file` whose records `outstanding` are not delivered; it is
    /// the active one until [`Segment::sealed`] is set.
    fn new(file: Arc<File>, bytes: u64, outstanding: BTreeMap<u64, u64>) -> Self {
        Self {
            file,
            bytes,
            outstanding,
            releases: Vec::new(),
            release_file: None,
            sealed: false,
        }
    }
}

/// Packets on disk waiting for routing, oldest first (only their places), with their
/// count and the wake-up of the task that routes them.
#[derive(Debug, Default)]
struct Backlog {
    queue: Mutex<VecDeque<Ticket>>,
    /// The queue's length, kept under its lock, read without it.
    len: AtomicUsize,
    ready: Notify,
}

impl Backlog {
    /// Runs `change` on the queue under its lock, and keeps the length.
    fn edit<T>(&self, change: impl FnOnce(&mut VecDeque<Ticket>) -> T) -> T {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let out = change(&mut queue);
        self.len.store(queue.len(), Ordering::Release);
        out
    }

    fn push_back(&self, ticket: Ticket) {
        self.edit(|queue| queue.push_back(ticket));
        self.ready.notify_one();
    }
}

/// Whether every record of the active segment was delivered: then it can be sealed and
/// deleted to make room.
fn active_is_done(state: &State) -> bool {
    state.active.len > SEGMENT_MAGIC.len() as u64
        && state
            .segments
            .get(&state.active.id)
            .is_some_and(|s| s.outstanding.is_empty())
}

/// Appends a record's header and payload at the end of `file`, in one `writev` when the
/// kernel takes it whole.
fn write_at_end(mut file: &File, header: &[u8], payload: &[u8]) -> io::Result<()> {
    let total = header.len() + payload.len();
    let wrote = file.write_vectored(&[IoSlice::new(header), IoSlice::new(payload)])?;
    if wrote < header.len() {
        file.write_all(&header[wrote..])?;
        file.write_all(payload)
    } else if wrote < total {
        file.write_all(&payload[wrote - header.len()..])
    } else {
        Ok(())
    }
}

/// Milliseconds since the epoch.
fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a spool holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SpoolStats {
    /// Bytes of segments on disk.
    pub bytes: u64,
    /// Packets not yet delivered.
    pub packets: u64,
    /// Age of the oldest of them, in seconds (0 when there is none).
    pub oldest_seconds: f64,
}

fn stats_of(state: &State) -> SpoolStats {
    let packets = state
        .segments
        .values()
        .map(|s| s.outstanding.len() as u64)
        .sum();
    // Records are written in order: the oldest is the first outstanding one of the oldest
    // segment that has any.
    let oldest = state
        .segments
        .values()
        .find_map(|s| s.outstanding.first_key_value().map(|(_, at)| at));
    let now = epoch_ms(SystemTime::now());
    SpoolStats {
        bytes: state.bytes,
        packets,
        oldest_seconds: oldest.map_or(0.0, |at| now.saturating_sub(*at) as f64 / 1000.0),
    }
}

/// The spool's metrics.
struct Metrics {
    bytes: metrics::Gauge,
    packets: metrics::Gauge,
    oldest: metrics::Gauge,
    full: metrics::Counter,
    errors: metrics::Counter,
    replayed: metrics::Counter,
    deferred: metrics::Counter,
    corrupt_bytes: metrics::Counter,
    corrupt_records: metrics::Counter,
    fsync_seconds: metrics::Histogram,
}

impl Metrics {
    fn get() -> &'static Self {
        static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
        METRICS.get_or_init(|| Self {
            bytes: metrics::gauge!("logdist_spool_bytes"),
            packets: metrics::gauge!("logdist_spool_packets"),
            oldest: metrics::gauge!("logdist_spool_oldest_seconds"),
            full: metrics::counter!("logdist_spool_full_total"),
            errors: metrics::counter!("logdist_spool_write_errors_total"),
            replayed: metrics::counter!("logdist_spool_replayed_packets_total"),
            deferred: metrics::counter!("logdist_spool_deferred_packets_total"),
            corrupt_bytes: metrics::counter!("logdist_spool_corrupt_bytes_total"),
            corrupt_records: metrics::counter!("logdist_spool_unreadable_packets_total"),
            fsync_seconds: metrics::histogram!("logdist_spool_fsync_seconds"),
        })
    }

    /// Sets the gauges from `state`.
    fn report(&self, state: &State) {
        let stats = stats_of(state);
        self.bytes.set(stats.bytes as f64);
        self.packets.set(stats.packets as f64);
        self.oldest.set(stats.oldest_seconds);
    }
}
