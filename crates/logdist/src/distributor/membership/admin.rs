//! `POST /analyzer/register` and `POST /analyzer/deregister`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::Fleet;
use super::admission::PerSource;
use crate::api::{Deregistration, Registration};
use crate::distributor::delivery::address::{AnalyzerUrl, check_id};
use crate::distributor::delivery::protocol::Kind;
use crate::distributor::routing::{RegisterError, Registered};
use crate::http::ApiError;
use crate::http::read_body;

/// Registration bodies are tiny; anything bigger is a mistake or an attack.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// What the registration endpoints share.
pub struct Admin {
    /// The members.
    pub fleet: Arc<Fleet>,
    /// Registrations that change membership, per source address (`--register-rate`).
    registrations: PerSource,
    /// `--register-rate`, for the refusal's words.
    register_rate: u32,
    /// How long a body may take to arrive (`--body-timeout`).
    body_timeout: Duration,
    /// The bearer token registration requires, if any.
    token: Option<Arc<str>>,
}

impl Admin {
    /// The endpoints of `fleet`, at most `register_rate` registrations a second from one
    /// address, bodies within `body_timeout`, behind `token` when there is one.
    pub fn new(
        fleet: Arc<Fleet>,
        register_rate: u32,
        body_timeout: Duration,
        token: Option<Arc<str>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            fleet,
            registrations: PerSource::new(register_rate),
            register_rate,
            body_timeout,
            token,
        })
    }

    /// Its routes, behind the admin token when one is set.
    pub fn routes(self: &Arc<Self>) -> axum::Router {
        let routes = axum::Router::new()
            .route("/analyzer/register", post(register))
            .route("/analyzer/deregister", post(deregister));
        crate::http::auth::guarded(routes, self.token.as_deref()).with_state(self.clone())
    }
}

/// `POST /analyzer/register`.
pub async fn register(
    State(admin): State<Arc<Admin>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, &headers, MAX_ADMIN_BODY, admin.body_timeout).await?;
    let reg: Registration = parse(&body, "registration")?;
    check_id(&reg.id).map_err(ApiError::BadRequest)?;
    logdist_core::routing::check_weight(reg.weight)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let protocol: Option<Kind> = reg
        .protocol
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let url: AnalyzerUrl = match (&reg.url, reg.port) {
        (Some(url), None) => url.parse().map_err(ApiError::BadRequest)?,
        (None, Some(0)) => {
            return Err(ApiError::BadRequest(
                "port 0 is not a port to send to".to_owned(),
            ));
        }
        (None, Some(port)) => {
            // On the caller's address, by the transport its protocol speaks.
            let scheme = match protocol {
                Some(Kind::Forward) => "tcp",
                _ => "http",
            };
            format!("{scheme}://{}", SocketAddr::new(peer.ip(), port))
                .parse()
                .map_err(ApiError::BadRequest)?
        }
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
    protocol
        .unwrap_or_default()
        .check_url(&url)
        .map_err(ApiError::BadRequest)?;
    // Rate-limited before the host is resolved: a flood of names that resolve slowly
    // must not tie up the resolver's threads.
    admit(&admin, peer.ip(), &reg.id, &url, reg.weight)?;
    let fleet = &admin.fleet;
    fleet
        .check_not_self(&url)
        .await
        .map_err(ApiError::BadRequest)?;
    let base = url.base.clone();
    // In cluster mode the fleet learns it first, so that a sync running meanwhile cannot
    // put back what Redis held before.
    fleet
        .shared
        .announce(&reg.id, &base, reg.weight, protocol)
        .await;
    let (outcome, member) = fleet
        .register(&reg.id, url, reg.weight, false, protocol)
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
            fleet.first_probe(&member).await;
            "added"
        }
        Registered::Updated => "updated",
        Registered::Unchanged => "unchanged",
    };
    let state = member.state().as_str();
    let protocol = member.protocol().as_str();
    Ok(Json(json!({
        "id": reg.id, "url": base, "weight": reg.weight, "registration": outcome, "state": state,
        "protocol": protocol,
    }))
    .into_response())
}

/// Lets a registration that adds or changes a member through if its source has not
/// spent `--register-rate`, and a new member only while there is room for it
/// (`--max-analyzers`). A keep-alive (the same registration again) always passes.
fn admit(
    admin: &Admin,
    source: IpAddr,
    id: &str,
    url: &AnalyzerUrl,
    weight: f64,
) -> Result<(), ApiError> {
    if !admin.fleet.routing.registry.would_change(id, url, weight) {
        return Ok(());
    }
    admin
        .registrations
        .take(source, Instant::now())
        .map_err(|wait| {
            metrics::counter!("logdist_registrations_refused_total", "reason" => "rate")
                .increment(1);
            ApiError::TooManyRequests {
                reason: format!(
                    "more than {} registrations a second from {source}; retry later",
                    admin.register_rate
                ),
                retry_after: wait,
            }
        })
}

/// `POST /analyzer/deregister`: stops routing to the analyzer at once, answers once its
/// queue is delivered (bounded by `--shutdown-grace`) so that an analyzer shutting down
/// knows nothing more is coming.
pub async fn deregister(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, &headers, MAX_ADMIN_BODY, admin.body_timeout).await?;
    let req: Deregistration = parse(&body, "deregistration")?;
    let drained =
        admin.fleet.deregister(&req.id).await.ok_or_else(|| {
            ApiError::NotFound(format!("no analyzer is registered as `{}`", req.id))
        })?;
    Ok(Json(json!({"id": req.id, "deregistered": true, "drained": drained})).into_response())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid {what}: {e}")))
}
