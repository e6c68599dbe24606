//! The analyzer's own `/packets` with a token: a real `logdist analyzer` process, no
//! distributor (`--no-register`), requests made directly.

mod common;

use common::*;
use hyper::Method;

/// An analyzer on a free port that does not register, started with `extra`.
fn lone_analyzer(dir: &std::path::Path, extra: &[&str]) -> (Proc, String) {
    let (proc, listen) = spawn_server(dir, "analyzer_1", |listen| {
        let mut args = ["analyzer", "--id", "1", "--no-register", "--listen", listen]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    });
    (proc, format!("http://{listen}"))
}

/// `POST {url}/packets` with three messages, with `authorization` if given.
async fn post_packet(http: &Http, url: &str, authorization: Option<&str>) -> Answer {
    let mut headers = vec![("content-type", "application/x-ndjson")];
    headers.extend(authorization.map(|a| ("authorization", a)));
    http.request(
        Method::POST,
        &format!("{url}/packets"),
        &headers,
        packet(0, 3),
    )
    .await
}

/// Each refused `authorization` gets 401 with the distributor's error shape and counts
/// nothing; `accepted` gets 200 and is counted.
async fn only_accepts(http: &Http, url: &str, refused: &[Option<&str>], accepted: &str) {
    for auth in refused {
        let answer = post_packet(http, url, *auth).await;
        assert_eq!(answer.status, 401, "{auth:?}: {}", answer.text());
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        assert_eq!(
            answer.json(),
            serde_json::json!({"error": "missing or invalid bearer token"})
        );
    }
    let stats = http.get(&format!("{url}/stats")).await;
    assert_eq!(stats.status, 200, "/stats stays open");
    assert_eq!(stats.json()["messages"], 0, "a refused packet was counted");

    let answer = post_packet(http, url, Some(accepted)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["messages"], 3);
    assert_eq!(
        http.get(&format!("{url}/stats")).await.json()["messages"],
        3
    );
    assert_eq!(http.get(&format!("{url}/health")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_packets_need_it_and_health_and_stats_stay_open() {
    let dir = scratch("analyzer-token");
    let http = Http::new();
    let (_a, url) = lone_analyzer(&dir, &["--token", "T0ken", "--faults"]);
    only_accepts(
        &http,
        &url,
        &[
            None,
            Some("Bearer wrong"),
            Some("Bearer T0ke"),
            Some("T0ken"),
            Some("Basic VDBrZW4="),
        ],
        "Bearer T0ken",
    )
    .await;

    // Faults change only with the token; reading them stays open.
    let faults = format!("{url}/faults");
    let json = ("content-type", "application/json");
    let answer = http
        .request(Method::PUT, &faults, &[json], r#"{"status":503}"#)
        .await;
    assert_eq!(answer.status, 401, "{}", answer.text());
    assert_eq!(http.get(&faults).await.json(), serde_json::json!({}));
    let answer = http
        .request(
            Method::PUT,
            &faults,
            &[json, ("authorization", "Bearer T0ken")],
            r#"{"status":503}"#,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(http.get(&faults).await.json()["status"], 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_token_overrides_the_registration_token() {
    let dir = scratch("analyzer-packets-token");
    let http = Http::new();
    let (_a, url) = lone_analyzer(&dir, &["--token", "admin", "--packets-token", "deliver"]);
    only_accepts(
        &http,
        &url,
        &[None, Some("Bearer admin"), Some("Bearer wrong")],
        "Bearer deliver",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packets_token_alone_guards_packets() {
    let dir = scratch("analyzer-packets-token-alone");
    let http = Http::new();
    let (_a, url) = lone_analyzer(&dir, &["--packets-token", "deliver"]);
    only_accepts(&http, &url, &[None, Some("Bearer other")], "Bearer deliver").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_packets_stay_open() {
    let dir = scratch("analyzer-open");
    let http = Http::new();
    let (_a, url) = lone_analyzer(&dir, &[]);
    let answer = post_packet(&http, &url, None).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = post_packet(&http, &url, Some("Bearer anything")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}
