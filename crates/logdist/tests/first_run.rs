//! What a new user meets on a first run: an analyzer that cannot register says why, and
//! an analyzer id whose port would overflow is refused at start.
//!
//! Rerun: `cargo test -p logdist --test first_run`.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Waits (at most 10 s) until `proc`'s log contains `text`; returns the log.
fn wait_log(proc: &Proc, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = proc.log_text();
        if log.contains(text) {
            return log;
        }
        assert!(Instant::now() < deadline, "no `{text}` in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_analyzer_that_cannot_reach_its_distributor_says_so() {
    let dir = scratch("first-run-unreachable");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let analyzer = spawn(
        &dir,
        "analyzer",
        &[
            "analyzer",
            "--id",
            "1",
            "--distributor",
            &nowhere,
            "--listen",
            &listen,
        ],
    );
    let log = wait_log(&analyzer, "Registering failed; retrying.");
    assert!(log.contains("WARN"), "at warn level: {log}");
    assert!(
        log.to_lowercase().contains("connect"),
        "with the reason: {log}"
    );
    // Rate-limited: the backoff retries several times a second, the log does not.
    std::thread::sleep(Duration::from_secs(3));
    let lines = analyzer.log_text().matches("Registering failed").count();
    assert_eq!(lines, 1, "one line per 10 s: {}", analyzer.log_text());
}

#[test]
fn an_analyzer_without_the_token_is_told_at_error_level() {
    let dir = scratch("first-run-token");
    let (_d, url) = distributor(&dir, &["--token", "s3cret"]);
    let listen = format!("127.0.0.1:{}", free_port());
    let analyzer = spawn(
        &dir,
        "analyzer",
        &[
            "analyzer",
            "--id",
            "1",
            "--distributor",
            &url,
            "--listen",
            &listen,
        ],
    );
    let log = wait_log(&analyzer, "the distributor wants a token");
    assert!(log.contains("ERROR") && log.contains("401"), "{log}");
}

#[test]
fn an_id_past_the_last_port_is_refused_at_start() {
    let dir = scratch("first-run-id");
    let mut analyzer = spawn(&dir, "analyzer", &["analyzer", "--id", "70000"]);
    let status = analyzer.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    let log = analyzer.log_text();
    assert!(
        log.contains("ANALYZER_ID 70000 would listen on port 73000, past 65535"),
        "{log}"
    );
    // With --listen, the id is only a name.
    let listen = format!("127.0.0.1:{}", free_port());
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let named = spawn(
        &dir,
        "analyzer-named",
        &[
            "analyzer",
            "--id",
            "70000",
            "--listen",
            &listen,
            "--distributor",
            &nowhere,
        ],
    );
    wait_log(&named, "Analyzer listening.");
}
