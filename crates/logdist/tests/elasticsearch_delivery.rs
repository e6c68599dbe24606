//! The `elasticsearch` delivery protocol against an Elasticsearch stand-in written apart
//! from logdist: a Python `http.server` (`tests/python/es_receiver.py`) that parses each
//! `_bulk` body with the `json` module, answers item by item as Elasticsearch does, and
//! writes each document it stored as a JSON line. Its analyzers are given with
//! `--analyzer ID=URL@W;protocol=elasticsearch` (Elasticsearch does not register itself).
//! (The Python `elasticsearch` package is a client, not a server: the stand-in is the
//! peer here.)
//!
//! - Two analyzers, one process behind both ports; documents marked `refuse` fail their
//!   item with 400 `mapper_parsing_exception` everywhere, documents marked `busy` with
//!   429 the first time the first analyzer sees them. Every message of a packet
//!   acknowledged to its agent is stored exactly once, a busy one after it was sent again
//!   elsewhere, and no stored item is ever sent again (items sent = stored + refused); a
//!   packet with a refused message gets 422 naming Elasticsearch's reason, and its other
//!   messages are stored once. Each document's index is the date of its own time.
//! - One packet with a refused message beside two good ones: 422 with the item's reason,
//!   the good ones stored once, in the index of `--elasticsearch-index`'s template.
//!
//! Rerun: `cargo nextest run -p logdist --test elasticsearch_delivery`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::clients::SENDING;
use common::inproc::{InProc, Running};
use common::*;
use serde_json::Value;

const RECEIVER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/es_receiver.py");

/// 2026-12-06T00:00:00Z, in milliseconds.
const DAY_ONE: u64 = 1_796_515_200_000;

