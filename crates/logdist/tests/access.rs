//! Access control: separate bearer tokens for ingest and for registration, an open
//! distributor that says so, analyzer URLs that cannot point anywhere odd, and TLS on both
//! sides (an HTTPS listener, and delivery to an HTTPS analyzer with a private CA).

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};

const GOOD: &str =
    r#"{"timestamp":1020,"severity":"WARN","source":"app","message":"hello world!"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_admin_tokens_are_separate() {
    let dir = scratch("tokens");
    let http = Http::new();
    let (_d, url) = distributor(
        &dir,
        &[
            "--ingest-token",
            "in-secret",
            "--admin-token",
            "admin-secret",
        ],
    );
    let (_a, _) = analyzer(&dir, 1, 1.0, &url, &["--token", "admin-secret"]);
    http.wait_stats(&url, "analyzer_1", |s| online(s, &["analyzer_1"]))
        .await;

    let post = |path: &'static str, token: &'static str, body: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let auth = format!("Bearer {token}");
            http.request(
                Method::POST,
                &format!("{url}{path}"),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                ],
                body,
            )
            .await
        }
    };
    let registration = r#"{"id":"analyzer_9","weight":1,"url":"http://127.0.0.1:9"}"#;
    // Each token opens its own door only.
    assert_eq!(post("/packets", "admin-secret", GOOD).await.status, 401);
    assert_eq!(
        post("/message/send", "admin-secret", GOOD).await.status,
        401
    );
    assert_eq!(
        post("/analyzer/register", "in-secret", registration)
            .await
            .status,
        401
    );
    assert_eq!(
        post(
            "/analyzer/deregister",
            "in-secret",
            r#"{"id":"analyzer_1"}"#
        )
        .await
        .status,
        401
    );
    let answer = post("/packets", "in-secret", GOOD).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = post("/analyzer/register", "admin-secret", registration).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = post(
        "/analyzer/deregister",
        "admin-secret",
        r#"{"id":"analyzer_9"}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // Reading stays open, as for Prometheus.
    assert_eq!(http.get(&format!("{url}/analyzer/stats")).await.status, 200);
    assert_eq!(http.get(&format!("{url}/metrics")).await.status, 200);
    assert_eq!(http.get(&format!("{url}/health")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_distributor_says_so_and_registration_cannot_point_anywhere_odd() {
    let dir = scratch("open");
    let http = Http::new();
    let (d, url) = distributor(&dir, &[]);
    assert!(
        d.log_text().contains("Open: no --token set"),
        "{}",
        d.log_text()
    );
    let port = url.rsplit(':').next().unwrap();
    let self_url = format!(r#"{{"id":"loop","weight":1,"url":"http://localhost:{port}"}}"#);
    let self_url: &'static str = self_url.leak();
    for (body, error) in [
        (self_url, "this distributor itself"),
        (
            r#"{"id":"x","weight":1,"url":"http://169.254.169.254"}"#,
            "link-local",
        ),
        (
            r#"{"id":"x","weight":1,"url":"http://0.0.0.0:3001"}"#,
            "unspecified",
        ),
        (
            r#"{"id":"x","weight":1,"url":"gopher://h:70"}"#,
            "scheme `gopher`",
        ),
        (r#"{"id":"x","weight":1,"url":"http://h:0"}"#, "port 0"),
    ] {
        let answer = http
            .post(
                &format!("{url}/analyzer/register"),
                "application/json",
                body,
            )
            .await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        assert!(answer.text().contains(error), "{body}: {}", answer.text());
    }
    assert!(http.stats(&url).await.is_empty());

    // The same holds for analyzers given at start: the distributor refuses to start.
    let listen = format!("127.0.0.1:{}", free_port());
    let spec = format!("loop=http://{listen}@1");
    let mut looping = spawn(
        &dir,
        "looping-distributor",
        &["distributor", "--listen", &listen, "--analyzer", &spec],
    );
    let status = looping.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    assert!(
        looping.log_text().contains("is this distributor itself"),
        "{}",
        looping.log_text()
    );
}

/// A CA, and a certificate it signed for localhost and 127.0.0.1, written as PEM files.
fn certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_the_listener_and_toward_https_analyzers() {
    let dir = scratch("tls");
    certificates(&dir);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    let (_d, listen) = spawn_server(&dir, "distributor", |listen| {
        [
            "distributor",
            "--listen",
            listen,
            "--token",
            "t0ken",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
            "--probe-interval",
            "200ms",
        ]
        .map(String::from)
        .to_vec()
    });
    let url = format!("https://{listen}");
    let analyzer_port = free_port();
    let analyzer_url = format!("https://localhost:{analyzer_port}");
    let _a = spawn_at(
        &dir,
        "analyzer_1",
        &[
            "analyzer",
            "--id",
            "1",
            "--listen",
            &format!("127.0.0.1:{analyzer_port}"),
            "--advertise-url",
            &analyzer_url,
            "--distributor",
            &url,
            "--token",
            "t0ken",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-ca",
            &ca,
            "--heartbeat",
            "500ms",
        ],
    );

    let tls = logdist::http::tls::client_config(Some(&dir.join("ca.pem"))).unwrap();
    let client = logdist::http::http_client(Duration::from_secs(5), tls);
    let send = |method: Method, url: String, body: &'static str| {
        let client = client.clone();
        async move {
            let request = Request::builder()
                .method(method)
                .uri(url)
                .header("authorization", "Bearer t0ken")
                .header("content-type", "application/x-ndjson")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let response = client.request(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    // The analyzer registers over HTTPS and is probed over HTTPS.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, stats) = send(Method::GET, format!("{url}/analyzer/stats"), "").await;
        if stats.contains(r#""state":"online""#) {
            assert!(stats.contains(&analyzer_url), "{stats}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not online: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = send(Method::POST, format!("{url}/packets"), GOOD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("analyzer_1"), "{body}");
    let (_, stats) = send(Method::GET, format!("{analyzer_url}/stats"), "").await;
    assert!(stats.contains(r#""messages":1"#), "{stats}");

    // Plain HTTP to the TLS port gets no answer; a client that does not trust the CA
    // fails the handshake.
    assert!(
        Http::new()
            .try_get(&format!("http://{listen}/health"))
            .await
            .is_none()
    );
    let untrusting = logdist::http::http_client(
        Duration::from_secs(5),
        logdist::http::tls::client_config(None).unwrap(),
    );
    let request = Request::get(format!("{url}/health"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(untrusting.request(request).await.is_err());
}
