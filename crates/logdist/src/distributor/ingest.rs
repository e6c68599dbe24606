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
use http_body_util::BodyExt;
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
        let packet = if body.len() <= INLINE_DECODE_BYTES
            && !headers.contains_key(header::CONTENT_ENCODING)
        {
            decode(&headers, body, limit)?
        } else {
            // Decompressing and validating megabytes takes milliseconds of CPU: do it off
            // the async workers, which also run every lane and probe.
            let headers = headers.clone();
            tokio::task::spawn_blocking(move || decode(&headers, body, limit))
                .await
                .map_err(|e| ApiError::Internal(format!("decoding failed: {e}")))??
        };
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

/// Bodies up to this size (and not compressed) are decoded on the async worker: below it,
/// handing the work to the blocking pool costs more than it saves.
const INLINE_DECODE_BYTES: usize = 256 * 1024;

/// Undoes the Content-Encoding, then decodes and validates every message.
fn decode(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Packet, ApiError> {
    let body = decompress(headers, body, limit)?;
    let format = packet_format(headers, &body)?;
    decode_packet(body, format).map_err(|e| ApiError::BadRequest(e.to_string()))
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

/// After refusing an oversize body, at most this much more of it is read and discarded
/// (bounded by [`DRAIN_TIME`] too) so that the client, still sending, gets the 413 instead
/// of a reset connection; past that the connection is closed.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// See [`DRAIN_BYTES`].
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads the whole body, refusing more than `limit` bytes. An oversize body is drained
/// (bounded) before the 413 is sent, and the connection is then closed.
pub async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    if declared.is_none_or(|len| len <= limit as u64) {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > limit {
                break;
            }
            chunks.push(data);
        }
        if total <= limit {
            return Ok(concat(chunks, total));
        }
    }
    // Too large: read and discard what is still coming, within bounds, then refuse.
    let drain = async {
        let mut drained = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |d| d.len());
            if drained > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    Err(ApiError::TooLarge { limit, what: "" })
}

/// One buffer from the chunks of a body; a body that came in one chunk is not copied.
fn concat(mut chunks: Vec<Bytes>, total: usize) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => {
            let mut whole = bytes::BytesMut::with_capacity(total);
            for chunk in chunks {
                whole.extend_from_slice(&chunk);
            }
            whole.freeze()
        }
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
