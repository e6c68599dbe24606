//! The distributor: agents send packets of log messages; each packet goes to one analyzer
//! so that analyzers receive shares of messages in proportion to their weights.
//!
//! A packet flows one way: `ingest` (read, decompress, validate) -> `registry`
//! (route, under one short lock) -> `lane` (batch into one body with [`batch`],
//! deliver) -> analyzer, and the acknowledgement flows straight back to the waiting agent.
//! `health` watches every analyzer; `admin` serves membership, stats and metrics.

mod admin;
mod admission;
pub mod batch;
mod cluster;
pub mod config;
mod exposition;
mod health;
mod idempotency;
mod ingest;
mod lane;
mod member;
mod parked;
mod registry;
mod self_loop;
mod tally;
mod via;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use batch::Batch;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use crate::http::ApiError;
pub use config::{AckMode, AnalyzerSpec, DistributorArgs};
use member::QueueLimits;
use registry::Registry;

use crate::http::server::{ServeOptions, serve};
use crate::http::{HttpClient, http_client};
use crate::workers::Workers;

/// The client of one worker's deliveries.
type DeliveryClient = HttpClient<Batch>;

/// What every handler and task of one distributor shares.
pub struct Shared {
    /// The flags it was started with.
    pub config: DistributorArgs,
    /// Where it listens (its own address, which no analyzer may have).
    listen: SocketAddr,
    /// Idempotency keys of recent packets.
    idempotency: Arc<idempotency::Keys>,
    /// Members and routing.
    registry: Registry,
    /// Probes.
    client: HttpClient,
    /// The worker threads: each serves its connections and runs one lane per analyzer.
    workers: Arc<Workers>,
    /// Deliveries, one keep-alive pool per worker, so that a delivery's connection is
    /// driven on the thread that sends on it.
    lane_clients: Vec<DeliveryClient>,
    /// Set when shutdown begins: new packets get 503. A flag, not a cancellation token:
    /// every packet reads it, and a token's state sits behind a lock both workers take.
    shutting_down: AtomicBool,
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
    /// The fleet on Redis, in cluster mode.
    cluster: Option<Arc<cluster::Cluster>>,
    /// `logdist_packets_received_total`, registered once: ingest counts every packet.
    packets_received: metrics::Counter,
    /// `logdist_messages_received_total`.
    messages_received: metrics::Counter,
    /// Registrations that change membership, per source address (`--register-rate`).
    registrations: admission::PerSource,
    /// Health probes over all analyzers (`--probe-rate`).
    probes: crate::pacer::Pacer,
    /// Accepted packets waiting for an analyzer to take them again (see [`parked`]).
    parked: parked::Parked,
    /// `Authorization` for deliveries and probes: the admin token, which analyzers
    /// register with and so know (an analyzer with `--token` requires it on `/packets`).
    analyzer_auth: Option<http::HeaderValue>,
    /// This distributor's id in `Logdist-Via` (see [`via`]): random, new at each start.
    via: Arc<str>,
    /// `Logdist-Via` with this distributor's id alone.
    via_header: http::HeaderValue,
}

impl Shared {
    fn new(
        config: DistributorArgs,
        listen: SocketAddr,
        workers: Arc<Workers>,
    ) -> anyhow::Result<Arc<Self>> {
        let cluster = match &config.redis {
            Some(url) => Some(cluster::Cluster::new(
                url,
                &config.redis_prefix,
                config
                    .instance_id
                    .clone()
                    .unwrap_or_else(|| default_instance_id(listen)),
                config.lease_ttl,
                config.sync_interval,
            )?),
            None => None,
        };
        let tls = crate::http::tls::client_config(config.tls_ca.as_deref())?;
        let via = via::new_id();
        let via_header = http::HeaderValue::from_str(&via).context("a hex id is a header value")?;
        Ok(Arc::new(Self {
            cluster,
            client: http_client(config.probe_timeout, tls.clone()),
            lane_clients: (0..workers.len())
                .map(|_| http_client(config.probe_timeout, tls.clone()))
                .collect(),
            registry: Registry::new(
                QueueLimits {
                    lanes: workers.len(),
                    packets: config.queue_packets,
                    concurrency: config.lane_concurrency,
                },
                config.queue_bytes.as_u64() as usize,
                config.queue_wait,
                config.max_analyzers as usize,
            ),
            via,
            via_header,
            parked: parked::Parked::new(config.queue_packets.max(1024)),
            registrations: admission::PerSource::new(config.register_rate),
            probes: crate::pacer::Pacer::new(f64::from(config.probe_rate)),
            analyzer_auth: config
                .admin_token()
                .map(|token| format!("Bearer {token}").parse())
                .transpose()
                .context("the admin token is not a valid header value")?,
            listen,
            workers,
            idempotency: idempotency::Keys::new(config.idempotency_window, config.idempotency_keys),
            config,
            shutting_down: AtomicBool::new(false),
            metrics: crate::telemetry::metrics().clone(),
            packets_received: metrics::counter!("logdist_packets_received_total"),
            messages_received: metrics::counter!("logdist_messages_received_total"),
        }))
    }

