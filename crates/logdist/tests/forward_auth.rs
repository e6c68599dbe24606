//! Fluent forward with a shared key (`--forward-shared-key`) and over TLS (`--tls-cert`),
//! sent by a Python client written to the Forward Protocol Specification v1 with
//! `msgpack`, `hashlib` and `ssl` (`tests/python/forward_auth.py`): Python's
//! `fluent-logger` 0.11.1 has neither shared keys nor TLS. Node's `@fluent-org/logger`
//! has both: it sends over TLS with its shared key too.
//!
//! Rerun: `cargo nextest run -p logdist --test forward_auth`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::clients::*;
use common::inproc::InProc;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/forward_auth.py");

const KEY: &str = "s3cret-key";
const SERVER: &str = "logdist-test";

/// Runs the Python client against `port` with `args` after the port.
async fn client(port: u16, args: &[&str]) -> Value {
    let mut all = vec!["--port".to_owned(), port.to_string()];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    run_python(SCRIPT, &all, "the forward_auth client").await
}

/// `logdist_rejected_total{reason="auth",format="forward"}`, whichever order the labels
/// come in.
fn auth_rejections(text: &str) -> f64 {
    metric(
        text,
        r#"logdist_rejected_total{format="forward",reason="auth"}"#,
    ) + metric(
        text,
        r#"logdist_rejected_total{reason="auth",format="forward"}"#,
    )
}

/// Checks that `messages` are the client's events `0..50`, each `runs` times (once for
/// each run of the client that got in).
fn assert_events(messages: &[Value], runs: u64) {
    let mut seqs: Vec<u64> = messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (0..50)
        .flat_map(|seq| std::iter::repeat_n(seq, runs as usize))
        .collect();
    assert_eq!(seqs, expected);
    for m in messages {
        assert_eq!(m["source"], "authapp", "{m}");
        assert_eq!(m["message"], format!("event {}", m["seq"]), "{m}");
    }
}

