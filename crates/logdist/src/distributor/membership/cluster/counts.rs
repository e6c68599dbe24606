//! Fleet-wide counts: what this distributor delivered and routed is added to Redis in one
//! pipeline per interval (deltas advance only once Redis took them, so an outage loses
//! nothing), and `/analyzer/stats` reads the fleet's counts back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::RedisResult;
use tracing::debug;

use super::Local;
use super::{Cluster, lock, now_ms};
use crate::api::AnalyzerStats;
use crate::distributor::delivery::Member;

/// Epoch windows, and the counts of an analyzer no distributor has any more, are kept
/// this long, then expire.
const WINDOW_TTL_SECS: i64 = 24 * 3600;
/// The health views of an analyzer no distributor has any more expire after this (a view
/// is stale after three sync intervals anyway).
const HEALTH_TTL_SECS: i64 = 60;

/// Applies one flush exactly once: `KEYS[1]` holds the number of the last batch applied by
/// this distributor run; the batch (`ARGV[1]`) is applied only if it is newer. ARGV then
/// holds (hash, field, increment) triples.
const APPLY_ONCE: &str = r"
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if last >= tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV, 3 do redis.call('HINCRBY', ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
redis.call('SET', KEYS[1], ARGV[1], 'EX', 86400)
return 1
";

/// id -> a member and its (messages, packets) as flushed.
type FlushedTotals = HashMap<Arc<str>, (Arc<Member>, (u64, u64))>;

/// What has been added to Redis's counters already.
#[derive(Debug, Default)]
pub(super) struct Flushed {
    /// id -> the member the totals were flushed for, and its (messages, packets) then. The
    /// member is kept so that one removed or replaced meanwhile still gets its last counts
    /// flushed.
    totals: FlushedTotals,
    /// The local window the `window` counts belong to.
    window_id: u64,
    /// id -> messages routed in that window, as last flushed.
    window: HashMap<Arc<str>, u64>,
    /// Number of the last batch built.
    seq: u64,
    /// A batch sent whose outcome is unknown (Redis did not answer): sent again as it is,
    /// so that it is applied once whether or not the first try reached Redis.
    pending: Option<Batch>,
}

impl Flushed {
    /// After Redis lost its data: count everything from zero again (and drop a pending
    /// batch, whose increments went to the lost data), keeping batch numbers increasing.
    pub(super) fn forget_counts(&mut self) {
        *self = Self {
            seq: self.seq,
            ..Self::default()
        };
    }
}

/// One flush: the increments, and what `Flushed` becomes once Redis applied them.
#[derive(Debug)]
pub(super) struct Batch {
    seq: u64,
    increments: Vec<(String, String, u64)>,
    totals: FlushedTotals,
    window_id: u64,
    window: HashMap<Arc<str>, u64>,
}

fn totals_of(member: &Member) -> (u64, u64) {
    (
        member.messages_total.load(Ordering::Relaxed),
        member.packets_total.load(Ordering::Relaxed),
    )
}

impl Cluster {
    /// Adds what was delivered and routed since the last flush (exactly once, even when an
    /// answer is lost), and writes this distributor's view of each analyzer's health.
    pub(super) async fn flush_counts(&self, local: &Local) -> RedisResult<()> {
        let members = local.routing.registry.members();
        self.write_health(&members).await?;
        let pending = lock(&self.flushed).pending.take();
        if let Some(batch) = pending {
            self.apply(batch).await?;
        }
        let batch = self.next_batch(local, &members);
        self.apply(batch).await
    }

    async fn write_health(&self, members: &[Arc<Member>]) -> RedisResult<()> {
        if members.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut pipe = redis::pipe();
        for member in members {
            let state = format!("{}@{now}", member.state().as_str());
            let health = self.keys.health(&member.id);
            pipe.cmd("HSET")
                .arg(&health)
                .arg(&self.instance)
                .arg(state)
                .ignore();
            // A departed analyzer's keys go too: once no distributor has it as a member,
            // nothing renews them.
            pipe.cmd("EXPIRE")
                .arg(&health)
                .arg(HEALTH_TTL_SECS)
                .ignore();
            pipe.cmd("EXPIRE")
                .arg(self.keys.counts(&member.id))
                .arg(WINDOW_TTL_SECS)
                .ignore();
        }
        self.query::<()>(&pipe, 3 * members.len()).await
    }

    /// What was delivered and routed since the last confirmed flush.
    fn next_batch(&self, local: &Local, members: &[Arc<Member>]) -> Batch {
        let (window_id, window) = local.routing.registry.window();
        let epoch = self.epoch.load(Ordering::Relaxed);
        let mut flushed = lock(&self.flushed);
        flushed.seq += 1;
        let mut increments = Vec::new();
        let mut add = |id: &str, (dm, dp): (u64, u64)| {
            if dm > 0 || dp > 0 {
                let key = self.keys.counts(id);
                increments.push((key.clone(), "messages".to_owned(), dm));
                increments.push((key, "packets".to_owned(), dp));
            }
        };
        let since = |now: (u64, u64), before: (u64, u64)| {
            (
                now.0.saturating_sub(before.0),
                now.1.saturating_sub(before.1),
            )
        };
        let mut totals = HashMap::new();
        for member in members {
            // Read once: what is sent and what is recorded as sent must be the same.
            let now = totals_of(member);
            match flushed.totals.get(&member.id) {
                Some((known, before)) if Arc::ptr_eq(known, member) => {
                    add(&member.id, since(now, *before))
                }
                Some((replaced, before)) => {
                    // The last counts of the member this one replaced, then all of its own.
                    add(&member.id, since(totals_of(replaced), *before));
                    add(&member.id, now);
                }
                None => add(&member.id, now),
            }
            totals.insert(member.id.clone(), (member.clone(), now));
        }
        for (id, (gone, before)) in &flushed.totals {
            if !totals.contains_key(id) {
                add(id, since(totals_of(gone), *before));
            }
        }
        let same_window = flushed.window_id == window_id;
        let key = self.keys.window(epoch);
        for (id, sent) in &window {
            let before = if same_window {
                flushed.window.get(id).copied().unwrap_or(0)
            } else {
                0
            };
            if *sent > before {
                increments.push((key.clone(), id.to_string(), sent - before));
            }
        }
        Batch {
            seq: flushed.seq,
            increments,
            totals,
            window_id,
            window: window.into_iter().collect(),
        }
    }

    /// Sends a batch; on success `Flushed` moves on, otherwise the batch waits to be sent
    /// again as it is.
    async fn apply(&self, batch: Batch) -> RedisResult<()> {
        let mut result = Ok(());
        if !batch.increments.is_empty() {
            let mut pipe = redis::pipe();
            let eval = pipe
                .cmd("EVAL")
                .arg(APPLY_ONCE)
                .arg(1)
                .arg(self.keys.flush_seq(&self.instance, self.run));
            eval.arg(batch.seq);
            for (hash, field, n) in &batch.increments {
                eval.arg(hash).arg(field).arg(*n);
            }
            eval.ignore();
            let epoch = self.epoch.load(Ordering::Relaxed);
            pipe.cmd("EXPIRE")
                .arg(self.keys.window(epoch))
                .arg(WINDOW_TTL_SECS)
                .ignore();
            result = self.query::<()>(&pipe, 2).await;
        }
        let mut flushed = lock(&self.flushed);
        match result {
            Ok(()) => {
                flushed.totals = batch.totals;
                flushed.window_id = batch.window_id;
                flushed.window = batch.window;
                Ok(())
            }
            Err(e) => {
                flushed.pending = Some(batch);
                Err(e)
            }
        }
    }

    /// `/analyzer/stats` for the fleet: counts from Redis plus what is not flushed yet, and
    /// each distributor's view of each analyzer. Falls back to local counts if Redis does
    /// not answer.
    pub async fn fleet_stats(&self, local: Vec<AnalyzerStats>) -> Vec<AnalyzerStats> {
        match self.read_fleet(&local).await {
            Ok(stats) => stats,
            Err(e) => {
                debug!(error = %e, "Fleet counts unavailable; showing this distributor's.");
                local
            }
        }
    }

    async fn read_fleet(&self, local: &[AnalyzerStats]) -> RedisResult<Vec<AnalyzerStats>> {
        let epoch = self.epoch.load(Ordering::Relaxed);
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(self.keys.window(epoch));
        for a in local {
            pipe.cmd("HGETALL").arg(self.keys.counts(&a.id));
            pipe.cmd("HGETALL").arg(self.keys.health(&a.id));
        }
        let replies: Vec<HashMap<String, String>> = self.query(&pipe, 1 + 2 * local.len()).await?;
        let window = &replies[0];
        let flushed = lock(&self.flushed);
        let now = now_ms();
        let fresh = 3 * self.interval.as_millis() as u64 + 1000;
        let number = |map: &HashMap<String, String>, key: &str| {
            map.get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut stats: Vec<AnalyzerStats> = local
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (counts, health) = (&replies[1 + 2 * i], &replies[2 + 2 * i]);
                let done = flushed
                    .totals
                    .get(a.id.as_str())
                    .map_or((0, 0), |(_, t)| *t);
                let window_done = flushed.window.get(a.id.as_str()).copied().unwrap_or(0);
                let unflushed_window = a.messages_sent.saturating_sub(window_done);
                let views = health
                    .iter()
                    .filter_map(|(instance, value)| {
                        let (state, at) = value.rsplit_once('@')?;
                        let at: u64 = at.parse().ok()?;
                        (now.saturating_sub(at) <= fresh)
                            .then(|| (instance.clone(), state.to_owned()))
                    })
                    .collect();
                AnalyzerStats {
                    messages_total: number(counts, "messages")
                        + a.messages_total.saturating_sub(done.0),
                    packets_total: number(counts, "packets")
                        + a.packets_total.saturating_sub(done.1),
                    messages_sent: number(window, &a.id) + unflushed_window,
                    fleet_states: Some(views),
                    ..a.clone()
                }
            })
            .collect();
        let total: u64 = stats
            .iter()
            .filter(|a| a.state == "online")
            .map(|a| a.messages_sent)
            .sum();
        for a in &mut stats {
            a.share = if total == 0 || a.state != "online" {
                0.0
            } else {
                a.messages_sent as f64 / total as f64
            };
        }
        Ok(stats)
    }
}
