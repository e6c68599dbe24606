//! Whole runs of the load generator against a stub distributor (axum on a free loopback
//! port) that counts and checks every message it receives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::*;

/// What the stub saw, and how it answers.
struct Stub {
    /// Answer to every ingest request.
    status: StatusCode,
    /// Delay before answering, to keep requests in flight.
    delay: Duration,
    packets: AtomicU64,
    lines: AtomicU64,
    /// Lines that were not a JSON object with the four required fields.
    bad_lines: AtomicU64,
    /// Requests without the expected `Authorization` header.
    unauthorized: AtomicU64,
}

fn valid_message(line: &[u8]) -> bool {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(line) else {
        return false;
    };
    m.get("timestamp").is_some_and(Value::is_u64)
        && ["severity", "source", "message"]
            .iter()
            .all(|f| m.get(*f).is_some_and(Value::is_string))
}

async fn ingest(stub: &Stub, headers: &HeaderMap, lines: Vec<&[u8]>) -> (StatusCode, String) {
    if headers
        .get("authorization")
        .is_some_and(|v| v != "Bearer s3cret")
    {
        stub.unauthorized.fetch_add(1, Relaxed);
    }
    stub.packets.fetch_add(1, Relaxed);
    let n = lines.len() as u64;
    stub.lines.fetch_add(n, Relaxed);
    let bad = lines.iter().filter(|line| !valid_message(line)).count() as u64;
    stub.bad_lines.fetch_add(bad, Relaxed);
    tokio::time::sleep(stub.delay).await;
    if stub.status == StatusCode::OK {
        (StatusCode::OK, json!({ "messages": n }).to_string())
    } else {
        (stub.status, json!({ "error": "busy" }).to_string())
    }
}

async fn packets(
    State(stub): State<Arc<Stub>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let ndjson = headers
        .get("content-type")
        .is_some_and(|v| v == "application/x-ndjson");
    if !ndjson || !body.ends_with(b"\n") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}".to_owned());
    }
    let lines = body[..body.len() - 1].split(|b| *b == b'\n').collect();
    ingest(&stub, &headers, lines).await
}

async fn message(
    State(stub): State<Arc<Stub>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    ingest(&stub, &headers, vec![&body[..]]).await
}

async fn stats(State(stub): State<Arc<Stub>>) -> String {
    let total = stub.lines.load(Relaxed);
    json!([{ "id": "1", "url": "http://127.0.0.1:3001", "weight": 1.0, "state": "online",
        "target_share": 1.0, "messages_sent": total, "share": 1.0,
        "messages_total": total, "packets_total": stub.packets.load(Relaxed) }])
    .to_string()
}

/// Starts a stub distributor and returns its base URL.
async fn stub(status: StatusCode, delay: Duration) -> (String, Arc<Stub>) {
    let stub = Arc::new(Stub {
        status,
        delay,
        packets: AtomicU64::new(0),
        lines: AtomicU64::new(0),
        bad_lines: AtomicU64::new(0),
        unauthorized: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/packets", post(packets))
        .route("/message/send", post(message))
        .route("/analyzer/stats", get(stats))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), stub)
}

fn args(target: String) -> LoadgenArgs {
    LoadgenArgs {
        target,
        agents: 4,
        quiet: true,
        seed: Some(42),
        ..LoadgenArgs::default()
    }
}

#[tokio::test]
async fn packets_run_counts_every_message() {
    let (target, stub) = stub(StatusCode::OK, Duration::ZERO).await;
    let report_path =
        std::env::temp_dir().join(format!("logdist-loadgen-{}.json", std::process::id()));
    let args = LoadgenArgs {
        packets: Some(200),
        packet_size: "1..50".parse().expect("size"),
        token: Some("s3cret".to_owned()),
        report: Some(report_path.clone()),
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");

    assert_eq!(report.stopped_by, StopReason::Packets);
    assert_eq!(
        (
            report.packets_sent,
            report.packets_acked,
            report.packets_failed
        ),
        (200, 200, 0)
    );
    assert_eq!(report.messages_acked, report.messages_sent);
    assert_eq!(report.messages_failed, 0);
    assert_eq!(stub.packets.load(Relaxed), 200);
    assert_eq!(stub.lines.load(Relaxed), report.messages_sent);
    assert!(
        report.messages_sent > 200,
        "packet sizes are drawn from 1..50"
    );
    assert_eq!(stub.bad_lines.load(Relaxed), 0);
    assert_eq!(stub.unauthorized.load(Relaxed), 0);
    assert!(report.failures.is_empty());
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.max >= report.latency_ms.p99);
    let analyzers = report
        .analyzers
        .as_ref()
        .and_then(Value::as_array)
        .expect("stats");
    assert_eq!(analyzers[0]["messages_total"], report.messages_sent);

    let written: Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report file")).expect("JSON");
    let _ = std::fs::remove_file(&report_path);
    assert_eq!(written["packets_acked"], 200);
    assert_eq!(written["messages_acked"], report.messages_acked);
}

