//! `POST /packets` and `POST /message/send`: read the body within the limit, undo its
//! Content-Encoding, decode and validate every message, then hand the packet to routing
//! and answer once it is delivered (or queued, with `--ack accepted`).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use logdist_core::{Format, Packet, decode_message, decode_packet};
use tokio::sync::oneshot;

use super::Shared;
use super::config::AckMode;
use super::error::ApiError;
use super::member::{Job, Refusal};
use crate::api::PacketAck;

/// `POST /packets`: a JSON array of messages or NDJSON, optionally gzip or zstd.
pub async fn packets(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let limit = shared.config.max_body.as_u64() as usize;
        let body = read_body(body, &headers, limit).await?;
        let body = decompress(&headers, body, limit)?;
        let format = packet_format(&headers, &body)?;
        let packet =
            decode_packet(body, format).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let status = match shared.config.ack {
            AckMode::Delivered => StatusCode::OK,
            AckMode::Accepted => StatusCode::ACCEPTED,
        };
        accept(&shared, packet, status).await
    };
    respond(result.await)
}

/// `POST /message/send`: one message object, as the original distributor took it.
pub async fn message_send(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let limit = shared.config.max_body.as_u64() as usize;
        match essence(&headers)? {
            None | Some("application/json") => {}
            Some(other) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Type `{other}` is not supported here; send one message as application/json"
                )));
            }
        }
        let body = read_body(body, &headers, limit).await?;
        let body = decompress(&headers, body, limit)?;
        let packet = decode_message(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        accept(&shared, packet, StatusCode::OK).await
    };
    respond(result.await)
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
) -> Result<Response, ApiError> {
    if shared.shutting_down.is_cancelled() {
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
    };
    shared
        .registry
        .dispatch(job)
        .map_err(|(_, why)| unavailable(why))?;
    metrics::counter!("logdist_packets_received_total").increment(1);
    metrics::counter!("logdist_messages_received_total").increment(u64::from(messages));
    let analyzer = match outcome {
        None => None,
        Some(rx) => match rx.await {
            Ok(Ok(analyzer)) => Some(analyzer.to_string()),
            Ok(Err(why)) => return Err(unavailable(why)),
            Err(_) => return Err(unavailable(Refusal::ShuttingDown)),
        },
    };
    let body = PacketAck {
        messages,
        status: if analyzer.is_some() {
            "delivered"
        } else {
            "accepted"
        }
        .to_owned(),
        analyzer,
    };
    Ok((status, Json(body)).into_response())
}

fn unavailable(why: Refusal) -> ApiError {
    let retry_after = match why {
        Refusal::NoAnalyzer | Refusal::ShuttingDown => Duration::from_secs(5),
        Refusal::QueueFull | Refusal::DeliveryFailed => Duration::from_secs(1),
    };
    ApiError::Unavailable {
        reason: why.message().to_owned(),
        retry_after,
    }
}

/// Reads the whole body, refusing more than `limit` bytes (early, when Content-Length
/// already says so).
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = ApiError::TooLarge { limit, what: "" };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
        Err(e) => Err(ApiError::BadRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}

/// Undoes `Content-Encoding: gzip` or `zstd`, refusing output over `limit` (a
/// decompression bomb stops there).
fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let Some(encoding) = headers.get(header::CONTENT_ENCODING) else {
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

/// The media type without parameters, lowercased; `None` when absent.
fn essence(headers: &HeaderMap) -> Result<Option<&'static str>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType("Content-Type is not ASCII".to_owned()))?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(Some(match essence.as_str() {
        "application/json" => "application/json",
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonl"
        | "application/jsonlines"
        | "application/x-jsonlines"
        | "application/json-lines" => "application/x-ndjson",
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type `{text}` is not supported; send application/json (an array of messages) or application/x-ndjson"
            )));
        }
    }))
}

/// How to read a `/packets` body: by Content-Type, or by its first byte when absent.
fn packet_format(headers: &HeaderMap, body: &[u8]) -> Result<Format, ApiError> {
    Ok(match essence(headers)? {
        Some("application/json") => Format::Json,
        Some(_) => Format::Ndjson,
        None if body.trim_ascii_start().starts_with(b"[") => Format::Json,
        None => Format::Ndjson,
    })
}
