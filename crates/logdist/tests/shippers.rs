//! Shippers' JSON at `POST /packets`, as the shippers send it with nothing mapped on their
//! side, to an in-process distributor and its analyzers; what the analyzers received is
//! read from their journals.
//!
//! - syslog-ng's `http()` destination (Debian's syslog-ng), run as a process of the test's
//!   own, with `format-json` of its macros: one message a request (NDJSON), and batches (a
//!   JSON array). The lines come from `logger`.
//! - The default bodies of Fluent Bit's `http` output (`format json_lines` and `json`) and
//!   of Vector's `http` sink with its NDJSON encoding: neither is packaged by Debian, so the
//!   test sends the bytes their documentation and sources give, over real HTTP.
//!
//! syslog-ng is installed by `.ci/run`; without it the syslog-ng tests fail and say what
//! to install.
//!
//! Rerun: `cargo nextest run -p logdist --test shippers`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::clients::*;
use common::syslog_ng::SyslogNg;
use common::*;
use serde_json::Value;

/// How many records each test sends.
const RECORDS: usize = 200;

/// How long syslog-ng may take to deliver what it was given.
const SYSLOG_NG_WAIT: Duration = Duration::from_secs(30);

/// `record 0`, `record 1`...
fn lines(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("record {i}")).collect()
}

