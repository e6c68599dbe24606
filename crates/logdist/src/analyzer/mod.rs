//! The analyzer service: receives NDJSON packets from a distributor, counts messages by
//! severity and source, and keeps itself registered while it runs.
//!
//! Life cycle: register (retrying until the distributor answers) -> re-register every
//! `--heartbeat` as a keep-alive -> on shutdown, deregister (the distributor answers once
//! it has stopped routing here and delivered what was queued), then finish the requests
//! in flight and exit.
//!
//! With a token (`--token`, or `--packets-token`) it takes packets only from whoever
//! holds it: the distributor sends its admin token with every delivery.

mod counts;
mod faults;
mod formats;
mod forward;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use bytesize::ByteSize;
use clap::Args;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::api::{Deregistration, Registration};
use crate::http::ApiError;
use crate::http::client::JsonClient;
use crate::http::server::{ServeOptions, serve};
pub use counts::{Counts, CountsSnapshot};

/// `logdist analyzer`: an analyzer that registers itself with a distributor.
#[derive(Debug, Clone, Args)]
pub struct AnalyzerArgs {
    /// Analyzer number (>= 1); it registers as `analyzer_{ID}` and listens on 3000+ID.
    #[arg(long, env = "ANALYZER_ID", value_parser = clap::value_parser!(u32).range(1..))]
    pub id: u32,

    /// Relative weight (> 0): its share of messages is its weight over the online total.
    #[arg(long, env = "ANALYZER_WEIGHT", default_value_t = 1.0, value_parser = parse_weight)]
    pub weight: f64,

    /// The distributor to register with.
    #[arg(long, env = "DISTRIBUTOR_URL", default_value = "http://127.0.0.1:3000")]
    pub distributor: String,

    /// Address to listen on [default: 127.0.0.1:{3000+ID}].
    #[arg(long, env = "ANALYZER_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Register with this base URL (http://HOST:PORT or https://...) instead of the port:
    /// for an analyzer that the distributor cannot reach at the address its registration
    /// comes from (behind NAT, a load balancer, or in a container). Without it the
    /// analyzer registers its port, and the distributor takes the host from the
    /// connection, as the original analyzer did.
    #[arg(long, env = "ANALYZER_URL")]
    pub advertise_url: Option<String>,

    /// Bearer token for registration (the distributor's admin token), if the distributor
    /// requires one. When set, `POST /packets` (and `PUT /faults`) require it too, unless
    /// --packets-token names another; `/health` and `/stats` stay open.
    #[arg(long, env = "LOGDIST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Bearer token `POST /packets` (and `PUT /faults`) require, when the distributor
    /// delivers with another token than --token [default: --token].
    #[arg(long, env = "ANALYZER_PACKETS_TOKEN", hide_env_values = true)]
    pub packets_token: Option<String>,

    /// How often to renew the registration.
    #[arg(long, env = "ANALYZER_HEARTBEAT", default_value = "5s", value_parser = crate::parse_duration)]
    pub heartbeat: Duration,

    /// Append every packet received to this file (NDJSON) before acknowledging it: an
    /// audit trail that survives the analyzer being killed.
    #[arg(long, env = "ANALYZER_JOURNAL")]
    pub journal: Option<PathBuf>,

    /// Largest packet accepted (a distributor batch can hold several agent packets).
    #[arg(long, env = "ANALYZER_MAX_BODY", default_value = "64MiB")]
    pub max_body: ByteSize,

    /// Do not register: serve only (for a distributor started with --analyzer).
    #[arg(long, env = "ANALYZER_NO_REGISTER", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_register: bool,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key); register with
    /// --advertise-url https://HOST:PORT naming a host the certificate is for.
    #[arg(long, env = "ANALYZER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "ANALYZER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Also trust these PEM certificates when registering with an https:// distributor.
    #[arg(long, env = "LOGDIST_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Register as speaking this delivery protocol: the analyzer takes every protocol a
    /// distributor delivers over HTTP (`logdist`, `message`, `otlp`, `elasticsearch`,
    /// `loki`; see `formats`), and this says which one to send it. Without it, the
    /// registration names none, and the distributor sends `logdist`.
    #[arg(long, env = "ANALYZER_PROTOCOL")]
    pub protocol: Option<crate::distributor::DeliveryProtocol>,

