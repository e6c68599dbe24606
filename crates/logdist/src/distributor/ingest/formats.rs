//! The ingest formats served over HTTP: for each, its path, the media types it takes, its
//! pure decoder (in `logdist-core`, see [`logdist_core::decoder`]) and how it words a
//! delivered packet's answer. Adding a format is adding a decoder there and an entry to
//! [`HTTP_FORMATS`] here.
//!
//! Refusals (400, 413, 415, 503 with `Retry-After`...) are worded alike for every format,
//! as `{"error": "..."}`: OTLP/HTTP lets a server answer its errors without a `Status`
//! message, and an agent reads them by their status code.

use axum::http::{HeaderValue, StatusCode};
use axum::routing::MethodFilter;
use bytes::Bytes;
use logdist_core::decoder::{
    self, Bulk, Decoder, JSON, Loki, NDJSON, Native, OneMessage, Otlp, PROTOBUF,
};
use logdist_core::{OtlpEncoding, export_logs_response};

use super::elasticsearch;
use super::idempotency::Answer;
pub use super::outcome::Outcome;
use crate::api::{DROPPED_ERRORS_SHOWN, PacketAck};
use crate::http::ApiError;

/// One ingest format served over HTTP.
pub struct HttpFormat {
    /// Its name in logs and metrics.
    pub name: &'static str,
    /// The path it is served at.
    pub path: &'static str,
    /// More paths it is served at, which may name the index (`/{index}/_bulk`, the one
    /// parameter a path may have, given to the decoder as [`DecodeOptions::index`]).
    ///
    /// [`DecodeOptions::index`]: logdist_core::DecodeOptions::index
    pub also_at: &'static [&'static str],
    /// The methods it is served by: `POST`, and `PUT` too where the protocol takes it
    /// (Elasticsearch's clients send their bulk by `PUT`).
    pub methods: MethodFilter,
    /// Headers on every answer of the format, refusals included (Elasticsearch's clients
    /// refuse a server whose answers lack `X-Elastic-Product`).
    pub headers: &'static [(&'static str, &'static str)],
    /// The media types it takes, by their canonical names ([`canonical`]). A request
    /// with any other is answered 415; one without any is the decoder's to read.
    pub media_types: &'static [&'static str],
    /// What a 415 tells the agent to send instead.
    pub expects: &'static str,
    /// Its decoder.
    pub decoder: &'static dyn Decoder,
    /// Whether a packet answered before it is delivered (`--ack accepted`) gets 202, or
    /// 200 as the original distributor's endpoint answered.
    pub answers_accepted: bool,
    /// Whether its answer reports the records its decoder refused one by one in the
    /// protocol's own terms (OTLP's `partial_success`, Loki's 400): then they are never a
    /// reason to refuse the body. logdist's own formats do as `--on-invalid` says.
    pub reports_records: bool,
    /// How a packet that was delivered (or queued, with `--ack accepted`) is answered, in
    /// the format's own terms.
    pub answer: fn(&Outcome<'_>) -> Answer,
}

/// `POST /packets`: logdist's own packets, a JSON array of messages or NDJSON.
pub static PACKETS: HttpFormat = HttpFormat {
    name: "packets",
    path: "/packets",
    also_at: &[],
    methods: MethodFilter::POST,
    media_types: &[JSON, NDJSON],
    expects: "send application/json (an array of messages) or application/x-ndjson",
    decoder: &Native,
    answers_accepted: true,
    reports_records: false,
    headers: &[],
    answer: packet_ack,
};

/// `POST /message/send`: one message object, as the original distributor took it.
pub static MESSAGE_SEND: HttpFormat = HttpFormat {
    name: "message",
    path: "/message/send",
    also_at: &[],
    methods: MethodFilter::POST,
    media_types: &[JSON],
    expects: "send one message as application/json",
    decoder: &OneMessage,
    answers_accepted: false,
    reports_records: false,
    headers: &[],
    answer: packet_ack,
};

/// `POST /v1/logs`: OpenTelemetry's OTLP/HTTP logs, protobuf or OTLP/JSON. An export is
/// one packet of its records; records refused alone are reported in `partial_success`.
pub static OTLP_LOGS: HttpFormat = HttpFormat {
    name: "otlp",
    path: "/v1/logs",
    also_at: &[],
    methods: MethodFilter::POST,
    media_types: &[PROTOBUF, JSON],
    expects: "send an OTLP ExportLogsServiceRequest as application/x-protobuf or application/json",
    decoder: &Otlp,
    // OTLP's success is 200 only.
    answers_accepted: false,
    reports_records: true,
    headers: &[],
    answer: export_logs,
};

