//! Fluent forward on `--forward-listen`, sent by real clients: Python's `fluent-logger`
//! (Message mode, EventTime) and Node's `@fluent-org/logger` with acknowledgements in each
//! of the four modes; and hostile bytes written by hand, each of which closes its own
//! connection with a metric while the listener keeps serving.
//!
//! `fluent-logger` is installed by `.ci/run` (pip); `@fluent-org/logger` is installed by
//! this test with npm into the target directory when it is not there yet (its version is
//! pinned below and in `.ci/run`).
//!
//! Rerun: `cargo nextest run -p logdist --test forward`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::clients::*;
use common::inproc::InProc;
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PYTHON_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/fluent_forward.py"
);

/// The severities the scripts' levels map to (`LEVELS[i % 5]`).
const SEVERITIES: [&str; 5] = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// Flags of a distributor listening for forward on a free port; returns them and the port.
fn forward_flags(extra: &[&str]) -> (Vec<String>, u16) {
    let port = free_port();
    let mut flags = vec!["--forward-listen".to_owned(), format!("127.0.0.1:{port}")];
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    (flags, port)
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// Checks that `messages` are events 0..n of the scripts, each once, mapped: the tag as
/// the source, the level as the severity, `seq` kept.
fn assert_events(mut messages: Vec<Value>, n: usize, tag: &str) {
    messages.sort_by_key(|m| m["seq"].as_u64());
    assert_eq!(messages.len(), n);
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m["seq"], i, "{m}");
        assert_eq!(m["message"], format!("event {i}"), "{m}");
        assert_eq!(m["source"], tag, "{m}");
        assert_eq!(m["severity"], SEVERITIES[i % 5], "{m}");
        assert!(m["timestamp"].as_i64().unwrap() > 1_700_000_000_000, "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_fluent_logger_events_arrive_mapped() {
    let _sending = SENDING.lock().await;
    let dir = scratch("forward_python");
    let http = Http::new();
    let (flags, port) = forward_flags(&[]);
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &strs(&flags)).await;
    let before = received_totals(&http, &distributor.url).await;
    let events = 200;
    for nanos in [true, false] {
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--events".to_owned(),
            (events / 2).to_string(),
            "--tag".to_owned(),
            "pyapp".to_owned(),
        ];
        if nanos {
            args.push("--nanoseconds".to_owned());
        }
        let report = run_python(PYTHON_SCRIPT, &args, "the fluent-logger script").await;
        assert_eq!(report["sent"], events / 2, "{report}");
        assert_eq!(report["failed"], 0, "{report}");
    }
    // Each run sent seq 0..100: tell them apart by the run.
    let messages = wait_received(&journals, events, Duration::from_secs(20), || {
        "fluent-logger".to_owned()
    })
    .await;
    let (mut first, mut second): (Vec<Value>, Vec<Value>) = (Vec::new(), Vec::new());
    for m in messages {
        // The EventTime run has milliseconds; seconds end in 000 (both may, rarely).
        if first.iter().any(|f: &Value| f["seq"] == m["seq"]) {
            second.push(m);
        } else {
            first.push(m);
        }
    }
    assert_events(first, events / 2, "pyapp.app");
    assert_events(second, events / 2, "pyapp.app");
    // Message mode: one event a frame, a packet each.
    let after = received_totals(&http, &distributor.url).await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (events as f64, events as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_logger_acknowledged_events_arrive_in_every_mode() {
    let modules = node_modules();
    let _sending = SENDING.lock().await;
    let dir = scratch("forward_node");
    let http = Http::new();
    let (flags, port) = forward_flags(&["--ack", "delivered"]);
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &strs(&flags)).await;
    let events = 300;
    let mut total = 0;
    for mode in [
        "PackedForward",
        "CompressedPackedForward",
        "Forward",
        "Message",
    ] {
        let before = received_totals(&http, &distributor.url).await;
        let tag = format!("node{}", mode.to_lowercase());
        let (report, stderr) = run_node_logger(&modules, port, events, mode, &tag, &[]).await;
        assert_eq!(report["acked"], events, "{mode}: {report} {stderr}");
        // Every acknowledged event is at an analyzer already: acks wait for delivery.
        total += events;
        let messages: Vec<Value> = received(&journals)
            .into_iter()
            .filter(|m| m["source"] == format!("{tag}.app"))
            .collect();
        assert_events(messages, events, &format!("{tag}.app"));
        let after = received_totals(&http, &distributor.url).await;
        assert_eq!(after.1 - before.1, events as f64, "{mode}");
        if mode == "Message" {
            assert_eq!(after.0 - before.0, events as f64, "one packet an event");
        } else {
            // Chunks of several events are one packet each.
            assert!(
                after.0 - before.0 < events as f64,
                "{mode}: {after:?} {before:?}"
            );
        }
    }
    assert_eq!(received(&journals).len(), total);
}

