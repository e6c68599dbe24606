//! The distributor: agents send packets of log messages; each packet goes to one analyzer
//! so that analyzers receive shares of messages in proportion to their weights.
//!
//! A packet flows one way through three stages, a folder each, and its acknowledgement
//! flows straight back to the agent waiting for it:
//!
//! ```text
//! agent ──▶ ingest ──▶ routing ──▶ delivery ──▶ analyzer
//!   ▲                                  │
//!   └────────── acknowledgement ◀──────┘
//! ```
//!
//! - `ingest/`: read a request, decode its format, hand the packet on, answer the agent.
//! - `routing/`: choose the analyzer by messages, under one short lock; route again what
//!   delivery hands back.
//! - `delivery/`: batch each analyzer's queue and send it by the analyzer's protocol.
//! - `membership/`, beside the flow: registration, health probes, and the state several
//!   distributors share (memory or Redis).
//! - `status/`: stats, health and metrics, read from every stage.
//!
//! `job.rs` is the packet in flight, which every stage speaks. [`config`] is the command
//! line; [`Distributor::new`] turns it into each stage's own settings, and no stage sees
//! it.

pub mod config;
mod delivery;
pub(crate) mod ingest;
mod job;
mod membership;
mod routing;
pub mod spool;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{AnalyzerSpec, DistributorArgs, SchemaMode, ValidateMode};
pub use delivery::batch;
pub use delivery::protocol::Kind as DeliveryProtocol;
pub use ingest::{AckMode, OnInvalid};
pub use status::dashboard::snapshot::{AnalyzerRow, DistributorView, Snapshot};

use crate::http::server::{ServeOptions, serve};
use crate::pacer::Pacer;
use crate::workers::Workers;
use delivery::elasticsearch::ElasticsearchBulk;
use delivery::forward::ForwardOut;
use delivery::loki::LokiPush;

use delivery::message::MessageProcess;
use delivery::ndjson::NdjsonPackets;
use delivery::otlp::OtlpLogs;
use delivery::protocol::Protocols;
use delivery::{HttpPeers, LaneSettings, Lanes, Outbound, Protocol, QueueLimits, via};
use ingest::{Ingest, IngestSettings, idempotency};
use membership::admin::Admin;
use membership::health::{ProbeSettings, Probes};
use membership::{Cluster, Fleet, SharedState};
use routing::{Registry, Routing};
use spool::Spool;
use status::Status;

/// One distributor: its stages, built from the command line and wired together.
pub struct Distributor {
    ingest: Arc<Ingest>,
    fleet: Arc<Fleet>,
    admin: Arc<Admin>,
    status: Arc<Status>,
    /// Where accepted packets wait until delivered (`--spool`).
    spool: Option<Arc<Spool>>,
}

