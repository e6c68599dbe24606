//! Idempotent redelivery: a packet retried with the same `Idempotency-Key` is answered
//! as the first time and delivered once, whether the first attempt has finished or is
//! still in flight; the same key with another body is refused; a refused first attempt
//! does not poison its key.

mod common;

use common::*;
use hyper::Method;

async fn send(http: &Http, url: &str, key: &str, first: u64, count: u64) -> Answer {
    http.request(
        Method::POST,
        &format!("{url}/packets"),
        &[
            ("content-type", "application/x-ndjson"),
            ("idempotency-key", key),
        ],
        packet(first, count),
    )
    .await
}

async fn counted(http: &Http, analyzer: &str) -> u64 {
    http.get(&format!("{analyzer}/stats")).await.json()["messages"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_packet_is_acknowledged_again_but_delivered_once() {
    let dir = scratch("idempotency");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &[]);
    let (_a, analyzer) = analyzer(&dir, 1, 1.0, &url, &["--faults"]);
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;

    // Answered, then retried: the same answer, marked as replayed, nothing delivered.
    let first = send(&http, &url, "agent-1-packet-1", 0, 10).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = send(&http, &url, "agent-1-packet-1", 0, 10).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json(), first.json());
    assert_eq!(counted(&http, &analyzer).await, 10);

    // The same key for another packet is a client bug, refused.
    let reused = send(&http, &url, "agent-1-packet-1", 100, 3).await;
    assert_eq!(reused.status, 422, "{}", reused.text());
    assert!(
        reused
            .text()
            .contains("already used for a different packet")
    );
    assert_eq!(counted(&http, &analyzer).await, 10);

    // A retry while the first attempt is still in flight waits for it: both get 200,
    // one delivery.
    http.request(
        Method::PUT,
        &format!("{analyzer}/faults"),
        &[("content-type", "application/json")],
        r#"{"delay_ms":400}"#,
    )
    .await;
    let (a, b) = tokio::join!(send(&http, &url, "agent-1-packet-2", 200, 5), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        send(&http, &url, "agent-1-packet-2", 200, 5).await
    });
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    assert_eq!(b.headers["idempotent-replayed"], "true");
    assert_eq!(counted(&http, &analyzer).await, 15);

    // A first attempt that was refused (every analyzer failing) leaves the key free, so
    // the retry is delivered once things recover.
    http.request(
        Method::PUT,
        &format!("{analyzer}/faults"),
        &[("content-type", "application/json")],
        r#"{"status":500}"#,
    )
    .await;
    let refused = send(&http, &url, "agent-1-packet-3", 300, 4).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.headers.contains_key("retry-after"));
    http.request(
        Method::PUT,
        &format!("{analyzer}/faults"),
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    http.wait_stats(&url, "analyzer_1 back", |s| online(s, &["analyzer_1"]))
        .await;
    let retried = send(&http, &url, "agent-1-packet-3", 300, 4).await;
    assert_eq!(retried.status, 200, "{}", retried.text());
    assert!(retried.headers.get("idempotent-replayed").is_none());
    assert_eq!(counted(&http, &analyzer).await, 19);

    let metrics = http.get(&format!("{url}/metrics")).await.text();
    assert!(
        metrics.contains("logdist_packets_replayed_total 2"),
        "{metrics}"
    );
}
