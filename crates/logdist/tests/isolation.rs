//! One bad packet, one bad analyzer or one flood takes down nothing but itself: real
//! distributors and analyzers on loopback.
//!
//! - A packet the analyzers refuse as bad (here `{"foo":1}`, which `--validate framing`
//!   lets through) fails alone, with 422 and the analyzer's reason, or is counted as dropped
//!   with `--ack accepted`; the packets batched with it are delivered, and no analyzer is
//!   marked unhealthy for it.
//! - An analyzer with a smaller body limit than a batch gets batches under its limit
//!   (learned from its 413), and packets larger than it takes go to the others.
//! - An analyzer that takes deliveries and never answers, while its `/health` answers, is
//!   ejected for a time that doubles, and good probes do not bring it back early.
//! - Registrations are bounded (`--max-analyzers`) and rate-limited per source
//!   (`--register-rate`), and an address that does not answer its probe gets no traffic.
//! - An analyzer that leaves takes its metric series with it.
//!
//! Rerun: `cargo test -p logdist --test isolation -- --nocapture`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use hyper::{Method, StatusCode};
use tokio::time::Instant;

/// The poison: a JSON object per line, so framing passes it, but not a message.
const POISON: &str = "{\"foo\":1}\n";

/// Sums the samples of a metric whose line starts with `prefix` in a `/metrics` text.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `seq` of every message in some journals.
fn journaled(paths: &[std::path::PathBuf]) -> Vec<u64> {
    paths
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                        .as_u64()
                        .unwrap_or_else(|| {
                            panic!("a journal holds a line that is not a test message: {l}")
                        })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Three journaling analyzers registered with `url`; returns them and their journals.
async fn three_analyzers(
    dir: &std::path::Path,
    url: &str,
    http: &Http,
) -> (Vec<(Proc, String)>, Vec<std::path::PathBuf>) {
    let mut procs = Vec::new();
    let mut journals = Vec::new();
    for (id, weight) in [(1, 0.5), (2, 0.3), (3, 0.2)] {
        let journal = dir.join(format!("journal_{id}.ndjson"));
        let arg = journal.to_str().unwrap().to_owned();
        procs.push(analyzer(dir, id, weight, url, &["--journal", &arg]));
        journals.push(journal);
    }
    http.wait_stats(url, "three analyzers online", |s| {
        online(s, &["analyzer_1", "analyzer_2", "analyzer_3"])
    })
    .await;
    (procs, journals)
}

/// Sends `rounds` rounds of `agents` packets at once, a poison packet among each round's;
/// returns the answers to good packets by status, the poison's answers, and the good
/// messages acknowledged.
async fn poison_rounds(
    http: &Http,
    url: &str,
    agents: u64,
    rounds: u64,
) -> (Vec<(u16, String)>, Vec<(u16, String)>, Vec<u64>) {
    let (mut good, mut poison, mut acked) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut sends = Vec::new();
        for agent in 0..agents {
            let (http, url) = (http.clone(), url.to_owned());
            let first = (round * agents + agent) * 20;
            sends.push(tokio::spawn(async move {
                let answer = http.send_packet(&url, first, 20).await;
                (first, answer.status.as_u16(), answer.text())
            }));
        }
        let target = format!("{url}/packets");
        let bad = http.post(&target, "application/x-ndjson", POISON).await;
        poison.push((bad.status.as_u16(), bad.text()));
        for send in sends {
            let (first, status, text) = send.await.unwrap();
            if (200..300).contains(&status) {
                acked.extend(first..first + 20);
            }
            good.push((status, text));
        }
    }
    (good, poison, acked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_packet_fails_alone_and_takes_no_analyzer_down() {
    let dir = scratch("poison-delivered");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &["--validate", "framing"]);
    let (_analyzers, journals) = three_analyzers(&dir, &url, &http).await;

    let (good, poison, acked) = poison_rounds(&http, &url, 16, 20).await;
    for (status, text) in &poison {
        assert_eq!(*status, 422, "the poison packet: {text}");
        assert!(
            text.contains("refused this packet (400)") && text.contains("analyzer_"),
            "the answer names the analyzer and its reason: {text}"
        );
    }
    let refused: Vec<_> = good.iter().filter(|(s, _)| *s != 200).collect();
    assert!(refused.is_empty(), "good packets refused: {refused:?}");

    // No analyzer was ever taken out of routing for it.
    let stats = http.stats(&url).await;
    assert!(
        online(&stats, &["analyzer_1", "analyzer_2", "analyzer_3"]),
        "{stats:#?}"
    );
    let metrics = http.get(&format!("{url}/metrics")).await.text();
    assert_eq!(metric(&metrics, "logdist_analyzer_ejections_total"), 0.0);
    assert_eq!(
        metric(
            &metrics,
            "logdist_deliveries_total{analyzer=\"analyzer_1\",outcome=\"failed\"}"
        ),
        0.0
    );
    assert_eq!(
        metric(&metrics, "logdist_packets_rejected_by_analyzer_total"),
        20.0
    );

    // Every good message acknowledged is at an analyzer, once.
    let seen = journaled(&journals);
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    let missing = acked.iter().filter(|s| !unique.contains(s)).count();
    assert_eq!(
        missing, 0,
        "acknowledged messages missing from the journals"
    );
    eprintln!(
        "{} good packets delivered, {} poison packets refused alone",
        good.len(),
        poison.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ack_accepted_a_bad_packet_loses_only_itself() {
    let dir = scratch("poison-accepted");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &["--validate", "framing", "--ack", "accepted"]);
    let (_analyzers, journals) = three_analyzers(&dir, &url, &http).await;

    let (good, poison, acked) = poison_rounds(&http, &url, 16, 20).await;
    assert!(poison.iter().all(|(s, _)| *s == 202), "{poison:?}");
    assert!(good.iter().all(|(s, _)| *s == 202), "good packets refused");

    // Everything answered 202 reaches an analyzer, but the poison packets.
    let deadline = Instant::now() + Duration::from_secs(10);
    let want: HashSet<u64> = acked.iter().copied().collect();
    loop {
        let seen: HashSet<u64> = journaled(&journals).into_iter().collect();
        let missing = want.difference(&seen).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} accepted messages never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = http.get(&format!("{url}/metrics")).await.text();
    assert_eq!(
        metric(&metrics, "logdist_messages_dropped_total"),
        20.0,
        "the 20 poison messages, and nothing else, are dropped"
    );
    let stats = http.stats(&url).await;
    assert!(
        online(&stats, &["analyzer_1", "analyzer_2", "analyzer_3"]),
        "{stats:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_with_a_small_body_limit_gets_batches_it_takes() {
    let dir = scratch("small-body");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &[]);
    let mut journals = Vec::new();
    let mut procs = Vec::new();
    for (id, weight, limit) in [(1, 0.4, "64MiB"), (2, 0.3, "64MiB"), (3, 0.3, "64KiB")] {
        let journal = dir.join(format!("journal_{id}.ndjson"));
        let arg = journal.to_str().unwrap().to_owned();
        procs.push(analyzer(
            &dir,
            id,
            weight,
            &url,
            &["--journal", &arg, "--max-body", limit],
        ));
        journals.push(journal);
    }
    http.wait_stats(&url, "three analyzers online", |s| {
        online(s, &["analyzer_1", "analyzer_2", "analyzer_3"])
    })
    .await;

    // Packets of 100 to 900 messages (about 13 to 120 KB): many batches and some
    // packets are over analyzer_3's 64 KiB.
    let mut sends = Vec::new();
    for agent in 0..12u64 {
        let (http, url) = (http.clone(), url.clone());
        sends.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..15u64 {
                let size = 100 + (agent * 131 + i * 257) % 800;
                let first = (agent * 15 + i) * 1000;
                let answer = http.send_packet(&url, first, size).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
                acked.extend(first..first + size);
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for send in sends {
        acked.extend(send.await.unwrap());
    }
    let stats = http.stats(&url).await;
    assert!(
        online(&stats, &["analyzer_1", "analyzer_2", "analyzer_3"]),
        "{stats:#?}"
    );
    let small = stats.iter().find(|a| a.id == "analyzer_3").unwrap();
    assert!(
        small.messages_total > 0,
        "the small analyzer still gets traffic"
    );
    let metrics = http.get(&format!("{url}/metrics")).await.text();
    let learned = metric(
        &metrics,
        "logdist_analyzer_accepts_bytes{analyzer=\"analyzer_3\"}",
    );
    // Learned from refusals only, so never below the analyzer's real limit, and below
    // the batches it refused.
    assert!(
        (65536.0..1_048_576.0).contains(&learned),
        "learned limit {learned}"
    );
    assert_eq!(metric(&metrics, "logdist_analyzer_ejections_total"), 0.0);
    let seen: HashSet<u64> = journaled(&journals).into_iter().collect();
    assert!(
        acked.iter().all(|s| seen.contains(s)),
        "acknowledged messages missing"
    );
    eprintln!(
        "analyzer_3 takes at most {learned} bytes; it got {} messages",
        small.messages_total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_dead_analyzer_is_ejected_for_longer_each_time() {
    let dir = scratch("half-dead");
    let http = Http::new();
    let (_d, url) = distributor(
        &dir,
        &[
            "--delivery-timeout",
            "400ms",
            "--eject-base",
            "1s",
            "--eject-max",
            "1m",
        ],
    );
    let _a1 = analyzer(&dir, 1, 0.5, &url, &[]);
    let (_a2, a2) = analyzer(&dir, 2, 0.5, &url, &["--faults"]);
    http.wait_stats(&url, "two analyzers online", |s| {
        online(s, &["analyzer_1", "analyzer_2"])
    })
    .await;
    // analyzer_2 now takes deliveries and never answers; its /health still answers.
    let set = http
        .request(
            Method::PUT,
            &format!("{a2}/faults"),
            &[("content-type", "application/json")],
            r#"{"delay_ms":3600000}"#,
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());

    // Each time it is back online, packets find it, it is ejected again, for longer.
    let mut ejections = Vec::new();
    let mut seq = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ejections.len() < 3 && Instant::now() < deadline {
        let answer = http.send_packet(&url, seq, 5).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        seq += 5;
        let metrics = http.get(&format!("{url}/metrics")).await.text();
        let count = metric(
            &metrics,
            "logdist_analyzer_ejections_total{analyzer=\"analyzer_2\"}",
        );
        if count as usize > ejections.len() {
            // Measure how long it stays out, though its probes pass all along.
            let out = Instant::now();
            http.wait_stats(&url, "analyzer_2 back", |s| {
                online(s, &["analyzer_1", "analyzer_2"])
            })
            .await;
            ejections.push(out.elapsed());
        }
    }
    eprintln!("analyzer_2 was out for {ejections:?}");
    assert_eq!(ejections.len(), 3, "three ejections within 20 s");
    assert!(ejections[0] >= Duration::from_millis(800), "{ejections:?}");
    assert!(
        ejections[1] >= Duration::from_millis(1800),
        "doubled: {ejections:?}"
    );
    assert!(
        ejections[2] >= Duration::from_millis(3800),
        "doubled again: {ejections:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_bounded_and_rate_limited() {
    let dir = scratch("membership-bound");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &["--max-analyzers", "4", "--register-rate", "3"]);
    let (_a1, a1) = analyzer(&dir, 1, 1.0, &url, &[]);
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;
    // analyzer_1's own registration came from this address: let the bucket fill again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let register = |id: String, target: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = format!(r#"{{"id":"{id}","weight":1,"url":"{target}"}}"#);
            http.post(
                &format!("{url}/analyzer/register"),
                "application/json",
                body,
            )
            .await
        }
    };
    let closed = format!("http://127.0.0.1:{}", free_port());
    // (id, url, expected status, expected state): a table, in order. The burst of 3 a
    // second per source is spent by the first three changes.
    let table: [(&str, &str, u16, Option<&str>); 6] = [
        ("junk_1", &closed, 200, Some("unhealthy")), // nothing answers its probe
        ("junk_2", &closed, 200, Some("unhealthy")),
        ("live_b", &a1, 200, Some("online")), // the same analyzer under a second id
        ("junk_3", &closed, 429, None),       // the fourth change in a second
        ("junk_1", &closed, 200, Some("unhealthy")), // a keep-alive is never limited
        ("analyzer_1", &a1, 200, Some("online")), // nor is the real one's
    ];
    for (id, target, status, state) in table {
        let answer = register(id.to_owned(), target.to_owned()).await;
        assert_eq!(answer.status.as_u16(), status, "{id}: {}", answer.text());
        if let Some(state) = state {
            assert_eq!(answer.json()["state"], state, "{id}");
        } else {
            assert!(
                answer.headers.contains_key("retry-after"),
                "{id}: 429 says when"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Four members now: a fifth is refused, however slowly it comes.
    let answer = register("junk_4".to_owned(), closed.clone()).await;
    assert_eq!(answer.status.as_u16(), 503, "{}", answer.text());
    assert!(
        answer.text().contains("--max-analyzers"),
        "{}",
        answer.text()
    );
    let stats = http.stats(&url).await;
    assert_eq!(stats.len(), 4, "{stats:#?}");
    // Junk never took traffic: every packet goes to the live ones.
    for i in 0..20 {
        let answer = http.send_packet(&url, i * 3, 3).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_flood_leaves_the_real_analyzers_serving() {
    let dir = scratch("registration-flood");
    let http = Http::new();
    let (d, url) = distributor(&dir, &[]);
    let (_analyzers, _journals) = three_analyzers(&dir, &url, &http).await;
    let rss_before = rss_kib(d.pid()).unwrap();

    // Four flooders, 5,000 junk registrations in all, as fast as they go, while an agent
    // sends packets and a watcher checks /health and the real analyzers' states.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut flooders = Vec::new();
    for f in 0..4 {
        let (http, url, closed) = (http.clone(), url.clone(), closed.clone());
        flooders.push(tokio::spawn(async move {
            let mut by_status = std::collections::BTreeMap::<u16, u32>::new();
            for i in 0..1250 {
                let body = format!(r#"{{"id":"junk_{f}_{i}","weight":1,"url":"{closed}"}}"#);
                let answer = http
                    .post(
                        &format!("{url}/analyzer/register"),
                        "application/json",
                        body,
                    )
                    .await;
                *by_status.entry(answer.status.as_u16()).or_default() += 1;
            }
            by_status
        }));
    }
    let agent = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let (mut ok, mut seq) = (0u32, 0u64);
            let start = Instant::now();
            let mut slowest = Duration::ZERO;
            while start.elapsed() < Duration::from_secs(4) {
                let t = Instant::now();
                let health = http.get(&format!("{url}/health")).await;
                slowest = slowest.max(t.elapsed());
                assert_eq!(health.status, StatusCode::OK);
                let answer = http.send_packet(&url, seq, 10).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
                let stats = http.stats(&url).await;
                for id in ["analyzer_1", "analyzer_2", "analyzer_3"] {
                    let state = &stats.iter().find(|a| a.id == id).unwrap().state;
                    assert_eq!(state, "online", "{id} during the flood");
                }
                ok += 1;
                seq += 10;
            }
            (ok, slowest)
        })
    };
    let (ok, slowest) = agent.await.unwrap();
    let mut total = std::collections::BTreeMap::<u16, u32>::new();
    for f in flooders {
        for (status, n) in f.await.unwrap() {
            *total.entry(status).or_default() += n;
        }
    }
    let rss_after = rss_kib(d.pid()).unwrap();
    eprintln!(
        "flood answers by status {total:?}; {ok} packets delivered meanwhile; slowest /health {slowest:?}; RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(ok > 10, "packets kept flowing during the flood");
    assert!(slowest < Duration::from_secs(1), "/health took {slowest:?}");
    assert!(
        total.get(&429).copied().unwrap_or(0) > 4000,
        "the flood was rate-limited: {total:?}"
    );
    let stats = http.stats(&url).await;
    assert!(
        stats.len() <= 3 + 20 * 6,
        "members bounded by the rate: {}",
        stats.len()
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departed_analyzers_leave_no_metric_series() {
    let dir = scratch("departed-series");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &["--register-rate", "1000"]);
    let _a1 = analyzer(&dir, 1, 1.0, &url, &[]);
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    for i in 0..200 {
        let body = format!(r#"{{"id":"passing_{i}","weight":1,"url":"{closed}"}}"#);
        let answer = http
            .post(
                &format!("{url}/analyzer/register"),
                "application/json",
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        if i == 0 {
            let metrics = http.get(&format!("{url}/metrics")).await.text();
            assert!(
                metrics.contains("analyzer=\"passing_0\""),
                "a member has its series"
            );
        }
        let body = format!(r#"{{"id":"passing_{i}"}}"#);
        let answer = http
            .post(
                &format!("{url}/analyzer/deregister"),
                "application/json",
                body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    let stats = http.stats(&url).await;
    assert_eq!(stats.len(), 1, "{stats:#?}");
    let metrics = http.get(&format!("{url}/metrics")).await.text();
    assert!(
        !metrics.contains("passing_"),
        "a departed analyzer's series is left"
    );
    assert!(metrics.contains("analyzer=\"analyzer_1\""));
    eprintln!(
        "/metrics is {} bytes after 200 analyzers came and went",
        metrics.len()
    );
}
