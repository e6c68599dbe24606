//! `logdist`: one binary, four subcommands. Everything here is argument parsing and
//! wiring; the work is in the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use logdist::telemetry::{LogFormat, init_logs};
use logdist::{analyzer, distributor, shutdown_on_signals};
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A log distributor: routes packets of log messages to weighted analyzers, counting
/// shares in messages.
#[derive(Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log format on stderr (RUST_LOG sets the level, e.g. RUST_LOG=logdist=debug).
    #[arg(long, global = true, env = "LOGDIST_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive packets from agents and route each to one analyzer by weight.
    Distributor(distributor::DistributorArgs),
    /// Run an analyzer that registers itself with a distributor and counts what it gets.
    Analyzer(analyzer::AnalyzerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "Exiting on error.");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signals();
    match command {
        Command::Distributor(args) => {
            let listener = bind(args.listen).await?;
            distributor::run(args, listener, shutdown).await
        }
        Command::Analyzer(args) => {
            let listener = bind(args.listen_addr()).await?;
            analyzer::run(args, listener, shutdown).await
        }
    }
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}
