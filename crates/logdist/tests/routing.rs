//! End to end: shares of messages follow the weights within the contract's bound, and
//! re-normalize when analyzers join and leave. The servers run in the test's process
//! ([`InProc`]), except where the point is the process itself (a signal).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::inproc::InProc;
use common::*;
use rand::{Rng, SeedableRng};

/// Sends `packets` packets of random sizes in `1..=max` from `agents` concurrent agents;
/// every one must be answered 200. Returns (messages, largest packet).
async fn send_random(
    http: &Http,
    url: &str,
    packets: usize,
    max: u64,
    agents: usize,
    seed: u64,
) -> (u64, u64) {
    let next_seq = Arc::new(AtomicU64::new(seed * 1_000_000_000));
    let mut tasks = Vec::new();
    for agent in 0..agents {
        let (http, url, next_seq) = (http.clone(), url.to_owned(), next_seq.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed + agent as u64);
            let (mut messages, mut largest) = (0, 0);
            for _ in 0..packets / agents {
                let size = rng.random_range(1..=max);
                let first = next_seq.fetch_add(size, Ordering::Relaxed);
                let answer = http.send_packet(&url, first, size).await;
                assert_eq!(answer.status, 200, "{}", answer.text());
                assert_eq!(answer.json()["messages"], size);
                messages += size;
                largest = largest.max(size);
            }
            (messages, largest)
        }));
    }
    let mut total = (0, 0);
    for task in tasks {
        let (m, l) = task.await.unwrap();
        total = (total.0 + m, total.1.max(l));
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_weighted_analyzers_receive_their_share_of_messages() {
    let http = Http::new();
    let distributor = InProc::distributor(&[]).await;
    let url = distributor.url.clone();
    let mut analyzers = Vec::new();
    for (id, weight) in [(1, 0.5), (2, 0.3), (3, 0.2)] {
        analyzers.push(InProc::analyzer(id, weight, &url, &[]).await);
    }
    http.wait_stats(&url, "three analyzers", |s| {
        online(s, &["analyzer_1", "analyzer_2", "analyzer_3"])
    })
    .await;

    let (messages, largest) = send_random(&http, &url, 600, 300, 6, 1).await;
    let stats = http.stats(&url).await;
    assert_shares_within(&stats, largest);
    assert_eq!(stats.iter().map(|a| a.messages_sent).sum::<u64>(), messages);

    // What the distributor says it delivered is what each analyzer counted.
    for (a, analyzer) in stats.iter().zip(&analyzers) {
        let own = http.get(&format!("{}/stats", analyzer.url)).await.json();
        assert_eq!(own["id"], a.id.as_str());
        assert_eq!(
            own["messages"], a.messages_total,
            "{} counted differently",
            a.id
        );
        assert_eq!(own["source"]["test"], a.messages_total);
    }
    let shares: Vec<String> = stats
        .iter()
        .map(|a| format!("{} {:.4}", a.id, a.share))
        .collect();
    eprintln!("{messages} messages, largest packet {largest}: {shares:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_renormalize_when_analyzers_join_and_leave() {
    let http = Http::new();
    let distributor = InProc::distributor(&[]).await;
    let url = distributor.url.clone();
    let a1 = InProc::analyzer(1, 0.5, &url, &[]).await;
    let _a2 = InProc::analyzer(2, 0.3, &url, &[]).await;
    let stats = http
        .wait_stats(&url, "two analyzers", |s| {
            online(s, &["analyzer_1", "analyzer_2"])
        })
        .await;
    assert!((stats[0].target_share - 0.625).abs() < 1e-9, "{stats:?}");

    let (_, largest) = send_random(&http, &url, 200, 100, 4, 2).await;
    assert_shares_within(&http.stats(&url).await, largest);

    // A third analyzer joins: targets re-normalize and the counting window restarts.
    let _a3 = InProc::analyzer(3, 0.2, &url, &[]).await;
    let stats = http
        .wait_stats(&url, "three analyzers", |s| {
            online(s, &["analyzer_1", "analyzer_2", "analyzer_3"])
        })
        .await;
    let targets: Vec<f64> = stats.iter().map(|a| a.target_share).collect();
    assert!(
        (targets[0] - 0.5).abs() < 1e-9
            && (targets[1] - 0.3).abs() < 1e-9
            && (targets[2] - 0.2).abs() < 1e-9
    );
    assert!(
        stats.iter().all(|a| a.messages_sent == 0),
        "window did not restart: {stats:?}"
    );
    let (messages, largest) = send_random(&http, &url, 300, 100, 4, 3).await;
    let stats = http.stats(&url).await;
    assert_shares_within(&stats, largest);
    assert!(stats[2].messages_sent > 0);
    assert_eq!(stats.iter().map(|a| a.messages_sent).sum::<u64>(), messages);

    // Analyzer 1 leaves (stopped as SIGTERM stops it: it deregisters itself): 0.3/0.2
    // become 0.6/0.4.
    a1.stop().await.expect("analyzer_1 stops cleanly");
    let stats = http
        .wait_stats(&url, "analyzer_1 gone", |s| {
            online(s, &["analyzer_2", "analyzer_3"]) && s.len() == 2
        })
        .await;
    assert!(
        (stats[0].target_share - 0.6).abs() < 1e-9 && (stats[1].target_share - 0.4).abs() < 1e-9
    );
    let (_, largest) = send_random(&http, &url, 200, 100, 4, 4).await;
    assert_shares_within(&http.stats(&url).await, largest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_an_analyzer_deregisters_it_and_exits_zero() {
    let dir = scratch("sigterm");
    let http = Http::new();
    // The signal is the point: the analyzer is a process; the distributor need not be.
    let distributor = InProc::distributor(&[]).await;
    let url = distributor.url.clone();
    let (mut a1, a1_url) = analyzer(&dir, 1, 1.0, &url, &[]);
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;
    let answer = http.send_packet(&url, 0, 10).await;
    assert_eq!(answer.status, 200);

    a1.signal("TERM");
    let status = a1.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit {status}: {}", a1.log_text());
    assert!(a1.log_text().contains("Deregistered."), "{}", a1.log_text());
    assert!(http.stats(&url).await.is_empty());
    assert!(
        http.try_get(&format!("{a1_url}/health")).await.is_none(),
        "analyzer still serving"
    );
    // Nobody left: the agent is told to come back later, and nothing is accepted.
    let answer = http.send_packet(&url, 10, 1).await;
    assert_eq!(answer.status, 503);
    assert!(answer.headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_analyzers_and_weight_updates() {
    let http = Http::new();
    let s1 = InProc::analyzer_with(&["--id", "1", "--no-register"]).await;
    let s2 = InProc::analyzer_with(&["--id", "2", "--no-register"]).await;
    let spec1 = format!("a={}@3", s1.url);
    let spec2 = format!("b={}@1", s2.url);
    let distributor = InProc::distributor(&["--analyzer", &spec1, "--analyzer", &spec2]).await;
    let url = distributor.url.clone();
    for i in 0..40 {
        let answer = http.send_packet(&url, i, 1).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let stats = http.stats(&url).await;
    assert_eq!((stats[0].messages_sent, stats[1].messages_sent), (30, 10));

    // Registering an existing id with a new weight updates it and restarts the window.
    let answer = http
        .post(
            &format!("{url}/analyzer/register"),
            "application/json",
            format!(r#"{{"id":"b","weight":3,"url":"{}"}}"#, s2.url),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["registration"], "updated");
    let stats = http.stats(&url).await;
    assert_eq!((stats[0].target_share, stats[1].target_share), (0.5, 0.5));
    assert_eq!(stats[1].messages_total, 10);
}

/// An analyzer killed without deregistering stays unhealthy, and is forgotten after
/// `--forget-after`: gone from the stats, counted in the metric, its share routed to the
/// others; registering again, it is accepted as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_analyzer_is_forgotten_after_forget_after_and_comes_back_as_new() {
    let dir = scratch("forget");
    let http = Http::new();
    let distributor = InProc::distributor(&["--forget-after", "1s"]).await;
    let url = distributor.url.clone();
    let metrics_url = format!("{url}/metrics");
    let forgotten = |text: &str| metric(text, "logdist_analyzers_forgotten_total");
    let before = forgotten(&http.get(&metrics_url).await.text());
    let _a1 = InProc::analyzer(1, 0.5, &url, &[]).await;
    let (a2, _) = analyzer(&dir, 2, 0.5, &url, &[]);
    http.wait_stats(&url, "both online", |s| {
        online(s, &["analyzer_1", "analyzer_2"])
    })
    .await;

    // SIGKILL: no deregistration, no keep-alive any more.
    a2.signal("KILL");
    let killed = std::time::Instant::now();
    http.wait_stats(&url, "analyzer_2 unhealthy", |s| {
        s.iter()
            .any(|a| a.id == "analyzer_2" && a.state == "unhealthy")
    })
    .await;
    // Kept while --forget-after runs: unhealthy is not gone.
    let stats = http.stats(&url).await;
    assert_eq!(stats.len(), 2, "{stats:#?}");
    let stats = http
        .wait_stats(&url, "analyzer_2 forgotten", |s| {
            s.len() == 1 && online(s, &["analyzer_1"])
        })
        .await;
    assert_eq!(stats[0].id, "analyzer_1");
    assert!(
        killed.elapsed() >= Duration::from_secs(1),
        "forgotten before --forget-after"
    );
    let text = http.get(&metrics_url).await.text();
    assert_eq!(forgotten(&text) - before, 1.0, "{text}");
    assert!(
        !text.contains("analyzer=\"analyzer_2\""),
        "a forgotten analyzer's series are gone: {text}"
    );
    // Everything goes to the one left.
    for first in 0..10 {
        let answer = http.send_packet(&url, first * 10, 10).await;
        assert_eq!(answer.status, 200);
    }

    // Back with the same id: a new analyzer, routed to again.
    let (_a2, _) = analyzer(&dir, 2, 0.5, &url, &[]);
    http.wait_stats(&url, "analyzer_2 back", |s| {
        online(s, &["analyzer_1", "analyzer_2"])
    })
    .await;
    let text = http.get(&metrics_url).await.text();
    assert_eq!(forgotten(&text) - before, 1.0, "{text}");
}
