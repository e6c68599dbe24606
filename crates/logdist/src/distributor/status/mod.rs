//! What a distributor says about itself: `GET /analyzer/stats`, `GET /health`,
//! `GET /ready` (Loki's readiness call), `GET /metrics`, the live [`dashboard`], and the answers to paths and methods it does not serve. It reads every
//! stage and changes none.

pub mod dashboard;
mod exposition;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use super::ingest::idempotency;
use super::membership::Fleet;
use crate::api::AnalyzerStats;
use crate::http::ApiError;

/// What the status endpoints read.
pub struct Status {
    /// The members and their counts.
    pub fleet: Arc<Fleet>,
    /// Idempotency keys held, for `logdist_idempotency_keys`.
    pub idempotency: Arc<idempotency::Keys>,
    /// Renders the process's metrics.
    pub metrics: PrometheusHandle,
    /// The dashboard's snapshots, taken once a second.
    pub dashboard: Arc<dashboard::Published>,
}

/// The status endpoints, open to all: they change nothing.
pub fn routes(status: &Arc<Status>) -> axum::Router {
    axum::Router::new()
        .route("/analyzer/stats", get(stats))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(status.clone())
        .merge(dashboard::routes(&status.dashboard))
}

/// `GET /analyzer/stats`.
pub async fn stats(State(status): State<Arc<Status>>) -> Json<Vec<AnalyzerStats>> {
    let fleet = &status.fleet;
    Json(fleet.shared.stats(fleet.routing.registry.stats()).await)
}

/// `GET /health`: 200 while serving.
pub async fn health(State(status): State<Arc<Status>>) -> Response {
    let fleet = &status.fleet;
    let online = fleet.routing.registry.online_count();
    let mut body = json!({"status": "ok", "analyzers_online": online});
    if let Some(up) = fleet.shared.redis_up() {
        body["redis"] = json!(if up { "up" } else { "down" });
    }
    Json(body).into_response()
}

/// `GET /ready`: Loki's readiness call, which Loki's clients and logdist's `loki` delivery
/// probe, so that a distributor (which takes Loki's push) can stand in for Loki. As Loki
/// answers it: 200 `ready` when a push would be taken, here when an analyzer is online;
/// else 503, as a push would be answered, with why.
pub async fn ready(State(status): State<Arc<Status>>) -> Response {
    if status.fleet.routing.registry.online_count() > 0 {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no analyzer online\n").into_response()
    }
}

/// `GET /metrics`: Prometheus text. The process's metrics, then each analyzer's, sampled
/// now from the members there are (see [`exposition`]).
pub async fn metrics(State(status): State<Arc<Status>>) -> Response {
    let routing = &status.fleet.routing;
    metrics::gauge!("logdist_idempotency_keys").set(status.idempotency.len() as f64);
    metrics::gauge!("logdist_analyzers").set(routing.registry.len() as f64);
    metrics::gauge!("logdist_parked_packets").set(routing.parked() as f64);
    let mut text = status.metrics.render();
    exposition::render(&routing.registry.snapshot(), &mut text);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// Unknown paths, counted in `logdist_rejected_total{reason="not_found"}`: an agent
/// configured with the wrong path shows there.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    metrics::counter!("logdist_rejected_total", "reason" => "not_found").increment(1);
    tracing::debug!(path = uri.path(), "Request to an unknown path.");
    ApiError::NotFound(
        "no such endpoint; see /health, /packets, /message/send, /v1/logs, /loki/api/v1/push, /_bulk, /analyzer/stats, /dashboard".to_owned(),
    )
}

/// A known path with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    metrics::counter!("logdist_rejected_total", "reason" => "method_not_allowed").increment(1);
    let allow = match uri.path() {
        "/analyzer/stats" | "/health" | "/ready" | "/metrics" => "GET",
        path if path.starts_with("/dashboard") => "GET",
        "/" | "/_cluster/health" | "/_license" => "GET, HEAD",
        path if path.ends_with("/_bulk") => "POST, PUT",
        _ => "POST",
    };
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
        allow,
    }
}
