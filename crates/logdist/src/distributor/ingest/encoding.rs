//! `Content-Encoding`: the compressions an agent may send a body in, undone within the
//! body limit.

use std::io::Read;

use axum::http::HeaderValue;
use bytes::Bytes;

use crate::http::ApiError;

/// Undoes `Content-Encoding: gzip` or `zstd`, refusing output over `limit` (a
/// decompression bomb stops there).
pub fn decompress(
    content_encoding: Option<&HeaderValue>,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let Some(encoding) = content_encoding else {
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
