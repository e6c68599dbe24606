//! The OpenTelemetry delivery protocol (`otlp`): a batch is one OTLP/HTTP
//! `POST {url}/v1/logs` of a protobuf `ExportLogsServiceRequest`
//! (`Content-Type: application/x-protobuf`), its messages mapped back to log records as
//! [`logdist_core::encode_logs`] documents (what OTLP ingest maps, mapped back; times in
//! `--timestamp-unit`), acknowledged by a 2xx.
//!
//! A 2xx whose `ExportLogsServiceResponse` has a `partial_success` with rejected records is
//! not an acknowledgement: the receiver refused records of the batch as bad, and OTLP does
//! not say which. It counts as a refusal of content, a 422 with the receiver's
//! `error_message`: the lane sends the batch again in halves until the packets with refused
//! records are alone, and each of those fails by itself (see the lane). So the records it
//! accepted in a batch it partly refused reach it again: at least once, as ever. A
//! `partial_success` that rejects nothing (a warning) is an acknowledgement. A 2xx whose
//! answer is not a response (an empty body, say) is an acknowledgement too.
//!
//! Health: an empty `ExportLogsServiceRequest` (zero bytes of protobuf, no records)
//! answered with a 2xx, as OTLP receivers answer it. The protocol is not detected: an
//! analyzer that speaks it is registered with it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::header;
use logdist_core::TimestampUnit;
use logdist_core::otlp::proto::ExportLogsServiceResponse;
use prost::Message as _;
use tracing::warn;

use super::address::AnalyzerUrl;
use super::over_http::HttpPeers;
use super::protocol::{DeliveryError, Failed, Protocol, Sending, messages_of};

use crate::distributor::job::Job;

/// Where OTLP/HTTP takes logs.
const PATH: &str = "/v1/logs";

/// The media type of OTLP/HTTP protobuf.
const PROTOBUF: &str = "application/x-protobuf";

/// One export a batch to `/v1/logs`, over one keep-alive pool per worker.
pub struct OtlpLogs {
    /// Its connections, and what its requests carry.
    peers: HttpPeers,
    /// The unit of messages' `timestamp` (`--timestamp-unit`), to write nanoseconds.
    unit: TimestampUnit,
}

impl OtlpLogs {
    /// The protocol over `peers`, reading times in `unit`.
    pub fn new(peers: HttpPeers, unit: TimestampUnit) -> Self {
        Self { peers, unit }
    }

    async fn export(
        &self,
        lane: usize,
        to: &AnalyzerUrl,
        jobs: &[Job],
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let messages = jobs.iter().flat_map(|job| messages_of(&job.packet.ndjson));
        let body = logdist_core::encode_logs(messages, self.unit).encode_to_vec();
        let body = Full::new(Bytes::from(body));
        let answer = self
            .peers
            .post(lane, to.uri(PATH), PROTOBUF, jobs, body, timeout)
            .await?;
        let warning = acknowledgement(&answer)?;
        if let Some(warning) = warning {
            warn!(url = %to.base, %warning, "OTLP receiver accepted an export with a warning.");
        }
        Ok(())
    }
}

/// What a 2xx answer to an export says (see the module documentation): `Ok` unless its
/// `partial_success` rejects records, which is a 422 with the receiver's reason; with
/// the receiver's warning, if it gave one.
fn acknowledgement(answer: &[u8]) -> Result<Option<String>, DeliveryError> {
    let Some(partial) = ExportLogsServiceResponse::decode(answer)
        .ok()
        .and_then(|response| response.partial_success)
    else {
        return Ok(None);
    };
    if partial.rejected_log_records > 0 {
        let reason = if partial.error_message.is_empty() {
            "no reason given"
        } else {
            &partial.error_message
        };
        return Err(DeliveryError::Status(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "OTLP partial success: {} log records rejected: {reason}",
                partial.rejected_log_records
            ),
        ));
    }
    Ok(Some(partial.error_message).filter(|warning| !warning.is_empty()))
}

impl Protocol for OtlpLogs {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn send<'a>(
        &'a self,
        lane: usize,
        to: &'a AnalyzerUrl,
        jobs: &'a [Job],
        timeout: Duration,
    ) -> Sending<'a, Result<(), Failed>> {
        // One request for the batch: a failure acknowledged none of it.
        Box::pin(async move { Ok(self.export(lane, to, jobs, timeout).await?) })
    }

    fn probe<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        // An empty export: zero bytes of protobuf, no records.
        Box::pin(
            self.peers
                .answers_ok(Request::post(to.uri(PATH)).header(header::CONTENT_TYPE, PROTOBUF)),
        )
    }

    /// Never: an empty export is answered 2xx by many servers that are no OTLP receiver,
    /// and a non-empty one would deliver. Register an OTLP receiver with `otlp`.
    fn recognizes<'a>(&'a self, _to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(async { false })
    }
}

#[cfg(test)]
mod tests {
    use logdist_core::otlp::proto::ExportLogsPartialSuccess;

    use super::*;

    fn answer(rejected: i64, message: &str) -> Vec<u8> {
        ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message.to_owned(),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn rejected_records_refuse_the_content() {
        assert_eq!(acknowledgement(b"").unwrap(), None);
        assert_eq!(acknowledgement(b"{}").unwrap(), None);
        assert_eq!(acknowledgement(&answer(0, "")).unwrap(), None);
        assert_eq!(
            acknowledgement(&answer(0, "slow down")).unwrap().as_deref(),
            Some("slow down")
        );
        match acknowledgement(&answer(2, "bad time")) {
            Err(DeliveryError::Status(status, reason)) => {
                assert!(super::super::protocol::refuses_content(status));
                assert_eq!(
                    reason,
                    "OTLP partial success: 2 log records rejected: bad time"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