    /// Also take the Fluent forward protocol (TCP) on this address, acknowledging each
    /// frame's `chunk` once it is counted and journaled: the peer of the distributor's
    /// `forward` delivery protocol. Off by default.
    #[arg(long, env = "ANALYZER_FORWARD_LISTEN")]
    pub forward_listen: Option<std::net::SocketAddr>,

    /// Count messages (NDJSON lines) and packets only, without parsing them or counting by
    /// severity and source: the cheapest sink, for benchmarks.
    #[arg(long, env = "ANALYZER_COUNT_ONLY")]
    pub count_only: bool,

    /// Accept `PUT /faults` to make this analyzer answer errors or answer slowly on
    /// purpose: for fault-injection tests, never in production.
    #[arg(long, env = "ANALYZER_FAULTS")]
    pub faults: bool,
}

fn parse_weight(s: &str) -> Result<f64, String> {
    let w: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    logdist_core::routing::check_weight(w).map_err(|e| e.to_string())
}

impl AnalyzerArgs {
    /// The id it registers with.
    pub fn name(&self) -> String {
        format!("analyzer_{}", self.id)
    }

    /// Where it listens unless told otherwise: 127.0.0.1:{3000+ID}, as in the original.
    /// An ID whose port 3000+ID is past 65535 is refused, unless `--listen` names the
    /// address.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        if let Some(listen) = self.listen {
            return Ok(listen);
        }
        let port = 3000 + u64::from(self.id);
        let port = u16::try_from(port).map_err(|_| {
            format!(
                "ANALYZER_ID {} would listen on port {port}, past 65535: give an ID up to {} or --listen (ANALYZER_LISTEN)",
                self.id,
                u16::MAX - 3000
            )
        })?;
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// The token `POST /packets` requires, if any: --packets-token, else --token.
    pub fn packets_token(&self) -> Option<&str> {
        self.packets_token.as_deref().or(self.token.as_deref())
    }

    /// Defaults for an analyzer run in-process (demo, tests).
    pub fn new(id: u32, weight: f64, distributor: String) -> Self {
        Self {
            id,
            weight,
            distributor,
            listen: None,
            advertise_url: None,
            token: None,
            packets_token: None,
            heartbeat: Duration::from_secs(5),
            journal: None,
            max_body: ByteSize::mib(64),
            no_register: false,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            count_only: false,
            protocol: None,
            faults: false,
            forward_listen: None,
        }
    }
}

struct AppState {
    name: String,
    weight: f64,
    counts: Counts,
    journal: Option<Mutex<tokio::fs::File>>,
    max_body: usize,
    /// Injected faults, when `--faults` allows them.
    faults: Option<faults::Faults>,
    /// `--count-only`.
    count_only: bool,
    /// The bearer token `POST /packets` and `PUT /faults` require, if any.
    packets_token: Option<Arc<str>>,
}

/// How often a registration that keeps failing is logged again.
const REPEAT_LOG: Duration = Duration::from_secs(10);

/// A request body must arrive within this time.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A request's headers must arrive within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The analyzer's routes. With a token, what writes (packets, faults) sits behind its
/// check; without one, the check is not in the path at all.
fn app(state: Arc<AppState>) -> Router {
    let guarded = |route: MethodRouter<Arc<AppState>>| match &state.packets_token {
        Some(token) => route.route_layer(middleware::from_fn_with_state(
            token.clone(),
            crate::http::auth::require_token,
        )),
        None => route,
    };
    let mut router = formats::routes(guarded)
        .route("/packets", guarded(post(receive)))
        .route("/stats", get(stats))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }));
    if state.faults.is_some() {
        router = router.route(
            "/faults",
            get(faults::show).merge(guarded(put(faults::set))),
        );
    }
    router.with_state(state)
}

