//! One attempt at sending a packet: the request, the whole answer within `--timeout`,
//! and what went wrong if it was not acknowledged ([`Failure`]). Whether to try again is
//! [`super::retry`]'s business; the loop around it is the agent's.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, StatusCode};

use super::conn::{ConnError, Connection};
use super::forward::ForwardConn;
use super::outcome::{Failure, FailureKind};
use super::plan::Plan;
use super::protocol::{Protocol, Taken};
use super::retry::parse_retry_after;

/// The header that lets a distributor recognise a resent packet.
pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// What a packet's attempts share: built once, so a resend is the same request.
pub(crate) struct Outgoing {
    /// The body exactly as sent.
    pub body: Bytes,
    /// `Idempotency-Key`, with `--idempotency-keys`.
    pub idempotency_key: Option<HeaderValue>,
}

/// Sends `outgoing` once on the agent's connection and reads the whole answer; the
/// status for a success (200, 202 or 204) that refused no record.
pub(crate) async fn send(
    conn: &mut Connection,
    forward: Option<&mut ForwardConn>,
    plan: &Plan,
    outgoing: &Outgoing,
) -> Result<StatusCode, Failure> {
    if let Some(forward) = forward {
        return forward.send(plan, &outgoing.body).await;
    }
    let mut headers: [(&HeaderName, &HeaderValue); 4] = [(&CONTENT_TYPE, &plan.content_type); 4];
    let mut count = 1;
    let optional = [
        (&CONTENT_ENCODING, plan.content_encoding.as_ref()),
        (&AUTHORIZATION, plan.authorization.as_ref()),
        (&IDEMPOTENCY_KEY, outgoing.idempotency_key.as_ref()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            headers[count] = (name, value);
            count += 1;
        }
    }
    let exchange = async {
        let answer = conn
            .post(&headers[..count], &outgoing.body)
            .await
            .map_err(|e| {
                let kind = match e {
                    ConnError::Connect { .. } => FailureKind::Connect,
                    ConnError::Exchange(_) => FailureKind::Other,
                };
                Failure::new(kind, e.to_string())
            })?;
        let status = answer.status;
        if Protocol::is_success(status) {
            match plan.protocol.taken(answer.body) {
                Taken::All => Ok(status),
                Taken::Partly(detail) => Err(Failure {
                    kind: FailureKind::Partial(status.as_u16()),
                    detail,
                    retry_after: None,
                }),
            }
        } else {
            Err(Failure {
                kind: FailureKind::Status(status.as_u16()),
                detail: String::from_utf8_lossy(answer.body).into_owned(),
                retry_after: answer.retry_after.and_then(parse_retry_after),
            })
        }
    };
    let outcome = match tokio::time::timeout(plan.timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::new(
            FailureKind::Timeout,
            format!("no answer within {:?}", plan.timeout),
        )),
    };
    if outcome.as_ref().is_err_and(|f| f.kind.status().is_none()) {
        // The exchange did not finish: its connection may hold half an answer.
        conn.reset();
    }
    outcome
}

/// Logs the first failure of each kind at WARN, the rest at DEBUG.
pub(crate) fn log_failure(plan: &Plan, failure: &Failure) {
    let key = failure.kind.key();
    let first = match plan.logged.lock() {
        Ok(mut logged) => logged.insert(key.clone()),
        Err(_) => false,
    };
    let detail = failure.detail.as_str();
    if first {
        tracing::warn!(
            kind = %key,
            detail,
            "Request failed; further failures of this kind are logged at debug level."
        );
    } else {
        tracing::debug!(kind = %key, detail, "Request failed.");
    }
}