#[tokio::test]
async fn message_endpoint_sends_single_messages() {
    let (target, stub) = stub(StatusCode::OK, Duration::ZERO).await;
    let args = LoadgenArgs {
        packets: Some(30),
        endpoint: Endpoint::Message,
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert_eq!((report.packets_acked, report.messages_acked), (30, 30));
    assert_eq!(stub.lines.load(Relaxed), 30);
    assert_eq!(stub.bad_lines.load(Relaxed), 0);
}

#[tokio::test]
async fn rejected_packets_are_failures_by_status() {
    let (target, stub) = stub(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
    let args = LoadgenArgs {
        packets: Some(20),
        packet_size: PacketSize::fixed(5),
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert_eq!((report.packets_acked, report.packets_failed), (0, 20));
    assert_eq!((report.messages_failed, report.messages_acked), (100, 0));
    assert_eq!(
        report.failures,
        BTreeMap::from([("http_503".to_owned(), 20)])
    );
    assert_eq!(stub.packets.load(Relaxed), 20);
    assert_eq!(report.latency_ms, Latency::default());
}

#[tokio::test]
async fn unreachable_target_is_connect_failures_and_no_stats() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let args = LoadgenArgs {
        packets: Some(4),
        agents: 2,
        ..args(format!("http://{addr}/"))
    };
    let report = run(args, CancellationToken::new())
        .await
        .expect("run completes");
    assert_eq!(report.packets_failed, 4);
    assert_eq!(report.failures.get("connect"), Some(&4));
    assert!(report.analyzers.is_none());
    assert!(report.analyzers_error.is_some());
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let (target, _stub) = stub(StatusCode::OK, Duration::from_millis(50)).await;
    let args = LoadgenArgs {
        duration: Some(Duration::from_secs(60)),
        ..args(target)
    };
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let report = run(args, shutdown).await.expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped promptly"
    );
    assert_eq!(report.stopped_by, StopReason::Shutdown);
    assert!(report.packets_acked > 0);
    assert_eq!(
        report.packets_sent,
        report.packets_acked + report.packets_failed
    );
    assert!(
        report.failures.is_empty(),
        "in-flight requests were answered: {:?}",
        report.failures
    );
}

#[tokio::test]
async fn rate_limits_the_total_over_all_agents() {
    let (target, _stub) = stub(StatusCode::OK, Duration::ZERO).await;
    let args = LoadgenArgs {
        duration: Some(Duration::from_millis(500)),
        rate: Some(40.0),
        packet_size: PacketSize::fixed(1),
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert_eq!(report.stopped_by, StopReason::Duration);
    // Slots every 25 ms over 500 ms: at most 21, and a loaded machine may send fewer.
    assert!(
        (5..=21).contains(&report.packets_sent),
        "sent {}",
        report.packets_sent
    );
}

#[tokio::test]
async fn bad_targets_are_refused() {
    for target in ["https://127.0.0.1:3000", "127.0.0.1:3000", "not a url"] {
        let result = run(args(target.to_owned()), CancellationToken::new()).await;
        assert!(result.is_err(), "{target} should be refused");
    }
}

// === Retries, ids and the trace ===

/// A stub that turns away the first `refusals` attempts of each packet (told apart by
/// `Idempotency-Key`) with 503 and `Retry-After`, acknowledges later ones, and keeps
/// every request it saw.
struct Flaky {
    refusals: u32,
    retry_after: Option<&'static str>,
    /// Attempts per idempotency key.
    attempts: Mutex<BTreeMap<String, u32>>,
    /// Every request: its idempotency key and its decoded message lines.
    requests: Mutex<Vec<(Option<String>, Vec<Value>)>>,
}

fn decode(headers: &HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read as _;
    match headers.get("content-encoding").map(|v| v.as_bytes()) {
        None => Some(body.to_vec()),
        Some(b"gzip") => {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut text)
                .ok()?;
            Some(text)
        }
        Some(b"zstd") => zstd::decode_all(body).ok(),
        Some(_) => None,
    }
}

async fn flaky(
    State(stub): State<Arc<Flaky>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let Some(text) = decode(&headers, &body) else {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}").into_response();
    };
    let lines: Vec<Value> = text
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap_or(Value::Null))
        .collect();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let attempt = {
        let mut attempts = stub.attempts.lock().expect("lock");
        let n = attempts.entry(key.clone().unwrap_or_default()).or_default();
        *n += 1;
        *n
    };
    let n = lines.len();
    stub.requests.lock().expect("lock").push((key, lines));
    if attempt <= stub.refusals {
        let mut answer = (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"busy\"}").into_response();
        if let Some(seconds) = stub.retry_after {
            answer
                .headers_mut()
                .insert("retry-after", http::HeaderValue::from_static(seconds));
        }
        return answer;
    }
    (StatusCode::OK, json!({ "messages": n }).to_string()).into_response()
}

