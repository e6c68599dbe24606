//! Loki's push at `POST /loki/api/v1/push`, sent by real clients: python-logging-loki's
//! `LokiHandler` (JSON), and a snappy-compressed protobuf push encoded by Google's protobuf
//! runtime and python-snappy (an implementation independent of logdist's), to an
//! in-process distributor and its analyzers. What the analyzers received is read from
//! their journals.
//!
//! The packages are installed by `.ci/run`; without them (or without `python3`) the tests
//! fail and say what to install.
//!
//! Rerun: `cargo nextest run -p logdist --test loki`.

mod common;

use common::clients::*;
use common::inproc::InProc;
use common::*;
use serde_json::{Value, json};

/// The script that drives the clients.
const PUSH_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/loki_push.py");

/// The levels the script logs record i at (`LEVELS[i % 5]`), as logdist's severities.
const SEVERITIES: [&str; 5] = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// Runs the script's `client` against `distributor`, sending `records` records with
/// `tags`; returns how many pushes were answered with each status.
async fn push_through(distributor: &str, client: &str, records: u64, tags: &Value) -> Value {
    let args = [
        "--url".to_owned(),
        format!("{distributor}/loki/api/v1/push"),
        "--client".to_owned(),
        client.to_owned(),
        "--records".to_owned(),
        records.to_string(),
        "--tags".to_owned(),
        tags.to_string(),
    ];
    let report = run_python(PUSH_SCRIPT, &args, "the Loki push script").await;
    report["statuses"].clone()
}

/// Sends `records` records through `client` with `tags`, and checks that every push was
/// answered 204 and was one packet of its entries, and that every record arrived once,
/// mapped: severity from its level, `source` from the tags, every label kept. Returns the
/// messages.
async fn records_arrive_mapped(
    test: &str,
    client: &str,
    records: u64,
    tags: Value,
    pushes: u64,
    source: &str,
) -> Vec<Value> {
    let _sending = SENDING.lock().await;
    let dir = scratch(test);
    let http = Http::new();
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &[]).await;
    let (packets_before, messages_before) = received_totals(&http, &distributor.url).await;

    let statuses = push_through(&distributor.url, client, records, &tags).await;
    assert_eq!(
        statuses,
        json!({"204": pushes}),
        "every push is answered 204"
    );

    let (packets, messages) = received_totals(&http, &distributor.url).await;
    assert_eq!(
        (packets - packets_before, messages - messages_before),
        (pushes as f64, records as f64),
        "a push of N entries is one packet of N messages"
    );

    let messages = received(&journals);
    assert_eq!(messages.len() as u64, records);
    let mut seen = vec![false; records as usize];
    for message in &messages {
        let text = message["message"].as_str().unwrap();
        let i: usize = text
            .strip_prefix("record ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a record of the script: {message}"));
        assert!(!seen[i], "record {i} arrived twice");
        seen[i] = true;
        assert_eq!(message["severity"], SEVERITIES[i % 5], "{message}");
        assert_eq!(message["source"], source, "{message}");
        assert!(message["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        for (label, value) in tags.as_object().unwrap() {
            assert_eq!(&message["labels"][label], value, "{message}");
        }
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_logging_loki_delivers_every_record_mapped() {
    // The handler pushes each record alone, as JSON, with its level as the `severity`
    // label and its logger's name as `logger`.
    let tags = json!({"service_name": "checkout", "env": "test"});
    let messages =
        records_arrive_mapped("loki-handler", "handler", 200, tags, 200, "checkout").await;
    for message in &messages {
        assert_eq!(message["labels"]["logger"], "loki-test", "{message}");
    }
    let warning = messages
        .iter()
        .find(|m| m["severity"] == "WARN")
        .expect("a record logged at WARNING");
    assert_eq!(warning["severity_original"], "warning", "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_push_is_one_packet_of_its_entries() {
    // One push of 1,000 entries in five streams, one per `level` label.
    let tags = json!({"app": "billing", "job": "batch"});
    records_arrive_mapped("loki-protobuf", "protobuf", 1_000, tags, 1, "billing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_are_refused_and_bad_entries_are_named_in_a_400() {
    let _sending = SENDING.lock().await;
    let dir = scratch("loki-refusals");
    let http = Http::new();
    let distributor = InProc::distributor(&[]).await;
    let push = format!("{}/loki/api/v1/push", distributor.url);
    let good = r#"{"streams":[{"stream":{"job":"cron","level":"error"},"values":[["1796552910306000000","first"]]}]}"#;

    // No analyzer yet: 503 with Retry-After, so that the client sends the push again.
    let answer = http.post(&push, "application/json", good).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(answer.headers.contains_key("retry-after"));

    let journal = dir.join("journal.ndjson");
    let path = journal.to_str().unwrap().to_owned();
    let _analyzer = InProc::analyzer(1, 1.0, &distributor.url, &["--journal", &path]).await;
    http.wait_stats(&distributor.url, "analyzer_1", |s| {
        online(s, &["analyzer_1"])
    })
    .await;

    for (content_type, body) in [
        ("application/json", &b"{\"streams\":["[..]),
        ("application/json", &b"[1, 2]"[..]),
        ("application/x-protobuf", &b"\xff\xff\xff\xff"[..]),
    ] {
        let answer = http.post(&push, content_type, body.to_vec()).await;
        assert_eq!(answer.status, 400, "{content_type}: {}", answer.text());
        assert!(answer.json()["error"].is_string(), "{}", answer.text());
    }
    let answer = http.post(&push, "text/plain", good).await;
    assert_eq!(answer.status, 415, "{}", answer.text());
    assert!(received(std::slice::from_ref(&journal)).is_empty());

    let answer = http.post(&push, "application/json", good).await;
    assert_eq!(answer.status, 204, "{}", answer.text());
    assert!(answer.text().is_empty());
    assert!(!answer.headers.contains_key("content-type"));

    // One entry whose time is not a time: the others are delivered, and the 400 names it,
    // so that the client logs it and does not send the push again.
    let one_bad = r#"{"streams":[{"stream":{"job":"cron"},"values":[["1796552910307000000","second"],["yesterday","bad"],["1796552910308000000","third"]]}]}"#;
    let answer = http.post(&push, "application/json", one_bad).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("1 of 3 entries refused") && error.contains("index 1"),
        "{error}"
    );
    let messages = received(std::slice::from_ref(&journal));
    let delivered: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m["message"].as_str().unwrap(),
                m["severity"].as_str().unwrap(),
                m["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        delivered,
        [
            ("first", "ERROR", "cron"),
            ("second", "INFO", "cron"),
            ("third", "INFO", "cron")
        ]
    );
    assert_eq!(messages[0]["timestamp"], 1_796_552_910_306_i64);
}