/// A PackedForward frame of `n` events with `chunk`, as Fluent Bit sends it.
fn packed(tag: &str, n: u64, chunk: &str) -> Vec<u8> {
    let mut entries = Vec::new();
    for i in 0..n {
        rmp::encode::write_array_len(&mut entries, 2).unwrap();
        rmp::encode::write_uint(&mut entries, 1_796_552_910).unwrap();
        rmp::encode::write_map_len(&mut entries, 2).unwrap();
        rmp::encode::write_str(&mut entries, "message").unwrap();
        rmp::encode::write_str(&mut entries, &format!("event {i}")).unwrap();
        rmp::encode::write_str(&mut entries, "seq").unwrap();
        rmp::encode::write_uint(&mut entries, i).unwrap();
    }
    let mut frame = Vec::new();
    rmp::encode::write_array_len(&mut frame, 3).unwrap();
    rmp::encode::write_str(&mut frame, tag).unwrap();
    rmp::encode::write_bin(&mut frame, &entries).unwrap();
    rmp::encode::write_map_len(&mut frame, 1).unwrap();
    rmp::encode::write_str(&mut frame, "chunk").unwrap();
    rmp::encode::write_str(&mut frame, chunk).unwrap();
    frame
}

/// `{"ack": chunk}` as the server writes it.
fn ack(chunk: &str) -> Vec<u8> {
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, 1).unwrap();
    rmp::encode::write_str(&mut out, "ack").unwrap();
    rmp::encode::write_str(&mut out, chunk).unwrap();
    out
}

/// Writes `bytes` (and, when `half_close`, ends the sending side), then reads until the
/// server closes: returns what it answered. Fails if it does not close within 10 s.
async fn send_until_closed(port: u16, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // The server may close before it read everything: a failed write is fine.
    let _ = stream.write_all(bytes).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    match read.await {
        Ok(_) => answer,
        Err(_) => panic!("the server kept the connection open after {bytes:02x?}"),
    }
}

