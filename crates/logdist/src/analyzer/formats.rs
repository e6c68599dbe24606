//! What the analyzer takes besides logdist's own `POST /packets`: the request of every
//! other delivery protocol a distributor speaks over HTTP, so that one `logdist analyzer`
//! can stand in for the back end of any of them (in the demo, the benchmarks and the
//! chaos test) and a user can try a protocol before pointing it at the real thing.
//!
//! | protocol | request | answer |
//! | --- | --- | --- |
//! | `message` | `POST /message/process`, `{"data": message}` | `{"status": "Message processed"}`, or 400 `{"error": "Invalid message format"}` as the original analyzer |
//! | `otlp` | `POST /v1/logs` | an `ExportLogsServiceResponse` |
//! | `elasticsearch` | `POST /_bulk`, `/{index}/_bulk`; `GET /` | the bulk's items, as Elasticsearch answers them |
//! | `loki` | `POST /loki/api/v1/push`; `GET /ready` | 204 |
//!
//! Each body is decoded by the decoder the distributor's ingest uses for the same format
//! (in `logdist-core`), its records made messages, and those counted and journaled as a
//! packet of `/packets` is: a message that arrives by any protocol is counted once, by
//! severity and source, and lands in `--journal` as one NDJSON line. A body that does not
//! decode is refused whole (400, the decoder's reason), so nothing is half-counted.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, on};
use bytes::Bytes;
use logdist_core::DecodeOptions;
use serde_json::json;

use super::{AppState, BODY_TIMEOUT, take};
use crate::api::PacketAck;
use crate::distributor::ingest::decompress;
use crate::distributor::ingest::formats::{BULK, HttpFormat, LOKI_PUSH, OTLP_LOGS, Outcome};
use crate::http::{ApiError, read_body};

/// The formats taken as their protocols deliver them, each at its paths.
const FORMATS: [&HttpFormat; 3] = [&OTLP_LOGS, &BULK, &LOKI_PUSH];

/// The routes of the other protocols; `guarded` puts a write behind the analyzer's token.
pub(super) fn routes(
    guarded: impl Fn(MethodRouter<Arc<AppState>>) -> MethodRouter<Arc<AppState>>,
) -> Router<Arc<AppState>> {
    let mut router = Router::new()
        .route("/message/process", guarded(axum::routing::post(message)))
        // What Beats and Logstash ask an Elasticsearch node before their first bulk, and
        // what the `elasticsearch` protocol probes.
        .route(
            "/",
            get(|| async { Json(json!({"tagline": "You Know, for Search"})) }),
        )
        // Loki's readiness, which the `loki` protocol probes.
        .route("/ready", get(|| async { "ready" }));
    for format in FORMATS {
        let handler = move |State(state): State<Arc<AppState>>,
                            params: RawPathParams,
                            headers: HeaderMap,
                            body: Body| async move {
            let index = params
                .iter()
                .find(|(name, _)| *name == "index")
                .map(|(_, value)| Arc::<str>::from(value));
            receive(&state, format, index, &headers, body)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        };
        for path in std::iter::once(&format.path).chain(format.also_at) {
            router = router.route(path, guarded(on(format.methods, handler)));
        }
    }
    router
}

/// One request of `format`: decoded, taken as a packet, answered in the format's terms.
async fn receive(
    state: &AppState,
    format: &'static HttpFormat,
    index: Option<Arc<str>>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let started = Instant::now();
    let media_type = format
        .media_type(headers.get(header::CONTENT_TYPE))
        .map_err(IntoResponse::into_response)?;
    let body = read_body(body, headers, state.max_body, BODY_TIMEOUT)
        .await
        .map_err(IntoResponse::into_response)?;
    let body = decompress(headers.get(header::CONTENT_ENCODING), body, state.max_body)
        .map_err(IntoResponse::into_response)?;
    let options = DecodeOptions {
        index,
        now_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        max_len: state.max_body,
        ..DecodeOptions::default()
    };
    let decoded = format
        .decoder
        .decode(body, media_type, &options)
        .map_err(|e| ApiError::BadRequest(e.to_string()).into_response())?;
    let messages = take(state, headers, &decoded.packet.ndjson).await?;
    let ack = PacketAck {
        messages: u32::try_from(messages).unwrap_or(u32::MAX),
        status: "delivered".to_owned(),
        analyzer: Some(state.name.clone()),
        ..PacketAck::default()
    };
    let answer = (format.answer)(&Outcome {
        status: StatusCode::OK,
        ack: &ack,
        rejected: &decoded.rejected,
        media_type,
        items: &decoded.items,
        took: started.elapsed(),
    });
    let mut response = (
        answer.status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(answer.content_type),
        )],
        answer.body,
    )
        .into_response();
    for &(name, value) in format.headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// `POST /message/process`: the original analyzer's one message, `{"data": message}`,
/// answered as it answers.
async fn message(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let invalid = || {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "Invalid message format"})),
        )
            .into_response()
    };
    let body = match read_body(body, &headers, state.max_body, BODY_TIMEOUT).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let Some(line) = data_of(&body) else {
        return invalid();
    };
    match take(&state, &headers, &line).await {
        Ok(_) => Json(json!({"status": "Message processed"})).into_response(),
        Err(refused) => refused,
    }
}

/// The message of a `{"data": message}` body, as one NDJSON line; `None` when the body is
/// not such an object or the message not a JSON object.
fn data_of(body: &[u8]) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Wrapped<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let wrapped: Wrapped<'_> = serde_json::from_slice(body).ok()?;
    let data = wrapped.data.get().trim();
    if !data.starts_with('{') {
        return None;
    }
    // One line: a message sent pretty-printed is made compact.
    let line = if data.contains('\n') {
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(data).ok()?).ok()?
    } else {
        data.to_owned()
    };
    Some(Bytes::from(line + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_of_a_message_is_one_line() {
        assert_eq!(
            data_of(br#"{"data": {"a": 1, "b": "x"}}"#).as_deref(),
            Some(&b"{\"a\": 1, \"b\": \"x\"}\n"[..])
        );
        assert_eq!(
            data_of(b"{\"data\": {\n  \"a\": 1\n}}").as_deref(),
            Some(&b"{\"a\":1}\n"[..])
        );
        for bad in [&b""[..], b"{}", b"{\"data\": 3}", b"[1]", b"{\"data\": {"] {
            assert_eq!(data_of(bad), None, "{bad:?}");
        }
    }
}
