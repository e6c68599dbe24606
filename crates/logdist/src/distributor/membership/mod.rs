//! Membership: which analyzers exist, and whether each is well. Registration and
//! deregistration ([`admin`], bounded by [`admission`] and checked by [`self_loop`]),
//! health probes ([`health`]), and the state several distributors share
//! ([`shared_state`]: memory, or Redis through [`cluster`]). [`Fleet`] starts a new
//! member's lanes and health watcher, and drains and removes a member that leaves.

pub mod admin;
mod admission;
mod cluster;
pub mod health;
mod self_loop;
pub mod shared_state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cluster::Cluster;
pub use shared_state::SharedState;

use crate::distributor::delivery::address::AnalyzerUrl;
use crate::distributor::delivery::protocol::Kind;
use crate::distributor::delivery::{self, Lanes, Member, State};
use crate::distributor::routing::{RegisterError, Registered, Routing};
use crate::workers::Workers;
use cluster::{Desired, Local};
use health::Probes;

/// The members of one distributor, and what starts and stops their work.
pub struct Fleet {
    /// Where members live, and are routed to.
    pub routing: Arc<Routing>,
    /// Where membership and counts are shared.
    pub shared: SharedState,
    /// What a new member's lanes share.
    lanes: Arc<Lanes>,
    /// What a new member's health watcher shares.
    probes: Arc<Probes>,
    /// Where lanes run: one per worker.
    workers: Arc<Workers>,
    /// This distributor's own address, which no analyzer may have.
    listen: SocketAddr,
    /// How long a leaving member's queue may take to drain (`--shutdown-grace`).
    grace: Duration,
}

