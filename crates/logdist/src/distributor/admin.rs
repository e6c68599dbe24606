//! Membership and observability endpoints: register, deregister, stats, health, metrics.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;
use super::config::{AnalyzerUrl, check_id};
use super::registry::{RegisterError, Registered};
use crate::api::{AnalyzerStats, Deregistration, Registration};
use crate::http::ApiError;
use crate::http::read_body;

/// Registration bodies are tiny; anything bigger is a mistake or an attack.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// `POST /analyzer/register`.
pub async fn register(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, &headers, MAX_ADMIN_BODY, shared.config.body_timeout).await?;
    let reg: Registration = parse(&body, "registration")?;
    check_id(&reg.id).map_err(ApiError::BadRequest)?;
    logdist_core::routing::check_weight(reg.weight)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let url: AnalyzerUrl = match (&reg.url, reg.port) {
        (Some(url), None) => url.parse().map_err(ApiError::BadRequest)?,
        (None, Some(0)) => {
            return Err(ApiError::BadRequest(
                "port 0 is not a port to send to".to_owned(),
            ));
        }
        (None, Some(port)) => format!("http://{}", SocketAddr::new(peer.ip(), port))
            .parse()
            .map_err(ApiError::BadRequest)?,
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give `url` or `port`, not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(ApiError::BadRequest(
                "give `url` (http://host:port) or `port` (on the caller's address)".to_owned(),
            ));
        }
    };
    // Rate-limited before the host is resolved: a flood of names that resolve slowly
    // must not tie up the resolver's threads.
    admit(&shared, peer.ip(), &reg.id, &url, reg.weight)?;
    shared
        .check_not_self(&url)
        .await
        .map_err(ApiError::BadRequest)?;
    let base = url.base.clone();
    // In cluster mode the fleet learns it first, so that a sync running meanwhile cannot
    // put back what Redis held before.
    if let Some(cluster) = &shared.cluster {
        cluster.announce(&reg.id, &base, reg.weight).await;
    }
    let (outcome, member) =
        shared
            .register(&reg.id, url, reg.weight, false)
            .map_err(|e| match e {
                RegisterError::Full(_) => ApiError::Unavailable {
                    reason: e.to_string(),
                    retry_after: Duration::from_secs(30),
                },
                RegisterError::Invalid(why) => ApiError::BadRequest(why),
                RegisterError::Draining(why) => ApiError::Conflict(why),
            })?;
    let outcome = match outcome {
        Registered::Added => {
            // Answer with what its first probe found: online, or unhealthy (routed to
            // once a probe passes).
            shared.first_probe(&member).await;
            "added"
        }
        Registered::Updated => "updated",
        Registered::Unchanged => "unchanged",
    };
    let state = member.state().as_str();
    Ok(Json(json!({
        "id": reg.id, "url": base, "weight": reg.weight, "registration": outcome, "state": state,
    }))
    .into_response())
}

/// Lets a registration that adds or changes a member through if its source has not
/// spent `--register-rate`, and a new member only while there is room for it
/// (`--max-analyzers`). A keep-alive (the same registration again) always passes.
fn admit(
    shared: &Shared,
    source: IpAddr,
    id: &str,
    url: &AnalyzerUrl,
    weight: f64,
) -> Result<(), ApiError> {
    if !shared.registry.would_change(id, url, weight) {
        return Ok(());
    }
    shared
        .registrations
        .take(source, Instant::now())
        .map_err(|wait| {
            metrics::counter!("logdist_registrations_refused_total", "reason" => "rate")
                .increment(1);
            ApiError::TooManyRequests {
                reason: format!(
                    "more than {} registrations a second from {source}; retry later",
                    shared.config.register_rate
                ),
                retry_after: wait,
            }
        })
}

/// `POST /analyzer/deregister`: stops routing to the analyzer at once, answers once its
/// queue is delivered (bounded by `--shutdown-grace`) so that an analyzer shutting down
/// knows nothing more is coming.
pub async fn deregister(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, &headers, MAX_ADMIN_BODY, shared.config.body_timeout).await?;
    let req: Deregistration = parse(&body, "deregistration")?;
    let member = shared
        .registry
        .begin_deregister(&req.id)
        .ok_or_else(|| ApiError::NotFound(format!("no analyzer is registered as `{}`", req.id)))?;
    if let Some(cluster) = &shared.cluster {
        cluster.withdraw(&req.id).await;
    }
    let drained = tokio::time::timeout(shared.config.shutdown_grace, member.drained.cancelled())
        .await
        .is_ok();
    shared.registry.remove(&member);
    Ok(Json(json!({"id": req.id, "deregistered": true, "drained": drained})).into_response())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid {what}: {e}")))
}

/// `GET /analyzer/stats`.
pub async fn stats(State(shared): State<Arc<Shared>>) -> Json<Vec<AnalyzerStats>> {
    let local = shared.registry.stats();
    match &shared.cluster {
        Some(cluster) => Json(cluster.fleet_stats(local).await),
        None => Json(local),
    }
}

/// `GET /health`: 200 while serving.
pub async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let online = shared.registry.online_count();
    let mut body = json!({"status": "ok", "analyzers_online": online});
    if let Some(cluster) = &shared.cluster {
        body["redis"] = json!(if cluster.is_up() { "up" } else { "down" });
    }
    Json(body).into_response()
}

/// `GET /metrics`: Prometheus text. The process's metrics, then each analyzer's, sampled
/// now from the members there are (see [`super::exposition`]).
pub async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    metrics::gauge!("logdist_idempotency_keys").set(shared.idempotency.len() as f64);
    metrics::gauge!("logdist_analyzers").set(shared.registry.len() as f64);
    metrics::gauge!("logdist_parked_packets").set(shared.parked.len() as f64);
    let mut text = shared.metrics.render();
    super::exposition::render(&shared.registry.snapshot(), &mut text);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// Unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::NotFound(
        "no such endpoint; see /health, /packets, /message/send, /analyzer/stats".to_owned(),
    )
}

/// A known path with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let allow = match uri.path() {
        "/analyzer/stats" | "/health" | "/metrics" => "GET",
        _ => "POST",
    };
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
        allow,
    }
}
