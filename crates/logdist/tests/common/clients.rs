//! What the tests of real clients share (`otlp.rs`, `loki.rs`, `shippers.rs`,
//! `on_invalid.rs`): a distributor in the test's process with analyzers writing journals,
//! what the analyzers received, the distributor's received counters, and running a client
//! script whose report is JSON on its standard output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::inproc::{InProc, Running};
use super::{Http, metric, online};

/// Held by every test that sends while it runs: the distributors of one test process count
/// into one recorder, and `cargo test` runs a file's tests side by side in one process, so
/// counting a test's packets by the counters' change needs no other test sending.
pub static SENDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A distributor started with `flags` and two analyzers of weight 0.5 writing their
/// journals in `dir`; returns them once both are online, with the journals' paths.
pub async fn distributor_and_analyzers(
    dir: &Path,
    flags: &[&str],
) -> (Running, Vec<Running>, Vec<PathBuf>) {
    let distributor = InProc::distributor(flags).await;
    let mut analyzers = Vec::new();
    let mut journals = Vec::new();
    for id in [1, 2] {
        let journal = dir.join(format!("journal_{id}.ndjson"));
        let path = journal.to_str().unwrap().to_owned();
        analyzers.push(InProc::analyzer(id, 0.5, &distributor.url, &["--journal", &path]).await);
        journals.push(journal);
    }
    Http::new()
        .wait_stats(&distributor.url, "two analyzers online", |s| {
            online(s, &["analyzer_1", "analyzer_2"])
        })
        .await;
    (distributor, analyzers, journals)
}

/// Every message the analyzers wrote to their journals.
pub fn received(journals: &[PathBuf]) -> Vec<Value> {
    read_journals(journals).unwrap_or_else(|line| panic!("a journal line is not JSON: {line}"))
}

/// Every message in the journals, or the first line that is not JSON: one an analyzer
/// is writing at the moment, when a client sends on its own schedule.
fn read_journals(journals: &[PathBuf]) -> Result<Vec<Value>, String> {
    let mut messages = Vec::new();
    for path in journals {
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            messages.push(serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?);
        }
    }
    Ok(messages)
}

/// Waits until the journals hold `count` messages (at most `timeout`), for clients that
/// send on their own schedule, and returns them. Fails the test if more arrive, or if
/// fewer have by the deadline; `client` names the client in the message, with whatever
/// it has to say (its log).
pub async fn wait_received(
    journals: &[PathBuf],
    count: usize,
    timeout: Duration,
    client: impl Fn() -> String,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        // A line being written is read again at the next look.
        let messages = read_journals(journals).unwrap_or_default();
        assert!(
            messages.len() <= count,
            "{} messages arrived, {count} were sent: {}",
            messages.len(),
            client()
        );
        if messages.len() == count {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} messages arrived within {timeout:?}: {}",
            messages.len(),
            client()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `logdist_packets_received_total` and `logdist_messages_received_total` of
/// `distributor`.
pub async fn received_totals(http: &Http, distributor: &str) -> (f64, f64) {
    let text = http.get(&format!("{distributor}/metrics")).await.text();
    (
        metric(&text, "logdist_packets_received_total"),
        metric(&text, "logdist_messages_received_total"),
    )
}

/// Runs `python3 SCRIPT ARGS...` (a client driver of `tests/python/`) off the async
/// workers, and returns the JSON report it prints. Fails the test, with the script's
/// standard error, if it fails or prints something else; `what` names it in the message.
pub async fn run_python(script: &str, args: &[String], what: &str) -> Value {
    let mut command = Command::new("python3");
    command.arg(script).args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("could not run python3 ({e}): install Python 3 and run .ci/run's pip install")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}): {stderr}",
        output.status
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the report of {what} is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Node's Fluent forward client, `@fluent-org/logger`, at the version `.ci/run` installs.
const NODE_LOGGER: &str = "@fluent-org/logger@1.0.10";

/// The script that sends with it (see its header).
const NODE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/fluent_ack.js");

/// Where `@fluent-org/logger` is installed, installing it there first if it is not.
pub fn node_modules() -> PathBuf {
    let prefix = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node");
    let modules = prefix.join("node_modules");
    if !modules.join("@fluent-org/logger/package.json").exists() {
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(NODE_LOGGER)
            .status()
            .unwrap_or_else(|e| panic!("could not run npm ({e}): install Node.js and npm"));
        assert!(status.success(), "npm install {NODE_LOGGER} failed");
    }
    modules
}

/// Sends `events` events tagged `tag` with `@fluent-org/logger` (from `modules`) to the
/// forward listener on `port` in `mode`, with acknowledgements, and `env` for the script
/// (`FLUENT_SHARED_KEY`, `FLUENT_TLS_CA`). Its JSON report and its standard error.
pub async fn run_node_logger(
    modules: &Path,
    port: u16,
    events: usize,
    mode: &str,
    tag: &str,
    env: &[(&str, &str)],
) -> (Value, String) {
    let mut command = Command::new("node");
    command.env("NODE_PATH", modules).args([
        NODE_SCRIPT,
        &port.to_string(),
        &events.to_string(),
        mode,
        tag,
    ]);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("node runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{mode}: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    (report, stderr)
}
