//! The load generator (`logdist loadgen`): many simulated agents posting realistic log
//! packets to a distributor, then a summary of what was acknowledged, how fast, and how
//! the distributor shared the messages among its analyzers.
//!
//! This module owns the run as a whole: it builds the pool of bodies (`pool`, from
//! `messages`, written in the `--protocol`'s form by `encode`), starts the agents (`agent`), stops them at the duration, the packet
//! count or the caller's shutdown, drains what is in flight, reads the distributor's
//! analyzer stats (`stats`) and assembles the [`Report`] (`report`). Live totals
//! are in [`Counters`], which an in-process caller (the `demo` subcommand) can pass in
//! and read while the run goes on.
//!
//! A stop never cuts requests off abruptly: agents stop starting new packets, those in
//! flight (resends included, with `--retries`) get [`DRAIN_GRACE`] (at most `--timeout`)
//! to be answered, and any left after that count as failed (with the kind `aborted` if
//! a request was in flight), so sent = acked + failed always holds.
//!
//! For fault tests, `--trace` gives every message a unique id (`ids`) and records each
//! packet's final outcome (`trace`); `--retries` resends what a busy or unreachable
//! distributor did not take (`retry`), and `--idempotency-keys` lets it recognise the
//! resends.

mod agent;
mod args;
mod attempt;
mod conn;
mod counters;
mod encode;
mod forward;
mod ids;
mod messages;
mod outcome;
mod plan;
mod pool;
mod progress;
mod protocol;
mod report;
mod retry;
mod stats;
mod syslog;
mod templates;
mod trace;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use http::{HeaderValue, Uri};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use args::{
    DEFAULT_DURATION, Encoding, Endpoint, LoadgenArgs, MAX_PACKET_SIZE, PacketSize,
    PacketSizeError, parse_duration,
};
pub use counters::{CounterSnapshot, Counters};
pub use ids::{IdPrefix, IdPrefixError, MAX_ID_PREFIX_LEN};
pub use protocol::Protocol;
pub use report::{Latency, Report, StopReason};
pub use trace::{TraceLine, TraceOutcome};

use crate::pacer::Pacer;
use conn::Target;
use plan::{Budget, Plan};
use pool::PacketPool;
use progress::{Goal, Progress};
use report::Measured;
use trace::TraceWriter;

use crate::workers::Workers;

/// Longest wait for in-flight requests once the run stops.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How long to wait for `/analyzer/stats` at the end.
const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the load generator until the duration or packet count is reached or `shutdown`
/// is cancelled, then returns the report (also written to `--report` if given).
pub async fn run(args: LoadgenArgs, shutdown: CancellationToken) -> anyhow::Result<Report> {
    run_with_counters(args, shutdown, Arc::new(Counters::default())).await
}

