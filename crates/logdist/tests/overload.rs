//! Overload: for 60 s the analyzers take packets more slowly than agents send them. The
//! queues stay bounded (by bytes and by the analyzers' measured delivery rate), the
//! distributor's memory stays flat, and agents get 503 with Retry-After at once instead
//! of waiting toward their timeouts. When the analyzers catch up, throughput comes back
//! without a restart.
//!
//! Rerun: `cargo test -p logdist --test overload -- --nocapture` (prints the RSS samples
//! and both runs' figures).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::Method;

/// Runs the load generator to the end and returns its `--report`.
fn run_loadgen(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    agents: &str,
    duration: &str,
) -> serde_json::Value {
    let report = dir.join(format!("{name}.json"));
    let mut proc = spawn(
        dir,
        name,
        &[
            "loadgen",
            "--target",
            url,
            "--agents",
            agents,
            "--packet-size",
            "100",
            "--duration",
            duration,
            "--timeout",
            "10s",
            "--report",
            report.to_str().unwrap(),
            "--quiet",
        ],
    );
    let status = proc.wait_exit(Duration::from_secs(180));
    assert!(status.success(), "{}", proc.log_text());
    serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_analyzers_get_503s_not_timeouts_with_flat_memory_and_recover() {
    let dir = scratch("overload");
    let http = Http::new();
    let (distributor, url) = distributor(&dir, &["--batch-bytes", "64KiB"]);
    let mut slow = Vec::new();
    for (id, weight) in [(1, 0.6), (2, 0.4)] {
        let (proc, analyzer_url) = analyzer(&dir, id, weight, &url, &["--faults"]);
        slow.push((proc, analyzer_url));
    }
    http.wait_stats(&url, "two analyzers", |s| {
        online(s, &["analyzer_1", "analyzer_2"])
    })
    .await;
    for (_, analyzer_url) in &slow {
        let answer = http
            .request(
                Method::PUT,
                &format!("{analyzer_url}/faults"),
                &[("content-type", "application/json")],
                r#"{"delay_ms":250}"#,
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }

    // Sample the distributor's RSS every second while the overload runs.
    let pid = distributor.pid();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            let start = Instant::now();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    samples.push((start.elapsed().as_secs_f64(), kib));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            samples
        })
    };
    let (dir2, url2) = (dir.clone(), url.clone());
    let overload =
        tokio::task::spawn_blocking(move || run_loadgen(&dir2, "overload", &url2, "256", "60s"));
    // An agent refused during the overload is told when to come back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let refused = loop {
        let answer = http.send_packet(&url, 0, 100).await;
        if answer.status == 503 {
            break answer;
        }
    };
    assert!(
        refused.headers.contains_key("retry-after"),
        "{:?}",
        refused.headers
    );
    eprintln!(
        "overload: a refused agent is told {:?} with Retry-After: {:?}",
        refused.json()["error"],
        refused.headers["retry-after"]
    );
    let overload = overload.await.unwrap();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.join().unwrap();

    let failures = &overload["failures"];
    eprintln!(
        "overload: {} packets sent, {} acked ({:.0} msg/s), failures {failures}, latency ms {}",
        overload["packets_sent"],
        overload["packets_acked"],
        overload["messages_per_s"].as_f64().unwrap(),
        overload["latency_ms"]
    );
    let rss: Vec<String> = samples
        .iter()
        .map(|(t, kib)| format!("{t:.0}s:{}MiB", kib / 1024))
        .collect();
    eprintln!("overload: distributor RSS {}", rss.join(" "));
    assert!(
        failures["http_503"].as_u64().unwrap_or(0) > 0,
        "slow analyzers must make agents get 503s: {overload}"
    );
    assert_eq!(
        failures.get("timeout"),
        None,
        "agents must be refused at once, not left to time out: {overload}"
    );
    assert!(
        overload["packets_acked"].as_u64().unwrap() > 0,
        "the slow analyzers still take packets: {overload}"
    );
    assert!(
        overload["latency_ms"]["p99"].as_f64().unwrap() < 5_000.0,
        "acknowledged packets wait at most about the queue wait: {overload}"
    );
    // Flat: the second half of the run needs no more memory than the first.
    let half = samples.len() / 2;
    let peak = |s: &[(f64, u64)]| s.iter().map(|(_, kib)| *kib).max().unwrap_or(0);
    let (first, second) = (peak(&samples[..half]), peak(&samples[half..]));
    eprintln!("overload: peak RSS first half {first} KiB, second half {second} KiB");
    assert!(
        samples.len() >= 50,
        "too few RSS samples: {}",
        samples.len()
    );
    assert!(
        second <= first + first / 10 + 4096,
        "RSS grew: first half peak {first} KiB, second half peak {second} KiB"
    );
    assert!(second < 256 * 1024, "RSS {second} KiB");

    // The analyzers catch up: no restart, and the same agents get through again.
    for (_, analyzer_url) in &slow {
        http.request(
            Method::PUT,
            &format!("{analyzer_url}/faults"),
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    }
    let (dir2, url2) = (dir.clone(), url.clone());
    let recovered =
        tokio::task::spawn_blocking(move || run_loadgen(&dir2, "recovered", &url2, "32", "5s"))
            .await
            .unwrap();
    eprintln!(
        "overload: after catching up {} packets acked ({:.0} msg/s), failures {}",
        recovered["packets_acked"],
        recovered["messages_per_s"].as_f64().unwrap(),
        recovered["failures"]
    );
    let rate = |r: &serde_json::Value| r["messages_per_s"].as_f64().unwrap();
    assert!(
        rate(&recovered) > 3.0 * rate(&overload),
        "throughput did not come back: {} vs {} msg/s under overload",
        rate(&recovered),
        rate(&overload)
    );
    let failed = recovered["packets_failed"].as_u64().unwrap();
    assert!(
        failed * 100 <= recovered["packets_sent"].as_u64().unwrap(),
        "refusals go on after catching up: {recovered}"
    );
}
