//! Cluster mode: several distributors on one Redis behave as one fleet.
//!
//! Redis holds the shared membership and the fleet's counters; it is never on the path of
//! a packet. Each distributor routes on its own copy of the membership and its own
//! counting window, and a background task keeps both in step with Redis:
//!
//! - **Membership.** A registration at any distributor writes a lease (a key with a TTL,
//!   renewed by the analyzer's keep-alive) and, when something changed, bumps the
//!   membership epoch and publishes on the events channel. Every distributor listens on
//!   that channel and on Redis's own expiry events, and re-reads the whole membership on
//!   each event and every `--sync-interval`, so a missed message heals by itself.
//! - **Counters.** Delivered messages and packets, and the messages routed in the current
//!   window, are added to Redis in one pipeline per interval. What failed to flush stays
//!   pending and is added on the next success: an outage loses no count.
//! - **Health.** Each distributor writes its own view of each analyzer's state; the others
//!   show it in `/analyzer/stats` but do not act on it.
//! - **Outage.** When Redis is unreachable, routing goes on with the last membership known,
//!   `/health` says `"redis": "down"`, and registrations made meanwhile are published once
//!   Redis answers again. A Redis that comes back empty (restarted without persistence) is
//!   noticed by its missing generation key, and the distributors publish what they know.
//!
//! Key layout, all under `--redis-prefix` (default `logdist:`):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}generation` | string | random id of this cluster state; gone means Redis lost its data |
//! | `{p}analyzers` | set | ids of registered analyzers |
//! | `{p}analyzer:{id}` | string, TTL `--lease-ttl` | the lease: `{"url": ..., "weight": ...}` |
//! | `{p}epoch` | integer | membership version, incremented on every change |
//! | `{p}events` | pub/sub channel | the new epoch, published on every change |
//! | `{p}counts:{id}` | hash | `messages`, `packets` delivered to the analyzer, fleet-wide |
//! | `{p}window:{epoch}` | hash, TTL 1 day | id -> messages routed to it in that epoch's window |
//! | `{p}health:{id}` | hash | distributor -> `state@unix_ms` |

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Shared;
use super::config::AnalyzerUrl;
use super::member::State;
use crate::api::AnalyzerStats;

/// How long any one Redis exchange may take before Redis counts as down.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Epoch windows are kept this long, then expire.
const WINDOW_TTL_SECS: i64 = 24 * 3600;

/// The names of every key and channel, under one prefix.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn generation(&self) -> String {
        format!("{}generation", self.prefix)
    }
    fn analyzers(&self) -> String {
        format!("{}analyzers", self.prefix)
    }
    fn lease(&self, id: &str) -> String {
        format!("{}analyzer:{id}", self.prefix)
    }
    fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
    fn events(&self) -> String {
        format!("{}events", self.prefix)
    }
    fn counts(&self, id: &str) -> String {
        format!("{}counts:{id}", self.prefix)
    }
    fn window(&self, epoch: u64) -> String {
        format!("{}window:{epoch}", self.prefix)
    }
    fn health(&self, id: &str) -> String {
        format!("{}health:{id}", self.prefix)
    }
}

/// A lease's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Lease {
    url: String,
    weight: f64,
}

/// A change made while Redis could not be reached, published when it can.
#[derive(Debug, Clone)]
enum Pending {
    Announce(Lease),
    Withdraw,
}

/// What has been added to Redis's counters already.
#[derive(Debug, Default)]
struct Flushed {
    /// id -> (messages, packets) delivered, as last flushed.
    totals: HashMap<Arc<str>, (u64, u64)>,
    /// The local window the `window` counts belong to.
    window_id: u64,
    /// id -> messages routed in that window, as last flushed.
    window: HashMap<Arc<str>, u64>,
}

