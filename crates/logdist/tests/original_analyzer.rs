//! The original project's analyzer, unchanged, behind logdist: a Flask analyzer that
//! behaves exactly like `analyzer/analyzer.py` (`tests/python/original_analyzer.py`:
//! registers by `port` before it listens, serves only `POST /message/process`, no
//! `/packets`, no `/health`), started as ORIGIN.md says (`ANALYZER_ID`, `ANALYZER_WEIGHT`,
//! `DISTRIBUTOR_URL`), beside two logdist analyzers. Nothing tells the distributor its
//! protocol: the distributor detects it.
//!
//! Flask is installed by `.ci/run`; without it (or without `python3`) the test fails and
//! says what to install.
//!
//! Rerun: `cargo nextest run -p logdist --test original_analyzer`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::clients::*;
use common::*;
use hyper::StatusCode;
use serde_json::Value;

/// Messages a packet.
const PACKET: u64 = 10;

/// Starts the Flask analyzer as the original is started, with `ANALYZER_ID=4` and
/// `ANALYZER_WEIGHT=0.5` (see [`common::original::start_original`]).
fn start_4(dir: &Path, distributor: &str, port: u16, received: &Path, run: u32) -> Proc {
    let name = format!("original_analyzer_{run}");
    common::original::start_original(dir, &name, 4, 0.5, distributor, port, received)
}

/// The `seq` of every message in `files` (the journals, and the Flask analyzer's file),
/// with how many times each arrived. Lines being written at the moment are skipped.
fn seqs(files: &[PathBuf]) -> HashMap<u64, u32> {
    let mut seen = HashMap::new();
    for path in files {
        for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
            if let Some(seq) = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|m| m["seq"].as_u64())
            {
                *seen.entry(seq).or_insert(0) += 1;
            }
        }
    }
    seen
}

/// Lines of one file.
fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

