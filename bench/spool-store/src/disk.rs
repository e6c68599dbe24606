//! What a run cost the disk: the bytes this process sent to the storage layer
//! (`/proc/self/io`), and the most a directory held (sampled).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

/// `write_bytes` and `cancelled_write_bytes` of `/proc/self/io`: every thread of the
/// process, the writer threads and logdist's keeper included. The filesystem's journal
/// (written by the kernel's own thread) is not in it.
#[derive(Debug, Clone, Copy)]
pub struct Io {
    pub write_bytes: u64,
    pub cancelled_write_bytes: u64,
}

impl Io {
    pub fn now() -> anyhow::Result<Self> {
        let text = std::fs::read_to_string("/proc/self/io").context("reading /proc/self/io")?;
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
                .and_then(|value| value.trim().parse().ok())
                .with_context(|| format!("no {name} in /proc/self/io"))
        };
        Ok(Self {
            write_bytes: field("write_bytes")?,
            cancelled_write_bytes: field("cancelled_write_bytes")?,
        })
    }

    /// The bytes written to disk since `before`: those dirtied less those whose file was
    /// deleted or truncated before they were written back.
    pub fn written_since(&self, before: &Self) -> u64 {
        let written = self.write_bytes.saturating_sub(before.write_bytes);
        let cancelled = self
            .cancelled_write_bytes
            .saturating_sub(before.cancelled_write_bytes);
        written.saturating_sub(cancelled)
    }
}

/// Samples the blocks allocated to the files of a directory every 20 ms, and keeps the
/// largest sum seen.
pub struct PeakSize {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    sampler: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl PeakSize {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (stop, peak, dir) = (stop.clone(), peak.clone(), dir.to_owned());
            std::thread::Builder::new()
                .name("peak-size".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        peak.fetch_max(allocated(&dir), Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })?
        };
        Ok(Self {
            stop,
            peak,
            sampler: Some(sampler),
            dir: dir.to_owned(),
        })
    }

    /// Stops sampling (with a last sample) and returns the peak, in bytes.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        self.peak
            .fetch_max(allocated(&self.dir), Ordering::Relaxed)
            .max(self.peak.load(Ordering::Relaxed))
    }
}

/// The bytes of the blocks allocated to the files of `dir` (files deleted while it is read
/// count as none).
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|meta| meta.blocks() * 512)
        .sum()
}
