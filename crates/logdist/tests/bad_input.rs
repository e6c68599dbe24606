//! End to end: every kind of bad input gets its 4xx with a JSON error that says what and
//! where, nothing of a rejected packet is delivered, and the server keeps serving. The
//! servers run in the test's process ([`InProc`]).

mod common;

use std::io::Write;

use common::inproc::InProc;
use common::*;
use hyper::Method;

const GOOD: &str =
    r#"{"timestamp":1020,"severity":"WARN","source":"app","message":"hello world!"}"#;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
}

fn case(
    name: &'static str,
    path: &'static str,
    ct: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    error: &'static str,
) -> Case {
    Case {
        name,
        method: Method::POST,
        path,
        headers: vec![("content-type", ct)],
        body: body.into(),
        status,
        error,
    }
}

/// Every malformed request, for a distributor listening on `port`.
fn cases(port: &str) -> Vec<Case> {
    let nd = "application/x-ndjson";
    let js = "application/json";
    let mut bomb_input = vec![b' '; 2 * 1024 * 1024];
    bomb_input.extend_from_slice(GOOD.as_bytes());
    let mut cases = vec![
        case(
            "broken JSON",
            "/packets",
            nd,
            format!("{GOOD}\n{{\"timestamp\":1,"),
            400,
            "line 2: EOF while parsing",
        ),
        case(
            "missing field",
            "/packets",
            nd,
            r#"{"timestamp":1,"severity":"a","message":"m"}"#,
            400,
            "line 1: missing field `source`",
        ),
        case(
            "wrong type",
            "/packets",
            js,
            format!(r#"[{GOOD},{{"timestamp":"noon","severity":"a","source":"b","message":"c"}}]"#),
            400,
            "index 1: invalid type: string \"noon\"",
        ),
        case(
            "float timestamp",
            "/message/send",
            js,
            r#"{"timestamp":1.5,"severity":"a","source":"b","message":"c"}"#,
            400,
            "invalid type: floating point",
        ),
        case(
            "overflowing number",
            "/packets",
            nd,
            r#"{"timestamp":123456789012345678901234567890,"severity":"a","source":"b","message":"c"}"#,
            400,
            "line 1:",
        ),
        case(
            "not an object",
            "/packets",
            js,
            "[1,2,3]",
            400,
            "index 0: expected a JSON object",
        ),
        case(
            "not JSON at all",
            "/packets",
            js,
            "hello",
            400,
            "expected a JSON array",
        ),
        case("empty body", "/packets", nd, "", 400, "the packet is empty"),
        case(
            "empty array",
            "/packets",
            js,
            "[]",
            400,
            "the packet is empty",
        ),
        case(
            "empty message body",
            "/message/send",
            js,
            "",
            400,
            "the body is empty",
        ),
        case(
            "invalid UTF-8",
            "/packets",
            nd,
            [&GOOD.as_bytes()[..60], b"\xff\xfe", &GOOD.as_bytes()[60..]].concat(),
            400,
            "line 1:",
        ),
        case(
            "NUL byte",
            "/packets",
            nd,
            GOOD.replace("hello", "hel\u{0}lo"),
            400,
            "line 1: control character",
        ),
        case(
            "deep nesting",
            "/packets",
            nd,
            format!(
                r#"{{"timestamp":1,"severity":"a","source":"b","message":"c","x":{}1{}}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            ),
            400,
            "recursion limit",
        ),
        case(
            "duplicate field",
            "/packets",
            nd,
            r#"{"timestamp":1,"timestamp":2,"severity":"a","source":"b","message":"c"}"#,
            400,
            "duplicate field",
        ),
        case(
            "empty severity",
            "/packets",
            nd,
            r#"{"timestamp":1,"severity":"","source":"b","message":"c"}"#,
            400,
            "`severity` is empty",
        ),
        case(
            "unknown content type",
            "/packets",
            "text/xml",
            GOOD,
            415,
            "Content-Type `text/xml` is not supported",
        ),
        case(
            "form content type on message/send",
            "/message/send",
            "application/x-www-form-urlencoded",
            GOOD,
            415,
            "not supported",
        ),
        case(
            "oversize body",
            "/packets",
            nd,
            format!("{GOOD}\n").repeat(3000),
            413,
            "larger than the limit of 65536 bytes",
        ),
        case(
            "register: negative weight",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":-1,"port":3001}"#,
            400,
            "positive finite",
        ),
        case(
            "register: zero weight",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":0,"port":3001}"#,
            400,
            "positive finite",
        ),
        case(
            "register: NaN weight",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":"NaN","port":3001}"#,
            400,
            "invalid registration",
        ),
        case(
            "register: empty id",
            "/analyzer/register",
            js,
            r#"{"id":"","weight":1,"port":3001}"#,
            400,
            "analyzer id is empty",
        ),
        case(
            "register: 10 KB id",
            "/analyzer/register",
            js,
            format!(
                r#"{{"id":"{}","weight":1,"port":3001}}"#,
                "x".repeat(10_240)
            ),
            400,
            "the limit is 128",
        ),
        case(
            "register: file URL",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1,"url":"file:///etc/passwd"}"#,
            400,
            "scheme `file` is not supported",
        ),
        case(
            "register: URL with a path",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1,"url":"http://127.0.0.1:1/admin"}"#,
            400,
            "has a path",
        ),
        case(
            "register: URL and port",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1,"url":"http://127.0.0.1:1","port":2}"#,
            400,
            "not both",
        ),
        case(
            "register: neither URL nor port",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1}"#,
            400,
            "give `url`",
        ),
        case(
            "register: not JSON",
            "/analyzer/register",
            js,
            "id=x",
            400,
            "invalid registration",
        ),
        case(
            "deregister: unknown id",
            "/analyzer/deregister",
            js,
            r#"{"id":"nobody"}"#,
            404,
            "no analyzer is registered as `nobody`",
        ),
        case(
            "unknown path",
            "/nowhere",
            js,
            GOOD,
            404,
            "no such endpoint",
        ),
    ];
    let mut gz = case(
        "gzip bomb",
        "/packets",
        nd,
        gzip(&bomb_input),
        413,
        "once decompressed",
    );
    gz.headers.push(("content-encoding", "gzip"));
    let mut bad_gz = case("not gzip", "/packets", nd, GOOD, 400, "not valid gzip");
    bad_gz.headers.push(("content-encoding", "gzip"));
    let mut bad_zstd = case("not zstd", "/packets", nd, GOOD, 400, "not valid zstd");
    bad_zstd.headers.push(("content-encoding", "zstd"));
    let mut brotli = case(
        "unknown encoding",
        "/packets",
        nd,
        GOOD,
        415,
        "Content-Encoding `br` is not supported",
    );
    brotli.headers.push(("content-encoding", "br"));
    let mut bad_key = case(
        "Idempotency-Key with a space",
        "/packets",
        nd,
        GOOD,
        400,
        "Idempotency-Key must be 1 to 255 visible ASCII",
    );
    bad_key.headers.push(("idempotency-key", "agent 1"));
    let mut long_key = case(
        "Idempotency-Key of 256 characters",
        "/packets",
        nd,
        GOOD,
        400,
        "Idempotency-Key must be 1 to 255 visible ASCII",
    );
    long_key.headers.push(("idempotency-key", long_key_value()));
    let mut truncated_gz = case(
        "truncated gzip",
        "/packets",
        nd,
        gzip(GOOD.as_bytes())[..12].to_vec(),
        400,
        "not valid gzip",
    );
    truncated_gz.headers.push(("content-encoding", "gzip"));
    let mut get_packets = case(
        "GET on /packets",
        "/packets",
        nd,
        "",
        405,
        "GET is not allowed on /packets; use POST",
    );
    get_packets.method = Method::GET;
    let mut delete_stats = case(
        "DELETE on /analyzer/stats",
        "/analyzer/stats",
        js,
        "",
        405,
        "use GET",
    );
    delete_stats.method = Method::DELETE;
    cases.extend([
        gz,
        bad_gz,
        bad_zstd,
        brotli,
        bad_key,
        long_key,
        truncated_gz,
        get_packets,
        delete_stats,
    ]);
    cases.extend([
        case(
            "register: the distributor itself",
            "/analyzer/register",
            js,
            format!(r#"{{"id":"x","weight":1,"url":"http://127.0.0.1:{port}"}}"#),
            400,
            "this distributor itself",
        ),
        case(
            "register: cloud metadata address",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1,"url":"http://169.254.169.254:80"}"#,
            400,
            "link-local",
        ),
        case(
            "register: unspecified address",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1,"url":"http://0.0.0.0:3001"}"#,
            400,
            "unspecified",
        ),
        case(
            "register: gopher URL",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1,"url":"gopher://127.0.0.1:70"}"#,
            400,
            "scheme `gopher` is not supported",
        ),
        case(
            "register: URL with credentials",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1,"url":"http://user:pw@127.0.0.1:3001"}"#,
            400,
            "carries credentials",
        ),
        case(
            "register: port 0",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1,"port":0}"#,
            400,
            "port 0",
        ),
        case(
            "register: port out of range",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1,"port":70000}"#,
            400,
            "invalid registration",
        ),
        case(
            "register: weight overflows",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":1e400,"port":3001}"#,
            400,
            "invalid registration",
        ),
        case(
            "register: weight as a string",
            "/analyzer/register",
            js,
            r#"{"id":"x","weight":"0.5","port":3001}"#,
            400,
            "invalid registration",
        ),
        case(
            "register: id with a newline",
            "/analyzer/register",
            js,
            r#"{"id":"a\nb","weight":1,"port":3001}"#,
            400,
            "analyzer id contains",
        ),
        case(
            "deregister: not JSON",
            "/analyzer/deregister",
            js,
            "analyzer_1",
            400,
            "invalid deregistration",
        ),
        case(
            "message/send: an array",
            "/message/send",
            js,
            format!("[{GOOD}]"),
            400,
            "expected a JSON object",
        ),
        case(
            "JSON array with trailing garbage",
            "/packets",
            js,
            format!("[{GOOD}] x"),
            400,
            "trailing characters at line 1 column 80",
        ),
    ]);
    cases
}

