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
