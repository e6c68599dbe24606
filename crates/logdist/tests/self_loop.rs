//! No analyzer registration leads back to the distributor itself, by any spelling of its
//! address: every packet routed there would come back in, forever. A real distributor is
//! asked to register each spelling an adversary used; each is refused with 400 and a
//! message, and nothing is registered. Legitimate analyzers on other ports still register.

mod common;

use std::time::Duration;

use common::*;

/// Spellings that always resolve (IP literals, inet_aton forms, `localhost`, `0`).
const ALWAYS_RESOLVE: [&str; 11] = [
    "127.0.0.1",
    "localhost",
    "[::1]",
    "127.1",
    "0x7f.1",
    "2130706433",
    "0177.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "0",
    "[::ffff:0.0.0.0]",
];

/// Names whose resolution depends on this machine: each must be refused as a loop, or as
/// not resolving.
fn machine_names() -> Vec<String> {
    let mut names = vec!["localhost.".to_owned(), "localhost.localdomain".to_owned()];
    match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(name) if !name.trim().is_empty() => names.push(name.trim().to_owned()),
        _ => eprintln!("/proc/sys/kernel/hostname is not readable: the host's name is not checked"),
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_the_distributor_registers() {
    let dir = scratch("self-loop");
    let http = Http::new();
    let (_d, url) = distributor(&dir, &[]);
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let register = |body: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(
                &format!("{url}/analyzer/register"),
                "application/json",
                body,
            )
            .await
        }
    };

    for host in ALWAYS_RESOLVE {
        let base = format!("http://{host}:{port}");
        let answer = register(format!(r#"{{"id":"loop","weight":1,"url":"{base}"}}"#)).await;
        assert_eq!(answer.status, 400, "{base}: {}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.starts_with(&format!("{base} resolves to ")),
            "{base}: {error}"
        );
        assert!(
            error.ends_with(
                "which is this distributor itself; packets routed there would come back forever"
            ),
            "{base}: {error}"
        );
    }
    for host in machine_names() {
        let base = format!("http://{host}:{port}");
        let answer = register(format!(r#"{{"id":"loop","weight":1,"url":"{base}"}}"#)).await;
        assert_eq!(answer.status, 400, "{base}: {}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        if error.contains("does not resolve") {
            eprintln!("`{host}` does not resolve on this machine; refused as such: {error}");
        } else {
            assert!(error.contains("this distributor itself"), "{base}: {error}");
        }
    }
    // By port, on the caller's address (127.0.0.1 here): the same check.
    let answer = register(format!(r#"{{"id":"loop","weight":1,"port":{port}}}"#)).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer.text().contains("this distributor itself"),
        "{}",
        answer.text()
    );
    // A host that does not resolve is no analyzer.
    let answer =
        register(r#"{"id":"x","weight":1,"url":"http://nowhere.invalid:3001"}"#.into()).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer
            .text()
            .contains("`nowhere.invalid` does not resolve: "),
        "{}",
        answer.text()
    );
    assert!(http.stats(&url).await.is_empty());

    // Analyzers on other ports of this machine register, by URL and by port.
    let other = free_port();
    let answer = register(format!(
        r#"{{"id":"by_url","weight":1,"url":"http://localhost:{other}"}}"#
    ))
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["registration"], "added");
    let answer = register(format!(r#"{{"id":"by_port","weight":1,"port":{other}}}"#)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["url"], format!("http://127.0.0.1:{other}"));
    let (_a, _) = analyzer(&dir, 1, 1.0, &url, &[]);
    let stats = http
        .wait_stats(&url, "analyzer_1 online", |s| online(s, &["analyzer_1"]))
        .await;
    let mut ids: Vec<&str> = stats.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["analyzer_1", "by_port", "by_url"]);
}

/// An `--analyzer` given at start is checked the same way: the distributor does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_analyzer_spelling_the_distributor_stops_the_start() {
    let dir = scratch("self-loop-static");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let spec = format!("loop=http://0x7f.1:{port}@1");
    let mut looping = spawn(
        &dir,
        "looping-distributor",
        &["distributor", "--listen", &listen, "--analyzer", &spec],
    );
    let status = looping.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    let log = looping.log_text();
    assert!(
        log.contains(&format!(
            "http://0x7f.1:{port} resolves to 127.0.0.1:{port}, which is this distributor itself"
        )),
        "{log}"
    );
}

/// A loop no registration check can see, through another distributor: A routes to B, and
/// B routes back to A. A finds its own id in B's `Logdist-Via` and answers 508; B takes
/// A out of routing, and A's agents are answered by A's real analyzer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_through_another_distributor_is_detected_at_run_time() {
    let dir = scratch("self-loop-via");
    let http = Http::new();
    let (_a, a) = distributor(&dir, &["--delivery-timeout", "2s"]);
    let (b_proc, b) = distributor(&dir, &["--delivery-timeout", "2s"]);
    let register = |at: String, id: &'static str, target: String| {
        let http = http.clone();
        async move {
            let body = format!(r#"{{"id":"{id}","weight":1,"url":"{target}"}}"#);
            let answer = http
                .post(&format!("{at}/analyzer/register"), "application/json", body)
                .await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            assert_eq!(answer.json()["state"], "online", "{id} answers its probe");
        }
    };
    // B is one of A's analyzers, and A is B's only one.
    register(a.clone(), "distributor_b", b.clone()).await;
    register(b.clone(), "distributor_a", a.clone()).await;
    let (_real, _) = analyzer(&dir, 1, 1.0, &a, &[]);
    http.wait_stats(&a, "analyzer_1 and distributor_b", |s| {
        online(s, &["analyzer_1", "distributor_b"])
    })
    .await;

    // Every packet is answered 200 by A: those routed to B come back to A, which refuses
    // them (508), so B cannot deliver them, and A routes them to analyzer_1.
    for i in 0..40 {
        let answer = http.send_packet(&a, i * 5, 5).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.json()["analyzer"], "analyzer_1", "packet {i}");
    }
    let metrics = http.get(&format!("{b}/metrics")).await.text();
    let ejected = metrics
        .lines()
        .find(|l| l.starts_with("logdist_analyzer_ejections_total{analyzer=\"distributor_a\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(ejected.is_some_and(|n| n >= 1), "B ejected A: {ejected:?}");
    let log = b_proc.log_text();
    assert!(log.contains("508 Loop Detected"), "B says why: {log}");
}
