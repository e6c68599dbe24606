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
    let (_a2, a2_url) = analyzer(&dir, 2, 1.0, &url, &["--faults"]);
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

    // analyzer_2 fails its deliveries: its row counts the packets routed away from it.
    let answer = http
        .request(
            Method::PUT,
            &format!("{a2_url}/faults"),
            &[("content-type", "application/json")],
            r#"{"status":500}"#.to_owned(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    for i in 0..20u64 {
        let answer = http.send_packet(&url, 1_000 + i * 10, 10).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let failed = wait_snapshot(&http, &url, "re-routes counted", |s| {
        s["analyzers"][1]["rerouted_packets"].as_u64().unwrap() > 0
    })
    .await;
    assert_eq!(failed["analyzers"][0]["rerouted_packets"], 0);
    assert!(
        failed["analyzers"][1]["failed_deliveries"]
            .as_u64()
            .unwrap()
            > 0
    );
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
    // Spooling, so that the page shows its spool tile too.
    let spool = dir.join("spool");
    let (_d, url) = distributor(
        &dir,
        &["--ack", "accepted", "--spool", spool.to_str().unwrap()],
    );
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

/// `logdist top`: a live distributor's snapshot drawn on ratatui's test backend, one row
/// per analyzer with its state and target, and the rates of the distributor above.
#[tokio::test]
async fn top_draws_the_same_rows_from_a_live_distributor() {
    let dir = scratch("dashboard-top");
    // Spooling, so that the page shows its spool tile too.
    let spool = dir.join("spool");
    let (_d, url) = distributor(
        &dir,
        &["--ack", "accepted", "--spool", spool.to_str().unwrap()],
    );
    let http = Http::new();
    let _a1 = analyzer(&dir, 1, 0.5, &url, &[]);
    let _a2 = analyzer(&dir, 2, 0.3, &url, &[]);
    let _a3 = analyzer(&dir, 3, 0.2, &url, &[]);
    http.wait_stats(&url, "three online", |s| {
        online(s, &["analyzer_1", "analyzer_2", "analyzer_3"])
    })
    .await;
    for i in 0..20u64 {
        http.send_packet(&url, i * 10, 10).await;
    }
    let client = logdist::top::client().unwrap();
    // The first snapshot after the packets that shows all three with their messages.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let snapshot = loop {
        let snapshot = logdist::top::fetch(&client, &url).await.unwrap();
        let total: u64 = snapshot.analyzers.iter().map(|a| a.messages_total).sum();
        if snapshot.analyzers.len() == 3 && total == 200 {
            break snapshot;
        }
        assert!(std::time::Instant::now() < deadline, "{snapshot:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let view = logdist::top::View {
        url: url.clone(),
        snapshot: Some(snapshot),
        error: None,
    };
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(140, 14)).unwrap();
    terminal
        .draw(|frame| logdist::top::draw(frame, &view))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let lines: Vec<String> = (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect();
    let screen = lines.join("\n");
    assert!(screen.contains(&url), "{screen}");
    assert!(screen.contains("online 3/3"), "{screen}");
    for (id, target) in [
        ("analyzer_1", "0.500"),
        ("analyzer_2", "0.300"),
        ("analyzer_3", "0.200"),
    ] {
        let line = lines
            .iter()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{screen}"));
        assert!(line.contains("online"), "{line}");
        assert!(line.contains("logdist"), "{line}");
        assert!(line.contains(target), "{id} at {target}: {line}");
    }
    // The states are coloured: online in green.
    let (x, y) = (0..buffer.area.height)
        .find_map(|y| {
            lines[y as usize]
                .find("online ")
                .filter(|_| lines[y as usize].contains("analyzer_1"))
                .map(|x| (x as u16, y))
        })
        .unwrap();
    assert_eq!(buffer[(x, y)].fg, ratatui::style::Color::Green, "{screen}");

    // A distributor that stops answering: the last snapshot stays, with the error.
    let view = logdist::top::View {
        error: Some("connection refused".to_owned()),
        ..view
    };
    terminal
        .draw(|frame| logdist::top::draw(frame, &view))
        .unwrap();
    let buffer = terminal.backend().buffer();
    let text: String = buffer.content().iter().map(|c| c.symbol()).collect();
    assert!(text.contains("error: connection refused"), "{text}");
    assert!(text.contains("analyzer_3"), "{text}");
}

/// `logdist demo --hold` prints the dashboard's URL, serves it while the load runs, and
/// keeps serving after the load until interrupted.
#[tokio::test]
async fn the_demo_prints_the_dashboard_and_holds_it_until_interrupted() {
    let dir = scratch("dashboard-demo");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_logdist"))
        .args([
            "demo",
            "--duration",
            "2s",
            "--rate",
            "200",
            "--packet-size",
            "10",
            "--agents",
            "2",
            "--hold",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("demo.log")).unwrap())
        .spawn()
        .unwrap();
    let demo_pid = demo.id();
    let stdout = demo.stdout.take().unwrap();
    let mut demo = KillOnDrop(demo);
    let (lines, from_demo) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let wait_line = |what: &str| -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = from_demo
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the demo never printed `{what}`"));
            if line.contains(what) {
                return line;
            }
        }
    };
    let line = wait_line("Dashboard: ");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let http = Http::new();
    let page = http
        .request(
            Method::GET,
            &format!("{url}/"),
            &[("accept", HTML)],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("/dashboard/app.js"));
    wait_line("Holding");
    // The load is over; the dashboard still answers, a second and more later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let snapshot = http.get(&format!("{url}/dashboard/snapshot")).await.json();
    assert_eq!(
        snapshot["analyzers"].as_array().unwrap().len(),
        2,
        "{snapshot:#}"
    );
    assert!(demo.0.try_wait().unwrap().is_none(), "still running");
    let status = Command::new("kill")
        .arg("-INT")
        .arg(demo_pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = demo.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}

/// A child of this test, killed if it is still running when the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// An open page does not hold a distributor's shutdown: its event stream ends when the
/// distributor stops, well within `--shutdown-grace`.
#[tokio::test]
async fn an_open_event_stream_does_not_hold_the_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = scratch("dashboard-shutdown");
    let (mut d, url) = distributor(&dir, &["--shutdown-grace", "30s"]);
    Http::new().wait_up(&format!("{url}/health")).await;
    let mut stream = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /dashboard/events HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: history") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the stream sent nothing")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("text/event-stream"));
    let asked = std::time::Instant::now();
    d.signal("INT");
    let status = d.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < Duration::from_secs(10));
}
