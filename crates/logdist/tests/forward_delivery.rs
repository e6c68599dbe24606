//! The `forward` delivery protocol against an independent Fluent forward receiver: a
//! Python asyncio server that reads every forward mode with the `msgpack` package
//! (`tests/python/forward_receiver.py`), writes each event it read as a JSON line, and
//! answers `{"ack": chunk}` (or, with `--withhold-acks`, never answers). It is given to
//! the distributor with `--analyzer ID=tcp://HOST:PORT@W;protocol=forward`.
//!
//! - Shares across a forward receiver and a `logdist analyzer`, every message once, over
//!   kept connections.
//! - Fields and EventTime arrive intact, under `--forward-tag`; over `tls://` too.
//! - A receiver that withholds its acks: its deliveries time out, the packets are routed
//!   to the other analyzer, and every message acknowledged to an agent arrives there.
//! - A scheme that does not fit the protocol is refused at registration.
//! - The receiver itself reads every mode of the specification (Message, Forward,
//!   PackedForward, CompressedPackedForward), each acknowledged by its chunk.
//!
//! `msgpack` is installed by `.ci/run`.
//!
//! Rerun: `cargo nextest run -p logdist --test forward_delivery`.

mod common;

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::inproc::{InProc, Running};
use common::*;
use hyper::StatusCode;
use serde_json::{Value, json};

const RECEIVER_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/forward_receiver.py"
);

/// Messages a packet.
const PACKET: u64 = 10;