/// One distributor's link to the fleet.
pub struct Cluster {
    client: redis::Client,
    keys: Keys,
    /// This distributor's name in the health view.
    instance: String,
    lease_ttl: Duration,
    interval: Duration,
    /// The channel Redis announces expired keys on (keyspace notifications).
    expired_channel: String,
    /// The shared connection; `None` after an error, re-made on next use.
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Whether the last exchange with Redis worked.
    up: AtomicBool,
    /// The membership epoch last read; counters of the window go under it.
    epoch: AtomicU64,
    /// Changes to publish once Redis answers, by analyzer id (the latest wins).
    pending: Mutex<BTreeMap<String, Pending>>,
    flushed: Mutex<Flushed>,
    /// Woken by pushed events: sync now rather than at the next tick.
    poke: Notify,
    /// The generation last seen; a different one means Redis lost its data meanwhile.
    generation: Mutex<Option<String>>,
    /// When the next lease lapses: the sync loop wakes then, so an analyzer that stopped
    /// renewing leaves within its TTL even without keyspace notifications.
    next_lapse: Mutex<Option<tokio::time::Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn count_commands(n: usize) {
    metrics::counter!("logdist_redis_commands_total").increment(n as u64);
}

impl Cluster {
    /// A link to the Redis at `url`; nothing is sent until [`run`](Self::run).
    pub fn new(
        url: &str,
        prefix: &str,
        instance: String,
        lease_ttl: Duration,
        interval: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("--redis {url}: {e}"))?;
        let db = client.get_connection_info().redis_settings().db();
        Ok(Arc::new(Self {
            client,
            keys: Keys {
                prefix: prefix.to_owned(),
            },
            instance,
            lease_ttl,
            interval,
            expired_channel: format!("__keyevent@{db}__:expired"),
            conn: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            pending: Mutex::new(BTreeMap::new()),
            flushed: Mutex::new(Flushed::default()),
            poke: Notify::new(),
            generation: Mutex::new(None),
            next_lapse: Mutex::new(None),
        }))
    }

