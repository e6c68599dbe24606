//! Accepted packets kept on disk (`--ack accepted --spool`). A packet is written to the
//! spool before its agent gets 202, then routed as any other; when the analyzer whose
//! turn it is has a full queue, the packet waits in the spool's backlog rather than in
//! memory, and the agent is still answered 202. One task ([`Routing::send_spooled`])
//! offers the backlog to routing, oldest first: what an earlier run left, what found no
//! room, and what delivery gave up on. While the backlog holds anything, new packets
//! queue behind it, so that it drains.

use std::sync::Arc;
use std::time::Duration;

use logdist_core::Packet;
use tokio_util::sync::CancellationToken;

use super::Routing;
use crate::distributor::job::{Job, Refusal, fail};
use crate::distributor::spool::Spool;

/// The first pause of the backlog's task when routing has no room, doubled up to
/// [`MAX_PAUSE`] while it has none.
const MIN_PAUSE: Duration = Duration::from_millis(2);
const MAX_PAUSE: Duration = Duration::from_millis(100);

impl Routing {
    /// Writes an accepted packet to `spool`, then routes it, or leaves it in the backlog
    /// when routing has no room now. An error means the agent is not answered 202: the
    /// spool refused the packet, or no analyzer is online (then it is released).
    pub async fn accept_spooled(
        &self,
        spool: &Arc<Spool>,
        packet: Packet,
        via: Option<Arc<str>>,
    ) -> Result<(), Refusal> {
        let ticket = spool.append(&packet).await.map_err(Refusal::Spool)?;
        if spool.is_backlogged() {
            if self.registry.online_count() == 0 {
                ticket.release();
                return Err(Refusal::NoAnalyzer);
            }
            ticket.keep();
            return Ok(());
        }
        let job = Job {
            packet,
            ack: None,
            attempts: 0,
            via,
            spooled: Some(Box::new(ticket)),
        };
        match self.dispatch(job) {
            Ok(()) => Ok(()),
            Err((job, Refusal::QueueFull)) => {
                job.spooled.expect("spooled above").keep();
                Ok(())
            }
            Err((job, why)) => {
                job.spooled.expect("spooled above").release();
                Err(why)
            }
        }
    }

    /// Offers the spool's backlog to routing until `stop`, spreading it over every
    /// worker's lane; pauses while routing has no room (no analyzer online, a full queue).
    pub async fn send_spooled(self: Arc<Self>, spool: Arc<Spool>, stop: CancellationToken) {
        let mut pause = MIN_PAUSE;
        let mut lane = 0;
        loop {
            let ticket = tokio::select! {
                ticket = spool.next_deferred() => ticket,
                () = stop.cancelled() => return,
            };
            let Some(packet) = spool.read(&ticket) else {
                continue;
            };
            let job = Job {
                packet,
                ack: None,
                attempts: 0,
                via: None,
                spooled: Some(Box::new(ticket)),
            };
            lane = (lane + 1) % self.workers.len();
            match self.registry.dispatch(job, lane) {
                Ok(()) => {
                    pause = MIN_PAUSE;
                    tokio::task::consume_budget().await;
                }
                Err((job, why)) if why.is_retryable() => {
                    spool.put_back(*job.spooled.expect("spooled above"));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => return,
                    }
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err((job, why)) => fail(job, why),
            }
        }
    }
}