    /// Routes a job and queues it on the lane of the worker the caller runs on (see
    /// [`Registry::dispatch`]): a packet stays on the thread that read it.
    fn dispatch(&self, job: member::Job) -> Result<(), (member::Job, member::Refusal)> {
        self.registry.dispatch(job, self.workers.here())
    }

    /// The delivery client of worker `lane`.
    fn lane_client(&self, lane: usize) -> &DeliveryClient {
        &self.lane_clients[lane % self.lane_clients.len()]
    }

    /// Registers an analyzer (see [`Registry::register`]) and starts the lanes (one on
    /// each worker) and the health watcher of a new member.
    fn register(
        self: &Arc<Self>,
        id: &str,
        url: config::AnalyzerUrl,
        weight: f64,
        pinned: bool,
    ) -> Result<(registry::Registered, Arc<member::Member>), registry::RegisterError> {
        let (outcome, new) = self.registry.register(id, url, weight, pinned)?;
        let member = match new {
            Some((member, queues)) => {
                for (index, queue) in queues.into_iter().enumerate() {
                    let lane = lane::run(self.clone(), member.clone(), queue, index);
                    self.workers.spawn_on(index, lane);
                }
                tokio::spawn(health::watch(self.clone(), member.clone()));
                member
            }
            None => self.registry.member(id).ok_or_else(|| {
                registry::RegisterError::Draining(format!("analyzer `{id}` left meanwhile"))
            })?,
        };
        Ok((outcome, member))
    }

    /// Waits (at most a probe's timeout and a little more) for a member's first probe, and
    /// says whether it is online.
    async fn first_probe(&self, member: &member::Member) -> bool {
        let wait = self.config.probe_timeout + Duration::from_millis(500);
        let _ = tokio::time::timeout(wait, member.probed.cancelled()).await;
        member.state() == member::State::Online
    }

    /// Makes the local membership match the fleet's (cluster mode): adds and updates what
    /// the fleet has, drains and removes what it no longer has. Pinned members stay.
    fn reconcile(
        self: &Arc<Self>,
        desired: &std::collections::BTreeMap<String, (config::AnalyzerUrl, f64)>,
    ) {
        for (id, (url, weight)) in desired {
            if let Err(e) = self.register(id, url.clone(), *weight, false) {
                tracing::debug!(analyzer = %id, error = %e, "Not taking the fleet's registration yet.");
            }
        }
        for member in self.registry.members() {
            let gone = !desired.contains_key(member.id.as_ref());
            if gone && !member.pinned && member.state() != member::State::Draining {
                self.remove_in_background(&member.id);
            }
        }
    }

    /// Refuses an analyzer URL that reaches this distributor itself, by `--analyzer` or by
    /// registration: every packet routed there would come back in, forever. The host is
    /// resolved (as deliveries will resolve it) and every address it has is checked, so no
    /// spelling gets through; a host that does not resolve is refused too (see
    /// [`self_loop`]).
    async fn check_not_self(&self, url: &config::AnalyzerUrl) -> Result<(), String> {
        self_loop::check(url, self.listen).await
    }

    /// Stops routing to an analyzer, and removes it once its queue is delivered.
    fn remove_in_background(self: &Arc<Self>, id: &str) {
        if let Some(member) = self.registry.begin_deregister(id) {
            let shared = self.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(shared.config.shutdown_grace, member.drained.cancelled())
                        .await;
                shared.registry.remove(&member);
            });
        }
    }
}

/// The host name and port: unique per distributor even in containers, where every
/// distributor listens on the same 0.0.0.0:3000.
fn default_instance_id(listen: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", listen.port())
}

/// The distributor's routes. Ingest and registration sit behind their token checks, when
/// a token is set for them (without one, the check is not in the path at all).
pub fn app(shared: Arc<Shared>) -> Router {
    let guarded = |routes: Router<Arc<Shared>>, token: Option<&str>| match token {
        Some(token) => routes.route_layer(middleware::from_fn_with_state(
            Arc::<str>::from(token),
            crate::http::auth::require_token,
        )),
        None => routes,
    };
    let ingest = Router::new()
        .route("/packets", post(ingest::packets))
        .route("/message/send", post(ingest::message_send));
    let admin = Router::new()
        .route("/analyzer/register", post(admin::register))
        .route("/analyzer/deregister", post(admin::deregister));
    let ingest = guarded(ingest, shared.config.ingest_token());
    let admin = guarded(admin, shared.config.admin_token());
    Router::new()
        .merge(ingest)
        .merge(admin)
        .route("/analyzer/stats", get(admin::stats))
        .route("/health", get(admin::health))
        .route("/metrics", get(admin::metrics))
        .fallback(admin::not_found)
        .method_not_allowed_fallback(admin::method_not_allowed)
        .with_state(shared)
}

