//! A bad record among good ones at `POST /packets`, under each `--on-invalid`: `reject`
//! (the default) refuses the batch with a 400 naming the record; `drop` delivers the good
//! records, answers 200 so that the agent does not send the batch again, and counts the
//! bad one in `/metrics`; `dead-letter` also writes the bad one, with its reason, to
//! `--dead-letter FILE`. The batches are Fluent Bit's `json_lines` bodies (see
//! `shippers.rs`), sent over real HTTP to an in-process distributor and its analyzers.
//!
//! Rerun: `cargo nextest run -p logdist --test on_invalid`.

mod common;

use std::path::Path;

use common::clients::*;
use common::*;
use serde_json::Value;

/// A batch of five records, two of them bad: line 3 is a number, not an object, and
/// line 4 has no message.
const BATCH: &str = concat!(
    r#"{"date":1796552910.306,"log":"first","host":"web-1"}"#,
    "\n",
    r#"{"date":1796552911.306,"log":"second","host":"web-1"}"#,
    "\n",
    "42\n",
    r#"{"date":1796552912.306,"level":"warn","host":"web-1"}"#,
    "\n",
    r#"{"date":1796552913.306,"log":"fifth","host":"web-1"}"#,
    "\n",
);

/// The good records of [`BATCH`], by their message.
const GOOD: [&str; 3] = ["first", "second", "fifth"];

/// Posts [`BATCH`] to `distributor` as Fluent Bit's `json_lines` output does.
async fn post_batch(http: &Http, distributor: &str) -> Answer {
    http.post(
        &format!("{distributor}/packets"),
        "application/x-ndjson",
        BATCH,
    )
    .await
}

/// `logdist_records_invalid_total` of `/packets` for `action` (`rejected`, `dropped`,
/// `dead_lettered`) in the distributor's `/metrics`.
async fn invalid(http: &Http, distributor: &str, action: &str) -> f64 {
    let text = http.get(&format!("{distributor}/metrics")).await.text();
    let (format, action) = ("format=\"packets\"", format!("action=\"{action}\""));
    text.lines()
        .filter(|l| l.starts_with("logdist_records_invalid_total{"))
        .filter(|l| l.contains(format) && l.contains(&action))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends [`BATCH`] to a distributor with `flags`, and checks what `drop` and
/// `dead-letter` share: the good records are delivered, the answer is 200, counts them
/// and says which two were dropped and why, and `/metrics` counts the two under `action`.
async fn good_records_arrive_and_bad_ones_are_counted(dir: &Path, flags: &[&str], action: &str) {
    let http = Http::new();
    let (distributor, _analyzers, journals) = distributor_and_analyzers(dir, flags).await;
    let invalid_before = invalid(&http, &distributor.url, action).await;

    let answer = post_batch(&http, &distributor.url).await;
    assert_eq!(
        answer.status,
        200,
        "the agent is not told to send it again: {}",
        answer.text()
    );
    let json = answer.json();
    assert_eq!(json["messages"], 3, "{json}");
    assert_eq!(json["dropped"], 2, "{json}");
    let errors = json["errors"].as_array().unwrap();
    assert!(
        errors.len() == 2
            && errors[0]
                .as_str()
                .unwrap()
                .starts_with("line 3: expected a JSON object")
            && errors[1]
                .as_str()
                .unwrap()
                .starts_with("line 4: no message"),
        "where and why: {json}"
    );

    let messages = received(&journals);
    let mut delivered: Vec<&str> = messages
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    delivered.sort_unstable();
    let mut good = GOOD.to_vec();
    good.sort_unstable();
    assert_eq!(delivered, good);
    let first = messages.iter().find(|m| m["message"] == "first").unwrap();
    assert_eq!(first["timestamp"], 1_796_552_910_306_i64);
    assert_eq!(first["source"], "web-1");

    assert_eq!(
        invalid(&http, &distributor.url, action).await - invalid_before,
        2.0,
        "/metrics counts the two bad records as {action}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_delivers_the_good_records_and_counts_the_bad_ones() {
    let _sending = SENDING.lock().await;
    let dir = scratch("on-invalid-drop");
    good_records_arrive_and_bad_ones_are_counted(&dir, &["--on-invalid", "drop"], "dropped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_writes_each_bad_record_with_its_reason() {
    let _sending = SENDING.lock().await;
    let dir = scratch("on-invalid-dead-letter");
    let file = dir.join("dead-letter.ndjson");
    let path = file.to_str().unwrap();
    let flags = ["--on-invalid", "dead-letter", "--dead-letter", path];
    good_records_arrive_and_bad_ones_are_counted(&dir, &flags, "dead_lettered").await;

    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("the dead letters are not in {path}: {e}"));
    let letters: Vec<Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a dead letter is not JSON ({e}): {line}"))
        })
        .collect();
    assert_eq!(letters.len(), 2, "{text}");
    for letter in &letters {
        assert_eq!(letter["format"], "packets", "{letter}");
        assert!(letter["received_ms"].as_i64().unwrap() > 1_700_000_000_000);
    }
    let number = &letters[0];
    assert_eq!(
        (&number["at"], &number["record"]),
        (&"line 3".into(), &"42".into()),
        "{number}"
    );
    assert!(
        number["reason"]
            .as_str()
            .unwrap()
            .contains("expected a JSON object"),
        "{number}"
    );
    let no_message = &letters[1];
    assert_eq!(no_message["at"], "line 4", "{no_message}");
    assert_eq!(
        no_message["record"], r#"{"date":1796552912.306,"level":"warn","host":"web-1"}"#,
        "the record as sent: {no_message}"
    );
    assert!(
        no_message["reason"]
            .as_str()
            .unwrap()
            .starts_with("no message"),
        "{no_message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_refuses_the_batch_naming_the_bad_record() {
    let _sending = SENDING.lock().await;
    let http = Http::new();
    // The default, and said.
    for (test, flags) in [
        ("on-invalid-default", &[][..]),
        ("on-invalid-reject", &["--on-invalid", "reject"][..]),
    ] {
        let dir = scratch(test);
        let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, flags).await;
        let (dropped_before, rejected_before) = (
            invalid(&http, &distributor.url, "dropped").await,
            invalid(&http, &distributor.url, "rejected").await,
        );

        let answer = post_batch(&http, &distributor.url).await;
        assert_eq!(answer.status, 400, "{flags:?}: {}", answer.text());
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.contains("line 3"),
            "{flags:?} names the bad record: {error}"
        );
        assert!(
            received(&journals).is_empty(),
            "{flags:?}: nothing is delivered"
        );
        assert_eq!(
            invalid(&http, &distributor.url, "dropped").await,
            dropped_before,
            "{flags:?}: nothing is dropped"
        );
        assert!(
            invalid(&http, &distributor.url, "rejected").await > rejected_before,
            "{flags:?}: the refusal is counted"
        );
    }
}
