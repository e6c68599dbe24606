//! The distributor itself stopped under load. SIGTERM: it stops accepting, delivers or
//! refuses what it holds, answers every waiting agent and exits 0 within its grace period.
//! SIGKILL and a restart: agents that retry lose nothing (`--ack delivered`: an agent was
//! answered 200 only for packets an analyzer had acknowledged).
//!
//! Rerun: `cargo test -p logdist --test restart -- --nocapture` (prints the books).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::ledger::{balance, read_journals, read_trace};
use common::*;

/// Two analyzers with journals, served on fixed addresses and known to the distributor
/// by `--analyzer` (so a restarted distributor routes at once).
fn analyzers(dir: &std::path::Path) -> (Vec<Proc>, Vec<String>, Vec<PathBuf>) {
    let mut procs = Vec::new();
    let mut specs = Vec::new();
    let mut journals = Vec::new();
    for (id, weight) in [(1, 0.6), (2, 0.4)] {
        let journal = dir.join(format!("analyzer_{id}.journal"));
        let (proc, listen) = spawn_server(dir, &format!("analyzer_{id}"), |listen| {
            [
                "analyzer",
                "--id",
                &id.to_string(),
                "--listen",
                listen,
                "--no-register",
                "--journal",
                journal.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec()
        });
        specs.push(format!("analyzer_{id}=http://{listen}@{weight}"));
        procs.push(proc);
        journals.push(journal);
    }
    (procs, specs, journals)
}

fn distributor_args<'a>(listen: &'a str, specs: &'a [String]) -> Vec<&'a str> {
    let mut args = vec![
        "distributor",
        "--listen",
        listen,
        "--shutdown-grace",
        "5s",
        "--probe-interval",
        "200ms",
    ];
    for spec in specs {
        args.extend(["--analyzer", spec.as_str()]);
    }
    args
}

fn loadgen(dir: &std::path::Path, url: &str, trace: &std::path::Path, extra: &[&str]) -> Proc {
    let mut args = vec![
        "loadgen",
        "--target",
        url,
        "--agents",
        "16",
        "--packet-size",
        "1..50",
        "--timeout",
        "10s",
        "--trace",
        trace.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    spawn(dir, "loadgen", &args)
}

#[test]
fn sigterm_under_load_answers_every_agent_and_exits_0_within_the_grace() {
    let dir = scratch("sigterm");
    let (_analyzers, specs, journals) = analyzers(&dir);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut distributor = spawn_at(&dir, "distributor", &distributor_args(&listen, &specs));
    let trace = dir.join("trace.ndjson");
    let mut loadgen = loadgen(
        &dir,
        &format!("http://{listen}"),
        &trace,
        // As fast as the agents can: the SIGTERM finds requests in flight.
        &["--duration", "8s"],
    );

    std::thread::sleep(Duration::from_secs(4));
    let stopping = Instant::now();
    distributor.signal("TERM");
    let status = distributor.wait_exit(Duration::from_secs(10));
    let took = stopping.elapsed();
    eprintln!("sigterm: the distributor exited {status} {took:?} after SIGTERM");
    assert!(status.success(), "{}", distributor.log_text());
    assert!(
        took <= Duration::from_secs(6),
        "took {took:?}, grace is 5 s"
    );
    assert!(distributor.log_text().contains("Distributor stopped."));

    let status = loadgen.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", loadgen.log_text());
    let traced = read_trace(&trace);
    let books = balance(&traced, &read_journals(&journals));
    let mut failures: std::collections::BTreeMap<String, u64> = Default::default();
    for packet in &traced {
        if let Some(kind) = &packet.failure {
            *failures.entry(kind.clone()).or_default() += 1;
        }
    }
    eprintln!("sigterm: {books}; failures by kind {failures:?}");
    assert!(
        books.lost.is_empty(),
        "lost: {:?}",
        &books.lost[..5.min(books.lost.len())]
    );
    assert!(books.packets_acked > 500, "{books}");
    // Every agent waiting at the SIGTERM was answered: nobody waited out its timeout.
    assert_eq!(failures.get("timeout"), None, "{failures:?}");
    // After the exit, agents are refused at connect: nothing was accepted and left behind.
    assert!(
        failures.get("connect").is_some_and(|n| *n > 0),
        "{failures:?}"
    );
}

#[test]
fn sigkill_and_restart_under_load_loses_nothing_for_agents_that_retry() {
    let dir = scratch("sigkill");
    let (_analyzers, specs, journals) = analyzers(&dir);
    let listen = format!("127.0.0.1:{}", free_port());
    let args = distributor_args(&listen, &specs);
    let distributor = spawn_at(&dir, "distributor", &args);
    let trace = dir.join("trace.ndjson");
    let mut loadgen = loadgen(
        &dir,
        &format!("http://{listen}"),
        &trace,
        &[
            "--rate",
            "400",
            "--packets",
            "6000",
            "--retries",
            "100",
            "--idempotency-keys",
        ],
    );

    std::thread::sleep(Duration::from_secs(4));
    distributor.signal("KILL");
    std::thread::sleep(Duration::from_millis(1500));
    let _restarted = spawn_at(&dir, "distributor.2", &args);

    let status = loadgen.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{}", loadgen.log_text());
    let books = balance(&read_trace(&trace), &read_journals(&journals));
    eprintln!("sigkill: {books}");
    assert_eq!(books.packets_sent, 6000, "{books}");
    assert_eq!(
        books.packets_acked, 6000,
        "every packet gets through: {books}"
    );
    assert!(
        books.lost.is_empty(),
        "lost: {:?}",
        &books.lost[..5.min(books.lost.len())]
    );
    assert!(
        books.retries > 0,
        "the kill must have made agents retry: {books}"
    );
}