/// Sends messages `first..first+count` in packets of [`PACKET`] from 8 agents at once;
/// returns the first message of every packet answered 200. `during` is called with each
/// packet's number before it is sent.
async fn send(
    distributor: &str,
    first: u64,
    count: u64,
    during: impl Fn(u64) + Send + Sync + 'static,
) -> Vec<u64> {
    let during = Arc::new(during);
    let agents = 8;
    let mut tasks = Vec::new();
    for agent in 0..agents {
        let distributor = distributor.to_owned();
        let during = during.clone();
        tasks.push(tokio::spawn(async move {
            let http = Http::new();
            let mut acked = Vec::new();
            let mut number = agent;
            while number * PACKET < count {
                let start = first + number * PACKET;
                during(number);
                if let Ok(answer) = http
                    .try_request(
                        hyper::Method::POST,
                        &format!("{distributor}/packets"),
                        &[("content-type", "application/x-ndjson")],
                        packet(start, PACKET),
                        Duration::from_secs(30),
                    )
                    .await
                    && answer.status == StatusCode::OK
                {
                    acked.push(start);
                }
                number += agents;
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked
}

/// Waits until every message in `acked` packets is in `files` (at most 30 s); returns
/// what arrived.
async fn wait_all(files: &[PathBuf], acked: &[u64], what: &str) -> HashMap<u64, u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = seqs(files);
        let missing: Vec<u64> = acked
            .iter()
            .flat_map(|&first| first..first + PACKET)
            .filter(|seq| !seen.contains_key(seq))
            .collect();
        if missing.is_empty() {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} acknowledged messages never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_analyzer_gets_its_share_unchanged_and_loses_nothing_when_killed() {
    let dir = scratch("original_analyzer");
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &[]).await;
    let http = Http::new();
    let port = free_port();
    let received = dir.join("original_received.ndjson");
    let mut original = start_4(&dir, &distributor.url, port, &received, 1);

    // It registered by port before it listened, and comes online once it listens, by the
    // `message` protocol, which the distributor found on its own.
    let stats = http
        .wait_stats(&distributor.url, "the original analyzer online", |s| {
            online(s, &["analyzer_1", "analyzer_2", "analyzer_4"])
        })
        .await;
    let a4 = stats.iter().find(|a| a.id == "analyzer_4").unwrap();
    assert_eq!(a4.protocol, "message", "{stats:#?}");
    assert_eq!(a4.url, format!("http://127.0.0.1:{port}"));
    for a in stats.iter().filter(|a| a.id != "analyzer_4") {
        assert_eq!(a.protocol, "logdist");
    }
    let log = original.log_text();
    let registered = log
        .find("Registered with the distributor")
        .unwrap_or_else(|| panic!("it did not register: {log}"));
    let listening = log.find("Running on").unwrap_or(usize::MAX);
    assert!(
        registered < listening,
        "registered after it listened: {log}"
    );
    assert!(
        log[registered..].contains(r#""state":"unhealthy""#),
        "nothing listened at its first probe, so it registered unhealthy: {log}"
    );

    // 3,000 messages in packets of 10: each analyzer gets its share, a third, within the
    // contract's bound, and every message arrives once.
    let mut all = journals.clone();
    all.push(received.clone());
    let acked = send(&distributor.url, 0, 3_000, |_| {}).await;
    assert_eq!(acked.len(), 300, "every packet acknowledged");
    let seen = wait_all(&all, &acked, "shares").await;
    assert_eq!(seen.len(), 3_000);
    assert!(
        seen.values().all(|&n| n == 1),
        "duplicates without a failure"
    );
    let stats = http.stats(&distributor.url).await;
    assert_shares_within(&stats, PACKET);
    let a4 = stats.iter().find(|a| a.id == "analyzer_4").unwrap();
    assert_eq!(a4.messages_total as usize, lines(&received));
    assert!(
        (a4.messages_sent as f64 - 1_000.0).abs() <= PACKET as f64,
        "{a4:?}"
    );
    let metrics = http
        .get(&format!("{}/metrics", distributor.url))
        .await
        .text();
    assert!(
        metrics.contains(
            r#"logdist_analyzer_state{analyzer="analyzer_4",state="online",protocol="message"} 1"#
        ),
        "{metrics}"
    );

    // SIGKILLed mid-run: nothing acknowledged to an agent is lost.
    let pid = original.pid();
    let acked = send(&distributor.url, 10_000, 3_000, move |packet| {
        if packet == 80 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    })
    .await;
    original.wait_exit(Duration::from_secs(10));
    assert!(
        acked.len() >= 250,
        "most packets acknowledged: {}",
        acked.len()
    );
    wait_all(&all, &acked, "after SIGKILL").await;

    // Restarted as it was, it registers again and comes back.
    let _original = start_4(&dir, &distributor.url, port, &received, 2);
    let stats = http
        .wait_stats(&distributor.url, "the original analyzer back", |s| {
            online(s, &["analyzer_1", "analyzer_2", "analyzer_4"])
        })
        .await;
    assert!(
        stats
            .iter()
            .any(|a| a.id == "analyzer_4" && a.protocol == "message")
    );
    let before = lines(&received);
    let acked = send(&distributor.url, 20_000, 600, |_| {}).await;
    assert_eq!(acked.len(), 60);
    wait_all(&all, &acked, "after the restart").await;
    assert!(lines(&received) > before, "it receives again");

    // Ctrl-C: it deregisters at exit (atexit), and is gone from the stats.
    let mut original = _original;
    original.signal("INT");
    original.wait_exit(Duration::from_secs(15));
    http.wait_stats(&distributor.url, "the original analyzer gone", |s| {
        !s.iter().any(|a| a.id == "analyzer_4")
    })
    .await;
    drop(distributor);
}

/// Given, the protocol needs no detection: with `--analyzer ID=URL@W;protocol=message`
/// (the Flask analyzer's own registration goes nowhere here), and in a registration's
/// `"protocol"`. An unknown protocol is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_protocol_is_used_as_given() {
    let dir = scratch("original_analyzer_given");
    let port = free_port();
    let received = dir.join("original_received.ndjson");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let _original = start_4(&dir, &nowhere, port, &received, 1);
    let spec = format!("analyzer_4=http://127.0.0.1:{port}@1;protocol=message");
    let distributor = common::inproc::InProc::distributor(&["--analyzer", &spec]).await;
    let http = Http::new();
    let stats = http
        .wait_stats(&distributor.url, "the original analyzer online", |s| {
            online(s, &["analyzer_4"])
        })
        .await;
    assert_eq!(stats[0].protocol, "message");
    let acked = send(&distributor.url, 0, 200, |_| {}).await;
    assert_eq!(acked.len(), 20);
    wait_all(
        std::slice::from_ref(&received),
        &acked,
        "given by --analyzer",
    )
    .await;

    let register = |body: Value| {
        let http = Http::new();
        let url = format!("{}/analyzer/register", distributor.url);
        async move { http.post(&url, "application/json", body.to_string()).await }
    };
    let url = format!("http://127.0.0.1:{port}");
    let answer = register(serde_json::json!({
        "id": "analyzer_5", "weight": 1.0, "url": url, "protocol": "message"
    }))
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["protocol"], "message");
    let answer = register(serde_json::json!({
        "id": "analyzer_6", "weight": 1.0, "url": url, "protocol": "pigeon"
    }))
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.text().contains("logdist, message"),
        "{}",
        answer.text()
    );
    let stats = http
        .wait_stats(&distributor.url, "both online", |s| {
            online(s, &["analyzer_4", "analyzer_5"])
        })
        .await;
    assert!(stats.iter().all(|a| a.protocol == "message"), "{stats:#?}");
    drop(distributor);
}

/// A `message` analyzer that fails one message of a packet: the messages it acknowledged
/// before it are not sent again; only the rest of the packet is routed to the other
/// analyzer, and the agent gets 200 once all of it is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_messages_not_acknowledged_are_routed_again() {
    let dir = scratch("original_analyzer_partial");
    let port = free_port();
    let received = dir.join("failing_received.ndjson");
    let log = dir.join("failing.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/failing_message_analyzer.py"
        ))
        .env("PORT", port.to_string())
        .env("FAIL_SEQ", "17")
        .env("RECEIVED_FILE", &received)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("could not run python3: {e}"));
    let _failing = Proc {
        child,
        name: "failing_message_analyzer".to_owned(),
        log,
    };
    // One message in flight at a time, so that none is in doubt at the failure; the
    // failing analyzer's weight makes it take the first packet.
    let spec = format!("analyzer_9=http://127.0.0.1:{port}@100;protocol=message");
    let distributor =
        common::inproc::InProc::distributor(&["--analyzer", &spec, "--message-concurrency", "1"])
            .await;
    let journal = dir.join("journal_1.ndjson");
    let _analyzer = common::inproc::InProc::analyzer(
        1,
        0.01,
        &distributor.url,
        &["--journal", journal.to_str().unwrap()],
    )
    .await;
    let http = Http::new();
    http.wait_stats(&distributor.url, "both online", |s| {
        online(s, &["analyzer_1", "analyzer_9"])
    })
    .await;
    let answer = http.send_packet(&distributor.url, 10, 10).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["analyzer"], "analyzer_1", "{}", answer.text());
    let at_failing: Vec<u64> = seqs(std::slice::from_ref(&received)).into_keys().collect();
    let mut at_failing = at_failing;
    at_failing.sort_unstable();
    assert_eq!(at_failing, (10..17).collect::<Vec<_>>());
    let mut at_logdist: Vec<u64> = seqs(std::slice::from_ref(&journal)).into_keys().collect();
    at_logdist.sort_unstable();
    assert_eq!(at_logdist, [17, 18, 19], "only what was not acknowledged");
    drop(distributor);
}
