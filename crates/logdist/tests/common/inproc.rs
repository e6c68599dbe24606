//! In-process servers: a distributor or an analyzer run as a task of the test's own tokio
//! runtime, through the same `run` functions and flags as `logdist distributor` and
//! `logdist analyzer`. Each gets a listener on port 0, bound before it starts, so its
//! address is known at once and nobody can take it meanwhile. What needs a process of its
//! own (a signal, a restart, a kill) uses [`super::distributor`] and [`super::analyzer`].
//!
//! Metrics: `logdist::telemetry::metrics()` is one recorder per process, so every
//! distributor of a test process counts into the same series. nextest runs each test in
//! a process of its own; `cargo test` runs the tests of a binary side by side in one. A
//! test that reads `/metrics` therefore compares [`super::metric`] before and after what
//! it does, instead of reading totals.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use logdist::analyzer::AnalyzerArgs;
use logdist::distributor::DistributorArgs;
use tokio::net::TcpListener;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Http;

/// How long a server may take to stop: the distributor's shutdown grace (10 s by
/// default) and a margin.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// How long a server may take to answer its first request.
const START_WAIT: Duration = Duration::from_secs(15);

/// `logdist distributor`'s flags.
#[derive(Parser)]
struct DistributorFlags {
    #[command(flatten)]
    args: DistributorArgs,
}

/// `logdist analyzer`'s flags.
#[derive(Parser)]
struct AnalyzerFlags {
    #[command(flatten)]
    args: AnalyzerArgs,
}

/// Starts servers in the test's runtime.
pub struct InProc;

impl InProc {
    /// A distributor started with `flags` (those of `logdist distributor`, without
    /// `--listen`), probing every 200 ms unless the flags say otherwise, as
    /// [`super::distributor`] starts one.
    pub async fn distributor(flags: &[&str]) -> Running {
        let mut all = Vec::new();
        if !flags.contains(&"--probe-interval") {
            all.extend(["--probe-interval", "200ms"]);
        }
        all.extend_from_slice(flags);
        let mut args = parse::<DistributorFlags>(&all).args;
        let listener = bind().await;
        let addr = listener.local_addr().unwrap();
        args.listen = addr;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(logdist::distributor::run(args, listener, shutdown.clone()));
        Running::started("distributor", addr, shutdown, task).await
    }

    /// An analyzer registering with `distributor` and renewing every 500 ms, as
    /// [`super::analyzer`] starts one.
    pub async fn analyzer(id: u32, weight: f64, distributor: &str, extra: &[&str]) -> Running {
        let (id, weight) = (id.to_string(), weight.to_string());
        let mut flags = vec![
            "--id",
            &id,
            "--weight",
            &weight,
            "--distributor",
            distributor,
            "--heartbeat",
            "500ms",
        ];
        flags.extend_from_slice(extra);
        Self::analyzer_with(&flags).await
    }

    /// An analyzer started with exactly `flags` (those of `logdist analyzer`, without
    /// `--listen`): e.g. a sink with `--no-register` for `--analyzer`.
    pub async fn analyzer_with(flags: &[&str]) -> Running {
        let mut args = parse::<AnalyzerFlags>(flags).args;
        let listener = bind().await;
        let addr = listener.local_addr().unwrap();
        args.listen = Some(addr);
        let name = args.name();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(logdist::analyzer::run(args, listener, shutdown.clone()));
        Running::started(&name, addr, shutdown, task).await
    }
}

/// Parses `flags` as the subcommand's command line.
fn parse<P: Parser>(flags: &[&str]) -> P {
    P::try_parse_from(std::iter::once("logdist").chain(flags.iter().copied()))
        .unwrap_or_else(|e| panic!("flags {flags:?}: {e}"))
}

/// A listener on a free loopback port, and the test's log output (once per process).
async fn bind() -> TcpListener {
    init_logs();
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Logs of the servers go to the test's captured output, shown when it fails.
/// `RUST_LOG` overrides the level.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("logdist=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

/// A server running as a task of the test. [`stop`](Self::stop) stops it and returns
/// how its `run` ended; dropping it stops it too, so no server outlives its test.
pub struct Running {
    /// `distributor` or the analyzer's id, for messages.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://{addr}`.
    pub url: String,
    /// What SIGTERM cancels in the process.
    shutdown: CancellationToken,
    /// Its `run`; taken when it is stopped.
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Waits until the server answers on `/health`; fails the test with the server's
    /// error if it ends first.
    async fn started(
        name: &str,
        addr: SocketAddr,
        shutdown: CancellationToken,
        task: JoinHandle<anyhow::Result<()>>,
    ) -> Self {
        let mut running = Self {
            name: name.to_owned(),
            addr,
            url: format!("http://{addr}"),
            shutdown,
            task: Some(task),
        };
        let http = Http::new();
        let deadline = Instant::now() + START_WAIT;
        loop {
            if http
                .try_get(&format!("{}/health", running.url))
                .await
                .is_some()
            {
                return running;
            }
            if running.task.as_ref().is_some_and(JoinHandle::is_finished) {
                match running.task.take().unwrap().await {
                    Ok(Ok(())) => panic!("{name} returned before serving"),
                    Ok(Err(e)) => panic!("{name} failed to start: {e:#}"),
                    Err(e) => panic!("{name} panicked: {e}"),
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not answer within {START_WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops it as SIGTERM stops the process (an analyzer deregisters, a distributor
    /// drains its queues) and returns how `run` ended. Fails the test if `run` panics or
    /// takes longer than [`STOP_WAIT`].
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().expect("a server is stopped once");
        match tokio::time::timeout(STOP_WAIT, task).await {
            Ok(Ok(ended)) => ended,
            Ok(Err(e)) => panic!("{} panicked: {e}", self.name),
            Err(_) => panic!("{} did not stop within {STOP_WAIT:?}", self.name),
        }
    }
}

impl Drop for Running {
    /// Stops the server and waits for it, as [`Running::stop`] does. A drop cannot await,
    /// so it blocks this thread while the runtime's other threads run the shutdown: on a
    /// multi-threaded runtime (every test here is one). On a single-threaded runtime
    /// nothing else could run the shutdown, so the task is aborted instead.
    fn drop(&mut self) {
        self.shutdown.cancel();
        let Some(task) = self.task.take() else {
            return;
        };
        let abort = task.abort_handle();
        let ended = match Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| {
                    handle.block_on(tokio::time::timeout(STOP_WAIT, task))
                })
            }
            _ => {
                abort.abort();
                return;
            }
        };
        if ended.is_err() {
            abort.abort();
        }
        if std::thread::panicking() {
            // The test has failed already; its own message is the one to read.
            return;
        }
        match ended {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("{} ended with an error: {e:#}", self.name),
            Ok(Err(e)) => panic!("{} panicked: {e}", self.name),
            Err(_) => panic!("{} did not stop within {STOP_WAIT:?}", self.name),
        }
    }
}
