//! `logdist`: one binary, five subcommands. Everything here is argument parsing and
//! wiring; the work is in the library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use logdist::telemetry::{LogFormat, init_logs};
use logdist::{analyzer, demo, distributor, loadgen, shutdown_on_signals, top};
use tokio::net::TcpListener;

/// A log distributor: routes packets of log messages to weighted analyzers, counting
/// shares in messages.
#[derive(Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log format on stderr (RUST_LOG sets the level, e.g. RUST_LOG=logdist=debug).
    #[arg(
        long,
        global = true,
        env = "LOGDIST_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive packets from agents and route each to one analyzer by weight.
    // Boxed: the distributor's flags are many times the size of the other commands'.
    Distributor(Box<distributor::DistributorArgs>),
    /// Run an analyzer that registers itself with a distributor and counts what it gets.
    Analyzer(analyzer::AnalyzerArgs),
    /// Simulate many agents sending packets; report throughput, latency and shares.
    Loadgen(loadgen::LoadgenArgs),
    /// Run a distributor, three analyzers (0.5/0.3/0.2) and the load generator together,
    /// show live shares, and stop one analyzer half-way to show them re-normalize.
    Demo(demo::DemoArgs),
    /// Watch a distributor in the terminal: its rates and one row per analyzer, live.
    Top(top::TopArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo and the load generator draw their own output; keep logs to warnings there.
    let quiet = matches!(
        cli.command,
        Command::Demo(_) | Command::Loadgen(_) | Command::Top(_)
    );
    init_logs(cli.log_format, if quiet { "warn" } else { "info" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
            distributor::run(*args, listener, shutdown).await
        }
        Command::Analyzer(args) => {
            let listener = bind(args.listen_addr().map_err(anyhow::Error::msg)?).await?;
            analyzer::run(args, listener, shutdown).await
        }
        Command::Loadgen(args) => match args.write_bodies.clone() {
            Some(path) => {
                let bodies = loadgen::write_bodies(&args, &path).await?;
                tracing::info!(bodies, file = %path.display(), "Packets written.");
                Ok(())
            }
            None => {
                let report = loadgen::run(args, shutdown).await?;
                report.print_summary();
                Ok(())
            }
        },
        Command::Demo(args) => demo::run(args, shutdown).await,
        Command::Top(args) => top::run(args, shutdown).await,
    }
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// A container is configured by its environment: every flag of every subcommand has a
    /// variable.
    #[test]
    fn every_flag_has_an_environment_variable() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        for command in std::iter::once(&cli).chain(cli.get_subcommands()) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_positional() && arg.get_env().is_none() {
                    missing.push(format!("{} --{}", command.get_name(), arg.get_id()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "flags without an environment variable: {missing:?}"
        );
    }
}
