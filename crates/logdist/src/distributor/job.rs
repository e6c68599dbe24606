//! A packet on its way, and the answer owed to its agent: what ingest makes, routing
//! places, delivery carries, and the acknowledgement brings back. Every stage speaks it,
//! so it sits below them all.

use std::sync::Arc;

use logdist_core::Packet;
use tokio::sync::oneshot;
use tracing::{error, warn};

use crate::distributor::spool::{SpoolError, Ticket};

/// Why a packet could not be taken or delivered. The first five mean "not accepted, try
/// again": the agent gets 503. The last two are about the packet itself, and retrying it
/// unchanged would fail the same way: the agent gets a 4xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No analyzer is online.
    NoAnalyzer,
    /// The queue of the analyzer whose turn it is is full.
    QueueFull,
    /// Delivery failed at every analyzer tried.
    DeliveryFailed,
    /// The distributor is shutting down.
    ShuttingDown,
    /// The spool could not keep it (`--spool`): full, or failing to write.
    Spool(SpoolError),
    /// No online analyzer takes a packet this large (their limits, learned from 413s).
    TooLarge {
        /// The packet's NDJSON bytes.
        bytes: usize,
        /// The most any online analyzer is known to take.
        largest: usize,
    },
    /// An analyzer refused the packet itself, sent alone, as bad (400, 415, 422).
    Rejected(Arc<Rejection>),
}

/// An analyzer's refusal of one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Who refused it.
    pub analyzer: Arc<str>,
    /// The status it answered.
    pub status: u16,
    /// What it said (its `error` field, or the start of its answer).
    pub reason: String,
}

impl Refusal {
    /// Whether the agent may succeed by sending the same packet again (503), or not (4xx).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::TooLarge { .. } | Self::Rejected(_))
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoAnalyzer => f.write_str("no analyzer is online"),
            Self::QueueFull => {
                f.write_str("the analyzer whose turn it is has a full queue; retry shortly")
            }
            Self::DeliveryFailed => f.write_str("delivery failed at every analyzer tried"),
            Self::ShuttingDown => f.write_str("the distributor is shutting down"),
            Self::Spool(e) => e.fmt(f),
            Self::TooLarge { bytes, largest } => write!(
                f,
                "the packet is {bytes} bytes as NDJSON, and no online analyzer takes more than {largest}; send smaller packets"
            ),
            Self::Rejected(r) => write!(
                f,
                "analyzer `{}` refused this packet ({}): {}",
                r.analyzer, r.status, r.reason
            ),
        }
    }
}

/// Where the outcome of a job goes: the ingest request waiting for it, if any.
pub type AckSender = oneshot::Sender<Result<Arc<str>, Refusal>>;

/// A packet on its way to an analyzer.
#[derive(Debug)]
pub struct Job {
    /// The validated messages.
    pub packet: Packet,
    /// The waiting agent (`--ack delivered`), or none (`--ack accepted`).
    pub ack: Option<AckSender>,
    /// Analyzers this packet has already failed at.
    pub attempts: u8,
    /// The distributors it passed through before this one (its request's
    /// `Logdist-Via`), when it came from one.
    pub via: Option<Arc<str>>,
    /// Its place in the spool (`--ack accepted --spool`): released once it is delivered.
    /// Boxed: a job travels by value through every stage, and most jobs have none.
    pub spooled: Option<Box<Ticket>>,
}

impl Job {
    /// A packet of one message whose NDJSON is `ndjson`, that nobody waits for: for unit
    /// tests.
    #[cfg(test)]
    pub fn of(ndjson: bytes::Bytes) -> Self {
        Self {
            packet: Packet {
                ndjson,
                messages: 1,
            },
            ack: None,
            attempts: 0,
            via: None,
            spooled: None,
        }
    }

    /// Answers the waiting agent, if any. An agent that gave up is no error. A spooled
    /// packet is released when it was delivered or refused for good, and otherwise kept
    /// in the spool to be sent again.
    pub fn finish(self, outcome: Result<Arc<str>, Refusal>) {
        if let Some(ticket) = self.spooled {
            match &outcome {
                Err(why) if why.is_retryable() => ticket.keep(),
                _ => ticket.release(),
            }
        }
        if let Some(ack) = self.ack {
            let _ = ack.send(outcome);
        }
    }
}

/// Fails a packet: its waiting agent is told why, and an accepted one (nobody waits) is
/// logged and counted as dropped, unless the spool keeps it to be sent again.
pub fn fail(job: Job, why: Refusal) {
    if job.spooled.is_some() && why.is_retryable() {
        warn!(
            messages = job.packet.messages,
            reason = %why,
            "Keeping an accepted packet in the spool; it is sent again."
        );
    } else if job.ack.is_none() {
        error!(
            messages = job.packet.messages,
            reason = %why,
            "Dropping an accepted packet."
        );
        metrics::counter!("logdist_messages_dropped_total")
            .increment(u64::from(job.packet.messages));
    }
    job.finish(Err(why));
}
