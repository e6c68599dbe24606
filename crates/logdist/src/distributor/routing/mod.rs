//! Routing: which analyzer gets each packet, so that each receives its weight's share of
//! messages. [`Registry`] holds the members and the router under one short lock;
//! [`Routing`] is the handle ingest, delivery and membership hold: it places a packet on
//! the lane of the worker that read it, routes again what delivery hands back, and keeps
//! accepted packets that found no analyzer for a while ([`parked`]), or on disk with
//! `--spool` ([`spooled`]).

pub mod parked;
pub mod registry;
pub mod spooled;

use std::sync::Arc;

use tokio::time::Instant;
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
            if let Err((mut job, why)) = self.dispatch(job) {
                if let Some(ticket) = job.spooled.take_if(|_| why.is_retryable()) {
                    // On disk already: it waits in the spool's backlog, not in memory.
                    ticket.keep();
                } else if job.ack.is_some() || !why.is_retryable() {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

    use super::*;
    use crate::distributor::delivery::QueueLimits;
    use parked::{RETRY_EVERY, RETRY_FOR};

    fn routing() -> Arc<Routing> {
        let limits = QueueLimits {
            lanes: 1,
            packets: 8,
            concurrency: 1,
        };
        let registry = Registry::new(limits, 1 << 20, Duration::from_secs(2), 8);
        Arc::new(Routing::new(registry, Workers::current(), 16, 3))
    }

    /// Delivery hands back a packet already answered 202 while no analyzer is online: it
    /// is parked.
    fn park_one(routing: &Routing) {
        routing.reroute(vec![Job::of(Bytes::from_static(b"{}\n"))], false);
    }

    /// Messages dropped, as `recorder` counted them.
    fn dropped(recorder: &PrometheusRecorder) -> u64 {
        let text = recorder.handle().render();
        text.lines()
            .find_map(|line| line.strip_prefix("logdist_messages_dropped_total "))
            .map_or(0, |n| n.trim().parse().expect("a count"))
    }

    /// The retry task on paused time, from now; the drops it counts go to its own
    /// recorder (the tasks of a current-thread test runtime run on the test's thread).
    struct Retrying {
        routing: Arc<Routing>,
        start: Instant,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        recorder: PrometheusRecorder,
    }

    impl Retrying {
        fn start() -> Self {
            let routing = routing();
            let stop = CancellationToken::new();
            Self {
                start: Instant::now(),
                task: tokio::spawn(routing.clone().retry_parked(stop.clone())),
                routing,
                stop,
                recorder: PrometheusBuilder::new().build_recorder(),
            }
        }

        /// Lets virtual time run until `at` after the start.
        async fn at(&self, at: Duration) {
            tokio::time::sleep_until(self.start + at).await;
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_parked_packet_is_retried_for_a_while_then_dropped_and_counted() {
        let r = Retrying::start();
        let _counted = metrics::set_default_local_recorder(&r.recorder);
        park_one(&r.routing);
        assert_eq!(r.routing.parked(), 1);
        r.at(RETRY_FOR - MS).await;
        assert_eq!(r.routing.parked(), 1, "still retried");
        assert_eq!(dropped(&r.recorder), 0);
        r.at(RETRY_FOR + MS).await;
        assert_eq!(r.routing.parked(), 0);
        assert_eq!(dropped(&r.recorder), 1);
        r.stop.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_packet_goes_to_an_analyzer_at_the_first_retry_after_it_comes_online() {
        let r = Retrying::start();
        let _counted = metrics::set_default_local_recorder(&r.recorder);
        park_one(&r.routing);
        // An analyzer comes online between two retries.
        let online = RETRY_EVERY * 4 + RETRY_EVERY / 2;
        r.at(online).await;
        let url = "http://127.0.0.1:9".parse().unwrap();
        let (_, new) = r.routing.registry.register("a", url, 1.0, false).unwrap();
        let (member, mut queues) = new.expect("a new member");
        r.routing.registry.mark_online(&member);
        r.at(RETRY_EVERY * 5 - MS).await;
        assert_eq!(r.routing.parked(), 1);
        assert!(queues[0].try_recv().is_err());
        r.at(RETRY_EVERY * 5 + MS).await;
        assert_eq!(r.routing.parked(), 0);
        assert!(queues[0].try_recv().is_ok(), "queued to the analyzer");
        assert_eq!(dropped(&r.recorder), 0);
        r.stop.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn at_stop_the_parked_packets_are_dropped_and_counted() {
        let r = Retrying::start();
        let _counted = metrics::set_default_local_recorder(&r.recorder);
        park_one(&r.routing);
        park_one(&r.routing);
        r.at(Duration::from_secs(1)).await;
        assert_eq!((r.routing.parked(), dropped(&r.recorder)), (2, 0));
        r.stop.cancel();
        r.task.await.unwrap();
        assert_eq!(r.start.elapsed(), Duration::from_secs(1), "at once");
        assert_eq!((r.routing.parked(), dropped(&r.recorder)), (0, 2));
    }
}