impl Distributor {
    /// Builds every stage of a distributor listening on `listen` from its flags: the one
    /// place that reads them.
    pub fn new(
        config: &DistributorArgs,
        listen: SocketAddr,
        workers: Arc<Workers>,
    ) -> anyhow::Result<Self> {
        let tls = crate::http::tls::client_config(config.tls_ca.as_deref())?;
        let via = via::new_id();
        let outbound = Outbound {
            auth: config
                .admin_token()
                .map(|token| format!("Bearer {token}").parse())
                .transpose()
                .context("the admin token is not a valid header value")?,
            via_header: http::HeaderValue::from_str(&via).context("a hex id is a header value")?,
            via: via.clone(),
        };
        // Each HTTP protocol has its own pools: one per worker, and one for probes.
        let (pools, connect) = (workers.len(), config.probe_timeout);
        let ndjson: Arc<dyn Protocol> = Arc::new(NdjsonPackets::new(HttpPeers::new(
            pools,
            connect,
            &tls,
            outbound.clone(),
        )));
        let message: Arc<dyn Protocol> = Arc::new(MessageProcess::new(
            HttpPeers::new(pools, connect, &tls, outbound.clone()),
            config.message_concurrency as usize,
        ));
        let otlp: Arc<dyn Protocol> = Arc::new(OtlpLogs::new(
            HttpPeers::new(pools, connect, &tls, outbound.clone()),
            config.timestamp_unit,
        ));
        let elasticsearch: Arc<dyn Protocol> = Arc::new(ElasticsearchBulk::new(
            HttpPeers::new(pools, connect, &tls, outbound.clone()),
            config.elasticsearch_index.clone(),
            config.timestamp_unit,
        ));
        let loki: Arc<dyn Protocol> = Arc::new(LokiPush::new(
            HttpPeers::new(pools, connect, &tls, outbound.clone()),
            config.timestamp_unit,
        ));
        let forward: Arc<dyn Protocol> = Arc::new(ForwardOut::new(
            workers.len(),
            tls.clone(),
            config.forward_tag.clone(),
            config.timestamp_unit,
        ));
        // In the order of `Kind::ALL`.
        let protocols = Arc::new(Protocols::new(vec![
            ndjson,
            message,
            otlp,
            forward,
            elasticsearch,
            loki,
        ]));
        let registry = Registry::new(
            QueueLimits {
                lanes: workers.len(),
                packets: config.queue_packets,
                concurrency: config.lane_concurrency,
            },
            config.queue_bytes.as_u64() as usize,
            config.queue_wait,
            config.max_analyzers as usize,
        );
        let routing = Arc::new(Routing::new(
            registry,
            workers.clone(),
            config.queue_packets.max(1024),
            config.max_attempts,
        ));
        let lanes = Arc::new(Lanes {
            settings: LaneSettings {
                batch_bytes: config.batch_bytes.as_u64() as usize,
                delivery_timeout: config.delivery_timeout,
                eject_base: config.eject_base,
                eject_max: config.eject_max,
                concurrency: config.lane_concurrency,
            },
            protocols: protocols.clone(),
            routes: routing.clone(),
        });
        let probes = Arc::new(Probes {
            settings: ProbeSettings {
                interval: config.probe_interval,
                timeout: config.probe_timeout,
                unhealthy_after: config.unhealthy_after,
                healthy_after: config.healthy_after,
                forget_after: Some(config.forget_after).filter(|d| !d.is_zero()),
            },
            pacer: Pacer::new(f64::from(config.probe_rate)),
            routing: routing.clone(),
            protocols,
        });
        let shared = match &config.redis {
            Some(url) => SharedState::Redis(Cluster::new(
                url,
                &config.redis_prefix,
                config
                    .instance_id
                    .clone()
                    .unwrap_or_else(|| default_instance_id(listen)),
                config.lease_ttl,
                config.sync_interval,
            )?),
            None => SharedState::Memory,
        };
        let fleet = Fleet::new(
            routing.clone(),
            shared,
            lanes,
            probes,
            workers,
            listen,
            config.shutdown_grace,
        );
        let idempotency =
            idempotency::Keys::new(config.idempotency_window, config.idempotency_keys);
        // The metrics recorder first: the spool registers its metrics as it opens.
        crate::telemetry::metrics();
        let spool = config.spool()?.map(Spool::open).transpose()?;
        let ingest = Ingest::new(
            IngestSettings {
                ack: config.ack,
                validation: config.validate.into(),
                max_body: config.max_body.as_u64() as usize,
                body_timeout: config.body_timeout,
                token: config.ingest_token().map(Arc::from),
                schema: Arc::new(config.schema()?),
                unit: config.timestamp_unit,
                on_invalid: config.on_invalid,
            },
            routing,
            idempotency.clone(),
            via,
            config.dead_letter()?,
            spool.clone(),
        );
        let admin = Admin::new(
            fleet.clone(),
            config.register_rate,
            config.body_timeout,
            config.admin_token().map(Arc::from),
        );
        let metrics = crate::telemetry::metrics().clone();
        let status = Arc::new(Status {
            fleet: fleet.clone(),
            idempotency,
            dashboard: status::dashboard::snapshot::Sampler::start(&fleet, metrics.clone()),
            metrics,
        });
        Ok(Self {
            ingest,
            fleet,
            admin,
            status,
            spool,
        })
    }

