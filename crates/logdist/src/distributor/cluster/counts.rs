//! Fleet-wide counts: what this distributor delivered and routed is added to Redis in one
//! pipeline per interval (deltas advance only once Redis took them, so an outage loses
//! nothing), and `/analyzer/stats` reads the fleet's counts back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::RedisResult;
use tracing::debug;

use super::{Cluster, lock, now_ms};
use crate::api::AnalyzerStats;
use crate::distributor::Shared;

/// Epoch windows are kept this long, then expire.
const WINDOW_TTL_SECS: i64 = 24 * 3600;

/// What has been added to Redis's counters already.
#[derive(Debug, Default)]
pub(super) struct Flushed {
    /// id -> (messages, packets) delivered, as last flushed.
    totals: HashMap<Arc<str>, (u64, u64)>,
    /// The local window the `window` counts belong to.
    window_id: u64,
    /// id -> messages routed in that window, as last flushed.
    window: HashMap<Arc<str>, u64>,
}

impl Cluster {
    /// Adds what was delivered and routed since the last flush, and this distributor's
    /// view of each analyzer's health, in one pipeline.
    pub(super) async fn flush_counts(&self, shared: &Arc<Shared>) -> RedisResult<()> {
        let members = shared.registry.members();
        let (window_id, window) = shared.registry.window();
        let epoch = self.epoch.load(Ordering::Relaxed);
        let now = now_ms();
        let mut pipe = redis::pipe();
        let mut commands = 0;
        let mut new_totals = Vec::new();
        let mut new_window = Vec::new();
        {
            let flushed = lock(&self.flushed);
            for member in &members {
                let totals = (
                    member.messages_total.load(Ordering::Relaxed),
                    member.packets_total.load(Ordering::Relaxed),
                );
                let before = flushed.totals.get(&member.id).copied().unwrap_or((0, 0));
                let (dm, dp) = (
                    totals.0.saturating_sub(before.0),
                    totals.1.saturating_sub(before.1),
                );
                if dm > 0 || dp > 0 {
                    let key = self.keys.counts(&member.id);
                    pipe.cmd("HINCRBY")
                        .arg(&key)
                        .arg("messages")
                        .arg(dm)
                        .ignore();
                    pipe.cmd("HINCRBY")
                        .arg(&key)
                        .arg("packets")
                        .arg(dp)
                        .ignore();
                    commands += 2;
                }
                new_totals.push((member.id.clone(), totals));
                let state = format!("{}@{now}", member.state().as_str());
                pipe.cmd("HSET")
                    .arg(self.keys.health(&member.id))
                    .arg(&self.instance)
                    .arg(state)
                    .ignore();
                commands += 1;
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
                    pipe.cmd("HINCRBY")
                        .arg(&key)
                        .arg(id.as_ref())
                        .arg(sent - before)
                        .ignore();
                    commands += 1;
                }
                new_window.push((id.clone(), *sent));
            }
            if !window.is_empty() {
                pipe.cmd("EXPIRE").arg(&key).arg(WINDOW_TTL_SECS).ignore();
                commands += 1;
            }
        }
        if commands > 0 {
            self.query::<()>(&pipe, commands).await?;
        }
        let mut flushed = lock(&self.flushed);
        flushed.totals = new_totals.into_iter().collect();
        flushed.window_id = window_id;
        flushed.window = new_window.into_iter().collect();
        Ok(())
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
                let done = flushed.totals.get(a.id.as_str()).copied().unwrap_or((0, 0));
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