async fn flaky_stub(refusals: u32, retry_after: Option<&'static str>) -> (String, Arc<Flaky>) {
    let stub = Arc::new(Flaky {
        refusals,
        retry_after,
        attempts: Mutex::default(),
        requests: Mutex::default(),
    });
    let app = Router::new()
        .route("/packets", post(flaky))
        .route("/message/send", post(flaky))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), stub)
}

/// A fresh path for a trace file.
fn trace_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "logdist-loadgen-{name}-{}-{}.ndjson",
        std::process::id(),
        rand::random::<u32>()
    ))
}

/// Reads and removes a trace file.
fn read_trace(path: &std::path::Path) -> Vec<TraceLine> {
    let text = std::fs::read_to_string(path).expect("trace file");
    let _ = std::fs::remove_file(path);
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a trace line"))
        .collect()
}

#[tokio::test]
async fn refused_packets_are_resent_with_the_same_key_and_ids() {
    let (target, stub) = flaky_stub(1, Some("0")).await;
    let path = trace_path("retries");
    let args = LoadgenArgs {
        packets: Some(40),
        packet_size: "1..20".parse().expect("size"),
        encoding: Encoding::Gzip,
        retries: 2,
        trace: Some(path.clone()),
        idempotency_keys: true,
        id_prefix: Some("t1".parse().expect("prefix")),
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");

    assert_eq!(
        (
            report.packets_sent,
            report.packets_acked,
            report.packets_failed
        ),
        (40, 40, 0)
    );
    assert_eq!(report.messages_acked, report.messages_sent);
    assert_eq!(report.retries, 40);
    assert_eq!(
        report.failures,
        BTreeMap::from([("http_503".to_owned(), 40)])
    );
    assert_eq!(report.id_prefix.as_deref(), Some("t1"));

    // The server saw each key exactly twice, with the same messages both times.
    let attempts = stub.attempts.lock().expect("lock").clone();
    assert_eq!(attempts.len(), 40);
    assert!(attempts.values().all(|n| *n == 2), "{attempts:?}");
    let requests = stub.requests.lock().expect("lock").clone();
    let mut by_key: BTreeMap<String, Vec<Vec<Value>>> = BTreeMap::new();
    for (key, lines) in requests {
        let key = key.expect("every request has an Idempotency-Key");
        for (i, line) in lines.iter().enumerate() {
            assert!(valid_message(line.to_string().as_bytes()), "{line}");
            assert_eq!(line["msg_id"], format!("{key}-{i}"), "message {i} of {key}");
        }
        by_key.entry(key).or_default().push(lines);
    }
    for (key, sends) in &by_key {
        assert_eq!(sends.len(), 2, "{key}");
        assert_eq!(sends[0], sends[1], "{key} was resent unchanged");
    }
    // Keys are {prefix}-{agent}-{seq}, seq counting from 0 per agent.
    let mut seqs: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for key in by_key.keys() {
        let mut parts = key.splitn(3, '-');
        assert_eq!(parts.next(), Some("t1"));
        let agent: usize = parts.next().and_then(|p| p.parse().ok()).expect("agent");
        let seq: u64 = parts.next().and_then(|p| p.parse().ok()).expect("seq");
        seqs.entry(agent).or_default().push(seq);
    }
    for (agent, mut seqs) in seqs {
        seqs.sort_unstable();
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "agent {agent}");
    }

    // One trace line per packet, all acked on the second attempt.
    let trace = read_trace(&path);
    assert_eq!(trace.len(), 40);
    for line in &trace {
        assert_eq!(line.outcome, TraceOutcome::Acked, "{line:?}");
        assert_eq!((line.status, line.failure.as_deref()), (Some(200), None));
        assert_eq!(line.attempts, 2);
        assert_eq!(by_key[&line.key][0].len() as u64, line.messages);
    }
    let keys: std::collections::BTreeSet<&String> = trace.iter().map(|l| &l.key).collect();
    assert_eq!(keys, by_key.keys().collect());
    let traced_messages: u64 = trace.iter().map(|l| l.messages).sum();
    assert_eq!(traced_messages, report.messages_acked);
}

