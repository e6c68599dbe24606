//! The dashboard's snapshot: what the page, `logdist top` and `GET /dashboard/snapshot`
//! show, computed once a second by one [`Sampler`] and shared with every viewer through a
//! `tokio::sync::watch`. A viewer costs the distributor the serialization of what is
//! already computed, never a walk of its members.
//!
//! Everything is read from what status already has: the registry's stats and members (the
//! counters of `tally`), and the process's Prometheus text for the counts that live only in
//! the `metrics` registry (messages received, rejects by reason, re-routes). Rates are the
//! differences between two samples a second apart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::distributor::delivery::tally::{BUCKETS, Histogram};
use crate::distributor::membership::Fleet;

/// How often a snapshot is taken.
pub const EVERY: Duration = Duration::from_secs(1);
/// Points of share history kept for the chart: five minutes at one a second.
pub const HISTORY: usize = 300;

/// One snapshot of a distributor, as the dashboard shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken, in Unix milliseconds.
    pub at_ms: u64,
    /// The distributor itself.
    pub distributor: DistributorView,
    /// One row per analyzer, by id.
    pub analyzers: Vec<AnalyzerRow>,
    /// Cluster mode: each distributor's view of each analyzer's state. `None` in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetView>,
}

/// The distributor's own numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DistributorView {
    /// logdist's version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Resident memory in bytes (Linux's `/proc/self/statm`; 0 where there is none).
    pub rss_bytes: u64,
    /// Messages received a second, over every ingest format.
    pub messages_in_per_s: f64,
    /// Messages acknowledged by analyzers a second.
    pub messages_delivered_per_s: f64,
    /// Messages received since start.
    pub messages_in_total: u64,
    /// Requests refused since start, by reason (`logdist_rejected_total`).
    pub rejects: BTreeMap<String, u64>,
    /// Packets handed back by a failed delivery and routed again, since start.
    pub rerouted_total: u64,
    /// Packets parked, waiting for an analyzer to come online.
    pub parked: usize,
    /// Analyzers online.
    pub online: usize,
    /// The spool, with `--spool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool: Option<SpoolView>,
}

/// What the spool holds (`--spool`), from its gauges and counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpoolView {
    /// Bytes of segments on disk.
    pub bytes: u64,
    /// Packets written and not yet delivered.
    pub packets: u64,
    /// Age of the oldest of them, in seconds.
    pub oldest_s: u64,
    /// Packets an earlier run left, sent again at start.
    pub replayed_total: u64,
    /// Bytes of segments found damaged at start.
    pub corrupt_bytes_total: u64,
}

impl SpoolView {
    /// The spool's numbers in Prometheus text; `None` without a spool.
    fn of(text: &str) -> Option<Self> {
        text.lines()
            .any(|l| l.starts_with("logdist_spool_bytes "))
            .then(|| Self {
                bytes: sum_family(text, "logdist_spool_bytes"),
                packets: sum_family(text, "logdist_spool_packets"),
                oldest_s: sum_family(text, "logdist_spool_oldest_seconds"),
                replayed_total: sum_family(text, "logdist_spool_replayed_packets_total"),
                corrupt_bytes_total: sum_family(text, "logdist_spool_corrupt_bytes_total"),
            })
    }
}

/// One analyzer's row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalyzerRow {
    /// Its id.
    pub id: String,
    /// Its base URL.
    pub url: String,
    /// `online`, `unhealthy` or `draining`.
    pub state: String,
    /// Its delivery protocol.
    pub protocol: String,
    /// Its weight as registered.
    pub weight: f64,
    /// Its weight over the online total; 0 when not online.
    pub target_share: f64,
    /// Its fraction of the messages routed in the counting window.
    pub share: f64,
    /// Messages routed to it in the counting window.
    pub messages_sent: u64,
    /// Messages it acknowledged since start.
    pub messages_total: u64,
    /// Messages it acknowledged a second.
    pub messages_per_s: f64,
    /// Packets it acknowledged a second.
    pub packets_per_s: f64,
    /// Packets in its queues.
    pub queued_packets: usize,
    /// Bytes queued or in delivery to it.
    pub queued_bytes: usize,
    /// Delivery latency over the last second's deliveries (the whole run's when none), in
    /// milliseconds, as the upper bound of its histogram bucket; `None` before any.
    pub latency_p50_ms: Option<f64>,
    /// As `latency_p50_ms`, the 99th percentile.
    pub latency_p99_ms: Option<f64>,
    /// Deliveries that failed or timed out since it joined: their packets were routed again.
    pub failed_deliveries: u64,
    /// Packets it refused as bad since it joined.
    pub rejected_packets: u64,
    /// Times it was ejected after a failed delivery.
    pub ejections: u64,
    /// Packets routed from it to another analyzer since it joined (see
    /// `MemberMetrics::packets_rerouted`).
    pub rerouted_packets: u64,
    /// Deliveries sent to it again in parts since it joined (see
    /// `MemberMetrics::deliveries_retried`).
    pub retried_deliveries: u64,
    /// Its last health probe, if it has had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<ProbeView>,
}