/// The receiver on a free port, its events going to `out`; returns it with its port.
fn start_receiver(dir: &Path, name: &str, out: &Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new("python3")
        .arg(RECEIVER_SCRIPT)
        .args(["--port", &port.to_string(), "--out"])
        .arg(out)
        .args(extra)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run python3 ({e}): install msgpack"));
    let mut receiver = Proc {
        child,
        name: name.to_owned(),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = receiver.child.try_wait() {
            panic!("the receiver exited ({status}): {}", receiver.log_text());
        }
        assert!(Instant::now() < deadline, "the receiver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (receiver, port)
}

/// The events the receiver wrote to `out` (a line being written is skipped).
fn events(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The `seq` of every message in the journals and the receivers' event files, with how
/// many times each arrived.
fn seqs(journals: &[PathBuf], event_files: &[PathBuf]) -> HashMap<u64, u32> {
    let mut seen = HashMap::new();
    let journal_lines = journals
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok());
    let records = event_files
        .iter()
        .flat_map(|p| events(p))
        .map(|event| event["record"].clone());
    for message in journal_lines.chain(records) {
        if let Some(seq) = message["seq"].as_u64() {
            *seen.entry(seq).or_insert(0) += 1;
        }
    }
    seen
}

/// Sends messages `first..first+count` in packets of [`PACKET`] from 8 agents at once;
/// returns the first message of every packet answered 200.
async fn send(distributor: &str, first: u64, count: u64) -> Vec<u64> {
    let agents = 8;
    let mut tasks = Vec::new();
    for agent in 0..agents {
        let distributor = distributor.to_owned();
        tasks.push(tokio::spawn(async move {
            let http = Http::new();
            let mut acked = Vec::new();
            let mut number = agent;
            while number * PACKET < count {
                let start = first + number * PACKET;
                if let Ok(answer) = http
                    .try_request(
                        hyper::Method::POST,
                        &format!("{distributor}/packets"),
                        &[("content-type", "application/x-ndjson")],
                        packet(start, PACKET),
                        Duration::from_secs(30),
                    )
                    .await
                    && answer.status == StatusCode::OK
                {
                    acked.push(start);
                }
                number += agents;
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked
}

/// Waits until every message of the `acked` packets is in `journals` or `event_files`
/// (at most 30 s); returns what arrived.
async fn wait_all(
    journals: &[PathBuf],
    event_files: &[PathBuf],
    acked: &[u64],
    what: &str,
) -> HashMap<u64, u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = seqs(journals, event_files);
        let missing: Vec<u64> = acked
            .iter()
            .flat_map(|&first| first..first + PACKET)
            .filter(|seq| !seen.contains_key(seq))
            .collect();
        if missing.is_empty() {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} acknowledged messages never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A distributor with the forward receiver at `url` (weight 1) and `flags`, and a
/// `logdist analyzer` of weight 1 writing `journal`; returns them once both are online.
async fn distributor_and_logdist_analyzer(
    url: &str,
    flags: &[&str],
    journal: &Path,
) -> (Running, Running) {
    let spec = format!("fluent={url}@1;protocol=forward");
    let mut all = vec!["--analyzer", &spec];
    all.extend_from_slice(flags);
    let distributor = InProc::distributor(&all).await;
    let analyzer = InProc::analyzer(
        1,
        1.0,
        &distributor.url,
        &["--journal", journal.to_str().unwrap()],
    )
    .await;
    let stats = Http::new()
        .wait_stats(&distributor.url, "both analyzers online", |s| {
            online(s, &["fluent", "analyzer_1"])
        })
        .await;
    let fluent = stats.iter().find(|a| a.id == "fluent").unwrap();
    assert_eq!(fluent.protocol, "forward");
    assert_eq!(fluent.url, url);
    (distributor, analyzer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_across_a_forward_receiver_and_a_logdist_analyzer() {
    let dir = scratch("forward-delivery-shares");
    let out = dir.join("events.jsonl");
    let (receiver, port) = start_receiver(&dir, "receiver", &out, &[]);
    let journal = dir.join("journal_1.ndjson");
    let (distributor, _analyzer) = distributor_and_logdist_analyzer(
        &format!("tcp://127.0.0.1:{port}"),
        &["--workers", "2", "--lane-concurrency", "2"],
        &journal,
    )
    .await;

    let acked = send(&distributor.url, 0, 4_000).await;
    assert_eq!(acked.len(), 400, "every packet acknowledged");
    let journals = [journal];
    let files = [out.clone()];
    let seen = wait_all(&journals, &files, &acked, "shares").await;
    assert_eq!(seen.len(), 4_000);
    assert!(
        seen.values().all(|&n| n == 1),
        "duplicates without a failure"
    );
    let stats = Http::new().stats(&distributor.url).await;
    assert_shares_within(&stats, PACKET);
    let fluent = stats.iter().find(|a| a.id == "fluent").unwrap();
    let got = events(&out);
    assert_eq!(fluent.messages_total as usize, got.len());
    assert!(
        (fluent.messages_sent as f64 - 2_000.0).abs() <= PACKET as f64,
        "{fluent:?}"
    );
    // Every event as logdist writes it: a PackedForward under the default tag, its time
    // the message's `timestamp` (ms), its record the message whole.
    for event in &got {
        assert_eq!(event["mode"], "PackedForward", "{event}");
        assert_eq!(event["tag"], "logdist", "{event}");
        let seq = event["record"]["seq"].as_u64().unwrap();
        let want: Value = serde_json::from_str(message(seq).trim()).unwrap();
        assert_eq!(event["record"], want);
        let ms = 1_700_000_000_000u64 + seq;
        assert_eq!(
            event["time"],
            json!({"seconds": ms / 1000, "nanoseconds": (ms % 1000) * 1_000_000})
        );
    }
    // Kept connections: at most one per delivery in flight on each worker (2 workers,
    // 2 in flight), not one per delivery.
    let opened = receiver.log_text().matches("connection used").count();
    assert!(
        (1..=4).contains(&opened),
        "{opened} connections for {} deliveries",
        got.len() / PACKET as usize
    );
    drop(distributor);
}

/// A CA, and a certificate it signed for 127.0.0.1, written as PEM files.
fn certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// Waits until `out` holds `count` events, and returns them.
async fn wait_events(out: &Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = events(out);
        assert!(got.len() <= count, "more than {count} events: {got:?}");
        if got.len() == count {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} events arrived",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_and_event_time_arrive_intact_over_tcp_and_tls() {
    let dir = scratch("forward-delivery-fields");
    certificates(&dir);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let plain_out = dir.join("plain.jsonl");
    let tls_out = dir.join("tls.jsonl");
    let (_plain, plain_port) = start_receiver(&dir, "plain", &plain_out, &[]);
    let (_tls, tls_port) = start_receiver(
        &dir,
        "tls",
        &tls_out,
        &[
            "--tls-cert",
            &path("cert.pem"),
            "--tls-key",
            &path("key.pem"),
        ],
    );
    let packet = concat!(
        r#"{"timestamp":1796553000123456,"severity":"ERROR","source":"payments","message":"card declined ✓","attempt":3,"ratio":0.5,"big":18446744073709551615,"neg":-7,"ok":true,"none":null,"tags":["a","b"],"ctx":{"user":"u1","deep":{"n":[1,{"x":"y"}]}}}"#,
        "\n",
        r#"{"timestamp":1796553000000001,"severity":"INFO","source":"s","message":"second"}"#,
        "\n",
    );
    let want: Vec<Value> = packet
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let http = Http::new();
    for (url, out, name) in [
        (format!("tcp://127.0.0.1:{plain_port}"), &plain_out, "plain"),
        (format!("tls://127.0.0.1:{tls_port}"), &tls_out, "tls"),
    ] {
        let spec = format!("fluent={url}@1;protocol=forward");
        let distributor = InProc::distributor(&[
            "--analyzer",
            &spec,
            "--timestamp-unit",
            "us",
            "--forward-tag",
            "app.payments",
            "--tls-ca",
            &path("ca.pem"),
        ])
        .await;
        http.wait_stats(&distributor.url, "the receiver online", |s| {
            online(s, &["fluent"])
        })
        .await;
        let answer = http
            .post(
                &format!("{}/packets", distributor.url),
                "application/x-ndjson",
                packet,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.text());
        let got = wait_events(out, 2).await;
        assert_eq!(got[0]["tag"], "app.payments", "{name}");
        assert_eq!(got[0]["record"], want[0], "{name}: every field, as sent");
        assert_eq!(got[1]["record"], want[1], "{name}");
        assert_eq!(
            got[0]["time"],
            json!({"seconds": 1_796_553_000u64, "nanoseconds": 123_456_000}),
            "{name}: microseconds"
        );
        assert_eq!(
            got[1]["time"],
            json!({"seconds": 1_796_553_000u64, "nanoseconds": 1_000}),
            "{name}"
        );
        drop(distributor);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_acks_reroute_and_every_acknowledged_message_arrives() {
    let dir = scratch("forward-delivery-withheld");
    let out = dir.join("withheld.jsonl");
    let (_receiver, port) = start_receiver(&dir, "withholding", &out, &["--withhold-acks"]);
    let journal = dir.join("journal_1.ndjson");
    let (distributor, _analyzer) = distributor_and_logdist_analyzer(
        &format!("tcp://127.0.0.1:{port}"),
        &["--delivery-timeout", "500ms"],
        &journal,
    )
    .await;
    let acked = send(&distributor.url, 0, 1_000).await;
    assert!(
        acked.len() >= 90,
        "most packets acknowledged: {}",
        acked.len()
    );
    // The receiver took deliveries (and never acknowledged them)...
    assert!(!events(&out).is_empty(), "the receiver was sent packets");
    // ...so every message acknowledged to an agent was acknowledged by the logdist
    // analyzer: all of them are in its journal.
    let journals = [journal];
    let seen = wait_all(&journals, &[], &acked, "withheld acks").await;
    assert!(seen.len() >= acked.len() * PACKET as usize);
    let text = Http::new()
        .get(&format!("{}/metrics", distributor.url))
        .await
        .text();
    assert!(
        metric(&text, "logdist_packets_rerouted_total") >= 1.0,
        "the packets it was sent were routed again: {text}"
    );
    drop(distributor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheme_that_does_not_fit_the_protocol_is_refused() {
    let distributor = InProc::distributor(&[]).await;
    let http = Http::new();
    let register = |body: Value| {
        let http = http.clone();
        let url = format!("{}/analyzer/register", distributor.url);
        async move { http.post(&url, "application/json", body.to_string()).await }
    };
    for (body, says) in [
        (
            json!({"id": "f", "weight": 1.0, "url": "http://127.0.0.1:24224", "protocol": "forward"}),
            "spoken over TCP",
        ),
        (
            json!({"id": "f", "weight": 1.0, "url": "tcp://127.0.0.1:24224", "protocol": "otlp"}),
            "spoken over HTTP",
        ),
        (
            json!({"id": "f", "weight": 1.0, "url": "tcp://127.0.0.1:24224"}),
            "spoken over HTTP",
        ),
        (
            json!({"id": "f", "weight": 1.0, "url": "udp://127.0.0.1:24224", "protocol": "forward"}),
            "not supported",
        ),
    ] {
        let answer = register(body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer.text().contains(says), "{body}: {}", answer.text());
    }
    // By port, with forward: the caller's address over TCP.
    let answer =
        register(json!({"id": "f", "weight": 1.0, "port": 24224, "protocol": "forward"})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let stats = http.stats(&distributor.url).await;
    assert_eq!(stats[0].url, "tcp://127.0.0.1:24224");
    assert_eq!(stats[0].protocol, "forward");
    drop(distributor);
}

/// The receiver follows the specification in every mode, not only the PackedForward
/// logdist sends: Message, Forward and CompressedPackedForward, each acknowledged by its
/// chunk, its events recorded with their times (an EventTime, or integer seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_reads_every_forward_mode() {
    use std::io::{Read, Write};

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use logdist_core::TimestampUnit;
    use logdist_core::forward::msgpack::Writer;
    use logdist_core::forward::{AckRead, EventTime, encode_packed_forward, read_ack};

    let dir = scratch("forward-delivery-modes");
    let out = dir.join("events.jsonl");
    let (_receiver, port) = start_receiver(&dir, "receiver", &out, &[]);
    let time = EventTime {
        seconds: 1_796_553_000,
        nanoseconds: 7,
    };
    let option = |w: &mut Writer, chunk: &str, extra: Option<(&str, &str)>| {
        w.map_len(if extra.is_some() { 2 } else { 1 });
        w.str("chunk");
        w.str(chunk);
        if let Some((k, v)) = extra {
            w.str(k);
            w.str(v);
        }
    };
    // Message: [tag, time, record, option].
    let mut message = Writer::default();
    message.array_len(4);
    message.str("m.tag");
    message.uint(1_796_553_001);
    message.json(br#"{"message":"one","n":1}"#).unwrap();
    option(&mut message, "c-message", None);
    // Forward: [tag, [[time, record], ...], option].
    let mut forward = Writer::default();
    forward.array_len(3);
    forward.str("f.tag");
    forward.array_len(2);
    for text in ["two", "three"] {
        forward.array_len(2);
        forward.event_time(time);
        forward
            .json(format!(r#"{{"message":"{text}"}}"#).as_bytes())
            .unwrap();
    }
    option(&mut forward, "c-forward", None);
    // CompressedPackedForward: the entries of a PackedForward, gzipped.
    let packed = encode_packed_forward(
        "unused",
        [br#"{"timestamp":1796553000000,"message":"four"}"#],
        TimestampUnit::Milliseconds,
        time,
        "unused",
    );
    let mut entries = Writer::default();
    entries.array_len(2);
    entries.event_time(time);
    entries.json(br#"{"message":"four"}"#).unwrap();
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&entries.into_vec()).unwrap();
    let mut compressed = Writer::default();
    compressed.array_len(3);
    compressed.str("c.tag");
    compressed.bin(&gz.finish().unwrap());
    option(
        &mut compressed,
        "c-compressed",
        Some(("compressed", "gzip")),
    );

    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for (body, chunk) in [
        (message.into_vec(), "c-message"),
        (forward.into_vec(), "c-forward"),
        (compressed.into_vec(), "c-compressed"),
        (packed, "unused"),
    ] {
        stream.write_all(&body).unwrap();
        let mut answer = Vec::new();
        let acked = loop {
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the ack of {chunk}");
            answer.extend_from_slice(&buf[..n]);
            match read_ack(&answer) {
                AckRead::Incomplete => continue,
                AckRead::Ack { chunk, .. } => break chunk,
                AckRead::Invalid(why) => panic!("{chunk}: {why}"),
            }
        };
        assert_eq!(acked, chunk);
    }
    let got = wait_events(&out, 5).await;
    let summary: Vec<(String, String, Value, String)> = got
        .iter()
        .map(|e| {
            (
                e["mode"].as_str().unwrap().to_owned(),
                e["tag"].as_str().unwrap().to_owned(),
                e["time"].clone(),
                e["record"]["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let event_time = json!({"seconds": 1_796_553_000u64, "nanoseconds": 7});
    let s = |x: &str| x.to_owned();
    assert_eq!(
        summary,
        [
            (s("Message"), s("m.tag"), json!(1_796_553_001u64), s("one")),
            (s("Forward"), s("f.tag"), event_time.clone(), s("two")),
            (s("Forward"), s("f.tag"), event_time.clone(), s("three")),
            (
                s("CompressedPackedForward"),
                s("c.tag"),
                event_time.clone(),
                s("four")
            ),
            (
                s("PackedForward"),
                s("unused"),
                json!({"seconds": 1_796_553_000u64, "nanoseconds": 0}),
                s("four")
            ),
        ]
    );
    assert_eq!(got[0]["record"]["n"], 1);
}
