//! The spool's keeper: a thread that forces the active segment to disk as `--spool-fsync`
//! says, writes the release entries of delivered packets, and keeps the spool's gauges.
//! `fdatasync` blocks for milliseconds; on its own thread it holds up no async worker and
//! no writer (writes go on while it waits).

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tracing::error;

use logdist_core::spool::RELEASE_ENTRY;

use super::{Fsync, Metrics, Spool, State};

/// How often the keeper wakes when nothing wakes it: the bound on how long a release
/// entry waits to be written, and on how stale the gauges are.
const TICK: Duration = Duration::from_millis(10);

/// Starts the keeper of `spool`. It holds the spool only while it works, so a spool that
/// is dropped without [`Spool::close`] (a test's) ends it too.
pub(super) fn start(spool: &Arc<Spool>) -> io::Result<()> {
    let weak = Arc::downgrade(spool);
    let handle = std::thread::Builder::new()
        .name("logdist-spool".to_owned())
        .spawn(move || run(&weak))?;
    *spool.keeper.lock().expect("keeper lock") = Some(handle);
    Ok(())
}

/// Waits for the keeper to end (after [`Spool::close`] set `closing`).
pub(super) fn join(spool: &Spool) {
    let handle = spool.keeper.lock().expect("keeper lock").take();
    if let Some(handle) = handle {
        let _ = handle.join();
    }
}

fn run(spool: &Weak<Spool>) {
    let mut last_sync = Instant::now();
    while let Some(spool) = spool.upgrade() {
        if !spool.keep(&mut last_sync) {
            return;
        }
    }
}

impl Spool {
    /// One round of the keeper: waits up to a tick (an `always` packet wakes it at once),
    /// writes the release entries, fsyncs if it is time, and says whether to go on.
    fn keep(&self, last_sync: &mut Instant) -> bool {
        let mut state = self.lock();
        let wait = match self.settings.fsync {
            Fsync::Every(every) => TICK.min(every),
            Fsync::Always | Fsync::Os => TICK,
        };
        // With `always`, packets written while the last fdatasync ran notified nobody (the
        // keeper was not waiting): they are synced at once, not a tick later.
        let behind = self.settings.fsync == Fsync::Always
            && (*self.synced.borrow()).is_some_and(|synced| state.written > synced);
        if !behind && !state.closing {
            state = self
                .wake
                .wait_timeout(state, wait)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        self.write_releases(&mut state);
        Metrics::get().report(&state);
        let closing = state.closing;
        let synced = (*self.synced.borrow()).unwrap_or(u64::MAX);
        let due = match self.settings.fsync {
            Fsync::Always => true,
            Fsync::Every(every) => closing || last_sync.elapsed() >= every,
            Fsync::Os => false,
        };
        let file = state.segments.get(&state.active.id).map(|s| s.file.clone());
        let upto = state.written;
        drop(state);
        if let Some(file) = file.filter(|_| due && upto > synced) {
            let started = Instant::now();
            let result = file.sync_data();
            let took = started.elapsed();
            *last_sync = Instant::now();
            Metrics::get().fsync_seconds.record(took.as_secs_f64());
            match result {
                Ok(()) => {
                    self.synced.send_replace(Some(upto));
                }
                Err(e) => {
                    error!(dir = %self.settings.dir.display(), error = %e, "An fsync of the spool failed: what was written since the last one may not be on disk. Refusing accepted packets until the distributor is restarted.");
                    Metrics::get().errors.increment(1);
                    self.synced.send_replace(None);
                }
            }
        }
        !closing
    }

    /// Appends each segment's pending release entries to its release file. No fsync: an
    /// entry lost to a power cut only has its packet delivered once more.
    fn write_releases(&self, state: &mut State) {
        for (&id, segment) in &mut state.segments {
            if segment.releases.is_empty() {
                continue;
            }
            if segment.release_file.is_none() {
                match super::recover::open_releases(&self.settings.dir, id) {
                    Ok(file) => segment.release_file = Some(file),
                    Err(e) => {
                        self.release_failed(id, &e);
                        continue;
                    }
                }
            }
            let file = segment.release_file.as_mut().expect("opened above");
            // What a failed write left is kept for the next round, and the file never
            // holds half an entry followed by more.
            match write_whole_entries(file, &segment.releases) {
                Ok(written) => {
                    segment.releases.drain(..written);
                    self.releases_failing.store(false, Ordering::Relaxed);
                }
                Err((written, e)) => {
                    segment.releases.drain(..written);
                    self.release_failed(id, &e);
                }
            }
        }
    }
}

impl Spool {
    /// Counts a failed write of release entries; logs the first of a run of them.
    fn release_failed(&self, segment: u64, e: &io::Error) {
        Metrics::get().errors.increment(1);
        if !self.releases_failing.swap(true, Ordering::Relaxed) {
            error!(segment, error = %e, "Could not write the spool's release entries; they are kept and written when the disk takes them (meanwhile, a restart would send their packets again).");
        }
    }
}

/// Writes `entries` to `file`, and says how many bytes were written; a failure says how
/// many bytes of whole entries went before it, once a torn entry is cut off the file.
fn write_whole_entries(file: &mut File, entries: &[u8]) -> Result<usize, (usize, io::Error)> {
    let mut written = 0;
    while written < entries.len() {
        let e = match file.write(&entries[written..]) {
            Ok(0) => io::Error::from(io::ErrorKind::WriteZero),
            Ok(n) => {
                written += n;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => e,
        };
        let torn = (written % RELEASE_ENTRY) as u64;
        if torn > 0
            && let Ok(meta) = file.metadata()
        {
            let _ = file.set_len(meta.len() - torn);
        }
        return Err((written - torn as usize, e));
    }
    Ok(written)
}
