//! The `loki` delivery protocol against an independent Loki push receiver: a Python
//! `http.server` that decodes with python-snappy and Google's protobuf runtime
//! (`tests/python/loki_receiver.py`, its message classes built from a descriptor of Loki's
//! push.proto), serves `GET /ready`, answers 204, and writes each entry it took as a JSON
//! line. The receivers are given with `--analyzer ID=URL@W;protocol=loki` (a Loki does
//! not register itself).
//!
//! - logdist NDJSON in, Loki out, to two receivers: each message is one entry whose line
//!   is the message as sent, in a stream labelled with its `severity` and `source`, at its
//!   time; each receiver gets its share.
//! - Loki in (the protobuf push of `tests/python/loki_push.py`, as Promtail sends), Loki
//!   out: labels, line and time (to the nanosecond with `--timestamp-unit ns`) kept.
//! - A 400 for one entry (as Loki refuses an entry too old) fails its packet alone (422
//!   to its agent, with the receiver's reason); the other packets are delivered.
//! - A distributor stands in for Loki: one distributor delivers `loki` to another (probed
//!   at `GET /ready`), whose analyzer gets each message as it was sent.
//!
//! python-snappy and protobuf are installed by `.ci/run`.
//!
//! Rerun: `cargo nextest run -p logdist --test loki_delivery`.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::clients::*;
use common::inproc::{InProc, Running};
use common::*;
use serde_json::{Value, json};

const RECEIVER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/loki_receiver.py");
const PUSH_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/loki_push.py");

