//! The dashboard, end to end: `GET /` negotiated between a browser and Elasticsearch's
//! clients, the snapshot `logdist top` reads, and the page itself in Debian's chromium,
//! headless, driven by `playwright-core` (`tests/browser/dashboard.mjs`) over a real
//! distributor and three real analyzers.
//!
//! The browser test needs `chromium` (`apt-get install chromium`) and `npm ci` in
//! `crates/logdist/tests/browser/`; `.ci/run` does both.
//!
//! Rerun: `cargo test -p logdist --test dashboard`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use hyper::{Method, StatusCode};
use serde_json::Value;

const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A browser's `GET /` gets the page, open even with a token set; any other `GET /` is
/// still Elasticsearch's node info behind the ingest token.
#[tokio::test]
async fn get_root_is_the_dashboard_for_a_browser_and_the_node_info_for_elasticsearch() {
    let dir = scratch("dashboard-root");
    let (_d, url) = distributor(&dir, &["--token", "s3cret"]);
    let http = Http::new();
    http.wait_up(&format!("{url}/health")).await;
    let root = format!("{url}/");

    let page = http
        .request(Method::GET, &root, &[("accept", HTML)], bytes::Bytes::new())
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().contains("/dashboard/app.js"), "{}", page.text());
    let at_dashboard = http.get(&format!("{url}/dashboard")).await;
    assert_eq!(at_dashboard.status, StatusCode::OK);
    assert_eq!(at_dashboard.body, page.body, "the same page at /dashboard");
    for asset in ["app.js", "style.css"] {
        let answer = http.get(&format!("{url}/dashboard/{asset}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{asset}");
        assert!(!answer.body.is_empty(), "{asset}");
    }

    // Elasticsearch's clients: the Python client's Accept, and none at all (Beats).
    let es_accept = "application/vnd.elasticsearch+json; compatible-with=8";
    for accept in [Some(es_accept), None] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let refused = http
            .request(Method::GET, &root, &headers, bytes::Bytes::new())
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "still behind the token"
        );
        let mut with_token = headers.clone();
        with_token.push(("authorization", "Bearer s3cret"));
        let info = http
            .request(Method::GET, &root, &with_token, bytes::Bytes::new())
            .await;
        assert_eq!(info.status, StatusCode::OK);
        assert_eq!(info.headers["x-elastic-product"], "Elasticsearch");
        assert!(
            info.json()["version"]["number"].is_string(),
            "{}",
            info.text()
        );
    }
    // Nothing on the dashboard changes state.
    let post = http
        .post(&format!("{url}/dashboard"), "text/plain", "x")
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// `GET /dashboard/snapshot`: one row per analyzer with its target, and the rates move
/// under load, a second at a time.
#[tokio::test]
async fn the_snapshot_has_a_row_per_analyzer_and_rates_that_move() {
    let dir = scratch("dashboard-snapshot");
    let (_d, url) = distributor(&dir, &[]);
    let http = Http::new();
    let _a1 = analyzer(&dir, 1, 3.0, &url, &[]);
    let _a2 = analyzer(&dir, 2, 1.0, &url, &[]);
    http.wait_stats(&url, "two online", |s| {
        online(s, &["analyzer_1", "analyzer_2"])
    })
    .await;
    let snapshot = wait_snapshot(&http, &url, "two rows", |s| {
        s["analyzers"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let rows = snapshot["analyzers"].as_array().unwrap();
    assert_eq!(rows[0]["id"], "analyzer_1");
    assert_eq!(rows[0]["target_share"], 0.75);
    assert_eq!(rows[1]["target_share"], 0.25);
    assert_eq!(rows[0]["state"], "online");
    assert!(rows[0]["last_probe"]["ok"].as_bool().unwrap());
    assert_eq!(snapshot["distributor"]["online"], 2);
    assert!(snapshot["distributor"]["rss_bytes"].as_u64().unwrap() > 0);

    // Load for a few seconds: the rates are seen to move, then the totals add up.
    let sender = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move {
            for i in 0..60u64 {
                http.send_packet(&url, i * 10, 10).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let moving = wait_snapshot(&http, &url, "rates above zero", |s| {
        s["distributor"]["messages_in_per_s"].as_f64().unwrap() > 0.0
            && s["analyzers"][0]["messages_per_s"].as_f64().unwrap() > 0.0
    })
    .await;
    assert!(moving["analyzers"][0]["latency_p50_ms"].as_f64().is_some());
    sender.await.unwrap();
    let done = wait_snapshot(&http, &url, "600 messages delivered", |s| {
        let rows = s["analyzers"].as_array().unwrap();
        rows.iter()
            .map(|a| a["messages_total"].as_u64().unwrap())
            .sum::<u64>()
            == 600
    })
    .await;
    assert_eq!(done["distributor"]["messages_in_total"], 600);
}

/// Waits (at most 15 s) for a snapshot that satisfies `ready`.
async fn wait_snapshot(
    http: &Http,
    url: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = http.get(&format!("{url}/dashboard/snapshot")).await;
        assert_eq!(answer.status, StatusCode::OK);
        let snapshot = answer.json();
        if ready(&snapshot) {
            return snapshot;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {snapshot:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The page in a real browser: three analyzers at 0.5/0.3/0.2, numbers that move under
/// load, and an analyzer that is stopped leaving within 5 s while the targets on screen
/// re-normalize to 0.625/0.375. Screenshots are left in the test's scratch directory.
#[tokio::test]
async fn the_page_in_chromium_shows_the_shares_move_and_re_normalize() {
    let dir = scratch("dashboard-browser");
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci` in {} (.ci/run does)",
        browser_dir.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "chromium is missing: `apt-get install chromium` (.ci/run does), or set CHROMIUM"
    );
    let (_d, url) = distributor(&dir, &[]);
    let http = Http::new();
    let _a1 = analyzer(&dir, 1, 0.5, &url, &[]);
    let _a2 = analyzer(&dir, 2, 0.3, &url, &[]);
    let (a3, _) = analyzer(&dir, 3, 0.2, &url, &[]);
    http.wait_stats(&url, "three online", |s| {
        online(s, &["analyzer_1", "analyzer_2", "analyzer_3"])
    })
    .await;

    let mut node = Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .arg(&url)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .expect("could not run node: install Node.js");
    let mut to_node = node.stdin.take().unwrap();
    let (lines, from_node) = mpsc::channel();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let expect = |what: &str, within: Duration| -> String {
        let line = from_node.recv_timeout(within).unwrap_or_else(|_| {
            panic!(
                "the browser said nothing within {within:?} while waiting for `{what}`; node.log:\n{}",
                std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
            )
        });
        assert!(
            line.starts_with(what),
            "the browser: {line}; node.log:\n{}",
            std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
        );
        line
    };

    expect("ready", Duration::from_secs(30));
    // Bounded load: 20 s at most, 100 packets of 10 messages a second.
    let mut load = spawn(
        &dir,
        "loadgen",
        &[
            "loadgen",
            "--target",
            &url,
            "--agents",
            "2",
            "--packet-size",
            "10",
            "--rate",
            "100",
            "--duration",
            "20s",
        ],
    );
    writeln!(to_node, "load").unwrap();
    expect("moved", Duration::from_secs(20));

    a3.signal("TERM");
    writeln!(to_node, "stopped analyzer_3").unwrap();
    let line = expect("renormalized", Duration::from_secs(10));
    let took: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(took <= 5000, "{line}");
    expect("done", Duration::from_secs(20));
    assert!(node.wait().unwrap().success());
    for shot in ["dashboard.png", "dashboard-load.png", "dashboard-phone.png"] {
        let size = std::fs::metadata(dir.join(shot)).map_or(0, |m| m.len());
        assert!(size > 10_000, "{shot} is {size} bytes");
    }
    load.signal("TERM");
    load.wait_exit(Duration::from_secs(10));
}
