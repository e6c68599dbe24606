//! The workload: `tasks` concurrent writers append packets of 100 NDJSON messages (~15 KB)
//! as fast as the store takes them, and each packet is released once `lag` packets were
//! appended after it (an analyzer delivering behind the writers), so the store stays
//! bounded.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use logdist::distributor::spool::{Fsync, Spool, SpoolSettings, Ticket};
use logdist_core::Packet;

use crate::disk::{Io, PeakSize};
use crate::redb_store::{self, RedbStore};

/// Messages per packet.
const MESSAGES: u32 = 100;
/// The length of each NDJSON line, newline included.
const LINE: usize = 150;
/// Distinct packets the writers cycle through (made before the clock starts).
const POOL: usize = 64;
/// No run goes on past this: writers stop taking new packets, and the line says how many
/// were appended.
const RUN_LIMIT: Duration = Duration::from_secs(20);
/// logdist's defaults: `--spool-max-bytes 1GiB`, `--spool-segment-bytes 64MiB`.
const SPOOL_MAX_BYTES: u64 = 1 << 30;
const SPOOL_SEGMENT_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    SegmentLog,
    Redb,
}

impl FromStr for StoreKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "segment-log" => Ok(Self::SegmentLog),
            "redb" => Ok(Self::Redb),
            _ => anyhow::bail!("--store: expected segment-log or redb, not {s}"),
        }
    }
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            Self::SegmentLog => "segment-log",
            Self::Redb => "redb",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Every(Duration),
    Always,
    /// redb only: one `Immediate` commit for the packets waiting together.
    AlwaysGrouped,
}

impl FromStr for Durability {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "always" => Ok(Self::Always),
            "always-grouped" => Ok(Self::AlwaysGrouped),
            _ => {
                let ms = s
                    .strip_suffix("ms")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .with_context(|| {
                        format!("--fsync: expected always, always-grouped or Nms, not {s}")
                    })?;
                Ok(Self::Every(Duration::from_millis(ms)))
            }
        }
    }
}

impl Durability {
    fn name(self) -> String {
        match self {
            Self::Every(every) => format!("{}ms", every.as_millis()),
            Self::Always => "always".to_owned(),
            Self::AlwaysGrouped => "always-grouped".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreKind,
    pub durability: Durability,
    pub packets: u64,
    pub tasks: usize,
    pub lag: usize,
    pub dir_base: PathBuf,
}

/// The store under test.
enum Store {
    SegmentLog(Arc<Spool>),
    Redb(RedbStore),
}

/// What a store returns for an appended packet, to release it with.
enum Handle {
    Ticket(Ticket),
    Key(u64),
}

impl Store {
    async fn append(&self, packet: &Packet) -> anyhow::Result<Handle> {
        match self {
            Self::SegmentLog(spool) => Ok(Handle::Ticket(spool.append(packet).await?)),
            Self::Redb(redb) => Ok(Handle::Key(redb.append(packet.ndjson.clone()).await?)),
        }
    }

    fn release(&self, handle: Handle) -> anyhow::Result<()> {
        match (self, handle) {
            (_, Handle::Ticket(ticket)) => {
                ticket.release();
                Ok(())
            }
            (Self::Redb(redb), Handle::Key(key)) => redb.release(key),
            (Self::SegmentLog(_), Handle::Key(_)) => unreachable!("the segment log gives tickets"),
        }
    }

    fn close(self) -> anyhow::Result<()> {
        match self {
            Self::SegmentLog(spool) => {
                spool.close();
                Ok(())
            }
            Self::Redb(redb) => redb.close(),
        }
    }
}

/// What one run measured.
pub struct Outcome {
    store: StoreKind,
    durability: Durability,
    packets: u64,
    seconds: f64,
    payload_bytes: u64,
    p50_us: u64,
    p99_us: u64,
    written_bytes: u64,
    peak_bytes: u64,
}

impl Outcome {
    /// The tab-separated line `table` reads.
    pub fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{:.3}\t{}\t{}\t{}\t{}\t{}",
            self.store.name(),
            self.durability.name(),
            self.packets,
            self.seconds,
            self.payload_bytes,
            self.p50_us,
            self.p99_us,
            self.written_bytes,
            self.peak_bytes,
        )
    }
}

