//! End to end: an analyzer killed with SIGKILL mid-run loses no packet that was answered
//! 200. Every message carries a unique `seq`; every analyzer journals what it receives
//! before acknowledging, so the journals show what reached an analyzer even after a kill.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;

fn journaled(path: &std::path::Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_packet_is_lost_when_an_analyzer_is_killed() {
    let dir = scratch("sigkill");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &["--delivery-timeout", "2s"]);
    let mut analyzers = Vec::new();
    for (id, weight) in [(1, 0.5), (2, 0.3), (3, 0.2)] {
        let journal = dir.join(format!("journal_{id}.ndjson"));
        let journal_s = journal.to_str().unwrap().to_owned();
        analyzers.push((
            analyzer(&dir, id, weight, &url, &["--journal", &journal_s]),
            journal,
        ));
    }
    http.wait_stats(&url, "three analyzers", |s| {
        online(s, &["analyzer_1", "analyzer_2", "analyzer_3"])
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let next_seq = Arc::new(AtomicU64::new(0));
    let mut agents = Vec::new();
    for agent in 0..8u64 {
        let (http, url, stop, next_seq) =
            (http.clone(), url.clone(), stop.clone(), next_seq.clone());
        agents.push(tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                let size = 1 + (agent * 7 + acked.len() as u64) % 40;
                let first = next_seq.fetch_add(size, Ordering::Relaxed);
                let answer = http.send_packet(&url, first, size).await;
                match answer.status.as_u16() {
                    200 => acked.extend(first..first + size),
                    503 => refused += 1,
                    other => panic!("unexpected {other}: {}", answer.text()),
                }
            }
            (acked, refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = next_seq.load(Ordering::Relaxed);
    analyzers[1].0.0.child.kill().unwrap(); // SIGKILL: no deregistration, no goodbye.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut acked, mut refused) = (Vec::new(), 0);
    for agent in agents {
        let (a, r) = agent.await.unwrap();
        acked.extend(a);
        refused += r;
    }
    let after_kill = acked.iter().filter(|&&s| s >= before_kill).count();
    assert!(after_kill > 0, "nothing was acknowledged after the kill");

    let stats = http
        .wait_stats(&url, "analyzer_2 unhealthy", |s| {
            s.iter()
                .any(|a| a.id == "analyzer_2" && a.state == "unhealthy")
        })
        .await;
    assert_eq!(stats.iter().filter(|a| a.state == "online").count(), 2);

    // Stop the survivors gracefully so their journals are complete.
    for (i, ((proc, _), _)) in analyzers.iter_mut().enumerate() {
        if i != 1 {
            proc.signal("TERM");
            assert!(proc.wait_exit(Duration::from_secs(20)).success());
        }
    }
    let mut received: Vec<u64> = Vec::new();
    for (_, journal) in &analyzers {
        received.extend(journaled(journal));
    }
    let unique: HashSet<u64> = received.iter().copied().collect();
    let missing: Vec<&u64> = acked
        .iter()
        .filter(|s| !unique.contains(s))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never received: {missing:?}"
    );
    let duplicates = received.len() - unique.len();
    eprintln!(
        "acknowledged {} messages ({after_kill} after the kill), {refused} packets refused with 503, \
         {} received, {duplicates} duplicates",
        acked.len(),
        received.len()
    );
}

/// One delivery in flight and one packet queued per analyzer, and a hung analyzer is
/// waited for (not declared dead) for the length of a test: a queue fills deterministically.
const SMALL_QUEUE_PATIENT_DELIVERY: &[&str] = &[
    "--queue-packets",
    "1",
    "--lane-concurrency",
    "1",
    "--delivery-timeout",
    "20s",
    "--probe-interval",
    "30s",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after_and_accepts_nothing() {
    let dir = scratch("queue-full");
    let http = Http::new();
    let (_d, url) = distributor(&dir, SMALL_QUEUE_PATIENT_DELIVERY);
    let (a1, a1_url) = analyzer(&dir, 1, 1.0, &url, &[]);
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;

    // A hung analyzer: the lane's one delivery waits on it, and the queue holds one more.
    a1.signal("STOP");
    let send = |first: u64| {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move { http.send_packet(&url, first, 1).await })
    };
    // Wait on the lane itself, not on time: the first packet is out for delivery (its bytes
    // are counted, the queue is empty), then the second waits in the queue.
    let in_flight = send(0);
    wait_metric(
        &http,
        &url,
        "logdist_lane_queued_bytes{analyzer=\"analyzer_1\"}",
        |v| v > 0.0,
    )
    .await;
    wait_metric(
        &http,
        &url,
        "logdist_lane_queued_packets{analyzer=\"analyzer_1\"}",
        |v| v == 0.0,
    )
    .await;
    let queued = send(1);
    wait_metric(
        &http,
        &url,
        "logdist_lane_queued_packets{analyzer=\"analyzer_1\"}",
        |v| v == 1.0,
    )
    .await;
    let refused = http.send_packet(&url, 2, 1).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(
        refused.json()["error"].as_str().unwrap().contains("queue"),
        "{}",
        refused.text()
    );

    // The analyzer resumes: both waiting agents get 200, and the refused packet was never sent.
    a1.signal("CONT");
    assert_eq!(in_flight.await.unwrap().status, 200);
    assert_eq!(queued.await.unwrap().status, 200);
    let own = http.get(&format!("{a1_url}/stats")).await.json();
    assert_eq!(own["messages"], 2);
    let answer = http.send_packet(&url, 3, 1).await;
    assert_eq!(answer.status, 200, "throughput returns without a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_analyzer_returns_online_after_consecutive_good_probes() {
    let dir = scratch("recovery");
    let http = Http::new();
    let (distributor_proc, url) = distributor(&dir, &["--healthy-after", "3"]);
    let (_a1, _) = analyzer(&dir, 1, 1.0, &url, &[]);
    let (mut a2, a2_url) = analyzer(&dir, 2, 1.0, &url, &[]);
    http.wait_stats(&url, "two analyzers", |s| {
        online(s, &["analyzer_1", "analyzer_2"])
    })
    .await;

    // Killed without a word: packets keep being answered 200 (re-routed to analyzer_1)
    // and analyzer_2 turns unhealthy.
    a2.child.kill().unwrap();
    a2.child.wait().unwrap();
    for i in 0..20 {
        let answer = http.send_packet(&url, i, 1).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    http.wait_stats(&url, "analyzer_2 unhealthy", |s| {
        s.iter()
            .any(|a| a.id == "analyzer_2" && a.state == "unhealthy")
    })
    .await;

    // Back at the same address: probes bring it online again and it gets its share.
    let listen = a2_url.trim_start_matches("http://").to_owned();
    let (_a2_again, _) = spawn_server(&dir, "analyzer_2_again", |_| {
        [
            "analyzer",
            "--id",
            "2",
            "--distributor",
            &url,
            "--listen",
            &listen,
            "--heartbeat",
            "500ms",
        ]
        .map(String::from)
        .to_vec()
    });
    http.wait_stats(&url, "analyzer_2 online again", |s| {
        online(s, &["analyzer_1", "analyzer_2"])
    })
    .await;
    assert!(
        distributor_proc
            .log_text()
            .contains("Analyzer recovered; routing to it again.")
    );
    for i in 0..100 {
        let answer = http.send_packet(&url, 100 + i, 1).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let stats = http.stats(&url).await;
    assert_eq!(
        (stats[0].messages_sent, stats[1].messages_sent),
        (50, 50),
        "{stats:?}"
    );
    let own = http.get(&format!("{a2_url}/stats")).await.json();
    assert_eq!(own["messages"], 50);
}

/// Polls `/metrics` until the sample `name` (with its labels) satisfies `ok`.
async fn wait_metric(http: &Http, url: &str, name: &str, ok: impl Fn(f64) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = http.get(&format!("{url}/metrics")).await.text();
        let value = text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if value.is_some_and(&ok) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} stayed at {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_at_one_analyzer_holds_its_turns_without_breaking_the_shares() {
    let dir = scratch("one-queue-full");
    let http = Http::new();
    let (_d, url) = distributor(&dir, SMALL_QUEUE_PATIENT_DELIVERY);
    let (a1, a1_url) = analyzer(&dir, 1, 1.0, &url, &[]);
    let (_a2, a2_url) = analyzer(&dir, 2, 1.0, &url, &[]);
    http.wait_stats(&url, "two analyzers", |s| {
        online(s, &["analyzer_1", "analyzer_2"])
    })
    .await;

    // analyzer_1 hangs: it holds one packet in flight and one in its queue of 1.
    // analyzer_2 takes its own turns; analyzer_1's turns are refused (503, nothing
    // accepted) instead of going to analyzer_2, which would break the 1:1 shares.
    a1.signal("STOP");
    let mut sends = Vec::new();
    for i in 0..12 {
        let (http, url) = (http.clone(), url.clone());
        sends.push(tokio::spawn(
            async move { http.send_packet(&url, i, 1).await },
        ));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sends.iter().filter(|s| s.is_finished()).count() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "agents left waiting behind the hung analyzer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let own = http.get(&format!("{a2_url}/stats")).await.json();
    assert_eq!(own["messages"], 2, "analyzer_2 took its share only");

    a1.signal("CONT");
    let mut statuses = Vec::new();
    for send in sends {
        let answer = send.await.unwrap();
        if answer.status == 503 {
            assert!(answer.headers.contains_key("retry-after"));
        }
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        8,
        "{statuses:?}"
    );
    let own = http.get(&format!("{a1_url}/stats")).await.json();
    assert_eq!(own["messages"], 2);
    let stats = http.stats(&url).await;
    assert_shares_within(&stats, 1);
}