/// A health probe's outcome and age.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeView {
    /// Whether it answered well.
    pub ok: bool,
    /// Seconds since it was sent.
    pub age_s: f64,
}

/// The fleet in cluster mode, as the shared state tells it (states only: the other
/// distributors' rates are not shared).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    /// The distributors seen.
    pub distributors: Vec<String>,
    /// Analyzer id -> distributor -> its state there.
    pub states: BTreeMap<String, BTreeMap<String, String>>,
}

/// One point of the share chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Analyzer id -> `[share, target_share]`.
    pub shares: BTreeMap<String, [f64; 2]>,
}

/// What viewers subscribe to: the latest snapshot, and the chart's history.
pub struct Published {
    /// The latest snapshot; a new one each [`EVERY`].
    pub latest: watch::Receiver<Arc<Snapshot>>,
    /// The last [`HISTORY`] points, oldest first, for a page that opens now.
    pub history: Mutex<VecDeque<HistoryPoint>>,
    /// Cancelled when the distributor shuts down: sampling stops, and with it every event
    /// stream ends, so that an open page does not hold the graceful shutdown for its grace.
    pub stop: CancellationToken,
}

/// Takes a snapshot each [`EVERY`] and publishes it.
pub struct Sampler {
    fleet: Weak<Fleet>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    started: Instant,
    /// The previous sample's counters, for rates.
    previous: Option<Counts>,
}

/// The counters rates are taken from.
struct Counts {
    at: Instant,
    messages_in: u64,
    /// Per analyzer: messages, packets, and its histogram's bucket counts.
    members: HashMap<String, (u64, u64, Vec<u64>)>,
}