/// The receiver, listening on a free port; its entries go to `out`.
fn start_receiver(dir: &Path, name: &str, out: &Path, extra: &[&str]) -> (Proc, String) {
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new("python3")
        .arg(RECEIVER_SCRIPT)
        .args(["--port", &port.to_string(), "--out"])
        .arg(out)
        .args(extra)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run python3 ({e}): install python-snappy, protobuf"));
    let mut receiver = Proc {
        child,
        name: name.to_owned(),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = receiver.child.try_wait() {
            panic!("the receiver exited ({status}): {}", receiver.log_text());
        }
        assert!(Instant::now() < deadline, "the receiver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (receiver, format!("http://127.0.0.1:{port}"))
}

/// A distributor whose analyzers are the receivers `(id, url, weight)`, spoken to in
/// `loki`, once they are online.
async fn distributor_to(receivers: &[(&str, &str, f64)], flags: &[&str]) -> Running {
    let specs: Vec<String> = receivers
        .iter()
        .map(|(id, url, weight)| format!("{id}={url}@{weight};protocol=loki"))
        .collect();
    let mut all: Vec<&str> = Vec::new();
    for spec in &specs {
        all.extend(["--analyzer", spec]);
    }
    all.extend_from_slice(flags);
    let distributor = InProc::distributor(&all).await;
    let ids: Vec<&str> = receivers.iter().map(|(id, _, _)| *id).collect();
    let stats = Http::new()
        .wait_stats(&distributor.url, "the Loki receivers online", |s| {
            online(s, &ids)
        })
        .await;
    assert!(stats.iter().all(|a| a.protocol == "loki"), "{stats:?}");
    distributor
}

/// The entries in `outs`.
fn entries_in(outs: &[&PathBuf]) -> Vec<Vec<Value>> {
    outs.iter()
        .map(|out| {
            std::fs::read_to_string(out)
                .unwrap_or_default()
                .lines()
                // A line being written is read again at the next look.
                .map_while(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .collect()
}

/// Waits until `outs` hold `count` entries in all, and returns each one's.
async fn entries(outs: &[&PathBuf], count: usize) -> Vec<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = entries_in(outs);
        let total: usize = got.iter().map(Vec::len).sum();
        assert!(total <= count, "more than {count} entries: {got:?}");
        if total == count {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{total} of {count} entries arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Message `seq`: one of three severities and two sources, its time from `seq`.
fn message_of(seq: u64) -> String {
    let severity = ["INFO", "WARN", "ERROR"][(seq % 3) as usize];
    let source = ["api", "db \"main\""][(seq % 2) as usize];
    json!({
        "timestamp": 1_796_553_000_000u64 + seq,
        "severity": severity,
        "source": source,
        "message": format!("message {seq}"),
        "seq": seq,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_loki_as_entries_labelled_by_severity_and_source() {
    let _sending = SENDING.lock().await;
    let dir = scratch("loki-delivery-ndjson");
    let (out_a, out_b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    let (_a, url_a) = start_receiver(&dir, "a", &out_a, &[]);
    let (_b, url_b) = start_receiver(&dir, "b", &out_b, &[]);
    let distributor = distributor_to(
        &[("loki_a", &url_a, 0.75), ("loki_b", &url_b, 0.25)],
        &["--timestamp-unit", "ms"],
    )
    .await;
    let http = Http::new();
    // Packets of 1 to 7 messages, one after the other.
    let mut sent = std::collections::HashMap::new();
    let (mut seq, mut largest) = (0u64, 0u64);
    for packet in 0..60u64 {
        let size = 1 + packet % 7;
        let lines: Vec<String> = (seq..seq + size).map(message_of).collect();
        for (i, line) in lines.iter().enumerate() {
            sent.insert(seq + i as u64, line.clone());
        }
        let answer = http
            .post(
                &format!("{}/packets", distributor.url),
                "application/x-ndjson",
                lines.join("\n"),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        seq += size;
        largest = largest.max(size);
    }
    let got = entries(&[&out_a, &out_b], sent.len()).await;
    for entry in got.iter().flatten() {
        let message: Value = serde_json::from_str(entry["line"].as_str().unwrap()).unwrap();
        let seq = message["seq"].as_u64().unwrap();
        assert_eq!(entry["line"], sent[&seq], "the line is the message as sent");
        assert_eq!(
            entry["labels"],
            json!({"severity": message["severity"], "source": message["source"]}),
        );
        assert_eq!(entry["ts"], (1_796_553_000_000u64 + seq) * 1_000_000);
        assert_eq!(entry["metadata"], json!({}));
    }
    let mut seqs: Vec<u64> = got
        .iter()
        .flatten()
        .map(|e| {
            serde_json::from_str::<Value>(e["line"].as_str().unwrap()).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..seq).collect::<Vec<_>>(), "each message once");

    // Each receiver's share, as stats count it and as it received it.
    let stats = http.stats(&distributor.url).await;
    for (id, got) in [("loki_a", &got[0]), ("loki_b", &got[1])] {
        let analyzer = stats.iter().find(|a| a.id == id).unwrap();
        assert_eq!(analyzer.messages_sent, got.len() as u64, "{id}");
        assert!(!got.is_empty(), "{id} got nothing");
    }
    assert_shares_within(&stats, largest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_in_loki_out_keeps_labels_lines_and_times() {
    let _sending = SENDING.lock().await;
    let dir = scratch("loki-delivery-roundtrip");
    const RECORDS: usize = 25;
    let tags = r#"{"job": "varlogs", "service_name": "checkout"}"#;

    // The same client, straight to a receiver: what it gets is the reference.
    let direct_out = dir.join("direct.jsonl");
    let (_direct, direct_url) = start_receiver(&dir, "direct", &direct_out, &[]);
    let push = |url: String| {
        let args: Vec<String> = [
            "--url",
            &format!("{url}/loki/api/v1/push"),
            "--client",
            "protobuf",
            "--records",
            &RECORDS.to_string(),
            "--tags",
            tags,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        async move { run_python(PUSH_SCRIPT, &args, "the Loki push script").await }
    };
    let report = push(direct_url).await;
    assert_eq!(report["statuses"], json!({"204": 1}), "{report}");
    let direct = entries(&[&direct_out], RECORDS).await.remove(0);

    let out = dir.join("through.jsonl");
    let (_receiver, url) = start_receiver(&dir, "receiver", &out, &[]);
    let distributor = distributor_to(&[("loki", &url, 1.0)], &["--timestamp-unit", "ns"]).await;
    let report = push(distributor.url.clone()).await;
    assert_eq!(report["statuses"], json!({"204": 1}), "{report}");
    let through = entries(&[&out], RECORDS).await.remove(0);

    let by_line = |entries: &[Value]| {
        let mut entries = entries.to_vec();
        entries.sort_by(|a, b| a["line"].as_str().cmp(&b["line"].as_str()));
        entries
    };
    let (direct, through) = (by_line(&direct), by_line(&through));
    let severities = [
        ("debug", "DEBUG"),
        ("info", "INFO"),
        ("warning", "WARN"),
        ("error", "ERROR"),
        ("critical", "FATAL"),
    ];
    for (want, got) in direct.iter().zip(&through) {
        assert_eq!(got["line"], want["line"]);
        assert!(
            got["line"].as_str().unwrap().starts_with("record "),
            "{got}"
        );
        assert_eq!(got["metadata"], want["metadata"]);
        // The pushes were two runs: times differ between them, but each run's entries
        // are `now + i` nanoseconds; kept to the nanosecond, the offsets are the same.
        let offset = |entries: &[Value], e: &Value| {
            let first = entries
                .iter()
                .map(|e| e["ts"].as_i64().unwrap())
                .min()
                .unwrap();
            e["ts"].as_i64().unwrap() - first
        };
        assert_eq!(offset(&through, got), offset(&direct, want), "{got}");
        // The client's labels, as they were, then logdist's two.
        let level = want["labels"]["level"].as_str().unwrap();
        let severity = severities.iter().find(|(l, _)| *l == level).unwrap().1;
        let mut labels = want["labels"].clone();
        labels["severity"] = json!(severity);
        labels["source"] = json!("checkout");
        assert_eq!(got["labels"], labels);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_loki_refuses_fails_its_packet_alone() {
    let _sending = SENDING.lock().await;
    let dir = scratch("loki-delivery-refused");
    let out = dir.join("entries.jsonl");
    let (_receiver, url) = start_receiver(&dir, "receiver", &out, &["--refuse-line", "bad"]);
    let distributor = distributor_to(&[("loki", &url, 1.0)], &[]).await;
    let http = Http::new();
    let line = |text: &str| {
        format!(
            r#"{{"timestamp":1796553000000,"severity":"INFO","source":"s","message":"{text}"}}"#
        )
    };
    let post = |body: String| {
        let http = &http;
        let url = format!("{}/packets", distributor.url);
        async move { http.post(&url, "application/x-ndjson", body).await }
    };
    let (good, bad, after) = tokio::join!(
        post(line("good")),
        post(format!("{}\n{}\n", line("fine"), line("bad"))),
        post(line("after")),
    );
    assert_eq!(good.status, 200, "{}", good.text());
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(
        bad.text().contains("has timestamp too old"),
        "{}",
        bad.text()
    );
    // As Loki, the receiver kept the entries it did not refuse of a push it answered 400:
    // `fine`, and those batched with the refused packet, may be there more than once.
    let got = entries_in(&[&out]).remove(0);
    let messages: Vec<String> = got
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e["line"].as_str().unwrap()).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for text in ["good", "after", "fine"] {
        assert!(
            messages.iter().any(|m| m == text),
            "{text} not in {messages:?}"
        );
    }
    assert!(!messages.iter().any(|m| m == "bad"), "{messages:?}");
    // The receiver is not taken for sick: it is still online.
    let stats = http.stats(&distributor.url).await;
    assert_eq!(stats[0].state, "online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributor_stands_in_for_loki() {
    let _sending = SENDING.lock().await;
    let dir = scratch("loki-delivery-stand-in");
    // The stand-in: a distributor with one analyzer, which journals what it gets.
    let stand_in = InProc::distributor(&[]).await;
    let http = Http::new();
    let ready = http.get(&format!("{}/ready", stand_in.url)).await;
    assert_eq!(
        ready.status,
        503,
        "no analyzer online yet: {}",
        ready.text()
    );
    let journal = dir.join("journal.ndjson");
    let _analyzer = InProc::analyzer(
        1,
        1.0,
        &stand_in.url,
        &["--journal", journal.to_str().unwrap()],
    )
    .await;
    http.wait_stats(&stand_in.url, "its analyzer online", |s| {
        online(s, &["analyzer_1"])
    })
    .await;
    let ready = http.get(&format!("{}/ready", stand_in.url)).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.text().trim(), "ready");

    let front = distributor_to(&[("loki", &stand_in.url, 1.0)], &[]).await;
    let lines: Vec<String> = (0..12).map(message_of).collect();
    let answer = http
        .post(
            &format!("{}/packets", front.url),
            "application/x-ndjson",
            lines.join("\n"),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let mut got: Vec<Value> =
        wait_received(&[journal], lines.len(), Duration::from_secs(20), || {
            String::new()
        })
        .await;
    got.sort_by_key(|m| m["seq"].as_u64());
    let sent: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, sent, "each message as it was sent, no labels added");
}
