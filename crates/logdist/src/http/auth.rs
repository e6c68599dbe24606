//! Bearer tokens, as both servers check them: the distributor on ingest and registration,
//! the analyzer on deliveries.
//!
//! The token is taken in the forms agents send a secret in: `Authorization: Bearer TOKEN`,
//! and, as Elasticsearch's clients and shippers send theirs, `ApiKey TOKEN` (an encoded API
//! key given as it is), `ApiKey base64(ID:TOKEN)` (an API key given as its id and key, the
//! key being the token) and `Basic base64(USER:TOKEN)` (the token as the password, any
//! user).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use subtle::{Choice, ConstantTimeEq};

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

/// Whether an `Authorization` value carries `token` in one of the forms of this module's
/// doc, compared in constant time so that the answer's timing tells nothing about the
/// token.
pub fn token_matches(token: &str, authorization: Option<&[u8]>) -> bool {
    let Some((scheme, credentials)) = authorization
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(scheme_and_credentials)
    else {
        return equal("", token);
    };
    let is = |name: &str| scheme.eq_ignore_ascii_case(name);
    if is("bearer") {
        equal(credentials, token)
    } else if is("apikey") {
        // An encoded key given as it is, or the base64 of `id:key`: both are compared, so
        // that a token which happens to be base64 of a pair is taken either way.
        let pair = secret_of_pair(credentials).unwrap_or_default();
        bool::from(ct_equal(credentials, token) | ct_equal(&pair, token))
    } else if is("basic") {
        equal(&secret_of_pair(credentials).unwrap_or_default(), token)
    } else {
        equal("", token)
    }
}

/// The scheme of an `Authorization` value and its credentials (the scheme is
/// case-insensitive, RFC 9110 §11.1).
fn scheme_and_credentials(value: &str) -> Option<(&str, &str)> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    Some((scheme, credentials.trim_start()))
}

/// The second half of base64 of `first:second` (Basic's `user:password`, an API key's
/// `id:key`).
fn secret_of_pair(credentials: &str) -> Option<String> {
    let decoded = STANDARD.decode(credentials).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, secret) = text.split_once(':')?;
    Some(secret.to_owned())
}

fn equal(given: &str, token: &str) -> bool {
    bool::from(ct_equal(given, token))
}

fn ct_equal(given: &str, token: &str) -> Choice {
    given.as_bytes().ct_eq(token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        STANDARD.encode(text)
    }

    #[test]
    fn schemes_are_case_insensitive() {
        assert_eq!(
            scheme_and_credentials("Bearer  s3cret"),
            Some(("Bearer", "s3cret"))
        );
        assert_eq!(scheme_and_credentials("s3cret"), None);
        for value in ["bearer s3cret", "APIKEY s3cret", "basic dTpzM2NyZXQ="] {
            assert!(token_matches("s3cret", Some(value.as_bytes())), "{value}");
        }
    }

    #[test]
    fn elasticsearch_clients_api_keys_and_basic_passwords_match() {
        let good = [
            "ApiKey s3cret".to_owned(),
            format!("ApiKey {}", b64("key-id:s3cret")),
            format!("Basic {}", b64("elastic:s3cret")),
            format!("Basic {}", b64(":s3cret")),
        ];
        for value in &good {
            assert!(token_matches("s3cret", Some(value.as_bytes())), "{value}");
        }
        let bad = [
            "ApiKey wrong".to_owned(),
            format!("ApiKey {}", b64("s3cret:key")),
            format!("ApiKey {}", b64("key-id:s3cre")),
            format!("Basic {}", b64("s3cret:wrong")),
            format!("Basic {}", b64("s3cret")),
            "Basic s3cret".to_owned(),
            "Basic !!!".to_owned(),
            format!("Digest {}", b64("elastic:s3cret")),
        ];
        for value in &bad {
            assert!(!token_matches("s3cret", Some(value.as_bytes())), "{value}");
        }
        // A token that is itself base64 of a pair is taken as it is too.
        let encoded = b64("id:key");
        let value = format!("ApiKey {encoded}");
        assert!(token_matches(&encoded, Some(value.as_bytes())));
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
            Some(b"Bearer "),
            Some(b"Bearer \xff"),
        ] {
            assert!(!token_matches("s3cret", bad), "{bad:?}");
        }
    }
}
