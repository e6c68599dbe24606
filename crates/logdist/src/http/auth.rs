//! Bearer tokens, as both servers check them: the distributor on ingest and registration,
//! the analyzer on deliveries.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::ApiError;

/// A route layer (`middleware::from_fn_with_state(token, require_token)`) that refuses a
/// request without the bearer `token` with 401, counted in
/// `logdist_rejected_total{reason="unauthorized"}`.
pub async fn require_token(
    State(token): State<Arc<str>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = request.headers().get(http::header::AUTHORIZATION);
    if !token_matches(&token, given.map(|v| v.as_bytes())) {
        tracing::debug!(path = %request.uri().path(), "Refused a request without the token.");
        metrics::counter!("logdist_rejected_total", "reason" => "unauthorized").increment(1);
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// `routes` behind the bearer `token` ([`require_token`]) when one is set; without one,
/// the check is not in the path at all.
pub fn guarded<S: Clone + Send + Sync + 'static>(
    routes: axum::Router<S>,
    token: Option<&str>,
) -> axum::Router<S> {
    match token {
        Some(token) => routes.route_layer(axum::middleware::from_fn_with_state(
            Arc::<str>::from(token),
            require_token,
        )),
        None => routes,
    }
}

/// Whether an `Authorization` value carries `token` as its bearer credentials, compared in
/// constant time so that the answer's timing tells nothing about the token.
pub fn token_matches(token: &str, authorization: Option<&[u8]>) -> bool {
    let given = authorization
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(bearer)
        .unwrap_or("");
    bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// The credentials of an `Authorization: Bearer TOKEN` value (the scheme is
/// case-insensitive, RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer("bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer("BEARER  s3cret"), Some("s3cret"));
        assert_eq!(bearer("Basic czNjcmV0"), None);
        assert_eq!(bearer("s3cret"), None);
    }

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