impl Sampler {
    /// Starts sampling `fleet` on the current runtime, if there is one (a distributor built
    /// outside a runtime, as a unit test's, serves a default snapshot). Sampling ends at
    /// [`Published::stop`], or once the fleet is gone.
    pub fn start(
        fleet: &Arc<Fleet>,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
    ) -> Arc<Published> {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let published = Arc::new(Published {
            latest: rx,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            stop: CancellationToken::new(),
        });
        let mut sampler = Self {
            fleet: Arc::downgrade(fleet),
            metrics,
            started: Instant::now(),
            previous: None,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let out = Arc::downgrade(&published);
            let stop = published.stop.clone();
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        // Drops the sender: every event stream ends.
                        () = stop.cancelled() => return,
                    }
                    let (Some(fleet), Some(out)) = (sampler.fleet.upgrade(), out.upgrade()) else {
                        return;
                    };
                    let snapshot = sampler.sample(&fleet).await;
                    let point = HistoryPoint {
                        at_ms: snapshot.at_ms,
                        shares: snapshot
                            .analyzers
                            .iter()
                            .map(|a| (a.id.clone(), [a.share, a.target_share]))
                            .collect(),
                    };
                    {
                        let mut history = out.history.lock().unwrap_or_else(|e| e.into_inner());
                        if history.len() == HISTORY {
                            history.pop_front();
                        }
                        history.push_back(point);
                    }
                    let _ = tx.send(Arc::new(snapshot));
                }
            });
        }
        published
    }

    /// One snapshot, and the counters kept for the next one's rates.
    async fn sample(&mut self, fleet: &Fleet) -> Snapshot {
        let registry = &fleet.routing.registry;
        let rows = registry.snapshot();
        let text = self.metrics.render();
        let now = Instant::now();
        let elapsed = self
            .previous
            .as_ref()
            .map(|p| now.duration_since(p.at).as_secs_f64())
            .filter(|&s| s > 0.0);
        let rate = |now: u64, before: Option<u64>| match (elapsed, before) {
            (Some(secs), Some(before)) => now.saturating_sub(before) as f64 / secs,
            _ => 0.0,
        };
        let mut counts = Counts {
            at: now,
            messages_in: sum_family(&text, "logdist_messages_received_total"),
            members: HashMap::with_capacity(rows.len()),
        };
        let previous = self.previous.take();
        let before = |id: &str| previous.as_ref().and_then(|p| p.members.get(id));
        let mut delivered_per_s = 0.0;
        let mut analyzers = Vec::with_capacity(rows.len());
        for (stats, member) in rows {
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let messages = load(&member.messages_total);
            let packets = load(&member.packets_total);
            let buckets = bucket_counts(&member.metrics.duration);
            let was = before(&stats.id);
            let messages_per_s = rate(messages, was.map(|w| w.0));
            delivered_per_s += messages_per_s;
            // The last second's deliveries; the whole run's when there were none.
            let recent: Vec<u64> = match was {
                Some((_, _, old)) => buckets
                    .iter()
                    .zip(old)
                    .map(|(n, o)| n.saturating_sub(*o))
                    .collect(),
                None => buckets.clone(),
            };
            let recent = if recent.iter().any(|&n| n > 0) {
                recent
            } else {
                buckets.clone()
            };
            let m = &member.metrics;
            analyzers.push(AnalyzerRow {
                url: stats.url,
                state: stats.state,
                protocol: stats.protocol,
                weight: stats.weight,
                target_share: stats.target_share,
                share: stats.share,
                messages_sent: stats.messages_sent,
                messages_total: messages,
                messages_per_s,
                packets_per_s: rate(packets, was.map(|w| w.1)),
                queued_packets: member.queued_packets(),
                queued_bytes: member.queued_bytes.load(Ordering::Relaxed),
                latency_p50_ms: quantile(&recent, 0.5),
                latency_p99_ms: quantile(&recent, 0.99),
                failed_deliveries: load(&m.deliveries_failed),
                rejected_packets: load(&m.packets_rejected),
                ejections: load(&m.ejections),
                rerouted_packets: load(&m.packets_rerouted),
                retried_deliveries: load(&m.deliveries_retried),
                last_probe: m.last_probe.get().map(|(ok, at)| ProbeView {
                    ok,
                    age_s: SystemTime::now()
                        .duration_since(at)
                        .unwrap_or_default()
                        .as_secs_f64(),
                }),
                id: stats.id.clone(),
            });
            counts
                .members
                .insert(stats.id, (messages, packets, buckets));
        }
        analyzers.sort_by(|a, b| a.id.cmp(&b.id));
        let fleet_view = if fleet.shared.redis_up().is_some() {
            let stats = fleet.shared.stats(registry.stats()).await;
            let mut view = FleetView::default();
            for a in stats {
                let states = a.fleet_states.unwrap_or_default();
                for d in states.keys() {
                    if !view.distributors.contains(d) {
                        view.distributors.push(d.clone());
                    }
                }
                view.states.insert(a.id, states);
            }
            view.distributors.sort();
            Some(view)
        } else {
            None
        };
        let snapshot = Snapshot {
            at_ms: unix_ms(SystemTime::now()),
            distributor: DistributorView {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                uptime_s: self.started.elapsed().as_secs(),
                rss_bytes: rss_bytes(),
                messages_in_per_s: rate(
                    counts.messages_in,
                    previous.as_ref().map(|p| p.messages_in),
                ),
                messages_delivered_per_s: delivered_per_s,
                messages_in_total: counts.messages_in,
                rejects: by_label(&text, "logdist_rejected_total", "reason"),
                rerouted_total: sum_family(&text, "logdist_packets_rerouted_total"),
                parked: fleet.routing.parked(),
                online: registry.online_count(),
                spool: SpoolView::of(&text),
            },
            analyzers,
            fleet: fleet_view,
        };
        self.previous = Some(counts);
        snapshot
    }
}