impl Fleet {
    /// The fleet of a distributor listening on `listen`.
    pub fn new(
        routing: Arc<Routing>,
        shared: SharedState,
        lanes: Arc<Lanes>,
        probes: Arc<Probes>,
        workers: Arc<Workers>,
        listen: SocketAddr,
        grace: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            routing,
            shared,
            lanes,
            probes,
            workers,
            listen,
            grace,
        })
    }

    /// Registers an analyzer (see [`crate::distributor::routing::Registry::register`])
    /// and starts the lanes (one on each worker) and the health watcher of a new member.
    /// `protocol` is the delivery protocol given, if one was: without it, a new member
    /// speaks `logdist` until detection finds otherwise, and an existing one keeps the
    /// protocol it has (so that an analyzer's keep-alive changes nothing).
    pub fn register(
        self: &Arc<Self>,
        id: &str,
        url: AnalyzerUrl,
        weight: f64,
        pinned: bool,
        protocol: Option<Kind>,
    ) -> Result<(Registered, Arc<Member>), RegisterError> {
        let registry = &self.routing.registry;
        let (mut outcome, new) = registry.register(id, url, weight, pinned)?;
        let member = match new {
            Some((member, queues)) => {
                // Set before its lanes and its health watcher start.
                if let Some(kind) = protocol {
                    member.set_protocol(kind, true);
                }
                for (index, queue) in queues.into_iter().enumerate() {
                    let lane = delivery::run(self.lanes.clone(), member.clone(), queue, index);
                    self.workers.spawn_on(index, lane);
                }
                let watch = health::watch(self.probes.clone(), member.clone());
                // Weakly: the fleet owns the members whose watchers these are.
                let fleet = Arc::downgrade(self);
                let watched = member.clone();
                tokio::spawn(async move {
                    if watch.await == health::Ended::Forgotten
                        && let Some(fleet) = fleet.upgrade()
                    {
                        fleet.forget(&watched).await;
                    }
                });
                member
            }
            None => {
                let member = registry.member(id).ok_or_else(|| {
                    RegisterError::Draining(format!("analyzer `{id}` left meanwhile"))
                })?;
                if let Some(kind) = protocol
                    && member.set_protocol(kind, true)
                {
                    tracing::info!(analyzer = id, protocol = %kind, "Analyzer's delivery protocol changed.");
                    if outcome == Registered::Unchanged {
                        outcome = Registered::Updated;
                    }
                }
                member
            }
        };
        Ok((outcome, member))
    }

    /// Waits (at most a probe's timeout and a little more) for a member's first probe, and
    /// says whether it is online.
    pub async fn first_probe(&self, member: &Member) -> bool {
        let wait = self.probes.settings.timeout + Duration::from_millis(500);
        let _ = tokio::time::timeout(wait, member.probed.cancelled()).await;
        member.state() == State::Online
    }

    /// Refuses an analyzer URL that reaches this distributor itself, by `--analyzer` or by
    /// registration: every packet routed there would come back in, forever. The host is
    /// resolved (as deliveries will resolve it) and every address it has is checked, so no
    /// spelling gets through; a host that does not resolve is refused too (see
    /// [`self_loop`]).
    pub async fn check_not_self(&self, url: &AnalyzerUrl) -> Result<(), String> {
        self_loop::check(url, self.listen).await
    }

    /// Stops routing to an analyzer at once and removes it once its queue is delivered
    /// (within `--shutdown-grace`); says whether it drained. `None` for an unknown id.
    pub async fn deregister(&self, id: &str) -> Option<bool> {
        let member = self.routing.registry.begin_deregister(id)?;
        self.shared.withdraw(id).await;
        let drained = tokio::time::timeout(self.grace, member.drained.cancelled())
            .await
            .is_ok();
        self.routing.registry.remove(&member);
        Some(drained)
    }

    /// Forgets a member that stayed unhealthy for `--forget-after` (see
    /// [`health::watch`]): removed at once, so that it registers again as new; what its
    /// queues still hold is routed to the others; in cluster mode its lease is deleted, so
    /// that every distributor drops it. Nothing happens if it came back online meanwhile.
    pub async fn forget(&self, member: &Arc<Member>) {
        self.shared.forgetting(&member.id);
        if !self.routing.registry.forget(member) {
            self.shared.not_forgotten(&member.id);
            return;
        }
        // Still unhealthy: its lanes route what is queued elsewhere, then end.
        member.retire.cancel();
        metrics::counter!("logdist_analyzers_forgotten_total").increment(1);
        let after = self.probes.settings.forget_after.unwrap_or_default();
        tracing::info!(analyzer = %member.id, url = %member.url.base, forget_after = ?after, "Analyzer unhealthy for --forget-after; forgotten (it is accepted as new if it registers again).");
        self.shared.forget(&member.id).await;
    }

    /// Stops routing to an analyzer, and removes it once its queue is delivered.
    fn remove_in_background(self: &Arc<Self>, id: &str) {
        if let Some(member) = self.routing.registry.begin_deregister(id) {
            let fleet = self.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(fleet.grace, member.drained.cancelled()).await;
                fleet.routing.registry.remove(&member);
            });
        }
    }

    /// Makes the local membership match the fleet's (cluster mode): adds and updates what
    /// the fleet has, drains and removes what it no longer has. Pinned members stay.
    fn reconcile(self: &Arc<Self>, desired: &Desired) {
        for (id, (url, weight, protocol)) in desired {
            if let Err(e) = self.register(id, url.clone(), *weight, false, *protocol) {
                tracing::debug!(analyzer = %id, error = %e, "Not taking the fleet's registration yet.");
            }
        }
        for member in self.routing.registry.members() {
            let gone = !desired.contains_key(member.id.as_ref());
            if gone && !member.pinned && member.state() != State::Draining {
                self.remove_in_background(&member.id);
            }
        }
    }

    /// Starts keeping this distributor's membership in step with the fleet's, until
    /// `stop` (in cluster mode; in memory there is nothing to do).
    pub fn start_sync(self: &Arc<Self>, stop: CancellationToken) -> Option<JoinHandle<()>> {
        // The sync holds the fleet weakly: the fleet owns the shared state that runs it.
        let fleet = Arc::downgrade(self);
        let local = Local {
            routing: self.routing.clone(),
            reconcile: Box::new(move |desired| {
                if let Some(fleet) = fleet.upgrade() {
                    fleet.reconcile(desired);
                }
            }),
        };
        self.shared.start(local, stop)
    }

    /// Stops every member's lanes once its queue is empty, and waits until `deadline` for
    /// all of them to drain.
    pub async fn drain_all(&self, deadline: tokio::time::Instant) {
        let members = self.routing.registry.members();
        for member in &members {
            member.retire.cancel();
        }
        for member in &members {
            if tokio::time::timeout_at(deadline, member.drained.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(analyzer = %member.id, "Grace period over before this analyzer's queue drained.");
            }
        }
    }
}
