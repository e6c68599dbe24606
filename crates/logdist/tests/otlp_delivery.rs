//! The `otlp` delivery protocol against an independent OTLP/HTTP receiver: a Python
//! `http.server` that parses with the `opentelemetry-proto` package
//! (`tests/python/otlp_receiver.py`) and writes each log record it parsed as a JSON line.
//! The distributor's only analyzer is that receiver, given with
//! `--analyzer ID=URL@1;protocol=otlp` (it does not register itself).
//!
//! - OTLP in, OTLP out: the Python OpenTelemetry SDK's exporter sends to the distributor,
//!   and the records the receiver gets are compared with those the same SDK run gets when
//!   it sends to the receiver directly: severity, `service.name`, resource, scope,
//!   attributes, trace and span ids, flags and bodies.
//! - logdist NDJSON in, OTLP out: the fields map to their OTLP places, the others become
//!   attributes.
//! - A `partial_success` that rejects a record fails that packet alone (422).
//!
//! `opentelemetry-proto` and the SDK are installed by `.ci/run`.
//!
//! Rerun: `cargo nextest run -p logdist --test otlp_delivery`.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::clients::*;
use common::inproc::{InProc, Running};
use common::*;
use serde_json::{Value, json};

const RECEIVER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otlp_receiver.py");
const EXPORT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otlp_export.py");

/// The receiver, listening on a free port; its records go to `out`.
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
        .unwrap_or_else(|e| panic!("could not run python3 ({e}): install opentelemetry-proto"));
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

/// A distributor whose only analyzer is the receiver at `url`, spoken to in `otlp`, once
/// it is online.
async fn distributor_to(url: &str, flags: &[&str]) -> Running {
    let analyzer = format!("otel={url}@1;protocol=otlp");
    let mut all = vec!["--analyzer", &analyzer];
    all.extend_from_slice(flags);
    let distributor = InProc::distributor(&all).await;
    let stats = Http::new()
        .wait_stats(&distributor.url, "the OTLP receiver online", |s| {
            online(s, &["otel"])
        })
        .await;
    assert_eq!(stats[0].protocol, "otlp");
    distributor
}

