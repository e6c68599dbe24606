//! Reading a request body whole: within a time and a size, as both servers read theirs.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::BodyExt;

use super::ApiError;

/// After refusing an oversize body, at most this much more of it is read and discarded
/// (bounded by [`DRAIN_TIME`] too) so that the client, still sending, gets the 413 instead
/// of a reset connection; past that the connection is closed.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;
/// See [`DRAIN_BYTES`].
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads the whole body within `timeout` (408 beyond: a slow client is cut off), refusing
/// more than `limit` bytes. An oversize body is drained (bounded) before the 413 is sent,
/// and the connection is then closed.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    tokio::time::timeout(timeout, read_within(body, headers, limit))
        .await
        .unwrap_or_else(|_| Err(body_too_slow(timeout)))
}

pub fn body_too_slow(timeout: Duration) -> ApiError {
    ApiError::Timeout(format!(
        "the request body was not received within {}",
        humantime::format_duration(timeout)
    ))
}

async fn read_within(mut body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
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
