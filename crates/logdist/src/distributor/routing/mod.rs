//! Routing: which analyzer gets each packet, so that each receives its weight's share of
//! messages. [`Registry`] holds the members and the router under one short lock;
//! [`Routing`] is the handle ingest, delivery and membership hold: it places a packet on
//! the lane of the worker that read it, routes again what delivery hands back, and keeps
//! accepted packets that found no analyzer for a while ([`parked`]).

pub mod parked;
pub mod registry;

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

pub use registry::{RegisterError, Registered, Registry};

use crate::distributor::delivery::{Member, Reroute};
use crate::distributor::job::{Job, Refusal, fail};
use crate::workers::Workers;
use parked::Parked;

/// Routing, as the other stages see it.
pub struct Routing {
    /// Members and the router.
    pub registry: Registry,
    /// The worker threads: a packet is queued on the lane of the worker it was read on.
    workers: Arc<Workers>,
    /// Accepted packets waiting for an analyzer to take them again.
    parked: Parked,
    /// Analyzers a packet may fail at before it is given up (`--max-attempts`).
    max_attempts: u8,
}

impl Routing {
    /// Routing over `registry` for `workers`, parking at most `parked` packets.
    pub fn new(registry: Registry, workers: Arc<Workers>, parked: usize, max_attempts: u8) -> Self {
        Self {
            registry,
            workers,
            parked: Parked::new(parked),
            max_attempts: max_attempts.max(1),
        }
    }

    /// Routes a job and queues it on the lane of the worker the caller runs on (see
    /// [`Registry::dispatch`]): a packet stays on the thread that read it.
    pub fn dispatch(&self, job: Job) -> Result<(), (Job, Refusal)> {
        self.registry.dispatch(job, self.workers.here())
    }

    /// Packets parked now.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Offers the parked packets to routing every [`parked::RETRY_EVERY`] until `stop`;
    /// then fails (drops and counts) what is left.
    pub async fn retry_parked(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(parked::RETRY_EVERY) => {}
                () = stop.cancelled() => break,
            }
            let now = Instant::now();
            for (until, job) in self.parked.take_all() {
                match self.dispatch(job) {
                    Ok(()) => {}
                    Err((job, _)) if now >= until => fail(job, Refusal::DeliveryFailed),
                    Err((job, _)) => self.parked.put_back(until, job),
                }
            }
        }
        for (_, job) in self.parked.take_all() {
            fail(job, Refusal::ShuttingDown);
        }
    }
}

impl Reroute for Routing {
    fn reroute(&self, jobs: Vec<Job>, in_doubt: bool) {
        for mut job in jobs {
            if in_doubt {
                job.attempts = job.attempts.saturating_add(1);
            }
            if job.attempts >= self.max_attempts {
                fail(job, Refusal::DeliveryFailed);
                continue;
            }
            metrics::counter!("logdist_packets_rerouted_total").increment(1);
            if let Err((job, why)) = self.dispatch(job) {
                if job.ack.is_some() || !why.is_retryable() {
                    fail(job, why);
                } else if let Err(job) = self.parked.park(job) {
                    // Nobody waits, and the parked packets are at their bound already.
                    fail(job, why);
                }
            }
        }
    }

    fn mark_unhealthy(&self, member: &Member, why: &str) {
        self.registry.mark_unhealthy(member, why);
    }
}
