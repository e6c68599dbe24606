//! `logdist demo`: the whole system in one process on free loopback ports. A distributor,
//! three analyzers weighted 0.5/0.3/0.2 and the load generator run together; every second
//! the demo prints each analyzer's share of messages against its target. Half-way through
//! it stops analyzer_1, which deregisters itself, and the other two re-normalize to
//! 0.6/0.4. It ends after `--duration` or on Ctrl-C; with `--hold`, it keeps the
//! distributor and the analyzers running after the load until Ctrl-C.
//!
//! The distributor's dashboard (`GET /` in a browser) shows the same live; the demo prints
//! its URL first, so it can be opened while the load runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::analyzer::{self, AnalyzerArgs};
use crate::api::AnalyzerStats;
use crate::distributor::{self, DistributorArgs};
use crate::http::client::JsonClient;
use crate::loadgen::{self, Counters, LoadgenArgs, PacketSize};

/// `logdist demo`: see the module docs.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// How long the load runs.
    #[arg(long, env = "LOGDIST_DEMO_DURATION", default_value = "20s", value_parser = crate::parse_duration)]
    pub duration: Duration,

    /// When to stop analyzer_1 [default: half of --duration].
    #[arg(long, env = "LOGDIST_DEMO_STOP_AFTER", value_parser = crate::parse_duration)]
    pub stop_after: Option<Duration>,

    /// Concurrent simulated agents.
    #[arg(long, env = "LOGDIST_DEMO_AGENTS", default_value_t = 16)]
    pub agents: usize,

    /// Messages per packet: N or MIN..MAX.
    #[arg(long, env = "LOGDIST_DEMO_PACKET_SIZE", default_value = "1..200")]
    pub packet_size: PacketSize,

    /// Packets per second over all agents [default: as fast as the machine goes].
    #[arg(long, env = "LOGDIST_DEMO_RATE")]
    pub rate: Option<f64>,

    /// Keep the distributor, its dashboard and the analyzers running after the load ends,
    /// until Ctrl-C.
    #[arg(long, env = "LOGDIST_DEMO_HOLD")]
    pub hold: bool,

    /// Where the distributor (and its dashboard) listens [default: a free loopback port].
    #[arg(long, env = "LOGDIST_DEMO_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

const ANALYZERS: [(u32, f64); 3] = [(1, 0.5), (2, 0.3), (3, 0.2)];

/// Runs the demo until its duration is over or `shutdown` is cancelled.
pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the distributor to {}", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop_distributor = CancellationToken::new();
    let distributor = tokio::spawn(distributor::run(
        DistributorArgs::with_listen(listener.local_addr()?),
        listener,
        stop_distributor.clone(),
    ));

    let mut analyzers: Vec<(CancellationToken, JoinHandle<anyhow::Result<()>>)> = Vec::new();
    for (id, weight) in ANALYZERS {
        let listener = TcpListener::bind(loopback)
            .await
            .context("binding an analyzer")?;
        let mut a = AnalyzerArgs::new(id, weight, url.clone());
        a.listen = Some(listener.local_addr()?);
        a.heartbeat = Duration::from_secs(1);
        let stop = CancellationToken::new();
        analyzers.push((stop.clone(), tokio::spawn(analyzer::run(a, listener, stop))));
    }

    let client = JsonClient::new(
        Duration::from_secs(5),
        None,
        crate::http::tls::client_config(None)?,
    );
    let stats_url = format!("{url}/analyzer/stats");
    wait_for_analyzers(&client, &stats_url, &shutdown).await?;
    println!("logdist demo: distributor at {url}, analyzers analyzer_1/2/3 weighted 0.5/0.3/0.2.");
    println!("Dashboard: {url}/ in a browser, or `logdist top --url {url}` in a terminal.");
    println!(
        "Sending packets of {} messages from {} agents for {:?}. Each line: share of messages (target).\n",
        args.packet_size, args.agents, args.duration
    );

    let counters = Arc::new(Counters::default());
    let load_stop = shutdown.child_token();
    let load = tokio::spawn(loadgen::run_with_counters(
        LoadgenArgs {
            target: url.clone(),
            agents: args.agents,
            packet_size: args.packet_size,
            duration: Some(args.duration),
            rate: args.rate,
            quiet: true,
            ..LoadgenArgs::default()
        },
        load_stop,
        counters.clone(),
    ));

    let started = Instant::now();
    let stop_after = args.stop_after.unwrap_or(args.duration / 2);
    let mut stopped_one = false;
    let mut last = (Instant::now(), counters.snapshot().messages_acked);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !load.is_finished() {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let acked = counters.snapshot().messages_acked;
        let rate = (acked - last.1) as f64 / last.0.elapsed().as_secs_f64();
        last = (Instant::now(), acked);
        if let Ok(stats) = client.get::<Vec<AnalyzerStats>>(&stats_url).await {
            println!(
                "{}",
                line(started.elapsed(), acked, rate, &stats, args.packet_size.max)
            );
        }
        if !stopped_one && started.elapsed() >= stop_after {
            stopped_one = true;
            println!(
                "\n>>> Stopping analyzer_1 (weight 0.5). It deregisters itself; analyzer_2 and analyzer_3 re-normalize to 0.6 / 0.4.\n"
            );
            analyzers[0].0.cancel();
        }
    }

    let report = load.await.context("load generator task")??;
    println!();
    report.print_summary();
    if args.hold && !shutdown.is_cancelled() {
        println!("\nHolding: the dashboard stays at {url}/ until Ctrl-C.");
        shutdown.cancelled().await;
    }
    for (stop, _) in &analyzers {
        stop.cancel();
    }
    for (_, task) in analyzers {
        task.await.context("analyzer task")??;
    }
    stop_distributor.cancel();
    distributor.await.context("distributor task")??;
    Ok(())
}

async fn wait_for_analyzers(
    client: &JsonClient,
    stats_url: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(stats) = client.get::<Vec<AnalyzerStats>>(stats_url).await
            && stats.iter().filter(|a| a.state == "online").count() == ANALYZERS.len()
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the analyzers did not register within 10 s"
        );
        anyhow::ensure!(!shutdown.is_cancelled(), "interrupted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One line of the live view: time, throughput, each analyzer's share against its
/// target, and the largest deviation from the targets in messages against the bound.
fn line(
    elapsed: Duration,
    acked: u64,
    rate: f64,
    stats: &[AnalyzerStats],
    largest_packet: u32,
) -> String {
    let total: u64 = stats.iter().map(|a| a.messages_sent).sum();
    let mut out = format!(
        "{:>4.0}s {:>12} msgs acked {:>10} msg/s |",
        elapsed.as_secs_f64(),
        crate::thousands(acked),
        crate::thousands(rate as u64)
    );
    let mut worst: f64 = 0.0;
    for a in stats {
        if a.state == "online" {
            out.push_str(&format!(
                " {} {:>5.1}% ({:>4.1}%)",
                a.id,
                a.share * 100.0,
                a.target_share * 100.0
            ));
            worst = worst.max((a.messages_sent as f64 - a.target_share * total as f64).abs());
        } else {
            out.push_str(&format!(" {} {}", a.id, a.state));
        }
    }
    out.push_str(&format!(
        " | max off {worst:.0} msgs (bound {largest_packet})"
    ));
    out
}
