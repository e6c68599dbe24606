//! Opening a spool directory: its lock, the segments an earlier run left and what in them
//! was not delivered, and a new active segment.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use logdist_core::spool::{self as format, Item, Records, SEGMENT_MAGIC};
use tracing::{info, warn};

use super::{Active, Fsync, Segment, SpoolSettings, epoch_ms};

/// The file whose lock says a distributor uses the directory.
const LOCK: &str = "lock";

/// The path of segment `id`: ids are zero-padded, so names sort as ids do.
pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// The path of the release file of segment `id`.
pub(super) fn release_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.rel"))
}

/// Creates segment `id`, with its header. A file of that id can only be left by a roll
/// that failed before its first record: it is replaced.
pub(super) fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    match fs::remove_file(segment_path(dir, id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(segment_path(dir, id))?;
    file.write_all(&SEGMENT_MAGIC)?;
    Ok(file)
}

/// Opens the release file of segment `id` for appending, creating it if needed.
pub(super) fn open_releases(dir: &Path, id: u64) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(release_path(dir, id))
}

/// A record not delivered by an earlier run.
pub(super) struct Place {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub messages: u32,
}

/// What an earlier run left, and the spool's new active segment.
pub(super) struct Recovered {
    pub lock: File,
    pub active: Active,
    pub found: Found,
}

/// The segments an earlier run left, with what they hold.
#[derive(Default)]
pub(super) struct Found {
    /// The segments, the new active one included once it is made.
    pub segments: BTreeMap<u64, Segment>,
    pub bytes: u64,
    /// The records to send again, oldest first.
    pub pending: Vec<Place>,
    /// Bytes of segments that were no record (damaged, or a torn tail).
    pub corrupt_bytes: u64,
}

/// Locks `settings.dir` (creating it if needed), reads every segment in it, deletes those
/// all delivered, and opens the next segment.
pub(super) fn recover(settings: &SpoolSettings) -> anyhow::Result<Recovered> {
    let dir = &settings.dir;
    fs::create_dir_all(dir).with_context(|| format!("creating --spool {}", dir.display()))?;
    let lock = File::create(dir.join(LOCK))
        .with_context(|| format!("opening the lock of --spool {}", dir.display()))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "--spool {}: another process uses this spool; give each distributor its own directory",
            dir.display()
        )
    })?;
    let (segments_found, releases_found) = list(dir)?;
    let mut found = Found::default();
    for &id in &segments_found {
        read_segment(dir, id, &mut found)
            .with_context(|| format!("reading {}", segment_path(dir, id).display()))?;
    }
    // Release files whose segment is gone (deleted between the two removals).
    for id in releases_found
        .iter()
        .filter(|id| !segments_found.contains(id))
    {
        let _ = fs::remove_file(release_path(dir, *id));
    }
    let id = segments_found.last().map_or(1, |last| last + 1);
    let file = Arc::new(
        create_segment(dir, id)
            .with_context(|| format!("creating {}", segment_path(dir, id).display()))?,
    );
    if settings.fsync != Fsync::Os {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing --spool {}", dir.display()))?;
    }
    let header = SEGMENT_MAGIC.len() as u64;
    found
        .segments
        .insert(id, Segment::new(file, header, BTreeMap::new()));
    found.bytes += header;
    if !found.pending.is_empty() || found.corrupt_bytes > 0 {
        let messages: u64 = found.pending.iter().map(|p| u64::from(p.messages)).sum();
        info!(
            dir = %dir.display(),
            packets = found.pending.len(),
            messages,
            damaged_bytes = found.corrupt_bytes,
            "Spool recovered: sending again the packets an earlier run had not delivered."
        );
    }
    Ok(Recovered {
        lock,
        active: Active { id, len: header },
        found,
    })
}

/// The ids of the segments and of the release files in `dir`, in order.
fn list(dir: &Path) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let mut segments = Vec::new();
    let mut releases = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let parse = |stem: &str| stem.parse::<u64>().ok();
        if let Some(id) = name.strip_suffix(".seg").and_then(parse) {
            segments.push(id);
        } else if let Some(id) = name.strip_suffix(".rel").and_then(parse) {
            releases.push(id);
        }
    }
    segments.sort_unstable();
    releases.sort_unstable();
    Ok((segments, releases))
}

/// Reads segment `id`: its records not released go to `pending`, its damage is logged and
/// counted. A segment with nothing left to deliver is deleted.
fn read_segment(dir: &Path, id: u64, found: &mut Found) -> io::Result<()> {
    let path = segment_path(dir, id);
    let bytes = fs::read(&path)?;
    let released = match fs::read(release_path(dir, id)) {
        Ok(entries) => format::read_releases(&entries),
        Err(e) if e.kind() == io::ErrorKind::NotFound => format::Released::default(),
        Err(e) => return Err(e),
    };
    if released.damaged > 0 {
        warn!(segment = %path.display(), entries = released.damaged, "Damaged release entries in the spool: their packets are delivered again.");
    }
    let written = fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_or(0, epoch_ms);
    let mut outstanding = BTreeMap::new();
    for item in Records::new(&bytes) {
        match item {
            Item::Record(record) => {
                if released.offsets.contains(&record.offset) {
                    continue;
                }
                outstanding.insert(record.offset, written);
                found.pending.push(Place {
                    segment: id,
                    offset: record.offset,
                    len: record.len() as u32,
                    messages: record.messages,
                });
            }
            Item::Corrupt { offset, len } => {
                warn!(segment = %path.display(), offset, bytes = len, "Damaged bytes in the spool: the packets they held cannot be recovered.");
                found.corrupt_bytes += len;
            }
        }
    }
    if outstanding.is_empty() {
        fs::remove_file(&path)?;
        let _ = fs::remove_file(release_path(dir, id));
        return Ok(());
    }
    found.bytes += bytes.len() as u64;
    let mut segment = Segment::new(
        Arc::new(File::open(&path)?),
        bytes.len() as u64,
        outstanding,
    );
    segment.sealed = true;
    found.segments.insert(id, segment);
    Ok(())
}