async fn receive(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let body = match crate::http::read_body(body, &headers, state.max_body, BODY_TIMEOUT).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    match take(&state, &headers, &body).await {
        Ok(messages) => Json(json!({"messages": messages})).into_response(),
        Err(refused) => refused,
    }
}

/// Takes a delivery's messages, as NDJSON, whatever protocol brought them: applies the
/// injected faults, refuses a delivery past its deadline, counts the messages (all or
/// none), and journals them before they are acknowledged. How many there were, or the
/// answer that refuses them.
async fn take(state: &AppState, headers: &HeaderMap, ndjson: &[u8]) -> Result<u64, Response> {
    if let Some(faults) = &state.faults
        && let Some(injected) = faults.apply().await
    {
        return Err(injected);
    }
    if let Some(late) = past_deadline(headers) {
        // The distributor has given up on this delivery and sent it elsewhere: keeping
        // it would count it twice.
        debug!(
            late_ms = late.as_millis() as u64,
            "Dropping a delivery past its deadline."
        );
        return Err((
            StatusCode::GATEWAY_TIMEOUT,
            Json(json!({"error": "the delivery's deadline has passed; the distributor re-routed it"})),
        )
            .into_response());
    }
    let tally = if state.count_only {
        Ok(counts::Tally::lines(ndjson))
    } else {
        counts::tally(ndjson)
    };
    let tally = tally.map_err(|e| ApiError::BadRequest(e).into_response())?;
    if let Some(journal) = &state.journal {
        let mut file = journal.lock().await;
        // `write_all` on a tokio file only hands the bytes to a background thread; `flush`
        // waits until they are in the kernel, where they survive this process being killed.
        if let Err(e) = async {
            file.write_all(ndjson).await?;
            file.flush().await
        }
        .await
        {
            warn!(error = %e, "Could not write the journal; refusing the packet.");
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "journal write failed"})),
            )
                .into_response());
        }
    }
    let messages = tally.messages;
    state.counts.add(tally);
    Ok(messages)
}

/// How late this delivery is, if the distributor's deadline header says it has passed.
fn past_deadline(headers: &HeaderMap) -> Option<Duration> {
    let deadline: u64 = headers
        .get(crate::api::DEADLINE_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis();
    let late = now.checked_sub(u128::from(deadline))?;
    (late > 0).then(|| Duration::from_millis(late as u64))
}

async fn stats(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let snapshot = state.counts.snapshot();
    Json(json!({
        "id": state.name,
        "weight": state.weight,
        "messages": snapshot.messages,
        "packets": snapshot.packets,
        "severity": snapshot.severity,
        "source": snapshot.source,
    }))
}

/// Runs an analyzer on `listener` until `shutdown` is cancelled, then deregisters,
/// finishes the packets in flight and returns.
pub async fn run(
    args: AnalyzerArgs,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let journal = match &args.journal {
        Some(path) => {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .with_context(|| format!("opening the journal {}", path.display()))?;
            Some(Mutex::new(file))
        }
        None => None,
    };
    let state = Arc::new(AppState {
        name: args.name(),
        weight: args.weight,
        counts: Counts::default(),
        journal,
        max_body: args.max_body.as_u64() as usize,
        faults: args.faults.then(faults::Faults::default),
        count_only: args.count_only,
        packets_token: args.packets_token().map(Arc::from),
    });
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            anyhow::ensure!(
                args.advertise_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("https://")),
                "with --tls-cert, give --advertise-url https://HOST:PORT naming a host the certificate is for"
            );
            Some(crate::http::tls::server_config(cert, key)?)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let token = state.packets_token.is_some();
    info!(id = %state.name, %addr, scheme, weight = args.weight, token, "Analyzer listening.");

    let server_stop = CancellationToken::new();
    let options = ServeOptions {
        tls,
        ..ServeOptions::plain(HEADER_TIMEOUT)
    };
    let server = tokio::spawn(serve(
        listener,
        app(state.clone()),
        (),
        options,
        crate::workers::Workers::current(),
        server_stop.clone(),
    ));

    let forward = match args.forward_listen {
        Some(forward_addr) => {
            let listener = TcpListener::bind(forward_addr)
                .await
                .with_context(|| format!("binding --forward-listen {forward_addr}"))?;
            info!(addr = %listener.local_addr().unwrap_or(forward_addr), "Analyzer taking Fluent forward.");
            Some(tokio::spawn(forward::serve(
                listener,
                state.clone(),
                server_stop.clone(),
            )))
        }
        None => None,
    };

    let client = JsonClient::new(
        Duration::from_secs(30),
        args.token.clone(),
        crate::http::tls::client_config(args.tls_ca.as_deref())?,
    );
    let registration = Registration {
        id: state.name.clone(),
        weight: args.weight,
        port: args.advertise_url.is_none().then_some(addr.port()),
        url: args.advertise_url.clone(),
        protocol: args.protocol.map(|p| p.to_string()),
    };
    let register_url = format!(
        "{}/analyzer/register",
        args.distributor.trim_end_matches('/')
    );
    if !args.no_register {
        tokio::select! {
            () = keep_registered(&client, &register_url, &registration, args.heartbeat) => {}
            () = shutdown.cancelled() => {}
        }
        deregister(&client, &args.distributor, &state.name).await;
    } else {
        shutdown.cancelled().await;
    }

    server_stop.cancel();
    server.await.context("analyzer server task")?;
    if let Some(forward) = forward {
        forward.await.context("analyzer forward task")?;
    }
    if let Some(journal) = &state.journal {
        journal
            .lock()
            .await
            .flush()
            .await
            .context("flushing the journal")?;
    }
    info!(id = %state.name, messages = state.counts.snapshot().messages, "Analyzer stopped.");
    Ok(())
}