/// Makes `POOL` packets of `MESSAGES` lines of `LINE` bytes.
fn packets() -> Vec<Packet> {
    (0..POOL)
        .map(|p| {
            let mut ndjson = Vec::with_capacity(MESSAGES as usize * LINE);
            for m in 0..MESSAGES {
                let start = ndjson.len();
                let line = format!(
                    r#"{{"ts":"2026-12-07T01:{:02}:{:02}.{:03}Z","host":"web-{:02}","level":"info","msg":"GET /api/v1/items/{} 200","seq":{}"#,
                    p % 60,
                    m % 60,
                    (p * 7 + m as usize) % 1000,
                    p % 16,
                    p * 1000 + m as usize,
                    m
                );
                ndjson.extend_from_slice(line.as_bytes());
                // Padded to LINE bytes with a field, closed, and ended with a newline.
                let pad = LINE - (ndjson.len() - start) - r#","pad":""}"#.len() - 1;
                ndjson.extend_from_slice(br#","pad":""#);
                ndjson.extend(std::iter::repeat_n(b'x', pad));
                ndjson.extend_from_slice(b"\"}\n");
            }
            Packet {
                ndjson: Bytes::from(ndjson),
                messages: MESSAGES,
            }
        })
        .collect()
}

/// One run: opens the store in a fresh directory under `dir_base`, appends `packets`
/// packets from `tasks` tasks, releases each after `lag` more, closes the store, and
/// deletes the directory.
pub async fn run(config: &Config) -> anyhow::Result<Outcome> {
    let dir = config.dir_base.join(format!(
        "spool-store-{}-{}-{}",
        std::process::id(),
        config.store.name(),
        config.durability.name()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = measure(config, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(config: &Config, dir: &std::path::Path) -> anyhow::Result<Outcome> {
    let pool = Arc::new(packets());
    let io_before = Io::now()?;
    let peak = PeakSize::start(dir)?;
    let store = Arc::new(match (config.store, config.durability) {
        (StoreKind::SegmentLog, durability) => Store::SegmentLog(Spool::open(SpoolSettings {
            dir: dir.to_owned(),
            fsync: match durability {
                Durability::Every(every) => Fsync::Every(every),
                Durability::Always | Durability::AlwaysGrouped => Fsync::Always,
            },
            max_bytes: SPOOL_MAX_BYTES,
            segment_bytes: SPOOL_SEGMENT_BYTES,
        })?),
        (StoreKind::Redb, durability) => Store::Redb(RedbStore::open(
            dir,
            match durability {
                Durability::Every(every) => redb_store::Mode::Every(every),
                Durability::Always => redb_store::Mode::Always,
                Durability::AlwaysGrouped => redb_store::Mode::AlwaysGrouped,
            },
        )?),
    });
    let next = Arc::new(AtomicU64::new(0));
    let unreleased = Arc::new(Mutex::new(VecDeque::with_capacity(config.lag + 1)));
    let started = Instant::now();
    let mut writers = Vec::with_capacity(config.tasks);
    for _ in 0..config.tasks {
        let (store, pool, next, unreleased) = (
            store.clone(),
            pool.clone(),
            next.clone(),
            unreleased.clone(),
        );
        let (packets, lag) = (config.packets, config.lag);
        writers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut appended = 0_u64;
            let mut bytes = 0_u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= packets || started.elapsed() >= RUN_LIMIT {
                    break;
                }
                let packet = &pool[i as usize % pool.len()];
                let sent = Instant::now();
                let handle = store.append(packet).await?;
                latency.saturating_record(sent.elapsed().as_micros() as u64);
                appended += 1;
                bytes += packet.ndjson.len() as u64;
                let due = {
                    let mut unreleased = unreleased.lock().expect("unreleased lock");
                    unreleased.push_back(handle);
                    if unreleased.len() > lag {
                        unreleased.pop_front()
                    } else {
                        None
                    }
                };
                if let Some(handle) = due {
                    store.release(handle)?;
                }
            }
            anyhow::Ok((latency, appended, bytes))
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut appended, mut payload_bytes) = (0, 0);
    for writer in writers {
        let (histogram, count, bytes) = writer.await??;
        latency.add(histogram)?;
        appended += count;
        payload_bytes += bytes;
    }
    let seconds = started.elapsed().as_secs_f64();
    // The last `lag` packets are delivered too, and the store closed: both are written
    // before the bytes on disk are read.
    let rest: Vec<Handle> = unreleased
        .lock()
        .expect("unreleased lock")
        .drain(..)
        .collect();
    for handle in rest {
        store.release(handle)?;
    }
    let store = Arc::into_inner(store).context("a writer still holds the store")?;
    tokio::task::spawn_blocking(move || store.close()).await??;
    let peak_bytes = peak.stop();
    let written_bytes = Io::now()?.written_since(&io_before);
    Ok(Outcome {
        store: config.store,
        durability: config.durability,
        packets: appended,
        seconds,
        payload_bytes,
        p50_us: latency.value_at_quantile(0.50),
        p99_us: latency.value_at_quantile(0.99),
        written_bytes,
        peak_bytes,
    })
}

/// Reads the lines of `run` and prints, for each store and durability (in the order they
/// first appear), the median of each figure over its runs, as a markdown table.
pub fn table(lines: &[String]) -> anyhow::Result<String> {
    struct Row {
        store: String,
        durability: String,
        figures: Vec<Vec<f64>>,
    }
    let mut rows: Vec<Row> = Vec::new();
    for line in lines.iter().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(fields.len() == 9, "not a line of `run`: {line}");
        let figures = fields[2..]
            .iter()
            .map(|f| f.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("not a line of `run`: {line}"))?;
        let row = match rows
            .iter_mut()
            .position(|r| r.store == fields[0] && r.durability == fields[1])
        {
            Some(i) => &mut rows[i],
            None => {
                rows.push(Row {
                    store: fields[0].to_owned(),
                    durability: fields[1].to_owned(),
                    figures: vec![Vec::new(); figures.len()],
                });
                rows.last_mut().expect("pushed")
            }
        };
        for (column, figure) in row.figures.iter_mut().zip(figures) {
            column.push(figure);
        }
    }
    let mut out = String::from(
        "| store | fsync | runs | packets | packets/s | MB/s appended | p50 append | p99 append | written to disk | written / appended | peak on disk |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for row in &rows {
        // Each figure's median on its own; packets/s and MB/s are each run's, then the median.
        let runs = row.figures[0].len();
        let per_run = |f: &dyn Fn(usize) -> f64| median((0..runs).map(f).collect());
        // A run that reached RUN_LIMIT appended fewer packets: the fewest is shown too.
        let fewest = row.figures[0].iter().copied().fold(f64::INFINITY, f64::min);
        let most = row.figures[0].iter().copied().fold(0.0, f64::max);
        let packets = if fewest < most {
            format!("{most:.0} (fewest {fewest:.0})")
        } else {
            format!("{most:.0}")
        };
        let rate = per_run(&|i| row.figures[0][i] / row.figures[1][i]);
        let mb_s = per_run(&|i| row.figures[2][i] / row.figures[1][i] / 1e6);
        let amplification = per_run(&|i| row.figures[5][i] / row.figures[2][i]);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {} | {} | {:.0} MB | {:.2} | {:.0} MB |\n",
            row.store,
            row.durability,
            runs,
            packets,
            rate,
            mb_s,
            micros(median(row.figures[3].clone())),
            micros(median(row.figures[4].clone())),
            median(row.figures[5].clone()) / 1e6,
            amplification,
            median(row.figures[6].clone()) / 1e6,
        ));
    }
    Ok(out)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A latency in microseconds, in µs or ms.
fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}