#[tokio::test]
async fn a_stop_lets_started_packets_finish_their_retries() {
    // Every first attempt waits a second for its resend; the run stops before that.
    let (target, stub) = flaky_stub(1, Some("1")).await;
    let path = trace_path("drain");
    let args = LoadgenArgs {
        duration: Some(Duration::from_millis(300)),
        retries: 1,
        trace: Some(path.clone()),
        idempotency_keys: true,
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert_eq!(report.stopped_by, StopReason::Duration);
    assert!(report.packets_sent > 0);
    assert_eq!(report.packets_acked, report.packets_sent);
    assert_eq!(report.packets_failed, 0);
    assert_eq!(report.retries, report.packets_sent);
    assert_eq!(
        stub.requests.lock().expect("lock").len() as u64,
        2 * report.packets_sent
    );
    let trace = read_trace(&path);
    assert_eq!(trace.len() as u64, report.packets_sent);
    assert!(
        trace
            .iter()
            .all(|l| l.outcome == TraceOutcome::Acked && l.attempts == 2)
    );
}

#[tokio::test]
async fn the_drain_grace_ends_retry_waits() {
    // Always busy, asking for more than the grace: packets fail with their last answer.
    let (target, _stub) = flaky_stub(u32::MAX, Some("30")).await;
    let path = trace_path("abort");
    let args = LoadgenArgs {
        duration: Some(Duration::from_millis(200)),
        timeout: Duration::from_millis(400),
        retries: 10,
        trace: Some(path.clone()),
        ..args(target)
    };
    let started = std::time::Instant::now();
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped promptly"
    );
    assert!(report.packets_sent > 0);
    assert_eq!(report.packets_failed, report.packets_sent);
    assert_eq!(report.retries, 0);
    assert_eq!(
        report.failures,
        BTreeMap::from([("http_503".to_owned(), report.packets_sent)])
    );
    let trace = read_trace(&path);
    assert_eq!(trace.len() as u64, report.packets_sent);
    for line in trace {
        assert_eq!(line.outcome, TraceOutcome::Failed);
        assert_eq!(line.status, Some(503));
        assert_eq!(line.failure.as_deref(), Some("http_503"));
        assert_eq!(line.attempts, 1);
    }
}

#[tokio::test]
async fn other_client_errors_are_final() {
    let (target, stub) = stub(StatusCode::BAD_REQUEST, Duration::ZERO).await;
    let args = LoadgenArgs {
        packets: Some(12),
        retries: 3,
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert_eq!((report.packets_failed, report.retries), (12, 0));
    assert_eq!(stub.packets.load(Relaxed), 12);
    assert_eq!(
        report.failures,
        BTreeMap::from([("http_400".to_owned(), 12)])
    );
}

#[tokio::test]
async fn connection_failures_are_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let args = LoadgenArgs {
        packets: Some(2),
        agents: 1,
        retries: 1,
        ..args(format!("http://{addr}"))
    };
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert_eq!((report.packets_sent, report.packets_failed), (2, 2));
    assert_eq!(report.retries, 2);
    assert_eq!(report.failures.get("connect"), Some(&4));
}