    /// Whether Redis answered the last exchange.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `pipe` on the shared connection, dropping the connection on error.
    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        commands: usize,
    ) -> RedisResult<T> {
        let mut conn = self.connection().await?;
        count_commands(commands);
        let result = pipe.query_async(&mut conn).await;
        if result.is_err() {
            *self.conn.lock().await = None;
        }
        result
    }

    fn set_up(&self, up: bool, error: Option<&redis::RedisError>) {
        let was = self.up.swap(up, Ordering::Relaxed);
        metrics::gauge!("logdist_redis_up").set(if up { 1.0 } else { 0.0 });
        match (was, up) {
            (false, true) => info!("Redis reachable; fleet state in sync."),
            (true, false) => warn!(
                error = %error.map(ToString::to_string).unwrap_or_default(),
                "Redis unreachable; routing on the last membership known, counters kept until it returns."
            ),
            _ => {}
        }
    }

    /// Publishes a registration made at this distributor. If Redis cannot be reached it is
    /// published later; the local registration stands meanwhile.
    pub async fn announce(&self, id: &str, url: &str, weight: f64) {
        let lease = Lease {
            url: url.to_owned(),
            weight,
        };
        if let Err(e) = self.write_lease(id, &lease).await {
            debug!(analyzer = id, error = %e, "Registration kept for Redis.");
            lock(&self.pending).insert(id.to_owned(), Pending::Announce(lease));
            self.set_up(false, Some(&e));
        }
    }

    /// Publishes a deregistration made at this distributor (later if Redis is down).
    pub async fn withdraw(&self, id: &str) {
        if let Err(e) = self.delete_lease(id).await {
            lock(&self.pending).insert(id.to_owned(), Pending::Withdraw);
            self.set_up(false, Some(&e));
        }
    }

    async fn write_lease(&self, id: &str, lease: &Lease) -> RedisResult<()> {
        let value = serde_json::to_string(lease).expect("a lease serializes");
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.lease(id))
            .arg(&value)
            .arg("PX")
            .arg(self.lease_ttl.as_millis() as u64)
            .arg("GET")
            .cmd("SADD")
            .arg(self.keys.analyzers())
            .arg(id)
            .ignore();
        let (previous,): (Option<String>,) = self.query(&pipe, 2).await?;
        let changed = previous
            .and_then(|p| serde_json::from_str::<Lease>(&p).ok())
            .as_ref()
            != Some(lease);
        if changed {
            self.bump_epoch().await?;
        }
        Ok(())
    }

    async fn delete_lease(&self, id: &str) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(self.keys.lease(id))
            .ignore()
            .cmd("SREM")
            .arg(self.keys.analyzers())
            .arg(id)
            .ignore();
        self.query::<()>(&pipe, 2).await?;
        self.bump_epoch().await
    }

    /// Marks a membership change: a new epoch, announced to every distributor (the
    /// message only wakes them; each reads the new state itself).
    async fn bump_epoch(&self) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("INCR").arg(self.keys.epoch()).ignore();
        pipe.cmd("PUBLISH")
            .arg(self.keys.events())
            .arg("changed")
            .ignore();
        self.query::<()>(&pipe, 2).await
    }

    /// Runs the sync loop until `shutdown`, then flushes the counters one last time.
    pub async fn run(self: Arc<Self>, shared: Arc<Shared>, shutdown: CancellationToken) {
        tokio::spawn(self.clone().listen(shutdown.clone()));
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let lapse = lock(&self.next_lapse).take();
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                _ = tick.tick() => {}
                () = self.poke.notified() => {}
                () = tokio::time::sleep_until(lapse.unwrap_or(far)) => {}
                () = shutdown.cancelled() => break,
            }
            let result = async {
                self.publish_pending().await?;
                self.sync_membership(&shared).await?;
                self.flush_counts(&shared).await
            }
            .await;
            self.set_up(result.is_ok(), result.as_ref().err());
        }
        if let Err(e) = self.flush_counts(&shared).await {
            warn!(error = %e, "Last flush of counters to Redis failed.");
        }
    }

    /// Listens for membership events and lease expiries, reconnecting as needed.
    async fn listen(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Ok(mut pubsub) = self.client.get_async_pubsub().await {
                self.enable_expiry_events().await;
                let subscribed = async {
                    pubsub.subscribe(self.keys.events()).await?;
                    pubsub.subscribe(&self.expired_channel).await
                }
                .await;
                if subscribed.is_ok() {
                    // Whatever happened while we were not listening: read it now.
                    self.poke.notify_one();
                    let lease_prefix = self.keys.lease("");
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            message = messages.next() => match message {
                                Some(m) if m.get_channel_name() == self.expired_channel => {
                                    let key: String = m.get_payload().unwrap_or_default();
                                    if key.starts_with(&lease_prefix) {
                                        self.poke.notify_one();
                                    }
                                }
                                Some(_) => self.poke.notify_one(),
                                None => break,
                            },
                            () = shutdown.cancelled() => return,
                        }
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Asks Redis to announce expired keys, so a lapsed lease is seen at once. Managed
    /// Redis services may refuse CONFIG; the periodic sync then sees it instead.
    async fn enable_expiry_events(&self) {
        let mut pipe = redis::pipe();
        pipe.cmd("CONFIG").arg("GET").arg("notify-keyspace-events");
        let Ok((reply,)) = self.query::<(Vec<String>,)>(&pipe, 1).await else {
            return;
        };
        let current = reply.get(1).cloned().unwrap_or_default();
        if (current.contains('E') || current.contains('A'))
            && (current.contains('x') || current.contains('A'))
        {
            return;
        }
        let mut pipe = redis::pipe();
        pipe.cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(format!("{current}Ex"))
            .ignore();
        if let Err(e) = self.query::<()>(&pipe, 1).await {
            info!(error = %e, "Redis refused keyspace notifications; lapsed leases are seen at the next sync.");
        }
    }

    async fn publish_pending(&self) -> RedisResult<()> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let mut iter = pending.into_iter();
        while let Some((id, change)) = iter.next() {
            let result = match &change {
                Pending::Announce(lease) => self.write_lease(&id, lease).await,
                Pending::Withdraw => self.delete_lease(&id).await,
            };
            if let Err(e) = result {
                let mut left = lock(&self.pending);
                left.insert(id, change);
                for (id, change) in iter {
                    left.entry(id).or_insert(change);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Reads the whole membership and makes the local registry match it.
    async fn sync_membership(&self, shared: &Arc<Shared>) -> RedisResult<()> {
        self.check_generation(shared).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("SMEMBERS")
            .arg(self.keys.analyzers())
            .cmd("GET")
            .arg(self.keys.epoch());
        let (ids, epoch): (Vec<String>, Option<u64>) = self.query(&pipe, 2).await?;
        self.epoch.store(epoch.unwrap_or(0), Ordering::Relaxed);
        let mut desired = BTreeMap::new();
        if !ids.is_empty() {
            let mut pipe = redis::pipe();
            pipe.cmd("MGET");
            for id in &ids {
                pipe.arg(self.keys.lease(id));
            }
            for id in &ids {
                pipe.cmd("PTTL").arg(self.keys.lease(id));
            }
            let mut replies: Vec<redis::Value> = self.query(&pipe, 1 + ids.len()).await?;
            let ttls: Vec<i64> = replies
                .split_off(1)
                .into_iter()
                .map(|v| redis::from_redis_value(v).unwrap_or(-2))
                .collect();
            let leases: Vec<Option<String>> =
                redis::from_redis_value(replies.pop().unwrap_or(redis::Value::Nil))
                    .unwrap_or_default();
            let mut lapsed = Vec::new();
            for (id, lease) in ids.into_iter().zip(leases) {
                let parsed = lease
                    .as_deref()
                    .and_then(|l| serde_json::from_str::<Lease>(l).ok());
                match parsed.and_then(|l| Some((l.url.parse::<AnalyzerUrl>().ok()?, l.weight))) {
                    Some(entry) => {
                        desired.insert(id, entry);
                    }
                    None => lapsed.push(id),
                }
            }
            let soonest = ttls.into_iter().filter(|t| *t >= 0).min();
            *lock(&self.next_lapse) = soonest
                .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms as u64 + 2));
            if !lapsed.is_empty() {
                let mut pipe = redis::pipe();
                pipe.cmd("SREM")
                    .arg(self.keys.analyzers())
                    .arg(&lapsed)
                    .ignore();
                self.query::<()>(&pipe, 1).await?;
                self.bump_epoch().await?;
            }
        }
        shared.reconcile(&desired);
        Ok(())
    }

    /// Notices a Redis that lost its data (restarted without persistence, or flushed): its
    /// generation key is gone or was made anew. Then publish what this distributor knows
    /// instead of forgetting it (analyzers' keep-alives correct the rest within a lease),
    /// and count its totals from zero again, since what was added to the old Redis is gone.
    async fn check_generation(&self, shared: &Arc<Shared>) -> RedisResult<()> {
        let fresh = format!("{:016x}", rand::random::<u64>());
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.keys.generation())
            .arg(&fresh)
            .arg("NX")
            .ignore();
        pipe.cmd("GET").arg(self.keys.generation());
        let (current,): (String,) = self.query(&pipe, 2).await?;
        let seen = lock(&self.generation).clone();
        if seen.as_deref() == Some(current.as_str()) {
            return Ok(());
        }
        if seen.is_some() {
            warn!("Redis lost the fleet's state; publishing the membership and counts known here.");
            *lock(&self.flushed) = Flushed::default();
        }
        let known: Vec<_> = shared
            .registry
            .weighted()
            .into_iter()
            .filter(|(m, _)| !m.pinned)
            .collect();
        for (member, weight) in known {
            if member.state() != State::Draining {
                self.write_lease(
                    &member.id,
                    &Lease {
                        url: member.url.base.clone(),
                        weight,
                    },
                )
                .await?;
            }
        }
        *lock(&self.generation) = Some(current);
        Ok(())
    }

    /// Adds what was delivered and routed since the last flush, and this distributor's
    /// view of each analyzer's health, in one pipeline.
    async fn flush_counts(&self, shared: &Arc<Shared>) -> RedisResult<()> {
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
