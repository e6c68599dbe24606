//! The one error type of the distributor's HTTP API. Every error is answered as JSON
//! `{"error": "..."}` with the status that tells the agent what to do next.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::ErrorBody;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a header is malformed; the text says what and where.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not with this method.
    #[error("{method} is not allowed on {path}; use {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
        /// The method to use, sent as `Allow`.
        allow: &'static str,
    },
    /// The request conflicts with the current state (retry later).
    #[error("{0}")]
    Conflict(String),
    /// The client did not send the request in time.
    #[error("{0}")]
    Timeout(String),
    /// Well-formed but refused: an idempotency key reused for another packet.
    #[error("{0}")]
    Unprocessable(String),
    /// The body (as sent, or once decompressed) is over the limit.
    #[error("the body is larger than the limit of {limit} bytes{what}")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
        /// Which body: empty, or " once decompressed".
        what: &'static str,
    },
    /// Content-Type or Content-Encoding is not one the distributor reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A fault of the distributor's own (never the client's input).
    #[error("internal error: {0}")]
    Internal(String),
    /// An analyzer refused this packet, sent to it alone, as bad: sending it again
    /// unchanged would fail the same way.
    #[error("{0}")]
    RefusedByAnalyzer(String),
    /// The packet is larger than any online analyzer takes.
    #[error("{0}")]
    TooLargeForAnalyzers(String),
    /// The request came through this distributor before: an analyzer leads back to it.
    #[error("{0}")]
    LoopDetected(String),
    /// Too many requests of this kind from this source; retry after the given delay.
    #[error("{reason}")]
    TooManyRequests {
        /// Why, for the caller's logs.
        reason: String,
        /// Sent as `Retry-After` (whole seconds, at least 1).
        retry_after: Duration,
    },
    /// Nothing was accepted; the agent should retry after the given delay.
    #[error("{reason}")]
    Unavailable {
        /// Why, for the agent's logs.
        reason: String,
        /// Sent as `Retry-After` (whole seconds, at least 1).
        retry_after: Duration,
    },
}

impl ApiError {
    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RefusedByAnalyzer(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLargeForAnalyzers(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::LoopDetected(_) => StatusCode::LOOP_DETECTED,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short label for the `reason` of the rejects metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::Timeout(_) => "timeout",
            Self::Unprocessable(_) => "unprocessable",
            Self::TooLarge { .. } => "too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Internal(_) => "internal",
            Self::RefusedByAnalyzer(_) => "refused_by_analyzer",
            Self::TooLargeForAnalyzers(_) => "too_large_for_analyzers",
            Self::TooManyRequests { .. } => "too_many_requests",
            Self::LoopDetected(_) => "loop_detected",
            Self::Unavailable { .. } => "unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            Self::Unavailable { retry_after, .. } | Self::TooManyRequests { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, Self::TooLarge { .. } | Self::Timeout(_)) {
            // The rest of the body may still be on its way: do not reuse this connection.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Self::MethodNotAllowed { allow, .. } = &self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
