//! Membership and routing: which analyzers exist, which are online, and which one gets
//! each packet.
//!
//! One short `std::sync::Mutex` guards the members and the routing window together, so a
//! routing decision and the enqueue it leads to are one atomic step. Nothing under the lock
//! awaits or does I/O: a decision is a few float operations and a `try_send`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use logdist_core::Router;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::api::AnalyzerStats;
use crate::distributor::delivery::address::AnalyzerUrl;
use crate::distributor::delivery::{Member, QueueLimits, State};
use crate::distributor::job::{Job, Refusal};

/// All members and the current counting window.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Each member's lanes, queue capacity in packets, and deliveries in flight.
    limits: QueueLimits,
    /// Bytes that may wait in one member's queue.
    queue_bytes: usize,
    /// Longest expected wait in a queue, at the member's measured delivery rate.
    queue_wait: Duration,
    /// Set when a packet was refused for a full queue, cleared when one is queued: while
    /// it is clear, ingest skips [`Registry::queue_full_for`] altogether.
    refusing: AtomicBool,
    /// Members held at most (`--max-analyzers`): a registration beyond is refused.
    max_members: usize,
}

/// A member just created, with the receiving ends of its queues, one per lane: the caller
/// starts its lanes.
pub type NewMember = (Arc<Member>, Vec<mpsc::UnboundedReceiver<Job>>);

#[derive(Debug)]
struct Inner {
    /// Every registered analyzer with its weight, by id (sorted, for stable stats).
    members: BTreeMap<Arc<str>, (Arc<Member>, f64)>,
    /// The counting window over the online members; rebuilt on every change.
    router: Router,
    /// The online members, in the router's index order.
    online: Vec<Arc<Member>>,
    /// Counts rebuilds, so that a reader of window counts can tell a new window apart.
    window: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            members: BTreeMap::new(),
            router: Router::new(&[]).expect("no weights is valid"),
            online: Vec::new(),
            window: 0,
        }
    }
}

impl Inner {
    /// Re-normalizes the targets over the online members and restarts the window.
    fn rebuild(&mut self) {
        let (online, weights): (Vec<_>, Vec<_>) = self
            .members
            .values()
            .filter(|(m, _)| m.state() == State::Online)
            .map(|(m, w)| (m.clone(), *w))
            .unzip();
        // Weights are checked at registration, so this cannot fail.
        self.router = Router::new(&weights).unwrap_or_else(|_| Router::new(&[]).expect("empty"));
        self.online = online;
        self.window += 1;
        info!(
            online = self.online.len(),
            "Targets re-normalized; the counting window restarts."
        );
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// A weight that cannot route.
    Invalid(String),
    /// The id is deregistering.
    Draining(String),
    /// `--max-analyzers` members are there already.
    Full(usize),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(why) | Self::Draining(why) => f.write_str(why),
            Self::Full(max) => write!(
                f,
                "this distributor has {max} analyzers, its --max-analyzers; deregister one or raise the limit"
            ),
        }
    }
}

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A new analyzer.
    Added,
    /// An existing analyzer's weight changed.
    Updated,
    /// Nothing changed (a keep-alive).
    Unchanged,
}