    /// The distributor's routes: ingest's and registration's, each behind its token when
    /// one is set, and the status endpoints and the dashboard, open. A browser's `GET /`
    /// gets the dashboard, anything else's Elasticsearch's node info (see
    /// [`status::dashboard::negotiate`]).
    pub fn app(&self) -> Router {
        Router::new()
            .merge(self.ingest.routes())
            .merge(self.admin.routes())
            .merge(status::routes(&self.status))
            .fallback(status::not_found)
            .method_not_allowed_fallback(status::method_not_allowed)
            .layer(axum::middleware::from_fn(status::dashboard::negotiate))
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
    let distributor = Distributor::new(&config, addr, workers.clone())?;
    let fleet = &distributor.fleet;
    let mut pinned = Vec::new();
    for spec in config.analyzers.clone() {
        fleet
            .check_not_self(&spec.url)
            .await
            .map_err(anyhow::Error::msg)?;
        let (_, member) = fleet
            .register(&spec.id, spec.url, spec.weight, true, spec.protocol)
            .map_err(|e| anyhow::anyhow!("--analyzer {}: {e}", spec.id))?;
        pinned.push(member);
    }
    // Serve once the analyzers given at start have answered their first probe (or not,
    // within the probe timeout), so that the first packets find them online.
    for member in &pinned {
        if !fleet.first_probe(member).await {
            warn!(analyzer = %member.id, url = %member.url.base, "Not answering its health probe yet; routing to it once it does.");
        }
    }
    match (config.ingest_token(), config.admin_token()) {
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
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::http::tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(%addr, scheme, ack = ?config.ack, validate = ?config.validate, workers = workers.len(), "Distributor listening.");
    if let Some(redis) = &config.redis {
        info!(redis, prefix = %config.redis_prefix, "Sharing membership and counts on Redis.");
    }

    // Stream ingest (syslog) stops with the same token, and is waited for before the
    // queues are drained, so that what its connections read is delivered.
    let streams = ingest::stream::Streams::default();
    ingest::syslog::start(
        &distributor.ingest,
        &config.syslog_listen,
        config.syslog_max_message(),
        config.stream_settings(),
        &workers,
        &streams,
        &shutdown,
    )
    .await?;
    let stop_parked = CancellationToken::new();
    let parked_task = tokio::spawn(fleet.routing.clone().retry_parked(stop_parked.clone()));
    let spooled_task = distributor.spool.as_ref().map(|spool| {
        info!(dir = %spool.dir().display(), fsync = ?config.spool_fsync, max_bytes = %config.spool_max_bytes, "Spooling accepted packets.");
        let routing = fleet.routing.clone();
        tokio::spawn(routing.send_spooled(spool.clone(), stop_parked.clone()))
    });
    let stop_cluster = CancellationToken::new();
    let cluster_task = fleet.start_sync(stop_cluster.clone());
    let grace = config.shutdown_grace;
    let options = ServeOptions {
        tls,
        header_timeout: config.header_timeout,
        max_connections: config.max_connections,
    };
    let forward = match config.forward_listen {
        Some(forward_addr) => {
            let listener = TcpListener::bind(forward_addr)
                .await
                .with_context(|| format!("binding --forward-listen {forward_addr}"))?;
            let bound = listener.local_addr().unwrap_or(forward_addr);
            let auth = config.forward_shared_key.clone().map(|key| {
                let hostname = config
                    .forward_self_hostname
                    .clone()
                    .unwrap_or_else(ingest::forward::machine_hostname);
                info!(%hostname, "Fluent forward clients must handshake with the shared key.");
                Arc::new(logdist_core::forward::handshake::Server { hostname, key })
            });
            let settings = ingest::forward::ForwardSettings {
                idle_timeout: config.forward_idle_timeout,
                frame_timeout: config.body_timeout,
                auth,
                tls: options.tls.as_ref().map(crate::http::tls::without_alpn),
            };
            info!(addr = %bound, tls = settings.tls.is_some(), shared_key = settings.auth.is_some(), "Fluent forward listening.");
            Some(tokio::spawn(ingest::forward::serve(
                listener,
                distributor.ingest.clone(),
                settings,
                workers.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let server = tokio::spawn(serve(
        listener,
        distributor.app(),
        ingest::express::Express(distributor.ingest.clone()),
        options,
        workers.clone(),
        shutdown.clone(),
    ));
    shutdown.cancelled().await;
    info!(
        ?grace,
        "Shutting down: answering requests in flight, then draining queues."
    );
    distributor.ingest.stop_accepting();
    // Open dashboards' event streams end, so they do not hold the server's graceful end.
    distributor.status.dashboard.stop.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "Server task failed."),
        Err(_) => warn!("Grace period over with requests still in flight."),
    }
    streams.wait(deadline).await;
    if let Some(forward) = forward
        && tokio::time::timeout_at(deadline, forward).await.is_err()
    {
        warn!("Grace period over with forward connections still open.");
    }
    fleet.drain_all(deadline).await;
    stop_parked.cancel();
    let _ = parked_task.await;
    if let Some(task) = spooled_task {
        let _ = task.await;
    }
    if let Some(spool) = &distributor.spool {
        spool.close();
    }
    stop_cluster.cancel();
    if let Some(task) = cluster_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    info!("Distributor stopped.");
    Ok(())
}