/// Waits until the distributor at `url` (HTTPS, its certificate signed by `ca`) has an
/// analyzer online.
async fn wait_online_over_tls(url: &str, ca: &Path) {
    use http_body_util::{BodyExt, Empty};
    let tls = logdist::http::tls::client_config(Some(ca)).unwrap();
    let client = logdist::http::http_client(Duration::from_secs(5), tls);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let request = hyper::Request::get(format!("{url}/analyzer/stats"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let stats = match client.request(request).await {
            Ok(response) => response.into_body().collect().await.unwrap().to_bytes(),
            Err(_) => bytes::Bytes::new(),
        };
        if String::from_utf8_lossy(&stats).contains(r#""state":"online""#) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no analyzer online: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_with_the_shared_key_are_read() {
    let _sending = SENDING.lock().await;
    let dir = scratch("forward_auth");
    let http = Http::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (distributor, _analyzers, journals) = distributor_and_analyzers(
        &dir,
        &[
            "--forward-listen",
            &listen,
            "--forward-shared-key",
            KEY,
            "--forward-self-hostname",
            SERVER,
        ],
    )
    .await;
    let metrics = format!("{}/metrics", distributor.url);
    let before = auth_rejections(&http.get(&metrics).await.text());

    // The right key: HELO as the spec says, a PONG proving the server knows the key, and
    // every chunk acknowledged and delivered.
    let good = client(port, &["--shared-key", KEY]).await;
    assert_eq!(
        good["helo"],
        json!({"nonce_len": 16, "auth": "", "keepalive": true})
    );
    assert_eq!(good["pong"], json!([true, "", SERVER]));
    assert_eq!(good["pong_digest_ok"], true, "{good}");
    assert_eq!(good["acked"], json!(["c0", "c1", "c2", "c3", "c4"]));
    let events = wait_received(&journals, 50, Duration::from_secs(10), || good.to_string()).await;
    assert_events(&events, 1);

    // A wrong key, an event where the PING belongs, the server's own hostname: each is
    // answered PONG false with its reason and closed; the chunk the client sends anyway
    // is not acknowledged.
    let refused = [
        (vec!["--shared-key", "wrong"], "shared_key mismatch"),
        (
            vec!["--shared-key", KEY, "--mode", "no-ping"],
            "invalid ping message",
        ),
        (
            vec!["--shared-key", KEY, "--hostname", SERVER],
            "same hostname as the server",
        ),
    ];
    for (args, reason) in &refused {
        let report = client(port, args).await;
        assert_eq!(
            report["pong"],
            json!([false, reason, ""]),
            "{args:?}: {report}"
        );
        assert_eq!(report["closed"], true, "{args:?}: {report}");
        assert_eq!(report["acked"], json!([]), "{args:?}: {report}");
    }
    // Bytes that are no MessagePack where the PING belongs: refused the same way.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes")
        .unwrap();
    assert!(
        answer.starts_with(&[0x92, 0xa4, b'H', b'E', b'L', b'O']),
        "{answer:02x?}"
    );
    assert!(
        answer.windows(20).any(|w| w == b"invalid ping message"),
        "{answer:02x?}"
    );
    let text = http.get(&metrics).await.text();
    assert_eq!(auth_rejections(&text) - before, 4.0, "{text}");

    // Nothing of theirs arrived, and the listener still serves a good client.
    let again = client(port, &["--shared-key", KEY]).await;
    assert_eq!(again["acked"], json!(["c0", "c1", "c2", "c3", "c4"]));
    let events = wait_received(&journals, 100, Duration::from_secs(10), || {
        again.to_string()
    })
    .await;
    assert_events(&events, 2);
}

/// A self-signed CA and a certificate for `localhost` that it signed, as PEM files in
/// `dir`. Their names differ: OpenSSL (Python's `ssl`) takes a certificate whose issuer
/// is its own subject for a self-signed one.
fn certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "logdist forward test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_over_tls_with_the_http_certificate() {
    let dir = scratch("forward_tls");
    certificates(&dir);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    let journal = dir.join("journal.ndjson");
    let analyzer = InProc::analyzer(
        1,
        1.0,
        "http://127.0.0.1:9",
        &["--no-register", "--journal", journal.to_str().unwrap()],
    )
    .await;
    let port = free_port();
    let static_analyzer = format!("a1={}@1", analyzer.url);
    let (_distributor, listen) = spawn_server(&dir, "distributor", |listen| {
        [
            "distributor",
            "--listen",
            listen,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--forward-listen",
            &format!("127.0.0.1:{port}"),
            "--forward-shared-key",
            KEY,
            "--forward-self-hostname",
            SERVER,
            "--analyzer",
            &static_analyzer,
            "--probe-interval",
            "200ms",
        ]
        .map(String::from)
        .to_vec()
    });
    let journals = [journal];
    wait_online_over_tls(
        &format!("https://localhost:{}", listen.rsplit(':').next().unwrap()),
        Path::new(&ca),
    )
    .await;
    let good = client(port, &["--shared-key", KEY, "--tls-ca", &ca]).await;
    assert_eq!(good["acked"], json!(["c0", "c1", "c2", "c3", "c4"]));
    assert_eq!(good["pong"], json!([true, "", SERVER]));
    assert_eq!(good["pong_digest_ok"], true);
    let events = wait_received(&journals, 50, Duration::from_secs(10), || good.to_string()).await;
    assert_events(&events, 1);

    // A wrong key over TLS is refused as over TCP.
    let wrong = client(port, &["--shared-key", "wrong", "--tls-ca", &ca]).await;
    assert_eq!(wrong["pong"], json!([false, "shared_key mismatch", ""]));
    assert_eq!(wrong["closed"], true);

    // A plain-TCP client gets no HELO and no ack: the TLS handshake fails and closes.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = stream.write_all(&[0x93, 0xa1, b'x', 0x01, 0x80]).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes a plain client");
    assert!(
        !answer.windows(4).any(|w| w == b"HELO" || w == b"\xa3ack"),
        "{answer:02x?}"
    );

    // And the listener still serves a TLS client.
    let again = client(port, &["--shared-key", KEY, "--tls-ca", &ca]).await;
    assert_eq!(again["acked"].as_array().map(Vec::len), Some(5), "{again}");
    let events = wait_received(&journals, 100, Duration::from_secs(10), || {
        again.to_string()
    })
    .await;
    assert_events(&events, 2);

    // Node's `@fluent-org/logger`, with its own shared-key handshake (`security`), over
    // TLS, with acknowledgements: every event is acknowledged and arrives.
    let modules = node_modules();
    let env = [("FLUENT_SHARED_KEY", KEY), ("FLUENT_TLS_CA", ca.as_str())];
    let (report, stderr) =
        run_node_logger(&modules, port, 50, "PackedForward", "nodeauth", &env).await;
    assert_eq!(report["acked"], 50, "{report} {stderr}");
    let all = wait_received(&journals, 150, Duration::from_secs(10), || {
        report.to_string()
    })
    .await;
    let mut seqs: Vec<u64> = all
        .iter()
        .filter(|m| m["source"] == "nodeauth.app")
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
}
