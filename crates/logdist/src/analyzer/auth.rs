//! The analyzer's token check: with a token set, `POST /packets` (and `PUT /faults`) need
//! `Authorization: Bearer TOKEN`, so that only the distributor can put messages in.
//! `/health` and `/stats` stay open, as on the distributor.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;
use tracing::debug;

use crate::distributor::ApiError;

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

/// Whether an `Authorization` value carries `token` as its bearer credentials (the
/// scheme is case-insensitive, RFC 9110 §11.1), compared in constant time. The same rule
/// as the distributor's own check.
fn token_matches(token: &str, authorization: Option<&[u8]>) -> bool {
    let given = authorization
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, credentials)| credentials.trim_start());
    bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn only_the_bearer_token_matches() {
        for good in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER  s3cret",
            " Bearer s3cret ",
        ] {
            assert!(token_matches("s3cret", Some(good.as_bytes())), "{good}");
        }
        for bad in [
            None,
            Some(&b""[..]),
            Some(b"s3cret"),
            Some(b"Bearer wrong"),
            Some(b"Bearer s3cre"),
            Some(b"Basic czNjcmV0"),
            Some(b"Bearer \xff"),
        ] {
            assert!(!token_matches("s3cret", bad), "{bad:?}");
        }
    }
}