/// Now, in epoch milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Checks that `messages` are records `0..count`, each once (by its `message`, `record
/// {i}`), and runs `check` on each with its number.
fn each_record_once(messages: &[Value], count: usize, check: impl Fn(usize, &Value)) {
    assert_eq!(messages.len(), count);
    let mut seen = vec![false; count];
    for message in messages {
        let i: usize = message["message"]
            .as_str()
            .and_then(|text| text.strip_prefix("record "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a record sent: {message}"));
        assert!(!seen[i], "record {i} arrived twice");
        seen[i] = true;
        check(i, message);
    }
}

/// The names of a message's fields.
fn keys(message: &Value) -> BTreeSet<&str> {
    message
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

/// The distributor's `logdist_rejected_total`, every reason together.
async fn rejected(http: &Http, distributor: &str) -> f64 {
    let text = http.get(&format!("{distributor}/metrics")).await.text();
    metric(&text, "logdist_rejected_total")
}

/// Checks that a syslog-ng time arrived as an integer in milliseconds, of a whole second
/// (ISODATE has none of its fractions) between `before` and `after`.
fn assert_syslog_time(message: &Value, before: i64, after: i64) {
    let ms = message["timestamp"]
        .as_i64()
        .unwrap_or_else(|| panic!("the time is not an integer: {message}"));
    assert_eq!(ms % 1000, 0, "ISODATE is whole seconds: {message}");
    assert!(
        before / 1000 * 1000 <= ms && ms <= after,
        "{ms} is not between {before} and {after}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_ngs_http_destination_with_format_json_arrives_mapped() {
    let _sending = SENDING.lock().await;
    let dir = scratch("syslog-ng-http");
    let http = Http::new();
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &[]).await;
    let (packets_before, messages_before) = received_totals(&http, &distributor.url).await;
    let rejected_before = rejected(&http, &distributor.url).await;

    // As syslog-ng's documentation sends JSON over HTTP: one message a request, the body
    // `format-json` of the macros wanted. Nothing else: no rewrite, no renamed key.
    let destination = format!(
        r#"http(url("{}/packets") method("POST") headers("Content-Type: application/x-ndjson") body("$(format-json ISODATE HOST PROGRAM MESSAGE)"));"#,
        distributor.url
    );
    let syslog_ng = SyslogNg::start(&dir, &destination);
    let before = now_ms();
    tokio::task::block_in_place(|| syslog_ng.log("checkout", "user.notice", &lines(RECORDS)));
    let messages = wait_received(&journals, RECORDS, SYSLOG_NG_WAIT, || syslog_ng.said()).await;
    let after = now_ms();

    each_record_once(&messages, RECORDS, |_, message| {
        assert_eq!(message["source"], "checkout", "PROGRAM: {message}");
        assert_eq!(message["severity"], "INFO", "the default: {message}");
        assert_syslog_time(message, before, after);
        assert!(message["HOST"].as_str().is_some_and(|h| !h.is_empty()));
        // The macros taken are gone; the one not taken is kept as sent.
        assert_eq!(
            keys(message),
            BTreeSet::from(["timestamp", "severity", "source", "message", "HOST"]),
            "{message}"
        );
    });
    let (packets, delivered) = received_totals(&http, &distributor.url).await;
    assert_eq!(
        (packets - packets_before, delivered - messages_before),
        (RECORDS as f64, RECORDS as f64),
        "one packet a request"
    );
    assert_eq!(
        rejected(&http, &distributor.url).await,
        rejected_before,
        "no request was refused (and sent again)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_ngs_batches_of_its_rfc5424_macros_arrive_mapped() {
    let _sending = SENDING.lock().await;
    let dir = scratch("syslog-ng-batches");
    let http = Http::new();
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &[]).await;
    let (packets_before, messages_before) = received_totals(&http, &distributor.url).await;
    let rejected_before = rejected(&http, &distributor.url).await;

    // Batches as a JSON array, as syslog-ng's documentation builds one, of the syslog
    // macros of `--scope rfc5424` (PRIORITY, FACILITY, HOST, PROGRAM, MESSAGE, DATE...)
    // with ISODATE.
    let destination = format!(
        r#"http(url("{}/packets") method("POST") headers("Content-Type: application/json") batch-lines(50) batch-timeout(200) body-prefix("[") delimiter(",") body-suffix("]") body("$(format-json --scope rfc5424 --key ISODATE)"));"#,
        distributor.url
    );
    let syslog_ng = SyslogNg::start(&dir, &destination);
    let before = now_ms();
    tokio::task::block_in_place(|| syslog_ng.log("billing", "local3.err", &lines(RECORDS)));
    let messages = wait_received(&journals, RECORDS, SYSLOG_NG_WAIT, || syslog_ng.said()).await;
    let after = now_ms();

    each_record_once(&messages, RECORDS, |_, message| {
        assert_eq!(message["source"], "billing", "PROGRAM: {message}");
        assert_eq!(message["severity"], "ERROR", "PRIORITY: {message}");
        assert_eq!(message["severity_original"], "err", "{message}");
        assert_eq!(message["FACILITY"], "local3", "kept as sent: {message}");
        assert!(message["DATE"].is_string(), "kept as sent: {message}");
        assert_syslog_time(message, before, after);
        for taken in ["PROGRAM", "PRIORITY", "MESSAGE", "ISODATE"] {
            assert!(message.get(taken).is_none(), "{taken} is taken: {message}");
        }
    });
    let (packets, delivered) = received_totals(&http, &distributor.url).await;
    let packets = packets - packets_before;
    assert!(
        (RECORDS as f64 / 50.0..RECORDS as f64).contains(&packets),
        "a batch is one packet: {packets} packets"
    );
    assert_eq!(delivered - messages_before, RECORDS as f64);
    assert_eq!(rejected(&http, &distributor.url).await, rejected_before);
}

/// Record i of Fluent Bit's: a line read by its `tail` input, and the host added by a
/// `record_modifier` filter, as its `http` output writes it: the time first, under its
/// default `json_date_key` (`date`) in its default `json_date_format` (`double`, epoch
/// seconds with the fraction, printed as `%.16g` prints a double).
fn fluent_bit_record(i: usize) -> String {
    format!(
        r#"{{"date":{}.306,"log":"record {i}","host":"web-1"}}"#,
        1_796_552_910 + i
    )
}

/// The time of [`fluent_bit_record`] i in epoch milliseconds.
fn fluent_bit_ms(i: usize) -> i64 {
    (1_796_552_910 + i as i64) * 1000 + 306
}

/// Posts `body` to `/packets` with `headers` as a shipper would, and checks that it is
/// one packet of [`RECORDS`] messages, mapped as `check` says.
async fn shipper_body_arrives_mapped(
    test: &str,
    headers: &[(&str, &str)],
    body: String,
    check: impl Fn(usize, &Value),
) {
    let _sending = SENDING.lock().await;
    let dir = scratch(test);
    let http = Http::new();
    let (distributor, _analyzers, journals) = distributor_and_analyzers(&dir, &[]).await;
    let (packets_before, messages_before) = received_totals(&http, &distributor.url).await;

    let answer = http
        .request(
            hyper::Method::POST,
            &format!("{}/packets", distributor.url),
            headers,
            body,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["messages"], RECORDS, "{}", answer.text());

    let (packets, messages) = received_totals(&http, &distributor.url).await;
    assert_eq!(
        (packets - packets_before, messages - messages_before),
        (1.0, RECORDS as f64),
        "a request is one packet of its records"
    );
    each_record_once(&received(&journals), RECORDS, check);
}

/// The checks of a Fluent Bit record.
fn fluent_bit_mapped(i: usize, message: &Value) {
    assert_eq!(message["timestamp"], fluent_bit_ms(i), "{message}");
    assert_eq!(message["source"], "web-1", "host: {message}");
    assert_eq!(message["severity"], "INFO", "the default: {message}");
    assert_eq!(
        keys(message),
        BTreeSet::from(["timestamp", "severity", "source", "message"]),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluent_bits_json_lines_body_arrives_mapped() {
    // `format json_lines`: each record on a line of its own, the last one too, sent as
    // `application/x-ndjson` (Fluent Bit's docs, "Output formats"; its out_http plugin).
    let body: String = (0..RECORDS).map(|i| fluent_bit_record(i) + "\n").collect();
    let headers = [
        ("content-type", "application/x-ndjson"),
        ("user-agent", "Fluent-Bit"),
    ];
    shipper_body_arrives_mapped("fluent-bit-json-lines", &headers, body, fluent_bit_mapped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluent_bits_json_body_arrives_mapped() {
    // `format json`: the records as one JSON array, sent as `application/json` (Fluent
    // Bit's docs, "Output formats").
    let records: Vec<String> = (0..RECORDS).map(fluent_bit_record).collect();
    let body = format!("[{}]", records.join(","));
    let headers = [
        ("content-type", "application/json"),
        ("user-agent", "Fluent-Bit"),
    ];
    shipper_body_arrives_mapped("fluent-bit-json", &headers, body, fluent_bit_mapped).await;
}

/// The fractions of a second Vector writes, by chrono's `SecondsFormat::AutoSi`: none,
/// milliseconds, microseconds or nanoseconds, as the time has them.
const VECTOR_FRACTIONS: [&str; 4] = ["", ".306", ".306123", ".306123456"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_http_sink_ndjson_body_arrives_mapped() {
    // Vector's `http` sink with `encoding.codec = "json"` and `framing.method =
    // "newline_delimited"` (Vector's docs, "HTTP sink"): a log event of its `file` source
    // per line, keys in order, the time as RFC 3339 UTC text, sent as
    // `application/x-ndjson`, with no newline after the last line (its sources trim it).
    let body = (0..RECORDS)
        .map(|i| {
            format!(
                r#"{{"file":"/var/log/app.log","host":"web-2","message":"record {i}","source_type":"file","timestamp":"2026-12-06T10:28:{:02}{}Z"}}"#,
                i % 60,
                VECTOR_FRACTIONS[i % 4]
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let headers = [
        ("content-type", "application/x-ndjson"),
        ("user-agent", "Vector/0.51.0"),
    ];
    shipper_body_arrives_mapped("vector-ndjson", &headers, body, |i, message| {
        // 2026-12-06T10:28:00Z is 1796552880 s.
        let ms = (1_796_552_880 + (i % 60) as i64) * 1000 + if i % 4 == 0 { 0 } else { 306 };
        assert_eq!(message["timestamp"], ms, "{message}");
        assert_eq!(message["source"], "web-2", "host: {message}");
        assert_eq!(message["severity"], "INFO", "the default: {message}");
        assert_eq!(message["source_type"], "file", "kept: {message}");
        assert_eq!(message["file"], "/var/log/app.log", "kept: {message}");
    })
    .await;
}