/// A histogram's counts per bucket, the overflow last.
fn bucket_counts(h: &Histogram) -> Vec<u64> {
    h.buckets
        .iter()
        .chain(std::iter::once(&h.over))
        .map(|n| n.load(Ordering::Relaxed))
        .collect()
}

/// The `q` quantile of bucket counts (as [`bucket_counts`] gives them) in milliseconds: the
/// upper bound of the bucket it falls in (the last bound for the overflow). `None` when
/// empty.
fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound = BUCKETS
                .get(i)
                .copied()
                .unwrap_or(BUCKETS[BUCKETS.len() - 1]);
            return Some(bound * 1000.0);
        }
    }
    None
}

/// The sum of every sample of a counter family in Prometheus text.
fn sum_family(text: &str, name: &str) -> u64 {
    samples(text, name).map(|(_, v)| v).sum()
}

/// A counter family's samples summed by the value of one label.
fn by_label(text: &str, name: &str, label: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let key = format!("{label}=\"");
    for (labels, value) in samples(text, name) {
        let Some(start) = labels.find(&key).map(|i| i + key.len()) else {
            continue;
        };
        let Some(len) = labels[start..].find('"') else {
            continue;
        };
        *out.entry(labels[start..start + len].to_owned())
            .or_insert(0) += value;
    }
    out
}

/// The samples of one family: each line's labels (`{...}` or empty) and its value.
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = if rest.starts_with('{') {
            let end = rest.find('}')?;
            (&rest[..=end], &rest[end + 1..])
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            return None;
        };
        let value: f64 = value.split_whitespace().next()?.parse().ok()?;
        Some((labels, value as u64))
    })
}

/// Resident memory from `/proc/self/statm` (its second field, in pages of 4 KiB, the page
/// size of every Linux logdist is built for); 0 where there is no such file.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE logdist_rejected_total counter\n\
        logdist_rejected_total{reason=\"not_found\"} 3\n\
        logdist_rejected_total{reason=\"bad_request\",format=\"json\"} 2\n\
        logdist_rejected_total{reason=\"not_found\",x=\"y\"} 1\n\
        logdist_rejected_totals 99\n\
        logdist_packets_rerouted_total 7\n";

    #[test]
    fn the_spool_is_read_from_its_gauges_and_only_when_there_is_one() {
        assert_eq!(SpoolView::of(TEXT), None);
        let text = "logdist_spool_bytes 4096\nlogdist_spool_packets 3\n\
            logdist_spool_oldest_seconds 2.5\nlogdist_spool_replayed_packets_total 7\n\
            logdist_spool_corrupt_bytes_total 11\n";
        let view = SpoolView::of(text).expect("a spool");
        assert_eq!(
            view,
            SpoolView {
                bytes: 4096,
                packets: 3,
                oldest_s: 2,
                replayed_total: 7,
                corrupt_bytes_total: 11,
            }
        );
    }

    #[test]
    fn counters_are_read_from_prometheus_text() {
        assert_eq!(sum_family(TEXT, "logdist_packets_rerouted_total"), 7);
        assert_eq!(
            sum_family(TEXT, "logdist_rejected_total"),
            6,
            "not `_totals`"
        );
        let rejects = by_label(TEXT, "logdist_rejected_total", "reason");
        assert_eq!(rejects.get("not_found"), Some(&4));
        assert_eq!(rejects.get("bad_request"), Some(&2));
    }

    #[test]
    fn quantiles_are_bucket_bounds() {
        let mut counts = vec![0; BUCKETS.len() + 1];
        assert_eq!(quantile(&counts, 0.5), None);
        counts[3] = 99; // <= 1 ms
        counts[9] = 1; // <= 100 ms
        assert_eq!(quantile(&counts, 0.5), Some(1.0));
        assert_eq!(quantile(&counts, 0.99), Some(1.0));
        counts[9] = 2;
        assert_eq!(quantile(&counts, 0.99), Some(100.0));
        counts[BUCKETS.len()] = 1000;
        assert_eq!(quantile(&counts, 0.99), Some(10_000.0));
    }

    #[test]
    fn memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes() > 0);
        }
    }
}
