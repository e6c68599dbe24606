//! Shared membership: leases written on registration, removed on deregistration, an epoch
//! bumped and announced on every change, and the full resync that makes the local registry
//! match what Redis holds (and notices a Redis that lost its data).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::RedisResult;
use tracing::{debug, warn};

use super::keys::Lease;
use super::{Cluster, Desired, Local, lock};
use crate::distributor::delivery::State;
use crate::distributor::delivery::address::AnalyzerUrl;
use crate::distributor::delivery::protocol::Kind;

/// A change made while Redis could not be reached, published when it can.
#[derive(Debug, Clone)]
pub(super) enum Pending {
    Announce(Lease),
    Withdraw,
}

impl Cluster {
    /// Publishes a registration made at this distributor. If Redis cannot be reached it is
    /// published later; the local registration stands meanwhile.
    pub async fn announce(&self, id: &str, url: &str, weight: f64, protocol: Option<Kind>) {
        let lease = Lease {
            url: url.to_owned(),
            weight,
            protocol: protocol.map(|kind| kind.as_str().to_owned()),
        };
        // Registered again: whatever a sync reads of it from now on is this registration.
        lock(&self.forgotten).remove(id);
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

    /// Notes, before it is removed here, that an analyzer is being forgotten: from now
    /// on no sync adds it back until [`forget`](Self::forget) has deleted its lease.
    pub fn forgetting(&self, id: &str) {
        lock(&self.forgotten).insert(id.to_owned(), u64::MAX);
    }

    /// Undoes [`forgetting`](Self::forgetting) when the analyzer was not forgotten after
    /// all (it came back meanwhile).
    pub fn not_forgotten(&self, id: &str) {
        lock(&self.forgotten).remove(id);
    }

    /// Publishes that an analyzer was forgotten here: its lease is deleted (later if Redis
    /// is down), so that every distributor drops it. A sync that read the lease before it
    /// was deleted must not put it back: until a sync that started after the deletion
    /// has run, the syncs leave it out. A pending deletion is published before the next
    /// sync reads (see `run`), so that sync already reads without it.
    pub async fn forget(&self, id: &str) {
        self.withdraw(id).await;
        let last = self.syncs.load(Ordering::Acquire);
        if let Some(until) = lock(&self.forgotten).get_mut(id) {
            *until = last;
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

    pub(super) async fn publish_pending(&self) -> RedisResult<()> {
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
    pub(super) async fn sync_membership(&self, local: &Local) -> RedisResult<()> {
        let sync = self.syncs.fetch_add(1, Ordering::AcqRel) + 1;
        self.check_generation(local).await?;
        let hold_until = self.hold_until();
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
                let entry = parsed.and_then(|l| {
                    // A protocol this distributor does not know: as if none was given.
                    let protocol = l.protocol.as_deref().and_then(|p| p.parse::<Kind>().ok());
                    Some((l.url.parse::<AnalyzerUrl>().ok()?, l.weight, protocol))
                });
                match entry {
                    Some(entry) => {
                        desired.insert(id, entry);
                    }
                    None => lapsed.push(id),
                }
            }
            let soonest = ttls
                .into_iter()
                .filter(|t| *t >= 0)
                .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms as u64 + 2))
                .min();
            let mut next = soonest;
            if let Some(until) = hold_until
                && !lapsed.is_empty()
            {
                // Keep them as they are here, and leave them in the set so that the other
                // distributors holding them do too; look again when the hold ends.
                hold_lapsed(local, &lapsed, &mut desired, until);
                lapsed.clear();
                next = Some(next.map_or(until, |n| n.min(until)));
            }
            *lock(&self.next_lapse) = next;
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
        // Forgotten here while this sync read: what it read of them may be stale, and must
        // not add them back (one still here is being forgotten, and stays as it is).
        lock(&self.forgotten).retain(|id, last| {
            let stale = sync <= *last;
            if stale && local.routing.registry.member(id).is_none() {
                desired.remove(id);
            }
            stale
        });
        (local.reconcile)(&desired);
        Ok(())
    }

    /// When the hold on lapsed leases ends, if one is in force. The first call after Redis
    /// failed starts it: one lease TTL, within which every live analyzer renews.
    fn hold_until(&self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let mut hold = lock(&self.hold_until);
        if self.lost.swap(false, Ordering::Relaxed) {
            *hold = Some(now + self.lease_ttl);
        }
        hold.filter(|until| *until > now)
    }

    /// Notices a Redis that lost its data (restarted without persistence, or flushed): its
    /// generation key is gone or was made anew. Then publish what this distributor knows
    /// instead of forgetting it (analyzers' keep-alives correct the rest within a lease),
    /// and count its totals from zero again, since what was added to the old Redis is gone.
    async fn check_generation(&self, local: &Local) -> RedisResult<()> {
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
            lock(&self.flushed).forget_counts();
        }
        let known: Vec<_> = local
            .routing
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
                        protocol: member
                            .protocol_given()
                            .then(|| member.protocol().as_str().to_owned()),
                    },
                )
                .await?;
            }
        }
        *lock(&self.generation) = Some(current);
        Ok(())
    }
}

/// Puts the members known here whose lease lapsed while Redis was away into `desired` as
/// they are, so that the sync keeps them until `until`.
fn hold_lapsed(
    local: &Local,
    lapsed: &[String],
    desired: &mut Desired,
    until: tokio::time::Instant,
) {
    let left = until.saturating_duration_since(tokio::time::Instant::now());
    for (member, weight) in local.routing.registry.weighted() {
        if lapsed.iter().any(|id| **id == *member.id) && member.state() != State::Draining {
            debug!(
                analyzer = %member.id,
                hold_ms = left.as_millis() as u64,
                "Lease lapsed while Redis was away; keeping the analyzer until it renews."
            );
            let protocol = member.protocol_given().then(|| member.protocol());
            desired.insert(
                member.id.to_string(),
                (member.url.clone(), weight, protocol),
            );
        }
    }
}