/// Registers, retrying with backoff until the distributor answers, then renews the
/// registration every `heartbeat`. Runs until cancelled.
async fn keep_registered(
    client: &JsonClient,
    url: &str,
    registration: &Registration,
    heartbeat: Duration,
) {
    let mut registered = false;
    let mut backoff = Duration::from_millis(100);
    // Failed attempts are logged at once, then at most every REPEAT_LOG with the count
    // of those not logged in between.
    let mut last_log: Option<tokio::time::Instant> = None;
    let mut unlogged = 0u32;
    loop {
        match client.post(url, registration).await {
            Ok((status, _)) if status.is_success() => {
                if !registered {
                    info!(id = %registration.id, distributor = url, "Registered.");
                }
                registered = true;
                (backoff, last_log, unlogged) = (Duration::from_millis(100), None, 0);
                tokio::time::sleep(heartbeat).await;
            }
            outcome => {
                let refused = outcome.as_ref().ok().map(|(status, _)| *status);
                let error = match outcome {
                    Ok((status, body)) => format!("{status}: {}", String::from_utf8_lossy(&body)),
                    Err(e) => format!("{e:#}"),
                };
                if last_log.is_none_or(|at| at.elapsed() >= REPEAT_LOG) {
                    let action = if registered {
                        "Renewing the registration"
                    } else {
                        "Registering"
                    };
                    match refused {
                        Some(status) if matches!(status.as_u16(), 401 | 403) => {
                            error!(distributor = url, %error, also_failed = unlogged, "{action} was refused: the distributor wants a token (--token, LOGDIST_TOKEN) this analyzer does not have; retrying.");
                        }
                        _ => {
                            warn!(distributor = url, %error, also_failed = unlogged, "{action} failed; retrying.");
                        }
                    }
                    (last_log, unlogged) = (Some(tokio::time::Instant::now()), 0);
                } else {
                    unlogged += 1;
                }
                registered = false;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn deregister(client: &JsonClient, distributor: &str, name: &str) {
    let url = format!("{}/analyzer/deregister", distributor.trim_end_matches('/'));
    match client
        .post(
            &url,
            &Deregistration {
                id: name.to_owned(),
            },
        )
        .await
    {
        Ok((status, _)) if status.is_success() => info!(id = name, "Deregistered."),
        Ok((status, body)) => {
            warn!(%status, body = %String::from_utf8_lossy(&body), "Deregistration refused.")
        }
        Err(e) => warn!(error = %format!("{e:#}"), "Deregistration failed."),
    }
}
