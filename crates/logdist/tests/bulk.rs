//! Elasticsearch's bulk at `POST`/`PUT` `/_bulk` and `/{index}/_bulk`, sent by a real
//! client: the Python `elasticsearch` client (8.19.3) with `info()`, `ping()` and
//! `helpers.bulk`, to an in-process distributor and its analyzers; and the calls shippers
//! make before their bulk, by plain HTTP. What the analyzers received is read from their
//! journals.
//!
//! The client is installed by `.ci/run`; without it (or without `python3`) the tests fail
//! and say what to install.
//!
//! Rerun: `cargo nextest run -p logdist --test bulk`.

mod common;

use std::path::{Path, PathBuf};

use common::inproc::{InProc, Running};
use common::*;
use hyper::Method;
use serde_json::{Value, json};

/// The script that drives the client.
const BULK_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/es_bulk.py");

/// The levels the script gives document i (`LEVELS[i % 5]`), as logdist's severities.
const SEVERITIES: [&str; 5] = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// `2026-12-06T10:28:00.306Z`, in epoch milliseconds: document i is dated `i % 60`
/// seconds after it.
const MINUTE_START_MS: i64 = 1_796_552_880_306;

/// Held by every test that sends while it runs: the distributors of one test process count
/// into one recorder, so counting a test's packets by the counters' change needs no other
/// test sending (`cargo test` runs this file's tests side by side in one process).
static SENDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs the script against `distributor` with `args`; returns its report.
async fn bulk_through_client(distributor: &str, args: &[&str]) -> Value {
    let mut all = vec!["--url".to_owned(), distributor.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    common::clients::run_python(BULK_SCRIPT, &all, "the bulk script").await
}

/// Analyzers `1..=count` of `distributor`, writing journals in `dir`, once all are online.
async fn analyzers(dir: &Path, distributor: &Running, count: u32) -> (Vec<Running>, Vec<PathBuf>) {
    let mut analyzers = Vec::new();
    let mut journals = Vec::new();
    let mut ids = Vec::new();
    for id in 1..=count {
        let journal = dir.join(format!("journal_{id}.ndjson"));
        let path = journal.to_str().unwrap().to_owned();
        let weight = 1.0 / f64::from(count);
        analyzers.push(InProc::analyzer(id, weight, &distributor.url, &["--journal", &path]).await);
        journals.push(journal);
        ids.push(format!("analyzer_{id}"));
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    Http::new()
        .wait_stats(&distributor.url, "every analyzer online", |s| {
            online(s, &ids)
        })
        .await;
    (analyzers, journals)
}

/// Every message the analyzers wrote to their journals.
fn received(journals: &[PathBuf]) -> Vec<Value> {
    journals
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(|line| {
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("a journal line is not JSON ({e}): {line}"))
                })
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// The `logdist_packets_received_total` and `logdist_messages_received_total` of
/// `distributor`.
async fn received_totals(http: &Http, distributor: &str) -> (f64, f64) {
    let text = http.get(&format!("{distributor}/metrics")).await.text();
    (
        metric(&text, "logdist_packets_received_total"),
        metric(&text, "logdist_messages_received_total"),
    )
}

/// The item of a `helpers.bulk` failure: its action and what Elasticsearch would say.
fn failure(failed: &Value) -> (&str, &Value) {
    let (action, item) = failed.as_object().unwrap().iter().next().unwrap();
    (action.as_str(), item)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpers_bulk_delivers_the_good_documents_and_is_told_of_each_bad_one() {
    let _sending = SENDING.lock().await;
    let dir = scratch("bulk-helpers");
    let http = Http::new();
    let distributor = InProc::distributor(&[]).await;
    let (_analyzers, journals) = analyzers(&dir, &distributor, 2).await;
    let (packets_before, messages_before) = received_totals(&http, &distributor.url).await;

    // 1,000 documents, three of them not JSON objects, then a delete and an update: three
    // bulks of 500, 500 and 2 actions.
    let bad = [5_usize, 250, 777];
    let report = bulk_through_client(
        &distributor.url,
        &["--docs", "1000", "--bad", "5,250,777", "--others"],
    )
    .await;

    // What the client read first, as Elasticsearch 8 answers it.
    let info = &report["info"];
    assert_eq!(info["version"]["number"], "8.15.0", "{info}");
    assert_eq!(info["version"]["build_flavor"], "default", "{info}");
    assert_eq!(info["cluster_name"], "logdist", "{info}");
    assert_eq!(info["tagline"], "You Know, for Search", "{info}");
    assert_eq!(report["ping"], true);

    assert_eq!(report["taken"], 997, "{report}");
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 5, "{report}");
    for refused in &failed[..3] {
        let (action, item) = failure(refused);
        assert_eq!(action, "index", "{refused}");
        assert_eq!(item["status"], 400, "{refused}");
        assert_eq!(item["_index"], "logs", "the path's index: {refused}");
        assert_eq!(
            item["error"]["type"], "document_parsing_exception",
            "{refused}"
        );
        assert!(
            !item["error"]["reason"].as_str().unwrap().is_empty(),
            "{refused}"
        );
    }
    let (action, deleted) = failure(&failed[3]);
    assert_eq!(action, "delete");
    assert_eq!(
        (&deleted["status"], &deleted["result"]),
        (&json!(404), &json!("not_found"))
    );
    let (action, updated) = failure(&failed[4]);
    assert_eq!(action, "update");
    assert_eq!(updated["status"], 404);
    assert_eq!(updated["error"]["type"], "document_missing_exception");
    assert!(
        updated["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("only index and create are taken"),
        "{updated}"
    );

    // Two bulks of documents, each one packet of its good ones; the third held none.
    let (packets, messages) = received_totals(&http, &distributor.url).await;
    assert_eq!(
        (packets - packets_before, messages - messages_before),
        (2.0, 997.0)
    );

    let messages = received(&journals);
    assert_eq!(messages.len(), 997);
    let mut seen = vec![false; 1000];
    for message in &messages {
        let text = message["message"].as_str().unwrap();
        let i: usize = text
            .strip_prefix("doc ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a document of the script: {message}"));
        assert!(!bad.contains(&i), "a bad document arrived: {message}");
        assert!(!seen[i], "document {i} arrived twice");
        seen[i] = true;
        assert_eq!(message["severity"], SEVERITIES[i % 5], "{message}");
        assert_eq!(message["source"], "checkout", "{message}");
        assert_eq!(
            message["timestamp"],
            MINUTE_START_MS + (i % 60) as i64 * 1000,
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_token_is_taken_as_elasticsearch_clients_send_it() {
    let _sending = SENDING.lock().await;
    let dir = scratch("bulk-token");
    let distributor = InProc::distributor(&["--ingest-token", "s3cret-ingest"]).await;
    let (_analyzers, journals) = analyzers(&dir, &distributor, 1).await;

    for auth in ["bearer", "apikey", "apikey-pair", "basic"] {
        let report = bulk_through_client(
            &distributor.url,
            &["--docs", "10", "--auth", auth, "--token", "s3cret-ingest"],
        )
        .await;
        assert_eq!(report["taken"], 10, "{auth}: {report}");
        assert_eq!(report["failed"], json!([]), "{auth}: {report}");
    }
    for (auth, token) in [("apikey", "wrong"), ("basic", "wrong"), ("none", "")] {
        let report = bulk_through_client(
            &distributor.url,
            &["--docs", "10", "--auth", auth, "--token", token],
        )
        .await;
        assert_eq!(report, json!({"refused": 401}), "{auth}");
    }
    assert_eq!(received(&journals).len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_shippers_ask_first_and_every_bulk_answer_carries_the_product() {
    let _sending = SENDING.lock().await;
    let dir = scratch("bulk-calls");
    let http = Http::new();
    let distributor = InProc::distributor(&[]).await;
    let url = &distributor.url;
    let (_analyzers, journals) = analyzers(&dir, &distributor, 1).await;
    let product = |answer: &Answer| {
        answer
            .headers
            .get("x-elastic-product")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let elasticsearch = Some("Elasticsearch".to_owned());

    let root = http.get(&format!("{url}/")).await;
    assert_eq!(root.status, 200, "{}", root.text());
    assert_eq!(product(&root), elasticsearch);
    assert_eq!(root.json()["version"]["number"], "8.15.0");
    let head = http
        .request(Method::HEAD, &format!("{url}/"), &[], "")
        .await;
    assert_eq!((head.status.as_u16(), head.body.len()), (200, 0));
    assert_eq!(product(&head), elasticsearch);
    let health = http.get(&format!("{url}/_cluster/health")).await;
    assert_eq!(health.json()["status"], "green");
    assert_eq!(product(&health), elasticsearch);
    let license = http.get(&format!("{url}/_license")).await;
    assert_eq!(license.json()["license"]["status"], "active");

    // Vector's and Fluent Bit's bulk: `POST /{index}/_bulk`, actions without `_index`,
    // as application/json and application/x-ndjson; the Python client's `PUT`.
    let document = r#"{"@timestamp":"2026-12-06T10:28:30.306Z","host":"web-1","message":"ready"}"#;
    for (method, content_type) in [
        (Method::POST, "application/json"),
        (Method::POST, "application/x-ndjson"),
        (
            Method::PUT,
            "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
        ),
    ] {
        let body = format!("{{\"create\":{{}}}}\n{document}\n");
        let answer = http
            .request(
                method.clone(),
                &format!("{url}/vector-2026.12.06/_bulk"),
                &[("content-type", content_type)],
                body,
            )
            .await;
        assert_eq!(
            answer.status,
            200,
            "{method} {content_type}: {}",
            answer.text()
        );
        assert_eq!(product(&answer), elasticsearch);
        let body = answer.json();
        assert_eq!(body["errors"], false, "{body}");
        let item = &body["items"][0]["create"];
        assert_eq!(item["_index"], "vector-2026.12.06", "{body}");
        assert_eq!(
            (&item["status"], &item["result"]),
            (&json!(201), &json!("created"))
        );
        assert_eq!(item["_id"].as_str().unwrap().len(), 20, "{body}");
    }
    // Without an index anywhere, the item fails as Elasticsearch fails it.
    let answer = http
        .post(
            &format!("{url}/_bulk"),
            "application/x-ndjson",
            format!("{{\"index\":{{}}}}\n{document}\n"),
        )
        .await;
    let body = answer.json();
    assert_eq!(body["errors"], true, "{body}");
    assert_eq!(
        body["items"][0]["index"]["error"]["type"],
        "action_request_validation_exception"
    );
    assert_eq!(received(&journals).len(), 3);

    // Refusals of the whole body carry the product too.
    let malformed = http
        .post(
            &format!("{url}/_bulk"),
            "application/x-ndjson",
            "{\"upsert\":{}}\n{}\n",
        )
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    assert!(
        malformed.json()["error"]
            .as_str()
            .unwrap()
            .contains("Malformed action/metadata line [1]"),
        "{}",
        malformed.text()
    );
    assert_eq!(product(&malformed), elasticsearch);
    let unsupported = http.post(&format!("{url}/_bulk"), "text/plain", "{}").await;
    assert_eq!(unsupported.status, 415);
    assert_eq!(product(&unsupported), elasticsearch);
    let wrong_method = http.get(&format!("{url}/_bulk")).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "POST, PUT");
    // logdist's own formats do not claim to be Elasticsearch.
    let packets = http.send_packet(url, 0, 1).await;
    assert_eq!(packets.status, 200, "{}", packets.text());
    assert_eq!(product(&packets), None);
}