fn rejected(text: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!("logdist_rejected_total{{format=\"forward\",reason=\"{reason}\"}}"),
    ) + metric(
        text,
        &format!("logdist_rejected_total{{reason=\"{reason}\",format=\"forward\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_close_their_connection_and_the_listener_keeps_serving() {
    let _sending = SENDING.lock().await;
    let dir = scratch("forward_hostile");
    let http = Http::new();
    let (flags, port) = forward_flags(&["--max-body", "64KiB", "--forward-idle-timeout", "5s"]);
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &strs(&flags)).await;
    let good = packed("good", 3, "ok1");
    let mut oversize = packed("big", 1, "x");
    oversize.truncate(10);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 5].to_vec()),
        // A bin that claims 4 GiB.
        (
            "lying bin length",
            vec![0x93, 0xa1, b't', 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00],
        ),
        // An array that claims 4G elements.
        (
            "lying array count",
            vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0],
        ),
        ("over --max-body", packed("big", 5_000, "big")),
        ("a map, not a frame", vec![0x81, 0xa1, b'a', 0x01]),
        ("a tag that is a number", vec![0x93, 0x07, 0x01, 0x80]),
        ("entries that are a number", vec![0x92, 0xa1, b't', 0x07]),
        ("the byte 0xc1", vec![0x92, 0xc1, 0xc1]),
        ("text", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
    ];
    let before = http
        .get(&format!("{}/metrics", distributor.url))
        .await
        .text();
    for (name, bytes) in &cases {
        let answer = send_until_closed(port, bytes, true).await;
        assert!(answer.is_empty(), "{name}: answered {answer:02x?}");
    }
    let after = http
        .get(&format!("{}/metrics", distributor.url))
        .await
        .text();
    assert_eq!(
        rejected(&after, "bad_request") - rejected(&before, "bad_request"),
        cases.len() as f64,
        "{after}"
    );
    // The listener still serves: a good frame is acknowledged, and delivered.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(&good).await.unwrap();
    let mut answer = vec![0; ack("ok1").len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut answer))
        .await
        .expect("an ack")
        .unwrap();
    assert_eq!(answer, ack("ok1"));
    assert_eq!(
        received(&journals)
            .iter()
            .filter(|m| m["source"] == "good")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_that_cannot_be_routed_is_not_acknowledged() {
    let _sending = SENDING.lock().await;
    let http = Http::new();
    let (flags, port) = forward_flags(&[]);
    // No analyzer: the packet is refused.
    let distributor = InProc::distributor(&strs(&flags)).await;
    let before = http
        .get(&format!("{}/metrics", distributor.url))
        .await
        .text();
    let answer = send_until_closed(port, &packed("lost", 2, "c1"), false).await;
    assert!(answer.is_empty(), "answered {answer:02x?}");
    let after = http
        .get(&format!("{}/metrics", distributor.url))
        .await
        .text();
    assert_eq!(
        rejected(&after, "unavailable") - rejected(&before, "unavailable"),
        1.0,
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let (flags, port) = forward_flags(&["--forward-idle-timeout", "300ms"]);
    let _distributor = InProc::distributor(&strs(&flags)).await;
    let started = std::time::Instant::now();
    // Nothing sent: closed once idle.
    let answer = send_until_closed(port, &[], false).await;
    assert!(answer.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    // Half a frame, then nothing: closed too.
    let good = packed("slow", 1, "c");
    let answer = send_until_closed(port, &good[..4], false).await;
    assert!(answer.is_empty());
}

/// The services the load generator's records come from (`src/loadgen/templates.rs`).
const LOADGEN_SOURCES: [&str; 7] = ["api", "auth", "db", "cache", "worker", "nginx", "payments"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_speaks_forward_with_and_without_acks() {
    let _sending = SENDING.lock().await;
    let dir = scratch("forward_loadgen");
    let (flags, port) = forward_flags(&["--ack", "delivered"]);
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &strs(&flags)).await;
    let forward_target = format!("127.0.0.1:{port}");
    let mut total = 0;
    for protocol in ["forward", "forward-noack"] {
        let report = dir.join(format!("{protocol}.json"));
        let args = [
            "loadgen",
            "--target",
            &distributor.url,
            "--protocol",
            protocol,
            "--forward-target",
            &forward_target,
            "--agents",
            "4",
            "--packets",
            "120",
            "--packet-size",
            "1..40",
            "--timeout",
            "10s",
            "--report",
            report.to_str().unwrap(),
            "--quiet",
        ];
        let mut loadgen = spawn(&dir, &format!("loadgen-{protocol}"), &args);
        let status = tokio::task::spawn_blocking(move || {
            let status = loadgen.wait_exit(Duration::from_secs(60));
            (status, loadgen.log_text())
        })
        .await
        .unwrap();
        assert!(status.0.success(), "{}", status.1);
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(
            (&report["packets_acked"], &report["packets_failed"]),
            (&Value::from(120), &Value::from(0)),
            "{protocol}: {report:#}"
        );
        let sent = report["messages_sent"].as_u64().unwrap() as usize;
        assert!(sent > 120, "{protocol}: packets of 1..40 records");
        total += sent;
        let messages = match protocol {
            // Acknowledged once delivered: every record is at an analyzer already.
            "forward" => received(&journals),
            _ => {
                wait_received(&journals, total, Duration::from_secs(20), || {
                    protocol.to_owned()
                })
                .await
            }
        };
        assert_eq!(messages.len(), total, "{protocol}: one message per record");
        for m in &messages {
            let source = m["source"].as_str().unwrap_or_default();
            assert!(LOADGEN_SOURCES.contains(&source), "{protocol}: {m}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_what_was_read_then_closes() {
    let _sending = SENDING.lock().await;
    let dir = scratch("forward_shutdown");
    let http = Http::new();
    let (flags, port) = forward_flags(&[]);
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &strs(&flags)).await;
    let (packets_before, _) = received_totals(&http, &distributor.url).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(&packed("drain", 5, "d1")).await.unwrap();
    // Once the frame is read and routed, shut down: its ack still comes, then the close.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while received_totals(&http, &distributor.url).await.0 == packets_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the frame was not routed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = tokio::spawn(distributor.stop());
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer))
        .await
        .expect("closed on shutdown")
        .unwrap();
    assert_eq!(answer, ack("d1"));
    stopping.await.unwrap().unwrap();
    let drained = received(&journals)
        .into_iter()
        .filter(|m| m["source"] == "drain")
        .count();
    assert_eq!(drained, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_takes_forward_and_acknowledges_once_journaled() {
    let dir = scratch("forward_analyzer");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let journal = dir.join("journal.ndjson");
    let _analyzer = InProc::analyzer(
        1,
        1.0,
        "http://127.0.0.1:9",
        &[
            "--no-register",
            "--forward-listen",
            &listen,
            "--journal",
            journal.to_str().unwrap(),
        ],
    )
    .await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    for chunk in ["a1", "a2"] {
        stream.write_all(&packed("peer", 4, chunk)).await.unwrap();
        let mut answer = vec![0; ack(chunk).len()];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut answer))
            .await
            .expect("an ack")
            .unwrap();
        assert_eq!(answer, ack(chunk));
    }
    // Acknowledged once journaled.
    let journaled = received(&[journal]);
    assert_eq!(journaled.len(), 8);
    assert!(
        journaled.iter().all(|m| m["source"] == "peer"),
        "{journaled:?}"
    );
    // Bytes that are no frame close the connection.
    let answer = send_until_closed(port, &[0x81, 0xa1, b'a', 0x01], false).await;
    assert!(answer.is_empty());
}

const ACKED_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/forward_acked.py");

/// A distributor (a process) taking forward with `--ack delivered`, and two analyzer
/// processes journaling what they acknowledge. A Python sender (`forward_acked.py`,
/// `msgpack` over a socket) writes PackedForward chunks whose records carry unique ids and
/// traces which chunks were acknowledged; mid-run, one analyzer is SIGKILLed. Every
/// record of an acknowledged chunk must be in a journal: an ack means delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_an_analyzer_loses_no_acknowledged_record() {
    use common::ledger::{balance, read_journals, read_trace};
    let _sending = SENDING.lock().await;
    let dir = scratch("forward_sigkill");
    let http = Http::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (_distributor, url) = distributor(
        &dir,
        &[
            "--forward-listen",
            &listen,
            "--ack",
            "delivered",
            "--delivery-timeout",
            "1s",
            "--probe-timeout",
            "300ms",
            "--unhealthy-after",
            "2",
        ],
    );
    let journals: Vec<PathBuf> = (1..=2)
        .map(|id| dir.join(format!("analyzer_{id}.journal")))
        .collect();
    let mut analyzers: Vec<Proc> = journals
        .iter()
        .zip(1..)
        .map(|(journal, id)| {
            analyzer(
                &dir,
                id,
                0.5,
                &url,
                &["--journal", journal.to_str().unwrap()],
            )
            .0
        })
        .collect();
    http.wait_stats(&url, "two analyzers", |s| {
        online(s, &["analyzer_1", "analyzer_2"])
    })
    .await;

    let trace = dir.join("trace.ndjson");
    let mut sender = Command::new("python3");
    sender
        .args([ACKED_SCRIPT, "--port", &port.to_string(), "--trace"])
        .arg(&trace)
        .args([
            "--connections",
            "3",
            "--chunks",
            "150",
            "--chunk-size",
            "20",
        ])
        .args(["--pause", "0.02", "--timeout", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut sender = sender
        .spawn()
        .unwrap_or_else(|e| panic!("could not run python3 ({e})"));
    // Mid-run: once analyzer_1 journaled some records, SIGKILL it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while read_journals(&journals[..1]).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "analyzer_1 journaled nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    analyzers[0].signal("KILL");
    assert!(
        sender.try_wait().unwrap().is_none(),
        "the sender was done before the kill: the test would prove nothing"
    );
    let at_kill = read_journals(&journals[1..]).len();
    analyzers[0].wait_exit(Duration::from_secs(10));
    let waiting = tokio::task::spawn_blocking(move || sender.wait_with_output());
    let output = tokio::time::timeout(Duration::from_secs(180), waiting)
        .await
        .expect("the sender finished")
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "the sender failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    // Analyzers journal before they acknowledge: the journals are complete now.
    let seen = read_journals(&journals);
    let books = balance(&read_trace(&trace), &seen);
    eprintln!("forward sigkill: {report} {books}");
    assert!(
        books.lost.is_empty(),
        "{} acknowledged records are in no journal, e.g. {:?}",
        books.lost.len(),
        &books.lost[..books.lost.len().min(5)]
    );
    assert_eq!(books.packets_sent, 450, "{books}");
    assert_eq!(
        books.packets_acked, 450,
        "every chunk got through, retried: {books}"
    );
    let after_kill = read_journals(&journals[1..]).len() - at_kill;
    assert!(
        after_kill >= 100,
        "analyzer_2 took only {after_kill} records after the kill: {books}"
    );
}