impl Registry {
    /// An empty registry whose members' queues are bounded by `limits` and hold
    /// `queue_bytes` bytes, and no more than their analyzer delivers in `queue_wait`.
    /// At most `max_members` analyzers are members at once.
    pub fn new(
        limits: QueueLimits,
        queue_bytes: usize,
        queue_wait: Duration,
        max_members: usize,
    ) -> Self {
        Self {
            inner: Mutex::default(),
            refusing: AtomicBool::new(false),
            max_members,
            limits,
            queue_bytes,
            queue_wait,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-changed in a way that
        // matters more than stopping routing would; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Routes a job to an analyzer and queues it on that analyzer's lane number `lane` (the
    /// worker the caller runs on), or gives it back with the reason:
    /// no analyzer online, or the chosen analyzer's queue full. A full queue does not pass
    /// the packet to another analyzer: that would break the shares (see `Router::pick`);
    /// the agent gets 503 and retries, and a hung analyzer is taken out of routing by its
    /// failed deliveries and probes. The window counts the packet only once it is queued.
    pub fn dispatch(&self, job: Job, lane: usize) -> Result<(), (Job, Refusal)> {
        let mut inner = self.lock();
        let messages = u64::from(job.packet.messages);
        let len = job.packet.ndjson.len();
        let fits = |j: usize| len <= inner.online[j].accepts_at_most();
        let Some(index) = inner.router.pick_among(messages, fits) else {
            let why = match inner.online.iter().map(|m| m.accepts_at_most()).max() {
                None => Refusal::NoAnalyzer,
                Some(largest) => Refusal::TooLarge {
                    bytes: len,
                    largest,
                },
            };
            return Err((job, why));
        };
        let member = &inner.online[index];
        if !self.has_room(member, len) {
            self.refusing.store(true, Ordering::Relaxed);
            return Err((job, Refusal::QueueFull));
        }
        member.queued_bytes.fetch_add(len, Ordering::Relaxed);
        match member.enqueue(lane, job) {
            Ok(()) => {
                inner.router.record(index, messages);
                if self.refusing.load(Ordering::Relaxed) {
                    self.refusing.store(false, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(job) => {
                member.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                self.refusing.store(true, Ordering::Relaxed);
                Err((job, Refusal::QueueFull))
            }
        }
    }

    /// Whether some packet was refused for a full queue since one was last queued: while
    /// not, [`Registry::queue_full_for`] cannot say yes and need not be asked.
    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// Whether a packet of `messages` in `len` bytes would be refused for a full queue if
    /// it were dispatched now; nothing is routed or recorded. Ingest asks this (while
    /// [`Registry::refusing`]) before validating, so that under overload a packet that
    /// cannot be taken costs no validation: the answer is the 503 it would get after it.
    pub fn queue_full_for(&self, messages: u64, len: usize) -> bool {
        let inner = self.lock();
        let fits = |j: usize| len <= inner.online[j].accepts_at_most();
        inner
            .router
            .pick_among(messages, fits)
            .is_some_and(|index| {
                let member = &inner.online[index];
                !self.has_room(member, len) || member.queue_full()
            })
    }

    /// Whether `member`'s queue has room for `len` more bytes: by `--queue-bytes`, and by
    /// what it delivers in `--queue-wait` (an empty queue always takes one packet).
    fn has_room(&self, member: &Member, len: usize) -> bool {
        let queued = member.queued_bytes.load(Ordering::Relaxed);
        queued == 0 || queued + len <= member.queue_limit(self.queue_bytes, self.queue_wait)
    }

    /// Whether registering `id` at `url` with `weight` would change anything (a new
    /// member, a new address or a new weight), as opposed to renewing a registration as
    /// it is (an analyzer's keep-alive). Only changes are rate-limited.
    pub fn would_change(&self, id: &str, url: &AnalyzerUrl, weight: f64) -> bool {
        self.lock()
            .members
            .get(id)
            .is_none_or(|(member, current)| member.url != *url || *current != weight)
    }

    /// The member registered as `id`, if any.
    pub fn member(&self, id: &str) -> Option<Arc<Member>> {
        self.lock().members.get(id).map(|(m, _)| m.clone())
    }

    /// Members now, whatever their state.
    pub fn len(&self) -> usize {
        self.lock().members.len()
    }

    /// Adds an analyzer, or updates its weight. A changed URL replaces the member: the old
    /// one drains to the old address. Returns the new member when one was created, so the
    /// caller can start its lane and its health watcher. A new member is not routed to
    /// until its first probe passes (see [`Member::joined`]). A new id beyond
    /// `--max-analyzers` is refused with [`RegisterError::Full`].
    pub fn register(
        &self,
        id: &str,
        url: AnalyzerUrl,
        weight: f64,
        pinned: bool,
    ) -> Result<(Registered, Option<NewMember>), RegisterError> {
        // Checked here too, whatever the caller checked: one bad weight (from a lease in
        // Redis, say) would otherwise leave the router unable to route at all.
        logdist_core::routing::check_weight(weight)
            .map_err(|e| RegisterError::Invalid(e.to_string()))?;
        let mut inner = self.lock();
        if !inner.members.contains_key(id) && inner.members.len() >= self.max_members {
            return Err(RegisterError::Full(self.max_members));
        }
        if let Some((member, current)) = inner.members.get_mut(id) {
            if member.state() == State::Draining {
                return Err(RegisterError::Draining(format!(
                    "analyzer `{id}` is deregistering; register again once it is gone"
                )));
            }
            if member.url == url {
                if *current == weight {
                    return Ok((Registered::Unchanged, None));
                }
                info!(
                    analyzer = id,
                    from = *current,
                    to = weight,
                    "Analyzer weight changed."
                );
                *current = weight;
                inner.rebuild();
                return Ok((Registered::Updated, None));
            }
            let old = member.clone();
            info!(analyzer = id, from = %old.url.base, to = %url.base, "Analyzer moved; draining the old address.");
            old.set_state(State::Draining);
            old.retire.cancel();
        }
        let id: Arc<str> = Arc::from(id);
        let (member, queues) = Member::new(id.clone(), url, pinned, self.limits);
        info!(analyzer = %id, url = %member.url.base, weight, "Analyzer registered; probing it before routing to it.");
        let replaced = inner.members.insert(id, (member.clone(), weight));
        if replaced.is_some() {
            // The old address was online, perhaps: the targets change without it.
            inner.rebuild();
        }
        Ok((Registered::Added, Some((member, queues))))
    }

    /// Stops routing to an analyzer and returns it so the caller can wait for its queue to
    /// drain and then [`remove`](Self::remove) it. `None` for an unknown id.
    pub fn begin_deregister(&self, id: &str) -> Option<Arc<Member>> {
        let mut inner = self.lock();
        let member = inner.members.get(id)?.0.clone();
        if member.state() != State::Draining {
            info!(analyzer = id, "Analyzer deregistering; draining its queue.");
            member.set_state(State::Draining);
            inner.rebuild();
            member.retire.cancel();
        }
        Some(member)
    }

    /// Forgets a member once drained (unless it was replaced meanwhile).
    pub fn remove(&self, member: &Arc<Member>) {
        let mut inner = self.lock();
        if inner
            .members
            .get(&member.id)
            .is_some_and(|(m, _)| Arc::ptr_eq(m, member))
        {
            inner.members.remove(&member.id);
            info!(analyzer = %member.id, "Analyzer removed.");
        }
    }

    /// Forgets a member that stayed unhealthy (`--forget-after`) at once, so that its id
    /// registers again as new. Says whether it did: not if it came back online meanwhile,
    /// or was replaced or deregistered. It is not routed to (it is not online); the
    /// caller retires it, and its lanes route what is still queued to others.
    pub fn forget(&self, member: &Arc<Member>) -> bool {
        let mut inner = self.lock();
        let current = inner
            .members
            .get(&member.id)
            .is_some_and(|(m, _)| Arc::ptr_eq(m, member));
        if !current || member.state() != State::Unhealthy {
            return false;
        }
        inner.members.remove(&member.id);
        true
    }

    /// Takes an online member out of routing after failed deliveries or probes.
    pub fn mark_unhealthy(&self, member: &Member, why: &str) {
        let mut inner = self.lock();
        if member.state() == State::Online {
            warn!(analyzer = %member.id, reason = why, "Analyzer is unhealthy; routing around it.");
            member.set_state(State::Unhealthy);
            inner.rebuild();
        }
    }

    /// Brings an unhealthy member online: a new one after its first good probe, one that
    /// was online before after consecutive good probes and the end of its ejection.
    pub fn mark_online(&self, member: &Member) {
        let mut inner = self.lock();
        if member.state() == State::Unhealthy {
            if member.joined.swap(true, Ordering::Relaxed) {
                info!(analyzer = %member.id, "Analyzer recovered; routing to it again.");
            } else {
                info!(analyzer = %member.id, "Analyzer answered its first probe; routing to it.");
            }
            member.set_state(State::Online);
            inner.rebuild();
        }
    }

    /// All members, for shutdown.
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.lock()
            .members
            .values()
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// The current window's id and the messages routed to each online member in it.
    pub fn window(&self) -> (u64, Vec<(Arc<str>, u64)>) {
        let inner = self.lock();
        let sent = inner
            .online
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), inner.router.sent(i)))
            .collect();
        (inner.window, sent)
    }

    /// Members with their weights.
    pub fn weighted(&self) -> Vec<(Arc<Member>, f64)> {
        self.lock().members.values().cloned().collect()
    }

    /// Online members.
    pub fn online_count(&self) -> usize {
        self.lock().online.len()
    }

    /// The body of `GET /analyzer/stats`.
    pub fn stats(&self) -> Vec<AnalyzerStats> {
        self.snapshot()
            .into_iter()
            .map(|(stats, _)| stats)
            .collect()
    }

    /// Each member's stats with the member itself, taken under one lock.
    pub fn snapshot(&self) -> Vec<(AnalyzerStats, Arc<Member>)> {
        let inner = self.lock();
        let total = inner.router.total();
        inner
            .members
            .values()
            .map(|(member, weight)| {
                let index = inner.online.iter().position(|m| Arc::ptr_eq(m, member));
                let (target_share, messages_sent) = match index {
                    Some(i) => (inner.router.target_share(i), inner.router.sent(i)),
                    None => (0.0, 0),
                };
                let stats = AnalyzerStats {
                    id: member.id.to_string(),
                    url: member.url.base.clone(),
                    weight: *weight,
                    state: member.state().as_str().to_owned(),
                    protocol: member.protocol().as_str().to_owned(),
                    target_share,
                    messages_sent,
                    share: if total == 0 {
                        0.0
                    } else {
                        messages_sent as f64 / total as f64
                    },
                    messages_total: member.messages_total.load(Ordering::Relaxed),
                    packets_total: member.packets_total.load(Ordering::Relaxed),
                    fleet_states: None,
                };
                (stats, member.clone())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn job() -> Job {
        Job::of(Bytes::from_static(b"{}\n"))
    }

    #[test]
    fn the_early_question_answers_as_dispatch_would() {
        let limits = QueueLimits {
            lanes: 1,
            packets: 1,
            concurrency: 1,
        };
        let registry = Registry::new(limits, 1 << 20, Duration::from_secs(2), 8);
        let url = "http://127.0.0.1:9".parse().unwrap();
        let (_, new) = registry.register("a", url, 1.0, true).unwrap();
        let (member, mut queues) = new.unwrap();
        assert_eq!(
            registry.online_count(),
            0,
            "not routed to before a probe passed"
        );
        registry.mark_online(&member);

        // Nothing refused yet.
        assert!(!registry.refusing());
        assert!(!registry.queue_full_for(1, 3));
        assert!(registry.dispatch(job(), 0).is_ok());
        assert!(!registry.refusing(), "no refusal seen yet");
        assert!(registry.queue_full_for(1, 3), "the queue of 1 is full");
        let (_, why) = registry.dispatch(job(), 0).unwrap_err();
        assert_eq!(why, Refusal::QueueFull);
        assert!(registry.refusing());
        assert!(registry.queue_full_for(1, 3));

        // The lane takes the packet: the queue has room, and the next dispatch clears it.
        assert!(queues[0].try_recv().is_ok());
        member.dequeued(1);
        member.queued_bytes.fetch_sub(3, Ordering::Relaxed);
        assert!(!registry.queue_full_for(1, 3));
        assert!(registry.dispatch(job(), 0).is_ok());
        assert!(!registry.refusing());
    }

    /// Only the very member, and only while unhealthy, is forgotten; its id then registers
    /// as new.
    #[test]
    fn only_an_unhealthy_member_is_forgotten_and_its_id_registers_again_as_new() {
        let limits = QueueLimits {
            lanes: 1,
            packets: 8,
            concurrency: 1,
        };
        let registry = Registry::new(limits, 1 << 20, Duration::from_secs(2), 8);
        let url: AnalyzerUrl = "http://127.0.0.1:9".parse().unwrap();
        let (_, new) = registry.register("a", url.clone(), 1.0, false).unwrap();
        let (member, _queues) = new.unwrap();
        registry.mark_online(&member);
        assert!(!registry.forget(&member), "online: kept");
        registry.mark_unhealthy(&member, "test");
        // A member of the same id at another address replaced it: not that one.
        let moved: AnalyzerUrl = "http://127.0.0.1:10".parse().unwrap();
        let (_, new) = registry.register("a", moved, 1.0, false).unwrap();
        let (current, _queues2) = new.unwrap();
        assert!(!registry.forget(&member), "replaced: the new one is kept");
        assert!(registry.member("a").is_some());
        assert_eq!(current.state(), State::Unhealthy, "not probed yet");
        assert!(registry.forget(&current));
        assert!(registry.member("a").is_none());
        assert!(registry.stats().is_empty());
        let (outcome, new) = registry.register("a", url, 1.0, false).unwrap();
        assert_eq!(outcome, Registered::Added);
        assert!(new.is_some());
    }
}