/// Runs a distributor on `listener` until `shutdown` is cancelled, then stops accepting,
/// answers the requests in flight, drains every queue and returns, all within
/// `--shutdown-grace`.
pub async fn run(
    config: DistributorArgs,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let workers =
        Workers::start(config.workers, "logdist-worker").context("starting the worker threads")?;
    let result = run_on(config, addr, listener, workers.clone(), shutdown).await;
    workers.shutdown().await;
    result
}

async fn run_on(
    config: DistributorArgs,
    addr: SocketAddr,
    listener: TcpListener,
    workers: Arc<Workers>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let shared = Shared::new(config, addr, workers.clone())?;
    let mut pinned = Vec::new();
    for spec in shared.config.analyzers.clone() {
        shared
            .check_not_self(&spec.url)
            .await
            .map_err(anyhow::Error::msg)?;
        let (_, member) = shared
            .register(&spec.id, spec.url, spec.weight, true)
            .map_err(|e| anyhow::anyhow!("--analyzer {}: {e}", spec.id))?;
        pinned.push(member);
    }
    // Serve once the analyzers given at start have answered their first probe (or not,
    // within the probe timeout), so that the first packets find them online.
    for member in &pinned {
        if !shared.first_probe(member).await {
            warn!(analyzer = %member.id, url = %member.url.base, "Not answering its health probe yet; routing to it once it does.");
        }
    }
    match (shared.config.ingest_token(), shared.config.admin_token()) {
        // On loopback only this machine can reach it: worth a word, not a warning.
        (None, None) if addr.ip().is_loopback() => {
            info!(%addr, "Open: no --token set, so anyone on this machine can send packets and register analyzers.");
        }
        (None, None) => {
            warn!(%addr, "Open: no --token set, so anyone who can reach this address can send packets and register analyzers.");
        }
        (None, Some(_)) => {
            warn!(%addr, "Ingest is open: no --token or --ingest-token set, so anyone who can reach this address can send packets.");
        }
        (Some(_), None) => {
            warn!(%addr, "Registration is open: no --token or --admin-token set, so anyone who can reach this address can register analyzers.");
        }
        (Some(_), Some(_)) => {}
    }
    let tls = match (&shared.config.tls_cert, &shared.config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::http::tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(%addr, scheme, ack = ?shared.config.ack, validate = ?shared.config.validate, workers = workers.len(), "Distributor listening.");

    let stop_parked = CancellationToken::new();
    let parked_task = tokio::spawn(parked::retry(shared.clone(), stop_parked.clone()));
    let stop_cluster = CancellationToken::new();
    let cluster_task = shared.cluster.clone().map(|cluster| {
        info!(redis = ?shared.config.redis, prefix = %shared.config.redis_prefix, "Cluster mode: sharing membership and counts on Redis.");
        tokio::spawn(cluster.run(shared.clone(), stop_cluster.clone()))
    });
    let grace = shared.config.shutdown_grace;
    let stopping = shutdown.clone();
    let options = ServeOptions {
        tls,
        header_timeout: shared.config.header_timeout,
        max_connections: shared.config.max_connections,
    };
    let server = tokio::spawn(serve(
        listener,
        app(shared.clone()),
        ingest::Express(shared.clone()),
        options,
        workers.clone(),
        stopping,
    ));
    shutdown.cancelled().await;
    info!(
        ?grace,
        "Shutting down: answering requests in flight, then draining queues."
    );
    shared.shutting_down.store(true, Ordering::Release);
    let deadline = tokio::time::Instant::now() + grace;
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "Server task failed."),
        Err(_) => warn!("Grace period over with requests still in flight."),
    }
    let members = shared.registry.members();
    for member in &members {
        member.retire.cancel();
    }
    for member in &members {
        if tokio::time::timeout_at(deadline, member.drained.cancelled())
            .await
            .is_err()
        {
            warn!(analyzer = %member.id, "Grace period over before this analyzer's queue drained.");
        }
    }
    stop_parked.cancel();
    let _ = parked_task.await;
    stop_cluster.cancel();
    if let Some(task) = cluster_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    info!("Distributor stopped.");
    Ok(())
}
