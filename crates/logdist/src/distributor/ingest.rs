//! `POST /packets` and `POST /message/send`: read the body within the limit, undo its
//! Content-Encoding, decode and validate every message, then hand the packet to routing
//! and answer once it is delivered (or queued, with `--ack accepted`).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use logdist_core::{
    Format, Packet, Validation, decode_message, decode_packet_with, ndjson_messages,
};
use tokio::sync::oneshot;

use super::Shared;
use super::config::AckMode;
use super::idempotency::{self, Answer, Claim};
use super::member::{Job, Refusal};
use crate::api::PacketAck;
use crate::http::body::body_too_slow;
use crate::http::server::{Head, Reply};
use crate::http::{ApiError, read_body};

/// `POST /packets`: a JSON array of messages or NDJSON, optionally gzip or zstd.
pub async fn packets(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(receive(&shared, &headers, body, Endpoint::Packets).await)
}

/// `POST /message/send`: one message object, as the original distributor took it.
pub async fn message_send(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(receive(&shared, &headers, body, Endpoint::MessageSend).await)
}

/// `POST /packets` on the express lane (see [`crate::http::server::Express`]): every such
/// request an agent sends, except one with an `Idempotency-Key` or without the ingest
/// token (hyper's router answers those), answered as [`packets`] answers it.
#[derive(Clone)]
pub struct Express(pub Arc<Shared>);

impl crate::http::server::Express for Express {
    fn take(&self, head: &Head) -> Option<usize> {
        let config = &self.0.config;
        // A request with a key to remember, or from another distributor (`Logdist-Via`),
        // is hyper's.
        let ours = head.path() == Endpoint::Packets.path().as_bytes()
            && head.header(idempotency::HEADER.as_str()).is_none()
            && head.header(super::via::HEADER.as_str()).is_none()
            && config.ingest_token().is_none_or(|token| {
                crate::http::auth::token_matches(token, head.header("authorization").as_deref())
            });
        ours.then(|| config.max_body.as_u64() as usize)
    }

    fn body_timeout(&self) -> Duration {
        self.0.config.body_timeout
    }

    async fn answer(&self, head: Head, body: Bytes) -> Reply {
        let value = |name: &str| {
            head.header(name)
                .map(|v| {
                    HeaderValue::from_maybe_shared(v).map_err(|_| {
                        ApiError::BadRequest(format!("header {name} is not a valid value"))
                    })
                })
                .transpose()
        };
        let result = async {
            let encoding = Encoding {
                content_type: value("content-type")?,
                content_encoding: value("content-encoding")?,
            };
            process(&self.0, &encoding, body, Endpoint::Packets, None).await
        };
        match result.await {
            Ok(answer) => answer.into_reply(),
            Err(e) => respond(Err(e)).into(),
        }
    }

    fn late(&self) -> Response {
        respond(Err(body_too_slow(self.0.config.body_timeout)))
    }
}

/// The two ingest endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Packets,
    MessageSend,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Self::Packets => "/packets",
            Self::MessageSend => "/message/send",
        }
    }
}

/// Reads the body, answers a retry of an answered packet from memory (its
/// `Idempotency-Key`), and otherwise decodes, routes and answers the packet.
async fn receive(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let encoding = Encoding::of(headers);
    let via = super::via::incoming(headers, &shared.via)?;
    if endpoint == Endpoint::MessageSend {
        match essence(encoding.content_type.as_ref())? {
            None | Some("application/json") => {}
            Some(other) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Type `{other}` is not supported here; send one message as application/json"
                )));
            }
        }
    }
    let key = idempotency::key_of(headers)?;
    let limit = shared.config.max_body.as_u64() as usize;
    let body = read_body(body, headers, limit, shared.config.body_timeout).await?;
    let Some(key) = key else {
        return Ok(process(shared, &encoding, body, endpoint, via)
            .await?
            .into_response());
    };
    let fingerprint = idempotency::fingerprint(endpoint.path(), headers, &body);
    let pending = loop {
        match shared.idempotency.claim(key, fingerprint) {
            Claim::First(pending) => break pending,
            Claim::Replay(answer) => {
                metrics::counter!("logdist_packets_replayed_total").increment(1);
                let mut response = answer.into_response();
                response
                    .headers_mut()
                    .insert(idempotency::REPLAYED, HeaderValue::from_static("true"));
                return Ok(response);
            }
            Claim::Mismatch => {
                return Err(ApiError::Unprocessable(format!(
                    "Idempotency-Key `{key}` was already used for a different packet; use a new key per packet"
                )));
            }
            // The first attempt is in flight: its answer (or its failure) decides.
            Claim::Wait(mut done) => {
                let _ = done.wait_for(Option::is_some).await;
            }
        }
    };
    let answer = process(shared, &encoding, body, endpoint, via).await?;
    pending.complete(&answer);
    Ok(answer.into_response())
}