fn long_key_value() -> &'static str {
    Box::leak("k".repeat(256).into_boxed_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_input_gets_its_4xx_and_nothing_is_delivered() {
    let http = Http::new();
    // `--schema strict`: the cases check every way a message is refused; under the
    // default mapping, a record that is not a message is mapped instead (see
    // `shippers_records_are_mapped_and_only_unmappable_ones_refused`).
    let distributor = InProc::distributor(&["--max-body", "64KiB", "--schema", "strict"]).await;
    let url = distributor.url.clone();
    let analyzer = InProc::analyzer(1, 1.0, &url, &[]).await;
    let analyzer_url = analyzer.url.clone();
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;
    // The recorder is the process's (see `common::inproc`): count from here.
    let rejected = |metrics: &str, reason: &str| {
        metric(
            metrics,
            &format!("logdist_rejected_total{{reason=\"{reason}\""),
        )
    };
    let before = http.get(&format!("{url}/metrics")).await.text();

    let mut delivered = 0;
    let cases = cases(&distributor.port().to_string());
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for c in cases {
        let answer = http
            .request(
                c.method.clone(),
                &format!("{url}{}", c.path),
                &c.headers,
                c.body.clone(),
            )
            .await;
        assert_eq!(
            answer.status.as_u16(),
            c.status,
            "{}: {}",
            c.name,
            answer.text()
        );
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.contains(c.error),
            "{}: error {error:?} does not say {:?}",
            c.name,
            c.error
        );
        // The server keeps serving, and nothing of the bad packet reached the analyzer.
        let good = http
            .post(&format!("{url}/message/send"), "application/json", GOOD)
            .await;
        assert_eq!(good.status, 200, "after {}: {}", c.name, good.text());
        delivered += 1;
        let counted = http.get(&format!("{analyzer_url}/stats")).await.json()["messages"]
            .as_u64()
            .unwrap();
        assert_eq!(counted, delivered, "after {}", c.name);
    }
    let stats = http.stats(&url).await;
    assert_eq!(stats.len(), 1, "a bad registration was accepted: {stats:?}");
    let metrics = http.get(&format!("{url}/metrics")).await.text();
    for reason in ["bad_request", "too_large"] {
        assert!(
            rejected(&metrics, reason) > rejected(&before, reason),
            "no {reason} rejection counted: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_json_arrays_and_extra_fields_are_delivered() {
    let dir = scratch("encodings");
    let http = Http::new();
    let distributor = InProc::distributor(&[]).await;
    let url = distributor.url.clone();
    let journal = dir.join("journal.ndjson");
    let _analyzer = InProc::analyzer(1, 1.0, &url, &["--journal", journal.to_str().unwrap()]).await;
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;

    let encoded = [
        ("gzip", gzip(packet(0, 50).as_bytes())),
        (
            "zstd",
            zstd::encode_all(packet(50, 50).as_bytes(), 3).unwrap(),
        ),
    ];
    for (encoding, body) in encoded {
        let headers = [
            ("content-type", "application/x-ndjson"),
            ("content-encoding", encoding),
        ];
        let answer = http
            .request(Method::POST, &format!("{url}/packets"), &headers, body)
            .await;
        assert_eq!(
            (answer.status.as_u16(), answer.json()["messages"].as_u64()),
            (200, Some(50)),
            "{encoding}: {}",
            answer.text()
        );
    }

    let array = r#"[ {"timestamp": 1, "severity": "ERROR", "source": "db",
        "message": "disk full", "host": "db-1", "tags": {"team": "storage"}} ]"#;
    let answer = http
        .post(&format!("{url}/packets"), "application/json", array)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = http
        .request(Method::POST, &format!("{url}/packets"), &[], packet(100, 3))
        .await;
    assert_eq!(
        answer.status,
        200,
        "no Content-Type, sniffed as NDJSON: {}",
        answer.text()
    );

    let received = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(received.lines().count(), 104);
    assert!(
        received.contains(r#""host": "db-1", "tags": {"team": "storage"}}"#),
        "extra fields not kept verbatim"
    );
    assert!(
        received.contains(&packet(0, 100)),
        "packets not forwarded byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_accepted_answers_202_and_still_delivers() {
    let http = Http::new();
    let distributor = InProc::distributor(&["--ack", "accepted"]).await;
    let url = distributor.url.clone();
    let analyzer = InProc::analyzer(1, 1.0, &url, &[]).await;
    let analyzer_url = analyzer.url.clone();
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;
    for i in 0..20 {
        let answer = http.send_packet(&url, i * 5, 5).await;
        assert_eq!(answer.status, 202, "{}", answer.text());
        assert_eq!(answer.json()["status"], "accepted");
    }
    let answer = http
        .post(&format!("{url}/message/send"), "application/json", GOOD)
        .await;
    assert_eq!(
        answer.status, 200,
        "/message/send answers 200 as the original did"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let counted = http.get(&format!("{analyzer_url}/stats")).await.json()["messages"]
            .as_u64()
            .unwrap();
        if counted == 101 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {counted} of 101 messages delivered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_ingest_and_registration_but_not_stats() {
    let http = Http::new();
    let distributor = InProc::distributor(&["--token", "s3cret"]).await;
    let url = distributor.url.clone();
    let _analyzer = InProc::analyzer(1, 1.0, &url, &["--token", "s3cret"]).await;
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;

    for (path, body) in [
        ("/packets", GOOD),
        ("/message/send", GOOD),
        ("/analyzer/register", r#"{"id":"x","weight":1,"port":1}"#),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Basic czNjcmV0"),
        ] {
            let mut headers = vec![("content-type", "application/json")];
            headers.extend(auth.map(|a| ("authorization", a)));
            let answer = http
                .request(Method::POST, &format!("{url}{path}"), &headers, body)
                .await;
            assert_eq!(
                answer.status,
                401,
                "{path} with {auth:?}: {}",
                answer.text()
            );
            assert_eq!(answer.headers["www-authenticate"], "Bearer");
        }
    }
    let answer = http
        .request(
            Method::POST,
            &format!("{url}/message/send"),
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer s3cret"),
            ],
            GOOD,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(http.stats(&url).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_validation_checks_lines_and_objects_only() {
    let http = Http::new();
    let distributor = InProc::distributor(&["--validate", "framing"]).await;
    let url = distributor.url.clone();
    let analyzer = InProc::analyzer(1, 1.0, &url, &["--count-only"]).await;
    let analyzer_url = analyzer.url.clone();
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;
    let nd = "application/x-ndjson";
    let answer = http.send_packet(&url, 0, 100).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["messages"], 100);
    for (body, error) in [
        (format!("{GOOD}\n[1]\n"), "line 2: expected a JSON object"),
        (
            format!("{GOOD}\n{{\"a\":\n"),
            "line 2: the object does not end",
        ),
        ("\n\n".to_owned(), "the packet is empty"),
    ] {
        let answer = http.post(&format!("{url}/packets"), nd, body).await;
        assert_eq!(answer.status, 400, "{}", answer.text());
        assert!(answer.text().contains(error), "{}", answer.text());
    }
    let mut bad_utf8 = format!("{GOOD}\n").into_bytes();
    bad_utf8.extend_from_slice(b"{\"a\":\"\xff\"}\n");
    let answer = http.post(&format!("{url}/packets"), nd, bad_utf8).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer.text().contains("line 2: invalid UTF-8"),
        "{}",
        answer.text()
    );
    // The fields are not checked in this mode: an object without them goes through.
    let answer = http
        .post(&format!("{url}/packets"), nd, "{\"x\":1}\n")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let counted = http.get(&format!("{analyzer_url}/stats")).await.json()["messages"]
        .as_u64()
        .unwrap();
    assert_eq!(counted, 101);
}

/// Under the default `--schema map`, a record that is not a message but has a message
/// field is mapped and delivered; one that cannot be (not an object, no message) refuses
/// its body with 400 naming it (`--on-invalid reject`), and nothing of the body is
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shippers_records_are_mapped_and_only_unmappable_ones_refused() {
    let dir = scratch("mapped");
    let http = Http::new();
    let distributor = InProc::distributor(&[]).await;
    let url = distributor.url.clone();
    let journal = dir.join("journal.ndjson");
    let _analyzer = InProc::analyzer(1, 1.0, &url, &["--journal", journal.to_str().unwrap()]).await;
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;

    let nd = "application/x-ndjson";
    let mapped = [
        // Today's strict refusals, mapped: a missing source, a time of another type.
        r#"{"timestamp":1,"severity":"a","message":"m"}"#,
        r#"{"timestamp":"noon","severity":"ERROR","source":"b","message":"c"}"#,
        r#"{"@timestamp":"2026-12-06T10:28:30.306Z","log.level":"warning","service.name":"cart","message":"paid"}"#,
    ];
    let answer = http
        .post(&format!("{url}/packets"), nd, mapped.join("\n"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["messages"], 3);
    let received = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<serde_json::Value> = received
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{received}");
    assert_eq!(lines[0]["source"], "unknown");
    assert_eq!(lines[0]["severity_original"], "a");
    assert_eq!(lines[1]["timestamp_original"], "noon");
    assert!(lines[1]["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(lines[2]["timestamp"], 1_796_552_910_306_i64);
    assert_eq!(
        (
            &lines[2]["severity"],
            &lines[2]["source"],
            &lines[2]["message"]
        ),
        (
            &serde_json::json!("WARN"),
            &serde_json::json!("cart"),
            &serde_json::json!("paid")
        )
    );

    let js = "application/json";
    for (body, media, error) in [
        (
            format!("{GOOD}\n42\n"),
            nd,
            "line 2: expected a JSON object",
        ),
        (
            format!("{GOOD}\n{{\"lvl\":\"info\"}}\n"),
            nd,
            "line 2: no message",
        ),
        (
            format!("[{GOOD},\"text\"]"),
            js,
            "message at index 1: expected a JSON object",
        ),
    ] {
        let answer = http
            .post(&format!("{url}/packets"), media, body.clone())
            .await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        let said = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(said.starts_with(error), "{body}: {said}");
    }
    let one = http
        .post(
            &format!("{url}/message/send"),
            "application/json",
            r#"{"msg":"one","level":"err"}"#,
        )
        .await;
    assert_eq!(one.status, 200, "{}", one.text());
    let received = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(
        received.lines().count(),
        4,
        "refused bodies were delivered: {received}"
    );
    assert!(
        received
            .lines()
            .last()
            .unwrap()
            .contains(r#""severity":"ERROR""#)
    );
}