/// Waits until `out` holds `count` records, and returns them.
async fn records(out: &PathBuf, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= count, "more than {count} records: {text}");
        if lines.len() == count {
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} records arrived",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the SDK's protobuf exporter inside a span against `endpoint`; returns its report.
async fn export(endpoint: &str, service: &str, count: usize) -> Value {
    let args: Vec<String> = [
        "--endpoint",
        &format!("{endpoint}/v1/logs"),
        "--encoding",
        "protobuf",
        "--service",
        service,
        "--records",
        &count.to_string(),
        "--in-span",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let report = run_python(EXPORT_SCRIPT, &args, "the OTLP export script").await;
    for export in report["exports"].as_array().unwrap() {
        assert_eq!(export["result"], "SUCCESS", "{report}");
    }
    report
}

/// A record as the receiver wrote it, by its body, without what differs between two runs
/// of the SDK (times, ids, the SDK's instance id) and the line it was logged on.
fn comparable(record: &Value) -> (String, Value) {
    let mut record = record.clone();
    let object = record.as_object_mut().unwrap();
    for field in [
        "time_unix_nano",
        "observed_time_unix_nano",
        "trace_id",
        "span_id",
    ] {
        object.remove(field);
    }
    object["resource"]
        .as_object_mut()
        .unwrap()
        .remove("service.instance.id");
    object["attributes"]
        .as_object_mut()
        .unwrap()
        .remove("code.line.number");
    (record["body"].as_str().unwrap().to_owned(), record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_in_otlp_out_keeps_what_the_sdk_sent() {
    let _sending = SENDING.lock().await;
    let dir = scratch("otlp-delivery-roundtrip");
    const RECORDS: usize = 200;

    // The same SDK run, straight to a receiver: what it gets is the reference.
    let direct_out = dir.join("direct.jsonl");
    let (_direct, direct_url) = start_receiver(&dir, "direct", &direct_out, &[]);
    export(&direct_url, "checkout", RECORDS).await;
    let mut direct: Vec<(String, Value)> = records(&direct_out, RECORDS)
        .await
        .iter()
        .map(comparable)
        .collect();

    let out = dir.join("through.jsonl");
    let (_receiver, url) = start_receiver(&dir, "receiver", &out, &[]);
    let distributor = distributor_to(&url, &[]).await;
    let report = export(&distributor.url, "checkout", RECORDS).await;
    let through = records(&out, RECORDS).await;

    for record in &through {
        assert_eq!(record["trace_id"], report["trace_id"], "{record}");
        assert_eq!(record["span_id"], report["span_id"], "{record}");
        let time = record["time_unix_nano"].as_u64().unwrap();
        assert!(time > 1_700_000_000_000_000_000, "{record}");
        assert_eq!(time % 1_000_000, 0, "in the default unit, ms: {record}");
        assert_eq!(record["resource"]["service.name"], "checkout");
    }
    let mut through: Vec<(String, Value)> = through.iter().map(comparable).collect();
    direct.sort_by(|a, b| a.0.cmp(&b.0));
    through.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(direct.len(), through.len());
    for ((_, want), (_, got)) in direct.iter().zip(&through) {
        assert_eq!(got, want);
    }
    // What the comparison covers, spelled out for one record.
    let (_, warn) = through.iter().find(|(b, _)| b == "record 2").unwrap();
    assert_eq!(
        (&warn["severity_number"], &warn["severity_text"]),
        (&json!(13), &json!("WARN"))
    );
    assert_eq!(warn["attributes"]["record.index"], 2);
    assert_eq!(warn["attributes"]["record.even"], true);
    assert_eq!(warn["scope"]["name"], "otlp-test");
    assert_eq!(warn["resource"]["telemetry.sdk.language"], "python");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logdist_ndjson_in_otlp_out() {
    let _sending = SENDING.lock().await;
    let dir = scratch("otlp-delivery-ndjson");
    let out = dir.join("records.jsonl");
    let (_receiver, url) = start_receiver(&dir, "receiver", &out, &[]);
    let distributor = distributor_to(&url, &["--timestamp-unit", "ms"]).await;
    let packet = concat!(
        r#"{"timestamp":1796553000123,"severity":"ERROR","source":"payments","message":"card declined","host":"web-1","attempt":3,"ratio":0.5,"tags":["a","b"],"ctx":{"user":"u1"}}"#,
        "\n",
        r#"{"timestamp":1796553000124,"severity":"notice","source":"unknown","message":"no source"}"#,
        "\n",
    );
    let http = Http::new();
    let answer = http
        .post(
            &format!("{}/packets", distributor.url),
            "application/x-ndjson",
            packet,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let mut got = records(&out, 2).await;
    got.sort_by_key(|r| r["time_unix_nano"].as_u64());
    let error = &got[0];
    assert_eq!(error["time_unix_nano"], 1_796_553_000_123_000_000u64);
    assert_eq!(
        (&error["severity_number"], &error["severity_text"]),
        (&json!(17), &json!("ERROR"))
    );
    assert_eq!(error["body"], "card declined");
    assert_eq!(error["resource"], json!({"service.name": "payments"}));
    assert_eq!(
        error["attributes"],
        json!({"host": "web-1", "attempt": 3, "ratio": 0.5, "tags": ["a", "b"], "ctx": {"user": "u1"}})
    );
    assert_eq!(
        (&error["trace_id"], &error["flags"]),
        (&json!(""), &json!(0))
    );
    let notice = &got[1];
    assert_eq!(
        (&notice["severity_number"], &notice["severity_text"]),
        (&json!(9), &json!("notice"))
    );
    assert_eq!(
        notice["resource"],
        json!({}),
        "`unknown` is no service.name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_fails_only_the_packet_with_the_rejected_record() {
    let _sending = SENDING.lock().await;
    let dir = scratch("otlp-delivery-partial");
    let out = dir.join("records.jsonl");
    let (_receiver, url) = start_receiver(&dir, "receiver", &out, &["--reject-body", "bad"]);
    let distributor = distributor_to(&url, &[]).await;
    let http = Http::new();
    let line = |text: &str| {
        format!(
            r#"{{"timestamp":1796553000000,"severity":"INFO","source":"s","message":"{text}"}}"#
        )
    };
    let good = http
        .post(
            &format!("{}/packets", distributor.url),
            "application/x-ndjson",
            line("good"),
        )
        .await;
    assert_eq!(good.status, 200, "{}", good.text());
    let bad = http
        .post(
            &format!("{}/packets", distributor.url),
            "application/x-ndjson",
            format!("{}\n{}\n", line("fine"), line("bad")),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(
        bad.text().contains("a record this receiver refuses"),
        "{}",
        bad.text()
    );
    // The good packet's record, and the accepted record of the refused one.
    let got = records(&out, 2).await;
    let bodies: Vec<&str> = got.iter().map(|r| r["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["good", "fine"]);
}