/// The headers that say how to read a body: all the decoding needs of a request.
#[derive(Debug, Clone)]
struct Encoding {
    content_type: Option<HeaderValue>,
    content_encoding: Option<HeaderValue>,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Self {
        Self {
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            content_encoding: headers.get(header::CONTENT_ENCODING).cloned(),
        }
    }
}

/// Decodes and validates the body, then routes the packet.
async fn process(
    shared: &Arc<Shared>,
    encoding: &Encoding,
    body: Bytes,
    endpoint: Endpoint,
    via: Option<Arc<str>>,
) -> Result<Answer, ApiError> {
    let limit = shared.config.max_body.as_u64() as usize;
    let packet = match endpoint {
        Endpoint::MessageSend => {
            let body = decompress(encoding, body, limit)?;
            decode_message(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?
        }
        Endpoint::Packets
            if body.len() <= INLINE_DECODE_BYTES && encoding.content_encoding.is_none() =>
        {
            refuse_early_if_full(shared, encoding, &body)?;
            decode(encoding, body, limit, shared.config.validate.into())?
        }
        Endpoint::Packets => {
            // Decompressing and validating megabytes takes milliseconds of CPU: do it off
            // the async workers, which also run every lane and probe.
            let encoding = encoding.clone();
            let validation = shared.config.validate.into();
            tokio::task::spawn_blocking(move || decode(&encoding, body, limit, validation))
                .await
                .map_err(|e| ApiError::Internal(format!("decoding failed: {e}")))??
        }
    };
    let status = match (endpoint, shared.config.ack) {
        (Endpoint::MessageSend, _) | (_, AckMode::Delivered) => StatusCode::OK,
        (_, AckMode::Accepted) => StatusCode::ACCEPTED,
    };
    accept(shared, packet, status, via).await
}

/// Under overload, an NDJSON packet whose analyzer's queue is full gets its 503 before it
/// is validated: validating a packet that is then refused is the costliest way to shed
/// load. Its messages are counted by lines for the routing question; a malformed packet
/// refused here gets its 400 when it is sent again.
fn refuse_early_if_full(shared: &Shared, encoding: &Encoding, body: &[u8]) -> Result<(), ApiError> {
    if shared.registry.refusing()
        && packet_format(encoding, body)? == Format::Ndjson
        && shared
            .registry
            .queue_full_for(ndjson_messages(body), body.len())
    {
        return Err(unavailable(Refusal::QueueFull));
    }
    Ok(())
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (self.status, Json(self.ack)).into_response()
    }
}

impl Answer {
    /// The same answer for the express lane, as its JSON bytes.
    fn into_reply(self) -> Reply {
        match serde_json::to_vec(&self.ack) {
            Ok(json) => Reply::Json(self.status, json),
            Err(_) => self.into_response().into(),
        }
    }
}

/// Bodies up to this size (and not compressed) are decoded on the async worker: below it,
/// handing the work to the blocking pool costs more than it saves.
const INLINE_DECODE_BYTES: usize = 256 * 1024;

/// Undoes the Content-Encoding, then decodes and validates every message.
fn decode(
    encoding: &Encoding,
    body: Bytes,
    limit: usize,
    validation: Validation,
) -> Result<Packet, ApiError> {
    let body = decompress(encoding, body, limit)?;
    let format = packet_format(encoding, &body)?;
    decode_packet_with(body, format, validation).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        metrics::counter!("logdist_rejected_total", "reason" => e.reason()).increment(1);
        e.into_response()
    })
}