/// Writes the pool of bodies a run with `args` would send to `path` (see
/// `--write-bodies`) and returns how many there are. NDJSON packets are each followed by an
/// empty line; the bodies of every other protocol (protobuf among them, where any byte may
/// occur) are each preceded by their length in bytes, in decimal, and a newline.
pub async fn write_bodies(args: &LoadgenArgs, path: &std::path::Path) -> anyhow::Result<usize> {
    if args.endpoint != Endpoint::Packets || args.encoding != Encoding::Identity {
        bail!(
            "--write-bodies writes uncompressed packets: use it without --endpoint message or --encoding"
        );
    }
    if args.trace.is_some() {
        bail!(
            "--write-bodies writes the packets as sent without --trace (which stamps ids per send): use one or the other"
        );
    }
    let (protocol, size) = (args.protocol, args.packet_size);
    let seed = args.seed.unwrap_or_else(rand::random);
    let pool = tokio::task::spawn_blocking(move || {
        PacketPool::generate(
            Endpoint::Packets,
            protocol,
            size,
            Encoding::Identity,
            seed,
            false,
        )
    })
    .await
    .context("generating packets")?
    .context("building the packet pool")?;
    let mut out = Vec::new();
    for i in 0..pool.len() {
        let body = &pool.get(i).body;
        if protocol == Protocol::Ndjson {
            out.extend_from_slice(body);
            out.push(b'\n');
        } else {
            out.extend_from_slice(format!("{}\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        }
    }
    tokio::fs::write(path, out)
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(pool.len())
}

/// [`run`], updating `counters` as it goes so the caller can show its own live view.
/// The report covers only this run even if `counters` was used before.
pub async fn run_with_counters(
    args: LoadgenArgs,
    shutdown: CancellationToken,
    counters: Arc<Counters>,
) -> anyhow::Result<Report> {
    let base = base_url(&args.target)?;
    if args.agents == 0 {
        bail!("at least one agent is needed");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number per second");
    }
    let duration = match (args.duration, args.packets) {
        (None, None) => Some(DEFAULT_DURATION),
        (duration, _) => duration,
    };
    let plan = Arc::new(plan(&args, &base, counters.clone(), shutdown.child_token()).await?);
    let trace = match &args.trace {
        Some(path) => Some(
            TraceWriter::create(path)
                .await
                .with_context(|| format!("creating the trace file {}", path.display()))?,
        ),
        None => None,
    };
    let latency_template = report::latency_histogram();
    tracing::info!(
        target_url = %plan.uri,
        protocol = ?args.protocol,
        agents = args.agents,
        packet_size = %args.packet_size,
        bodies = plan.pool.len(),
        ?duration,
        packets = ?args.packets,
        rate = ?args.rate,
        retries = args.retries,
        id_prefix = plan.ids.as_ref().map(IdPrefix::as_str),
        trace = ?args.trace,
        "Load generation starting."
    );

    let before = counters.snapshot();
    let goal = match args.packets {
        Some(n) => Goal::Packets(n),
        None => Goal::Time(duration.unwrap_or(DEFAULT_DURATION)),
    };
    let progress = Progress::start(counters.clone(), goal, args.quiet);
    let started = Instant::now();
    // Thread-per-core, as the distributor: each agent and its connection stay on one
    // worker, so a request and its answer never hop threads.
    let workers = Workers::start(0, "loadgen-worker").context("starting the worker threads")?;
    let agents: Vec<_> = (0..args.agents)
        .map(|index| {
            let agent = agent::run_agent(
                index,
                plan.clone(),
                latency_template.clone(),
                trace.as_ref().map(TraceWriter::sender),
            );
            workers.spawn_on(index, agent)
        })
        .collect();
    let grace = DRAIN_GRACE.min(args.timeout);
    let timer = tokio::spawn(stop_timer(
        duration,
        grace,
        plan.stop.clone(),
        plan.abort.clone(),
    ));

    let mut latency_us = latency_template;
    let mut failures = BTreeMap::new();
    let mut retries = 0;
    for joined in agents {
        let joined = joined.await;
        match joined {
            Ok(result) => {
                if let Err(e) = latency_us.add(&result.latency_us) {
                    tracing::warn!(%e, "Could not merge an agent's latencies.");
                }
                for (kind, n) in result.failures {
                    *failures.entry(kind).or_insert(0) += n;
                }
                retries += result.retries;
            }
            Err(e) => tracing::error!(%e, "An agent ended abnormally."),
        }
    }
    let elapsed = started.elapsed();
    workers.shutdown().await;
    let stopped_by = if shutdown.is_cancelled() {
        StopReason::Shutdown
    } else if plan.stop.is_cancelled() {
        StopReason::Duration
    } else {
        StopReason::Packets
    };
    plan.stop.cancel();
    timer.abort();
    // Every agent has stopped, so every line is queued: this writes and flushes them.
    let traced = match trace {
        Some(writer) => Some(writer.finish().await),
        None => None,
    };
    if let Some(progress) = progress {
        progress.finish().await;
    }

    let stats = stats::fetch(&agent::client(STATS_TIMEOUT), &base, STATS_TIMEOUT).await;
    if let Err(e) = &stats {
        tracing::warn!(error = %e, "Analyzer stats unavailable; the report has none.");
    }
    let totals = counters.snapshot().since(&before);
    let measured = Measured {
        stopped_by,
        totals,
        elapsed,
        latency_us,
        failures,
        retries,
        id_prefix: plan.ids.as_ref().map(|ids| ids.as_str().to_owned()),
    };
    let report = Report::new(&args, measured, stats);
    tracing::info!(
        packets_acked = report.packets_acked,
        packets_failed = report.packets_failed,
        retries = report.retries,
        messages_per_s = report.messages_per_s,
        "Load generation finished."
    );
    if let Some(path) = &args.report {
        report.write_json(path)?;
        tracing::info!(path = %path.display(), "Report written.");
    }
    if let (Some(traced), Some(path)) = (traced, &args.trace) {
        let lines = traced.with_context(|| format!("writing the trace file {}", path.display()))?;
        tracing::info!(path = %path.display(), lines, "Trace written.");
    }
    Ok(report)
}

/// Prepares what the agents share: the URL, the headers and the pool of bodies; `stop`
/// is a child of the caller's shutdown token.
async fn plan(
    args: &LoadgenArgs,
    base: &str,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> anyhow::Result<Plan> {
    let (path, content_type) = match args.endpoint {
        Endpoint::Packets => (args.protocol.path(), args.protocol.content_type()),
        Endpoint::Message if args.protocol == Protocol::Ndjson => {
            ("/message/send", "application/json")
        }
        Endpoint::Message => bail!(
            "--endpoint message sends logdist's own single messages: use it without --protocol"
        ),
    };
    if args.protocol.is_forward() {
        if args.forward_target.is_none() {
            bail!(
                "--protocol forward sends over TCP: give the distributor's --forward-listen address as --forward-target HOST:PORT"
            );
        }
        if args.encoding != Encoding::Identity || args.endpoint != Endpoint::Packets {
            bail!("--protocol forward takes neither --encoding nor --endpoint message");
        }
    }
    if args.trace.is_some() && args.protocol != Protocol::Ndjson {
        bail!("--trace stamps ids into logdist's NDJSON packets: use it without --protocol");
    }
    let syslog_target = syslog_target(args).await?;
    let uri: Uri = format!("{base}{path}")
        .parse()
        .with_context(|| format!("invalid target URL {base:?}"))?;
    let content_encoding = match (args.endpoint, args.encoding) {
        (_, Encoding::Identity) => None,
        (Endpoint::Message, _) => {
            tracing::warn!("--encoding applies to packets only; messages are sent uncompressed.");
            None
        }
        (Endpoint::Packets, Encoding::Gzip) => Some(HeaderValue::from_static("gzip")),
        (Endpoint::Packets, Encoding::Zstd) => Some(HeaderValue::from_static("zstd")),
    };
    let authorization = match &args.token {
        Some(token) => {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .context("--token holds characters not allowed in a header")?;
            value.set_sensitive(true);
            Some(value)
        }
        None => None,
    };
    let ids = (args.trace.is_some() || args.idempotency_keys)
        .then(|| args.id_prefix.clone().unwrap_or_else(IdPrefix::random));
    let stamped = args.trace.is_some();
    let (endpoint, protocol) = (args.endpoint, args.protocol);
    let (size, encoding) = (args.packet_size, args.encoding);
    let seed = args.seed.unwrap_or_else(rand::random);
    let pool = tokio::task::spawn_blocking(move || {
        PacketPool::generate(endpoint, protocol, size, encoding, seed, stamped)
    })
    .await
    .context("generating packets")?
    .context("building the packet pool")?;
    let target = Target::new(&uri).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    Ok(Plan {
        uri,
        target,
        protocol,
        syslog_target,
        forward_target: args.forward_target.clone(),
        content_type: HeaderValue::from_static(content_type),
        content_encoding,
        authorization,
        pool,
        // Stamped bodies are compressed per send; messages are never compressed.
        encoding: match endpoint {
            Endpoint::Packets => encoding,
            Endpoint::Message => Encoding::Identity,
        },
        ids,
        idempotency_keys: args.idempotency_keys,
        retries: args.retries,
        timeout: args.timeout,
        counters,
        budget: args.packets.map(Budget::new),
        pacer: args.rate.map(Pacer::new),
        stop,
        abort: CancellationToken::new(),
        logged: Mutex::default(),
    })
}

/// `--syslog-target`, resolved, for `--protocol syslog-*` (which needs it, and sends
/// packets as they are built: no `--endpoint message`, `--encoding` or `--trace`).
async fn syslog_target(args: &LoadgenArgs) -> anyhow::Result<Option<std::net::SocketAddr>> {
    if !args.protocol.is_syslog() {
        return Ok(None);
    }
    if args.endpoint != Endpoint::Packets || args.encoding != Encoding::Identity {
        bail!(
            "--protocol syslog-* sends packets as written: use it without --endpoint message or --encoding"
        );
    }
    let Some(target) = &args.syslog_target else {
        bail!(
            "--protocol syslog-* sends to --syslog-target HOST:PORT (the distributor's --syslog-listen)"
        );
    };
    let addr = tokio::net::lookup_host(target.as_str())
        .await
        .with_context(|| format!("--syslog-target {target:?}: expected HOST:PORT"))?
        .next()
        .with_context(|| format!("--syslog-target {target:?} resolves to no address"))?;
    Ok(Some(addr))
}

/// Cancels `stop` when `duration` is over (unless something else stopped the run
/// first), then `abort` once the drain grace is over too.
async fn stop_timer(
    duration: Option<Duration>,
    grace: Duration,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    match duration {
        Some(duration) => tokio::select! {
            _ = tokio::time::sleep(duration) => stop.cancel(),
            _ = stop.cancelled() => {}
        },
        None => stop.cancelled().await,
    }
    tokio::time::sleep(grace).await;
    abort.cancel();
}

/// Checks `--target` and returns it without a trailing slash, ready for a path.
fn base_url(target: &str) -> anyhow::Result<String> {
    let uri: Uri = target
        .parse()
        .with_context(|| format!("--target {target:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("--target {target:?}: scheme {other} is not supported, use http://"),
        None => bail!("--target {target:?} needs a scheme, e.g. http://127.0.0.1:3000"),
    }
    if uri.authority().is_none() {
        bail!("--target {target:?} has no host");
    }
    Ok(target.trim_end_matches('/').to_owned())
}