#[tokio::test]
async fn idempotency_keys_without_trace_leave_bodies_alone() {
    let (target, stub) = flaky_stub(0, None).await;
    let args = LoadgenArgs {
        packets: Some(10),
        idempotency_keys: true,
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert_eq!(report.packets_acked, 10);
    let prefix = report.id_prefix.expect("a random prefix");
    assert_eq!(prefix.len(), 8);
    let requests = stub.requests.lock().expect("lock").clone();
    assert_eq!(requests.len(), 10);
    for (key, lines) in requests {
        let key = key.expect("Idempotency-Key");
        assert!(key.starts_with(&format!("{prefix}-")), "{key}");
        assert!(lines.iter().all(|l| l.get("msg_id").is_none()));
    }
}

#[tokio::test]
async fn traced_single_messages_carry_id_0() {
    let (target, stub) = flaky_stub(0, None).await;
    let path = trace_path("message");
    let args = LoadgenArgs {
        packets: Some(6),
        endpoint: Endpoint::Message,
        encoding: Encoding::Zstd,
        trace: Some(path.clone()),
        id_prefix: Some("m".parse().expect("prefix")),
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert_eq!(report.messages_acked, 6);
    let trace = read_trace(&path);
    assert_eq!(trace.len(), 6);
    let requests = stub.requests.lock().expect("lock").clone();
    let ids: std::collections::BTreeSet<String> = requests
        .iter()
        .map(|(key, lines)| {
            assert!(key.is_none(), "no Idempotency-Key without the flag");
            assert_eq!(lines.len(), 1);
            lines[0]["msg_id"].as_str().expect("msg_id").to_owned()
        })
        .collect();
    let expected = trace.iter().map(|l| format!("{}-0", l.key)).collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn written_bodies_are_the_pool_each_followed_by_an_empty_line() {
    let path = std::env::temp_dir().join(format!("logdist-bodies-{}.ndjson", std::process::id()));
    let size: PacketSize = "3..7".parse().unwrap();
    let args = LoadgenArgs {
        packet_size: size,
        seed: Some(7),
        ..LoadgenArgs::default()
    };
    let bodies = write_bodies(&args, &path).await.unwrap();
    let text = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let pool = PacketPool::generate(
        Endpoint::Packets,
        Protocol::Ndjson,
        size,
        Encoding::Identity,
        7,
        false,
    )
    .unwrap();
    assert_eq!(bodies, pool.len());
    let expected: Vec<u8> = (0..pool.len())
        .flat_map(|i| pool.get(i).body.iter().copied().chain([b'\n']))
        .collect();
    // The same packets but for their timestamps, which are taken from the clock.
    assert!(
        zero_timestamps(&text) == zero_timestamps(&expected),
        "the file is not the seed's pool of bodies"
    );
    // Each packet's lines end with `\n`, and one more `\n` ends the packet.
    let lines: Vec<&[u8]> = text
        .strip_suffix(b"\n\n")
        .expect("the file ends with an empty line")
        .split(|&b| b == b'\n')
        .collect();
    let packets: Vec<&[&[u8]]> = lines.split(|line| line.is_empty()).collect();
    assert_eq!(packets.len(), bodies);
    for packet in packets {
        assert!((3..=7).contains(&packet.len()), "{} messages", packet.len());
        assert!(packet.iter().all(|line| valid_message(line)));
    }

    for refused in [
        LoadgenArgs {
            encoding: Encoding::Gzip,
            ..LoadgenArgs::default()
        },
        LoadgenArgs {
            endpoint: Endpoint::Message,
            ..LoadgenArgs::default()
        },
        LoadgenArgs {
            trace: Some(path.with_extension("trace")),
            ..LoadgenArgs::default()
        },
    ] {
        let e = write_bodies(&refused, &path).await.unwrap_err();
        assert!(e.to_string().contains("--write-bodies"), "{e}");
        assert!(!path.exists(), "nothing is written when refused");
    }
}

/// `bytes` with the digits of every `"timestamp":` value replaced by `0`.
fn zero_timestamps(bytes: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"\"timestamp\":";
    let mut out = bytes.to_vec();
    let mut at = 0;
    while let Some(found) = memchr::memmem::find(&out[at..], KEY) {
        at += found + KEY.len();
        while out.get(at).is_some_and(u8::is_ascii_digit) {
            out[at] = b'0';
            at += 1;
        }
    }
    out
}

// === Protocols ===

use logdist_core::decoder::{self, Decoder as _};
use logdist_core::mapping::TimestampUnit;
use logdist_core::{LokiEncoding, OtlpEncoding, Schema, Validation};

use super::encode;
use super::messages::{MessageGen, Record};
use super::protocol::Taken;

const PROTOCOLS: [Protocol; 6] = [
    Protocol::Ndjson,
    Protocol::Json,
    Protocol::Otlp,
    Protocol::OtlpJson,
    Protocol::Bulk,
    Protocol::Loki,
];

/// The arrival time given to the decoders; every generated record has its own time, so
/// none of them must carry this one.
fn arrival() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
}

/// Decodes `body` of `protocol` with logdist-core's decoder for it, as the distributor
/// does for the path and media type the protocol sends: the messages as NDJSON, their
/// count, and how many records were refused.
fn decode_with_core(protocol: Protocol, body: &[u8]) -> (Vec<u8>, u32, usize) {
    let body = Bytes::copy_from_slice(body);
    let now = arrival();
    let decoded = match protocol {
        Protocol::Ndjson => decoder::Native
            .decode(
                body,
                Some(decoder::NDJSON),
                &decoder::DecodeOptions::default(),
            )
            .expect("native NDJSON"),
        Protocol::Json => logdist_core::decode_records(
            body,
            logdist_core::Format::Json,
            Validation::Full,
            &Schema::default(),
            now,
        )
        .expect("shippers' JSON"),
        Protocol::Otlp => {
            logdist_core::decode_logs(&body, OtlpEncoding::Protobuf, TimestampUnit::default(), now)
                .expect("OTLP protobuf")
        }
        Protocol::OtlpJson => {
            logdist_core::decode_logs(&body, OtlpEncoding::Json, TimestampUnit::default(), now)
                .expect("OTLP/JSON")
        }
        Protocol::Bulk => {
            let bulk = logdist_core::decode_bulk(body, None, &Schema::default(), now)
                .expect("a bulk body");
            let odd = bulk.items.iter().find(|item| {
                item.action != logdist_core::BulkAction::Index
                    || item.index.as_deref() != Some("logdist-loadgen")
                    || item.outcome != logdist_core::bulk::Outcome::Created
            });
            assert!(odd.is_none(), "{odd:?}");
            assert_eq!(bulk.items.len() as u32, bulk.decoded.packet.messages);
            bulk.decoded
        }
        Protocol::Loki => logdist_core::decode_push(
            &body,
            LokiEncoding::Protobuf,
            8 * 1024 * 1024,
            TimestampUnit::default(),
            now,
        )
        .expect("a Loki push"),
        Protocol::SyslogTcp | Protocol::SyslogUdp => decode_syslog(protocol, &body, 0),
        Protocol::Forward | Protocol::ForwardNoack => {
            let events = logdist_core::forward::decode::decode_forward(
                &body,
                &decoder::DecodeOptions::default(),
            )
            .expect("a forward frame");
            let chunk = (protocol == Protocol::Forward).then_some(encode::FORWARD_CHUNK);
            assert_eq!(events.chunk.as_deref(), chunk);
            events.decoded
        }
    };
    (
        decoded.packet.ndjson.to_vec(),
        decoded.packet.messages,
        decoded.rejected.len(),
    )
}

/// The (timestamp, severity, source, message) of each message, sorted (OTLP and Loki
/// group records by resource and stream).
fn essentials(ndjson: &[u8]) -> Vec<(u64, String, String, String)> {
    let mut out: Vec<_> = ndjson
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let v: Value = serde_json::from_slice(line).expect("a JSON message");
            let text = |key: &str| v[key].as_str().expect(key).to_owned();
            (
                v["timestamp"].as_u64().expect("an integer timestamp"),
                text("severity"),
                text("source"),
                text("message"),
            )
        })
        .collect();
    out.sort();
    out
}

