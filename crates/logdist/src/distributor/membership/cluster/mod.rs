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
//!   A lease that lapsed while Redis was away proves nothing (the keep-alives could not
//!   reach it), so for one lease TTL after Redis answers again a distributor keeps the
//!   members whose lease lapsed; a live analyzer renews within that time, one that
//!   vanished is dropped when it ends.
//!
//! Key layout, all under `--redis-prefix` (default `logdist:`):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}generation` | string | random id of this cluster state; gone means Redis lost its data |
//! | `{p}analyzers` | set | ids of registered analyzers |
//! | `{p}analyzer:{id}` | string, TTL `--lease-ttl` | the lease: `{"url": ..., "weight": ..., "protocol": ...}` (`protocol` only when given) |
//! | `{p}epoch` | integer | membership version, incremented on every change |
//! | `{p}events` | pub/sub channel | the new epoch, published on every change |
//! | `{p}counts:{id}` | hash | `messages`, `packets` delivered to the analyzer, fleet-wide |
//! | `{p}window:{epoch}` | hash, TTL 1 day | id -> messages routed to it in that epoch's window |
//! | `{p}health:{id}` | hash | distributor -> `state@unix_ms` |
//! | `{p}flushed:{instance}:{run}` | string, TTL 1 day | number of the last counter flush applied, so a retried flush is applied once |

mod counts;
mod keys;
mod membership;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::distributor::delivery::address::AnalyzerUrl;
use crate::distributor::delivery::protocol::Kind;
use crate::distributor::routing::Routing;
use counts::Flushed;
use keys::Keys;
use membership::Pending;

/// The fleet's membership as Redis holds it: analyzer id -> its address and weight.
pub type Desired = BTreeMap<String, (AnalyzerUrl, f64, Option<Kind>)>;

/// This distributor, as a sync sees it: its routing (members, counts and the counting
/// window, read), and how its membership is made to match the fleet's.
pub struct Local {
    /// The local members and counts.
    pub routing: Arc<Routing>,
    /// Adds and updates what the fleet has, drains what it no longer has.
    pub reconcile: Box<dyn Fn(&Desired) + Send + Sync>,
}

/// How long any one Redis exchange may take before Redis counts as down.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// One distributor's link to the fleet.
pub struct Cluster {
    client: redis::Client,
    keys: Keys,
    /// This distributor's name in the health view.
    instance: String,
    /// Random per process: numbers this run's flushes apart from an earlier run's.
    run: u64,
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
    /// Set when an exchange with Redis fails; the first sync that works after it clears
    /// it and starts a hold.
    lost: AtomicBool,
    /// Until then a lapsed lease does not drop its member here: Redis was away, and the
    /// keep-alives received meanwhile may not have reached it yet.
    hold_until: Mutex<Option<tokio::time::Instant>>,
    /// Numbers each membership sync, counted as it starts, before it reads Redis.
    syncs: AtomicU64,
    /// Analyzers forgotten here (`--forget-after`), by id, with the number of the last
    /// sync that may have read their lease before it was deleted: such a sync leaves
    /// them out, and the first sync after it ends the entry (see `forget`).
    forgotten: Mutex<BTreeMap<String, u64>>,
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
            run: rand::random(),
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
            lost: AtomicBool::new(false),
            hold_until: Mutex::new(None),
            syncs: AtomicU64::new(0),
            forgotten: Mutex::new(BTreeMap::new()),
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
        if !up {
            self.lost.store(true, Ordering::Relaxed);
        }
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

    /// Runs the sync loop until `shutdown`, then flushes the counters one last time.
    pub async fn run(self: Arc<Self>, local: Local, shutdown: CancellationToken) {
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
                self.sync_membership(&local).await?;
                self.flush_counts(&local).await
            }
            .await;
            self.set_up(result.is_ok(), result.as_ref().err());
        }
        if let Err(e) = self.flush_counts(&local).await {
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
}