/// `POST /loki/api/v1/push`: Loki's push, snappy-compressed protobuf or JSON. A push is
/// one packet of its entries; see [`loki_push`] for the answer.
pub static LOKI_PUSH: HttpFormat = HttpFormat {
    name: "loki",
    path: "/loki/api/v1/push",
    also_at: &[],
    methods: MethodFilter::POST,
    media_types: &[PROTOBUF, JSON],
    expects: "send a Loki PushRequest as application/x-protobuf (snappy) or application/json",
    decoder: &Loki,
    // Loki's success is 204 only.
    answers_accepted: false,
    reports_records: true,
    headers: &[],
    answer: loki_push,
};

/// `POST /_bulk` and `POST /{index}/_bulk` (and `PUT`): Elasticsearch's bulk, its `index`
/// and `create` actions. A body is one packet of its documents; every item is answered
/// as Elasticsearch answers it ([`elasticsearch::bulk`]), and every answer carries
/// `X-Elastic-Product`.
pub static BULK: HttpFormat = HttpFormat {
    name: "bulk",
    path: "/_bulk",
    also_at: &["/{index}/_bulk"],
    methods: MethodFilter::POST.or(MethodFilter::PUT),
    media_types: &[NDJSON, JSON],
    expects: "send the bulk body as application/x-ndjson or application/json",
    decoder: &Bulk,
    // Elasticsearch's bulk succeeds with 200 only.
    answers_accepted: false,
    reports_records: true,
    headers: &[elasticsearch::PRODUCT],
    answer: elasticsearch::bulk,
};

/// Every ingest format served over HTTP.
pub static HTTP_FORMATS: [&HttpFormat; 5] =
    [&PACKETS, &MESSAGE_SEND, &OTLP_LOGS, &LOKI_PUSH, &BULK];

/// logdist's own answer: the [`PacketAck`] as JSON, with how many bad records were dropped
/// and why (`--on-invalid drop` or `dead-letter`) when there were any.
fn packet_ack(outcome: &Outcome<'_>) -> Answer {
    let body = if outcome.rejected.is_empty() {
        serde_json::to_vec(outcome.ack)
    } else {
        serde_json::to_vec(&PacketAck {
            dropped: outcome.rejected.len(),
            errors: outcome
                .rejected
                .iter()
                .take(DROPPED_ERRORS_SHOWN)
                .map(ToString::to_string)
                .collect(),
            ..outcome.ack.clone()
        })
    }
    .expect("a PacketAck is JSON");
    Answer {
        status: outcome.status,
        content_type: JSON,
        body: Bytes::from(body),
    }
}

/// OTLP's answer: an `ExportLogsServiceResponse` in the request's encoding, with
/// `partial_success` when records were refused.
fn export_logs(outcome: &Outcome<'_>) -> Answer {
    let encoding = Otlp::encoding(outcome.media_type);
    let content_type = match encoding {
        OtlpEncoding::Protobuf => PROTOBUF,
        OtlpEncoding::Json => JSON,
    };
    Answer {
        status: outcome.status,
        content_type,
        body: Bytes::from(export_logs_response(outcome.rejected, encoding)),
    }
}

/// Loki's answer: 204 with no body when every entry was taken. When some were refused,
/// the others are delivered all the same and the answer is 400 with the reasons, as Loki
/// answers a push with invalid entries (it stores the valid ones): Loki's clients drop a
/// batch answered 4xx and log why, so the refused entries are seen and nothing is sent
/// twice, where a 5xx would have the whole batch resent forever.
fn loki_push(outcome: &Outcome<'_>) -> Answer {
    let Some(first) = outcome.rejected.first() else {
        return Answer {
            status: StatusCode::NO_CONTENT,
            content_type: JSON,
            body: Bytes::new(),
        };
    };
    let refused = outcome.rejected.len();
    let error = format!(
        "{refused} of {} entries refused, the others delivered; the first: {first}",
        u64::from(outcome.ack.messages) + refused as u64
    );
    Answer {
        status: StatusCode::BAD_REQUEST,
        content_type: JSON,
        body: Bytes::from(serde_json::json!({ "error": error }).to_string()),
    }
}