/// Routes the packet and waits for its outcome as the ack mode says.
async fn accept(
    shared: &Arc<Shared>,
    packet: Packet,
    status: StatusCode,
    via: Option<Arc<str>>,
) -> Result<Answer, ApiError> {
    if shared.shutting_down.load(Ordering::Acquire) {
        return Err(unavailable(Refusal::ShuttingDown));
    }
    let messages = packet.messages;
    let (ack, outcome) = match shared.config.ack {
        AckMode::Delivered => {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        }
        AckMode::Accepted => (None, None),
    };
    let job = Job {
        packet,
        ack,
        attempts: 0,
        via,
    };
    shared.dispatch(job).map_err(|(_, why)| unavailable(why))?;
    shared.packets_received.increment(1);
    shared.messages_received.increment(u64::from(messages));
    let analyzer = match outcome {
        None => None,
        Some(rx) => match rx.await {
            Ok(Ok(analyzer)) => Some(analyzer.to_string()),
            Ok(Err(why)) => return Err(unavailable(why)),
            Err(_) => return Err(unavailable(Refusal::ShuttingDown)),
        },
    };
    let ack = PacketAck {
        messages,
        status: if analyzer.is_some() {
            "delivered"
        } else {
            "accepted"
        }
        .to_owned(),
        analyzer,
    };
    Ok(Answer { status, ack })
}

/// The answer to a packet that was not delivered: 503 with Retry-After when sending it
/// again may work, 413 or 422 (with the analyzer's reason) when it cannot.
fn unavailable(why: Refusal) -> ApiError {
    let retry_after = match why {
        Refusal::NoAnalyzer | Refusal::ShuttingDown => Duration::from_secs(5),
        Refusal::QueueFull | Refusal::DeliveryFailed => Duration::from_secs(1),
        Refusal::TooLarge { .. } => return ApiError::TooLargeForAnalyzers(why.to_string()),
        Refusal::Rejected(_) => return ApiError::RefusedByAnalyzer(why.to_string()),
    };
    ApiError::Unavailable {
        reason: why.to_string(),
        retry_after,
    }
}

/// Undoes `Content-Encoding: gzip` or `zstd`, refusing output over `limit` (a
/// decompression bomb stops there).
fn decompress(encoding: &Encoding, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let Some(encoding) = &encoding.content_encoding else {
        return Ok(body);
    };
    let encoding = encoding
        .to_str()
        .map_err(|_| ApiError::BadRequest("Content-Encoding is not ASCII".to_owned()))?
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(&body[..]), limit, "gzip"),
        "zstd" => {
            let decoder = zstd::stream::read::Decoder::with_buffer(&body[..])
                .map_err(|e| ApiError::BadRequest(format!("the body is not valid zstd: {e}")))?;
            inflate(decoder, limit, "zstd")
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding `{other}` is not supported; use gzip or zstd"
        ))),
    }
}

fn inflate(reader: impl Read, limit: usize, name: &str) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid {name}: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::TooLarge {
            limit,
            what: " once decompressed",
        });
    }
    Ok(Bytes::from(out))
}

/// The media type without parameters, in its canonical spelling; `None` when absent.
fn essence(content_type: Option<&HeaderValue>) -> Result<Option<&'static str>, ApiError> {
    let Some(value) = content_type else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType("Content-Type is not ASCII".to_owned()))?;
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(Some("application/json"));
    }
    if NDJSON_TYPES.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        return Ok(Some("application/x-ndjson"));
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "Content-Type `{text}` is not supported; send application/json (an array of messages) or application/x-ndjson"
    )))
}

/// The names NDJSON goes by, as media types.
const NDJSON_TYPES: [&str; 7] = [
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonl",
    "application/jsonlines",
    "application/x-jsonlines",
    "application/json-lines",
];

/// How to read a `/packets` body: by Content-Type, or by its first byte when absent.
fn packet_format(encoding: &Encoding, body: &[u8]) -> Result<Format, ApiError> {
    Ok(match essence(encoding.content_type.as_ref())? {
        Some("application/json") => Format::Json,
        Some(_) => Format::Ndjson,
        None if body.trim_ascii_start().starts_with(b"[") => Format::Json,
        None => Format::Ndjson,
    })
}