/// The stand-in, listening on `ports.len()` free ports; its documents go to `out`.
fn start_receiver(dir: &Path, out: &Path, ports: usize) -> (Proc, Vec<String>) {
    let ports: Vec<u16> = (0..ports).map(|_| free_port()).collect();
    let log = dir.join("es_receiver.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new("python3");
    command.arg(RECEIVER_SCRIPT);
    for port in &ports {
        command.args(["--port", &port.to_string()]);
    }
    let child = command
        .arg("--out")
        .arg(out)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run python3: {e}"));
    let mut receiver = Proc {
        child,
        name: "es_receiver".to_owned(),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    for port in &ports {
        while TcpStream::connect(("127.0.0.1", *port)).is_err() {
            if let Ok(Some(status)) = receiver.child.try_wait() {
                panic!("the receiver exited ({status}): {}", receiver.log_text());
            }
            assert!(Instant::now() < deadline, "the receiver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let urls = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    (receiver, urls)
}

/// A distributor whose analyzers are `es1`, `es2`... at `urls`, each of weight 1 and
/// spoken to in `elasticsearch`, once all are online (their `GET /` answered).
async fn distributor_to(urls: &[String], flags: &[&str]) -> Running {
    let specs: Vec<String> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| format!("es{}={url}@1;protocol=elasticsearch", i + 1))
        .collect();
    let ids: Vec<String> = (1..=urls.len()).map(|i| format!("es{i}")).collect();
    let mut all = Vec::new();
    for spec in &specs {
        all.extend(["--analyzer", spec.as_str()]);
    }
    all.extend_from_slice(flags);
    let distributor = InProc::distributor(&all).await;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let stats = Http::new()
        .wait_stats(
            &distributor.url,
            "the Elasticsearch analyzers online",
            |s| online(s, &ids),
        )
        .await;
    assert!(
        stats.iter().all(|s| s.protocol == "elasticsearch"),
        "{stats:?}"
    );
    distributor
}

/// What the stand-in stored: one `{"port", "index", "doc"}` a line.
fn stored(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The requests the stand-in answered: one `{"port", "path", "content_type", "items"}` a
/// line.
fn requests(out: &Path) -> Vec<Value> {
    let mut path = out.as_os_str().to_owned();
    path.push(".requests");
    std::fs::read_to_string(PathBuf::from(path))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// How a message is marked for the stand-in.
fn mark(seq: u64) -> Option<&'static str> {
    if seq % 29 == 7 {
        Some("refuse")
    } else if seq % 13 == 4 {
        Some("busy")
    } else {
        None
    }
}

/// Message `seq`, 100 s after the one before it from 2026-12-06T10:30Z on: three days'
/// worth over the run.
fn message(seq: u64) -> String {
    let timestamp = DAY_ONE + 37_800_000 + seq * 100_000;
    let marked = mark(seq)
        .map(|m| format!(",\"es_test\":\"{m}\""))
        .unwrap_or_default();
    format!(
        "{{\"timestamp\":{timestamp},\"severity\":\"INFO\",\"source\":\"checkout\",\"message\":\"message {seq}\",\"seq\":{seq}{marked}}}\n"
    )
}

/// The index of a message at `timestamp` (milliseconds), by the default template.
fn index_of(timestamp: u64) -> &'static str {
    match (timestamp - DAY_ONE) / 86_400_000 {
        0 => "logdist-2026.12.06",
        1 => "logdist-2026.12.07",
        2 => "logdist-2026.12.08",
        n => panic!("day {n} is not in the test"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_items_that_failed_are_sent_again() {
    let _sending = SENDING.lock().await;
    let dir = scratch("es-delivery-items");
    let out = dir.join("stored.jsonl");
    let (_receiver, urls) = start_receiver(&dir, &out, 2);
    let distributor = distributor_to(&urls, &["--eject-base", "200ms"]).await;

    const PACKETS: u64 = 240;
    const PER_PACKET: u64 = 5;
    const SENDERS: u64 = 8;
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let url = format!("{}/packets", distributor.url);
        senders.push(tokio::spawn(async move {
            let http = Http::new();
            let mut answers = Vec::new();
            for packet in (sender..PACKETS).step_by(SENDERS as usize) {
                let body: String = (packet * PER_PACKET..(packet + 1) * PER_PACKET)
                    .map(message)
                    .collect();
                let answer = http.post(&url, "application/x-ndjson", body).await;
                answers.push((packet, answer.status.as_u16(), answer.text()));
            }
            answers
        }));
    }
    let mut answers = BTreeMap::new();
    for sender in senders {
        for (packet, status, text) in sender.await.unwrap() {
            answers.insert(packet, (status, text));
        }
    }

    // Each packet's answer: 422 naming Elasticsearch's reason when it holds a refused
    // message, else 200.
    for (packet, (status, text)) in &answers {
        let seqs = packet * PER_PACKET..(packet + 1) * PER_PACKET;
        let refused = seqs.clone().filter(|s| mark(*s) == Some("refuse")).count();
        if refused > 0 {
            assert_eq!(*status, 422, "packet {packet}: {text}");
            assert!(
                text.contains("mapper_parsing_exception: failed to parse field [es_test]")
                    && text.contains(&match refused {
                        1 => "1 message refused: ".to_owned(),
                        n => format!("{n} messages refused, the first: "),
                    }),
                "packet {packet}: {text}"
            );
        } else {
            assert_eq!(*status, 200, "packet {packet}: {text}");
        }
    }

    // Every message but the refused ones is stored exactly once, in its date's index,
    // with an `@timestamp` of its own time.
    let documents = stored(&out);
    let mut times: HashMap<u64, u32> = HashMap::new();
    for document in &documents {
        let doc = &document["doc"];
        let seq = doc["seq"].as_u64().unwrap();
        *times.entry(seq).or_default() += 1;
        let timestamp = doc["timestamp"].as_u64().unwrap();
        assert_eq!(document["index"], index_of(timestamp), "{document}");
        let at = doc["@timestamp"].as_str().unwrap();
        let day = index_of(timestamp)["logdist-".len()..].replace('.', "-");
        assert!(
            at.starts_with(&day) && at.ends_with(&format!(".{:03}Z", timestamp % 1000)),
            "{document}"
        );
    }
    let mut busy = 0;
    for seq in 0..PACKETS * PER_PACKET {
        let want = u32::from(mark(seq) != Some("refuse"));
        assert_eq!(
            times.get(&seq).copied().unwrap_or(0),
            want,
            "message {seq} ({:?}) stored {:?} times",
            mark(seq),
            times.get(&seq)
        );
        busy += u32::from(mark(seq) == Some("busy"));
    }
    assert!(busy > 0);

    // Every item sent was stored or refused: an item stored was never sent again. The
    // refused ones: each `refuse` document once at least, and the `busy` ones refused at
    // their first try at the first analyzer.
    let requests = requests(&out);
    let items: u64 = requests.iter().map(|r| r["items"].as_u64().unwrap()).sum();
    for request in &requests {
        assert_eq!(request["path"], "/_bulk", "{request}");
        assert_eq!(request["content_type"], "application/x-ndjson", "{request}");
    }
    let failed = items - documents.len() as u64;
    let refused = (0..PACKETS * PER_PACKET)
        .filter(|s| mark(*s) == Some("refuse"))
        .count() as u64;
    assert!(
        failed >= refused,
        "{items} items sent, {} stored, {refused} refused",
        documents.len()
    );
    let log = std::fs::read_to_string(dir.join("es_receiver.log")).unwrap_or_default();
    let busy_refused = failed - refused;
    assert!(
        busy_refused > 0,
        "no busy document was refused with 429: {items} items, {} stored; {log}",
        documents.len()
    );
    // At most once each: a busy one is refused only at its first try, and a refused one
    // that went again elsewhere only went with a busy one in a delivery that failed.
    assert!(
        busy_refused <= u64::from(busy) + refused,
        "{busy_refused} more refusals than {busy} busy documents"
    );
    distributor.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_item_fails_its_packet_with_the_reason_and_nothing_is_sent_twice() {
    let _sending = SENDING.lock().await;
    let dir = scratch("es-delivery-refused");
    let out = dir.join("stored.jsonl");
    let (_receiver, urls) = start_receiver(&dir, &out, 1);
    let distributor = distributor_to(&urls, &["--elasticsearch-index", "app-%Y.%m.%d-%H"]).await;
    let http = Http::new();
    let url = format!("{}/packets", distributor.url);
    // message(0) is at 10:30, message(7) refused, message(40) at 11:36.
    let refused = http
        .post(
            &url,
            "application/x-ndjson",
            [0, 7, 40].map(message).concat(),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text());
    let text = refused.text();
    assert!(
        text.contains("analyzer `es1` refused this packet (400)")
            && text.contains("1 message refused: mapper_parsing_exception: failed to parse field [es_test] of type [long] in document (caused by illegal_argument_exception"),
        "{text}"
    );
    let good = http.post(&url, "application/x-ndjson", message(1)).await;
    assert_eq!(good.status, 200, "{}", good.text());

    let documents = stored(&out);
    let got: Vec<(u64, &str)> = documents
        .iter()
        .map(|d| {
            (
                d["doc"]["seq"].as_u64().unwrap(),
                d["index"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (0, "app-2026.12.06-10"),
            (40, "app-2026.12.06-11"),
            (1, "app-2026.12.06-10")
        ]
    );
    assert_eq!(
        documents[0]["doc"]["@timestamp"], "2026-12-06T10:30:00.000Z",
        "{}",
        documents[0]
    );
    // Three items, then one: the refusal sent nothing again.
    let items: Vec<u64> = requests(&out)
        .iter()
        .map(|r| r["items"].as_u64().unwrap())
        .collect();
    assert_eq!(items, [3, 1]);
    distributor.stop().await.unwrap();
}