/// The names NDJSON goes by, as media types.
const NDJSON_NAMES: [&str; 7] = [
    NDJSON,
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonl",
    "application/jsonlines",
    "application/x-jsonlines",
    "application/json-lines",
];

/// The names Elasticsearch's clients give JSON and NDJSON when they ask for its REST API
/// compatibility (`; compatible-with=8`), as media types, each with its canonical name.
const ELASTICSEARCH_NAMES: [(&str, &str); 2] = [
    ("application/vnd.elasticsearch+json", JSON),
    ("application/vnd.elasticsearch+x-ndjson", NDJSON),
];

/// The media types logdist knows, each with its canonical name.
fn canonical(essence: &str) -> Option<&'static str> {
    if essence.eq_ignore_ascii_case(decoder::JSON) {
        return Some(JSON);
    }
    if let Some((_, known)) = ELASTICSEARCH_NAMES
        .iter()
        .find(|(name, _)| essence.eq_ignore_ascii_case(name))
    {
        return Some(known);
    }
    if essence.eq_ignore_ascii_case(PROTOBUF) {
        return Some(PROTOBUF);
    }
    NDJSON_NAMES
        .iter()
        .any(|name| essence.eq_ignore_ascii_case(name))
        .then_some(NDJSON)
}

impl HttpFormat {
    /// The request's media type, by its canonical name, if the format takes it; `None`
    /// when the request has no Content-Type; 415 for any other.
    pub fn media_type(
        &self,
        content_type: Option<&HeaderValue>,
    ) -> Result<Option<&'static str>, ApiError> {
        let Some(value) = content_type else {
            return Ok(None);
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::UnsupportedMediaType("Content-Type is not ASCII".to_owned()))?;
        let essence = text.split(';').next().unwrap_or("").trim();
        match canonical(essence) {
            Some(known) if self.media_types.contains(&known) => Ok(Some(known)),
            _ => Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type `{text}` is not supported at {}; {}",
                self.path, self.expects
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn media_types_are_read_by_their_essence_and_any_name() {
        let ok = |format: &HttpFormat, value: &str| format.media_type(Some(&header(value)));
        assert_eq!(ok(&PACKETS, "application/json").unwrap(), Some(JSON));
        assert_eq!(
            ok(&PACKETS, "Application/JSON; charset=utf-8").unwrap(),
            Some(JSON)
        );
        for name in NDJSON_NAMES {
            assert_eq!(ok(&PACKETS, name).unwrap(), Some(NDJSON), "{name}");
        }
        assert_eq!(PACKETS.media_type(None).unwrap(), None);
        assert!(ok(&PACKETS, "text/xml").is_err());
        assert_eq!(ok(&MESSAGE_SEND, "application/json").unwrap(), Some(JSON));
        let refused = ok(&MESSAGE_SEND, "application/x-ndjson").unwrap_err();
        assert!(
            refused.to_string().contains("send one message"),
            "{refused}"
        );
        assert_eq!(
            ok(&OTLP_LOGS, "application/x-protobuf").unwrap(),
            Some(PROTOBUF)
        );
        assert_eq!(ok(&OTLP_LOGS, "application/json").unwrap(), Some(JSON));
        assert!(ok(&PACKETS, "application/x-protobuf").is_err());
        assert!(ok(&OTLP_LOGS, "application/x-ndjson").is_err());
    }

    #[test]
    fn otlp_answers_in_the_requests_encoding() {
        let ack = PacketAck {
            messages: 2,
            status: "delivered".to_owned(),
            analyzer: Some("analyzer_1".to_owned()),
            ..PacketAck::default()
        };
        let rejected = Otlp
            .decode(
                Bytes::from_static(
                    br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"spanId":"x"}]}]}]}"#,
                ),
                Some(JSON),
                &logdist_core::DecodeOptions::default(),
            )
            .unwrap()
            .rejected;
        assert_eq!(rejected.len(), 1);
        let outcome = |media_type, rejected| Outcome {
            status: StatusCode::OK,
            ack: &ack,
            rejected,
            media_type,
            items: &[],
            took: Duration::ZERO,
        };
        let json = export_logs(&outcome(Some(JSON), &rejected));
        assert_eq!((json.status, json.content_type), (StatusCode::OK, JSON));
        let body: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(body["partialSuccess"]["rejectedLogRecords"], "1", "{body}");
        assert_eq!(&export_logs(&outcome(Some(JSON), &[])).body[..], b"{}");
        // An empty ExportLogsServiceResponse is zero bytes of protobuf.
        let protobuf = export_logs(&outcome(None, &[]));
        assert_eq!(protobuf.content_type, PROTOBUF);
        assert!(protobuf.body.is_empty());
        assert!(
            !export_logs(&outcome(Some(PROTOBUF), &rejected))
                .body
                .is_empty()
        );
        // logdist's own answer is the ack as JSON, as `/packets` always answered.
        let native = packet_ack(&outcome(Some(JSON), &[]));
        assert_eq!(
            &native.body[..],
            br#"{"messages":2,"status":"delivered","analyzer":"analyzer_1"}"#
        );
    }

    #[test]
    fn loki_answers_204_or_400_with_the_refused_entries() {
        let ack = PacketAck {
            messages: 1,
            status: "delivered".to_owned(),
            analyzer: Some("analyzer_1".to_owned()),
            ..PacketAck::default()
        };
        let body = r#"{"streams":[{"stream":{"job":"a"},"values":[["1","ok"],["x","bad"]]}]}"#;
        let rejected = Loki
            .decode(
                Bytes::from_static(body.as_bytes()),
                Some(JSON),
                &logdist_core::DecodeOptions::default(),
            )
            .unwrap()
            .rejected;
        let outcome = |rejected| Outcome {
            status: StatusCode::OK,
            ack: &ack,
            rejected,
            media_type: Some(JSON),
            items: &[],
            took: Duration::ZERO,
        };
        let taken = loki_push(&outcome(&[]));
        assert_eq!(taken.status, StatusCode::NO_CONTENT);
        assert!(taken.body.is_empty());
        let partial = loki_push(&outcome(&rejected));
        assert_eq!(partial.status, StatusCode::BAD_REQUEST);
        let error: serde_json::Value = serde_json::from_slice(&partial.body).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(
            error.starts_with(
                "1 of 2 entries refused, the others delivered; the first: message at index 1"
            ),
            "{error}"
        );
        assert_eq!(
            LOKI_PUSH
                .media_type(Some(&header("application/x-protobuf")))
                .unwrap(),
            Some(PROTOBUF)
        );
        assert!(LOKI_PUSH.media_type(Some(&header("text/plain"))).is_err());
    }

    #[test]
    fn bulk_takes_ndjson_and_json_by_any_of_their_names() {
        for value in [
            "application/x-ndjson",
            "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
            "Application/VND.Elasticsearch+X-NDJSON;compatible-with=8",
        ] {
            assert_eq!(BULK.media_type(Some(&header(value))).unwrap(), Some(NDJSON));
        }
        for value in [
            "application/json",
            "application/vnd.elasticsearch+json; compatible-with=8",
        ] {
            assert_eq!(BULK.media_type(Some(&header(value))).unwrap(), Some(JSON));
        }
        assert!(
            BULK.media_type(Some(&header("application/x-protobuf")))
                .is_err()
        );
        assert!(BULK.methods == MethodFilter::POST.or(MethodFilter::PUT));
    }

    #[test]
    fn only_bulk_adds_headers_and_they_are_valid() {
        for format in HTTP_FORMATS {
            for (name, value) in format.headers {
                assert!(axum::http::HeaderName::from_static(name) == *name);
                assert!(HeaderValue::from_str(value).is_ok());
            }
        }
        let with_headers: Vec<_> = HTTP_FORMATS
            .iter()
            .filter(|f| !f.headers.is_empty())
            .map(|f| f.name)
            .collect();
        assert_eq!(with_headers, ["bulk"]);
    }

    #[test]
    fn every_format_has_its_own_path() {
        let mut paths: Vec<_> = HTTP_FORMATS
            .iter()
            .flat_map(|f| std::iter::once(&f.path).chain(f.also_at))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        let all = HTTP_FORMATS
            .iter()
            .map(|f| 1 + f.also_at.len())
            .sum::<usize>();
        assert_eq!(paths.len(), all);
    }
}
