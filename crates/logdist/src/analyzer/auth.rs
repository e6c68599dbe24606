//! The analyzer's token check: with a token set, `POST /packets` (and `PUT /faults`) need
//! `Authorization: Bearer TOKEN`, so that only the distributor can put messages in.
//! `/health` and `/stats` stay open, as on the distributor.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use tracing::debug;

use crate::http::ApiError;
use crate::http::auth::token_matches;

/// Refuses a request without the bearer `token` with 401, comparing in constant time so
/// that the answer's timing tells nothing about the token.
pub(super) async fn require_token(
    State(token): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = request.headers().get(header::AUTHORIZATION);
    if !token_matches(&token, given.map(|v| v.as_bytes())) {
        debug!(path = %request.uri().path(), "Refused a request without the token.");
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}
