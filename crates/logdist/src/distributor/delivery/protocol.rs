//! The delivery-protocol seam: how a batch for one analyzer is encoded, sent and
//! acknowledged, and how the analyzer's health is checked. A lane decides *when* to send
//! and what to do with the outcome (split, shrink, eject, re-route); a protocol decides
//! *how*. logdist's own NDJSON to `POST /packets` ([`super::ndjson`]) is the first.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::address::AnalyzerUrl;
use crate::distributor::job::Job;

/// A future a protocol returns: boxed, because a distributor holds its protocols as trait
/// objects (one a batch, so one allocation per delivery, not per packet).
pub type Sending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How batches reach one kind of analyzer.
pub trait Protocol: Send + Sync + 'static {
    /// Its name, as registration, stats and metrics give it.
    fn name(&self) -> &'static str;

    /// Sends `jobs` as one delivery from worker `lane` (each worker has its own
    /// connections) to the analyzer at `to`. `Ok` once the analyzer acknowledged every
    /// packet of it; within `timeout`, or [`DeliveryError::Timeout`].
    fn send<'a>(
        &'a self,
        lane: usize,
        to: &'a AnalyzerUrl,
        jobs: &'a [Job],
        timeout: Duration,
    ) -> Sending<'a, Result<(), DeliveryError>>;

    /// One health check of the analyzer at `to`: whether it is there and well. The caller
    /// bounds it in time.
    fn probe<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool>;
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No answer within `--delivery-timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Could not connect: nothing was sent, so nothing can have been delivered.
    #[error("{0}")]
    Refused(String),
    /// The connection broke: the analyzer may or may not have the packets.
    #[error("{0}")]
    Transport(String),
    /// The analyzer answered with an error status, and said this.
    #[error("analyzer answered {0}: {1}")]
    Status(http::StatusCode, String),
}

/// Whether an analyzer's error status is about the request's content (some packet in it
/// is bad), as opposed to the analyzer itself: a 401, 403, 404 or 405 says it is
/// misconfigured (every packet would get it), a 408 or 429 that it is busy, a 5xx that it
/// is failing. A 413 is about the body's size, handled on its own.
pub fn refuses_content(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 415 | 422)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_refusals_are_told_from_sick_analyzers() {
        use http::StatusCode;
        for status in [400, 415, 422] {
            assert!(
                refuses_content(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        for status in [401, 403, 404, 405, 408, 413, 429, 500, 502, 503, 504] {
            assert!(
                !refuses_content(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }
}
