//! OpenTelemetry's OTLP/HTTP logs at `POST /v1/logs`, sent by a real client: the Python
//! OpenTelemetry SDK's exporters (protobuf, and OTLP/JSON), through the `logging` bridge,
//! to an in-process distributor and its analyzers. What the analyzers received is read
//! from their journals.
//!
//! The SDK is installed by `.ci/run`; without it (or without `python3`) the tests fail and
//! say what to install.
//!
//! Rerun: `cargo nextest run -p logdist --test otlp`.

mod common;

use common::clients::*;
use common::inproc::InProc;
use common::*;
use hyper::Method;

/// The script that drives the SDK.
const EXPORT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otlp_export.py");

/// The levels the script logs record i at (`LEVELS[i % 5]`), as logdist's severities.
const SEVERITIES: [&str; 5] = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// How the script sends its records.
struct Export<'a> {
    encoding: &'a str,
    service: &'a str,
    records: u64,
    token: Option<&'a str>,
    gzip: bool,
}

/// Runs the SDK's exporter against `distributor`; returns the size of each export the SDK
/// made, all of which must have succeeded.
async fn export_through_sdk(distributor: &str, export: &Export<'_>) -> Vec<u64> {
    let mut args = vec![
        "--endpoint".to_owned(),
        format!("{distributor}/v1/logs"),
        "--encoding".to_owned(),
        export.encoding.to_owned(),
        "--service".to_owned(),
        export.service.to_owned(),
        "--records".to_owned(),
        export.records.to_string(),
    ];
    if let Some(token) = export.token {
        args.extend(["--token".to_owned(), token.to_owned()]);
    }
    if export.gzip {
        args.push("--gzip".to_owned());
    }
    let report = run_python(EXPORT_SCRIPT, &args, "the OTLP export script").await;
    let exports = report["exports"].as_array().unwrap();
    for export in exports {
        assert_eq!(export["result"], "SUCCESS", "{report}");
    }
    exports
        .iter()
        .map(|e| e["records"].as_u64().unwrap())
        .collect()
}

/// Sends `export` through the SDK and checks that every record arrived once, as one
/// message mapped from it, and that every export was one packet.
async fn records_arrive_mapped(test: &str, export: Export<'_>, flags: &[&str]) {
    let _sending = SENDING.lock().await;
    let dir = scratch(test);
    let http = Http::new();
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, flags).await;
    let (packets_before, messages_before) = received_totals(&http, &distributor.url).await;

    let exports = export_through_sdk(&distributor.url, &export).await;
    assert_eq!(exports.iter().sum::<u64>(), export.records, "{exports:?}");

    let (packets, messages) = received_totals(&http, &distributor.url).await;
    assert_eq!(
        (packets - packets_before, messages - messages_before),
        (exports.len() as f64, export.records as f64),
        "an export of N records is one packet of N messages: exports {exports:?}"
    );

    let messages = received(&journals);
    assert_eq!(messages.len() as u64, export.records);
    let mut seen = vec![false; export.records as usize];
    for message in &messages {
        let text = message["message"].as_str().unwrap();
        let i: usize = text
            .strip_prefix("record ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a record of the script: {message}"));
        assert!(!seen[i], "record {i} arrived twice");
        seen[i] = true;
        assert_eq!(message["source"], export.service, "{message}");
        assert_eq!(message["severity"], SEVERITIES[i % 5], "{message}");
        assert!(message["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        assert_eq!(message["resource"]["service.name"], export.service);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_protobuf_exporter_delivers_every_record_mapped() {
    let export = Export {
        encoding: "protobuf",
        service: "checkout",
        records: 1_000,
        token: Some("s3cret-ingest"),
        gzip: false,
    };
    records_arrive_mapped(
        "otlp-protobuf",
        export,
        &["--ingest-token", "s3cret-ingest"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_json_exporter_delivers_every_record_mapped() {
    let export = Export {
        encoding: "json",
        service: "billing",
        records: 1_000,
        token: None,
        gzip: false,
    };
    records_arrive_mapped("otlp-json", export, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_exports_are_read() {
    let export = Export {
        encoding: "protobuf",
        service: "search",
        records: 100,
        token: None,
        gzip: true,
    };
    records_arrive_mapped("otlp-gzip", export, &[]).await;
}

/// An OTLP/JSON export of three records, the second of which is not a log record (its
/// trace id is not hex).
const ONE_BAD_RECORD: &str = r#"{"resourceLogs":[{
  "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
  "scopeLogs":[{"logRecords":[
    {"timeUnixNano":"1796552910306000000","severityNumber":9,"body":{"stringValue":"first"}},
    {"timeUnixNano":"1796552910307000000","traceId":"not-hex","body":{"stringValue":"bad"}},
    {"timeUnixNano":"1796552910308000000","severityText":"error","body":{"stringValue":"third"}}
  ]}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_400_and_bad_records_are_reported_in_partial_success() {
    let _sending = SENDING.lock().await;
    let dir = scratch("otlp-refusals");
    let http = Http::new();
    let distributor = InProc::distributor(&[]).await;
    let logs = format!("{}/v1/logs", distributor.url);

    // No analyzer yet: 503 with Retry-After, as every format answers it.
    let answer = http.post(&logs, "application/json", ONE_BAD_RECORD).await;
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
        ("application/x-protobuf", &b"\xff\xff\xff\xff"[..]),
        ("application/json", &b"{\"resourceLogs\":"[..]),
        ("application/json", &b"[1, 2]"[..]),
    ] {
        let answer = http.post(&logs, content_type, body.to_vec()).await;
        assert_eq!(answer.status, 400, "{content_type}: {}", answer.text());
        assert!(
            answer.json()["error"].as_str().is_some(),
            "{}",
            answer.text()
        );
    }
    let answer = http.post(&logs, "application/x-ndjson", "{}").await;
    assert_eq!(answer.status, 415, "{}", answer.text());
    assert!(received(std::slice::from_ref(&journal)).is_empty());

    let answer = http.post(&logs, "application/json", ONE_BAD_RECORD).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.headers["content-type"], "application/json",
        "answered in the request's encoding"
    );
    let partial = &answer.json()["partialSuccess"];
    // int64 is a string in OTLP/JSON.
    assert_eq!(partial["rejectedLogRecords"], "1", "{}", answer.text());
    assert!(
        partial["errorMessage"]
            .as_str()
            .unwrap()
            .contains("index 1"),
        "the reason names the record: {partial}"
    );
    let messages = received(std::slice::from_ref(&journal));
    let delivered: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m["message"].as_str().unwrap(),
                m["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(delivered, [("first", "INFO"), ("third", "ERROR")]);
    assert_eq!(messages[0]["timestamp"], 1_796_552_910_306_i64);
    assert_eq!(messages[0]["source"], "cart");

    // An export that is all refused is delivered nowhere and still answered 200.
    let all_bad = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"spanId":"zz"}]}]}]}"#;
    let answer = http.post(&logs, "application/json", all_bad).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["partialSuccess"]["rejectedLogRecords"], "1");
    assert_eq!(received(std::slice::from_ref(&journal)).len(), 2);

    // Behind the ingest token like every format.
    let guarded = InProc::distributor(&["--ingest-token", "s3cret-ingest"]).await;
    let answer = http
        .request(
            Method::POST,
            &format!("{}/v1/logs", guarded.url),
            &[("content-type", "application/json")],
            ONE_BAD_RECORD,
        )
        .await;
    assert_eq!(answer.status, 401, "{}", answer.text());
}