fn expected_essentials(records: &[Record]) -> Vec<(u64, String, String, String)> {
    let mut out: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.timestamp_ms,
                r.severity.to_owned(),
                r.source.to_owned(),
                r.message.clone(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_protocol_decodes_to_the_records_it_was_written_from() {
    let records = MessageGen::new(9).records(300);
    // Every severity and source is among them, so each is mapped at least once.
    let severities: std::collections::BTreeSet<_> = records.iter().map(|r| r.severity).collect();
    assert_eq!(severities.len(), 5, "{severities:?}");
    let expected = expected_essentials(&records);
    for protocol in PROTOCOLS {
        let body = encode::body(protocol, &records).expect("encoded");
        let (ndjson, messages, rejected) = decode_with_core(protocol, &body);
        assert_eq!((messages, rejected), (300, 0), "{protocol:?}");
        assert_eq!(essentials(&ndjson), expected, "{protocol:?}");
    }
}

#[test]
fn forward_frames_decode_to_the_records_they_were_written_from() {
    let records = MessageGen::new(9).records(300);
    let expected = expected_essentials(&records);
    for protocol in [Protocol::Forward, Protocol::ForwardNoack] {
        let body = encode::body(protocol, &records).expect("encoded");
        let (ndjson, messages, rejected) = decode_with_core(protocol, &body);
        assert_eq!((messages, rejected), (300, 0), "{protocol:?}");
        assert_eq!(essentials(&ndjson), expected, "{protocol:?}");
    }
}

#[test]
fn pools_of_every_protocol_hold_as_many_records_as_they_count() {
    let size = PacketSize { min: 1, max: 40 };
    for protocol in PROTOCOLS {
        let pool = PacketPool::generate(
            Endpoint::Packets,
            protocol,
            size,
            Encoding::Identity,
            3,
            false,
        )
        .expect("generated");
        let mut sizes = std::collections::BTreeSet::new();
        for i in 0..64 {
            let packet = pool.get(i);
            let (_, messages, rejected) = decode_with_core(protocol, &packet.body);
            assert_eq!(
                (u64::from(messages), rejected),
                (packet.messages, 0),
                "{protocol:?} body {i}"
            );
            sizes.insert(packet.messages);
        }
        assert!(sizes.len() > 10, "{protocol:?}: sizes vary over the range");
        // Compressed the same way as NDJSON packets are.
        let zstd =
            PacketPool::generate(Endpoint::Packets, protocol, size, Encoding::Zstd, 3, false)
                .expect("generated");
        let packet = zstd.get(5);
        let plain = zstd::decode_all(&packet.body[..]).expect("zstd");
        let (_, messages, _) = decode_with_core(protocol, &plain);
        assert_eq!(u64::from(messages), packet.messages, "{protocol:?}");
    }
}

#[test]
fn ids_are_stamped_into_ndjson_only() {
    let size = PacketSize::fixed(3);
    let refused = PacketPool::generate(
        Endpoint::Packets,
        Protocol::Otlp,
        size,
        Encoding::Identity,
        1,
        true,
    );
    assert!(refused.is_err());
    // Single messages are logdist's own, whatever the protocol says.
    let single = PacketPool::generate(
        Endpoint::Message,
        Protocol::Bulk,
        size,
        Encoding::Identity,
        1,
        true,
    )
    .expect("single messages");
    assert!(valid_message(&single.get(0).body));
}

#[test]
fn protocols_name_their_path_and_media_type() {
    let sent: Vec<_> = PROTOCOLS
        .iter()
        .map(|p| (p.path(), p.content_type()))
        .collect();
    assert_eq!(
        sent,
        [
            ("/packets", "application/x-ndjson"),
            ("/packets", "application/json"),
            ("/v1/logs", "application/x-protobuf"),
            ("/v1/logs", "application/json"),
            ("/_bulk", "application/x-ndjson"),
            ("/loki/api/v1/push", "application/x-protobuf"),
        ]
    );
    for status in [StatusCode::OK, StatusCode::ACCEPTED, StatusCode::NO_CONTENT] {
        assert!(Protocol::is_success(status), "{status}");
    }
    for status in [
        StatusCode::CREATED,
        StatusCode::BAD_REQUEST,
        StatusCode::NOT_FOUND,
    ] {
        assert!(!Protocol::is_success(status), "{status}");
    }
}

#[test]
fn answers_that_report_refused_records_are_not_acks() {
    let refused = [logdist_core::RecordError {
        location: logdist_core::message::Location::Index(3),
        reason: "bad time".to_owned(),
        record: Bytes::new(),
        record_len: 0,
    }];
    for (protocol, encoding) in [
        (Protocol::Otlp, OtlpEncoding::Protobuf),
        (Protocol::OtlpJson, OtlpEncoding::Json),
    ] {
        let all = logdist_core::export_logs_response(&[], encoding);
        assert_eq!(protocol.taken(&all), Taken::All, "{protocol:?}");
        let partly = logdist_core::export_logs_response(&refused, encoding);
        match protocol.taken(&partly) {
            Taken::Partly(detail) => assert!(detail.contains("bad time"), "{detail}"),
            Taken::All => panic!("{protocol:?}: partial_success not read"),
        }
        // logdist's own answer, as a proxy in front of the sinks passes it on.
        assert_eq!(protocol.taken(br#"{"messages":100}"#), Taken::All);
    }
    let bulk_ok = br#"{"errors":false,"took":1,"items":[{"index":{"status":201}}]}"#;
    assert_eq!(Protocol::Bulk.taken(bulk_ok), Taken::All);
    let bulk_bad = br#"{"errors":true,"took":1,"items":[{"index":{"status":400}}]}"#;
    assert!(matches!(Protocol::Bulk.taken(bulk_bad), Taken::Partly(_)));
    assert_eq!(Protocol::Loki.taken(b""), Taken::All);
}

/// A stub of every ingest path that decodes each body with logdist-core's decoder, as
/// the distributor does, and answers in the protocol's terms (Loki's 204, OTLP's
/// `ExportLogsServiceResponse`, bulk's `items`).
struct Formats {
    /// Messages decoded, over all requests.
    messages: AtomicU64,
    /// Requests whose path, media type or body did not match the protocol.
    mismatched: AtomicU64,
    /// Refuse one record of every OTLP export in `partial_success`.
    partial: bool,
}

async fn formats_ingest(
    State((stub, protocol)): State<(Arc<Formats>, Protocol)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some(protocol.content_type()) {
        stub.mismatched.fetch_add(1, Relaxed);
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let (_, messages, rejected) = decode_with_core(protocol, &body);
    if rejected != 0 {
        stub.mismatched.fetch_add(1, Relaxed);
    }
    stub.messages.fetch_add(u64::from(messages), Relaxed);
    match protocol {
        Protocol::Loki => (StatusCode::NO_CONTENT, Vec::new()),
        Protocol::Otlp if stub.partial => {
            let refused = logdist_core::RecordError {
                location: logdist_core::message::Location::Index(0),
                reason: "refused on purpose".to_owned(),
                record: Bytes::new(),
                record_len: 0,
            };
            let answer = logdist_core::export_logs_response(&[refused], OtlpEncoding::Protobuf);
            (StatusCode::OK, answer)
        }
        Protocol::Otlp => (
            StatusCode::OK,
            logdist_core::export_logs_response(&[], OtlpEncoding::Protobuf),
        ),
        Protocol::OtlpJson => (
            StatusCode::OK,
            logdist_core::export_logs_response(&[], OtlpEncoding::Json),
        ),
        Protocol::Bulk => (
            StatusCode::OK,
            br#"{"took":1,"errors":false,"items":[]}"#.to_vec(),
        ),
        Protocol::Ndjson | Protocol::Json => (
            StatusCode::OK,
            json!({ "messages": messages }).to_string().into_bytes(),
        ),
        // Not served over HTTP.
        Protocol::SyslogTcp | Protocol::SyslogUdp => (StatusCode::NOT_FOUND, Vec::new()),
        Protocol::Forward | Protocol::ForwardNoack => unreachable!("forward is not HTTP"),
    }
}

/// Starts the stub serving `protocol` at its path; returns its base URL.
async fn formats_stub(protocol: Protocol, partial: bool) -> (String, Arc<Formats>) {
    let stub = Arc::new(Formats {
        messages: AtomicU64::new(0),
        mismatched: AtomicU64::new(0),
        partial,
    });
    let app = Router::new()
        .route(protocol.path(), post(formats_ingest))
        .with_state((stub.clone(), protocol));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), stub)
}

#[tokio::test]
async fn every_protocol_is_sent_to_its_path_and_acked_by_its_answer() {
    for protocol in PROTOCOLS {
        let (target, stub) = formats_stub(protocol, false).await;
        let args = LoadgenArgs {
            packets: Some(40),
            packet_size: "1..30".parse().expect("size"),
            protocol,
            ..args(target)
        };
        let report = run(args, CancellationToken::new()).await.expect("run");
        assert_eq!(report.protocol, protocol);
        assert_eq!(
            (report.packets_acked, report.packets_failed),
            (40, 0),
            "{protocol:?}: {:?}",
            report.failures
        );
        assert_eq!(report.messages_acked, report.messages_sent, "{protocol:?}");
        assert_eq!(
            stub.messages.load(Relaxed),
            report.messages_sent,
            "{protocol:?}"
        );
        assert_eq!(stub.mismatched.load(Relaxed), 0, "{protocol:?}");
    }
}

#[tokio::test]
async fn a_partial_success_fails_its_packet_without_a_resend() {
    let (target, stub) = formats_stub(Protocol::Otlp, true).await;
    let args = LoadgenArgs {
        packets: Some(10),
        packet_size: PacketSize::fixed(5),
        protocol: Protocol::Otlp,
        retries: 3,
        ..args(target)
    };
    let report = run(args, CancellationToken::new()).await.expect("run");
    assert_eq!((report.packets_acked, report.packets_failed), (0, 10));
    assert_eq!(
        report.failures,
        BTreeMap::from([("partial".to_owned(), 10)])
    );
    assert_eq!(report.retries, 0);
    assert_eq!(stub.messages.load(Relaxed), 50);
}

#[tokio::test]
async fn protocols_other_than_ndjson_refuse_what_only_ndjson_does() {
    for refused in [
        LoadgenArgs {
            protocol: Protocol::Otlp,
            endpoint: Endpoint::Message,
            packets: Some(1),
            ..args("http://127.0.0.1:9".to_owned())
        },
        LoadgenArgs {
            protocol: Protocol::Loki,
            trace: Some(std::env::temp_dir().join("never-written.trace")),
            packets: Some(1),
            ..args("http://127.0.0.1:9".to_owned())
        },
    ] {
        let e = run(refused, CancellationToken::new()).await.unwrap_err();
        assert!(e.to_string().contains("--protocol"), "{e}");
    }
}

#[tokio::test]
async fn written_bodies_of_other_protocols_are_length_prefixed() {
    let path = std::env::temp_dir().join(format!("logdist-bodies-{}.otlp", std::process::id()));
    let args = LoadgenArgs {
        packet_size: PacketSize::fixed(100),
        protocol: Protocol::Otlp,
        seed: Some(4),
        ..LoadgenArgs::default()
    };
    let bodies = write_bodies(&args, &path).await.unwrap();
    let file = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let mut rest = &file[..];
    let mut read = 0;
    while !rest.is_empty() {
        let newline = rest
            .iter()
            .position(|b| *b == b'\n')
            .expect("a length line");
        let len: usize = std::str::from_utf8(&rest[..newline])
            .expect("ASCII")
            .parse()
            .expect("a length");
        let body = &rest[newline + 1..newline + 1 + len];
        let (_, messages, rejected) = decode_with_core(Protocol::Otlp, body);
        assert_eq!((messages, rejected), (100, 0));
        rest = &rest[newline + 1 + len..];
        read += 1;
    }
    assert_eq!(read, bodies);
}

/// A syslog body as the distributor's listener reads it: octet-counted frames over TCP, a
/// datagram a line over UDP; `now_ms` is the arrival time (RFC 3164's year).
fn decode_syslog(protocol: Protocol, body: &[u8], now_ms: i64) -> logdist_core::Decoded {
    use logdist_core::syslog::{Framer, Framing, SyslogOptions, decode_message};
    let options = SyslogOptions {
        unit: TimestampUnit::Milliseconds,
        now_ms,
    };
    let mut out = Vec::new();
    let mut messages = 0;
    if protocol == Protocol::SyslogUdp {
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            decode_message(line, &options, &mut out).expect("an RFC 3164 line");
            messages += 1;
        }
    } else {
        let framer = Framer { max_len: 65_536 };
        let mut at = 0;
        while let Some(frame) = framer.next(&body[at..]).expect("octet-counted frames") {
            assert_eq!(frame.framing, Framing::OctetCounted);
            decode_message(&body[at + frame.start..at + frame.end], &options, &mut out)
                .expect("an RFC 5424 message");
            at += frame.consumed;
            messages += 1;
        }
        assert_eq!(at, body.len());
    }
    logdist_core::Decoded {
        packet: logdist_core::Packet {
            ndjson: Bytes::from(out),
            messages,
        },
        rejected: Vec::new(),
        items: Vec::new(),
    }
}

#[test]
fn syslog_bodies_decode_to_the_records_they_were_written_from() {
    let records = MessageGen::new(9).records(300);
    let now_ms = records.iter().map(|r| r.timestamp_ms).max().unwrap() as i64;
    // Syslog has no TRACE (it is debug), and RFC 3164's time is in whole seconds.
    let expected = |whole_seconds: bool| {
        let mut out: Vec<_> = expected_essentials(&records)
            .into_iter()
            .map(|(t, severity, source, message)| {
                let t = if whole_seconds { t - t % 1000 } else { t };
                let severity = if severity == "TRACE" {
                    "DEBUG".to_owned()
                } else {
                    severity
                };
                (t, severity, source, message)
            })
            .collect();
        out.sort();
        out
    };
    for (protocol, whole_seconds) in [(Protocol::SyslogTcp, false), (Protocol::SyslogUdp, true)] {
        let body = encode::body(protocol, &records).expect("encoded");
        let decoded = decode_syslog(protocol, &body, now_ms);
        assert_eq!(decoded.packet.messages, 300, "{protocol:?}");
        assert_eq!(
            essentials(&decoded.packet.ndjson),
            expected(whole_seconds),
            "{protocol:?}"
        );
    }
}
