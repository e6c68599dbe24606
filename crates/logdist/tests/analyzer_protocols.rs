//! `logdist analyzer` takes every delivery protocol a distributor speaks over HTTP (see
//! `src/analyzer/formats.rs`): one distributor in front of one `logdist analyzer` per
//! protocol, each named with `--analyzer ID=URL@W;protocol=P`. Every message reaches the
//! analyzer of its share, once, with its fields; each analyzer counts and journals what
//! its protocol brought as it counts `/packets`; and the shares hold across protocols.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use serde_json::Value;

/// The protocols `logdist analyzer` takes over HTTP, each with the weight of its analyzer.
const PROTOCOLS: [(&str, f64); 5] = [
    ("logdist", 3.0),
    ("message", 1.0),
    ("otlp", 2.0),
    ("elasticsearch", 2.5),
    ("loki", 1.5),
];

/// Messages a packet, and packets sent.
const PACKET: u64 = 10;
const PACKETS: u64 = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_analyzer_takes_every_protocol_and_the_shares_hold_across_them() {
    let dir = scratch("analyzer_protocols");
    let http = Http::new();
    let mut analyzers = Vec::new();
    let mut journals: Vec<PathBuf> = Vec::new();
    let mut specs = Vec::new();
    for (n, (protocol, weight)) in PROTOCOLS.iter().enumerate() {
        let journal = dir.join(format!("{protocol}.journal"));
        let journal_arg = journal.to_str().unwrap().to_owned();
        let id = (n + 1) as u32;
        let (proc, url) = analyzer(
            &dir,
            id,
            *weight,
            "http://127.0.0.1:9",
            &["--no-register", "--journal", &journal_arg],
        );
        http.wait_up(&format!("{url}/health")).await;
        specs.push(format!("{protocol}={url}@{weight};protocol={protocol}"));
        analyzers.push((proc, url));
        journals.push(journal);
    }
    let mut flags = Vec::new();
    for spec in &specs {
        flags.extend(["--analyzer", spec.as_str()]);
    }
    let (_distributor, url) = distributor(&dir, &flags);
    let ids: Vec<&str> = PROTOCOLS.iter().map(|(p, _)| *p).collect();
    let stats = http
        .wait_stats(&url, "every analyzer online", |s| online(s, &ids))
        .await;
    for (protocol, _) in PROTOCOLS {
        let member = stats.iter().find(|a| a.id == protocol).unwrap();
        assert_eq!(member.protocol, protocol, "{member:#?}");
    }

    for n in 0..PACKETS {
        let answer = http.send_packet(&url, n * PACKET, PACKET).await;
        assert_eq!(answer.status, 200, "packet {n}: {}", answer.text());
    }

    // Every message arrived once, at one analyzer, with its fields.
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut by_protocol = Vec::new();
    for (journal, (protocol, _)) in journals.iter().zip(PROTOCOLS) {
        let text = std::fs::read_to_string(journal).unwrap_or_default();
        let mut count = 0u64;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let message: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{protocol}: journal line {line:?}: {e}"));
            // OTLP carries the fields of a message that are not its own as attributes, and
            // its ingest keeps them there.
            let seq = message["seq"]
                .as_u64()
                .or_else(|| message["attributes"]["seq"].as_u64())
                .unwrap_or_else(|| panic!("{protocol}: no seq in {message}"));
            assert_eq!(message["severity"], "INFO", "{protocol}: {message}");
            assert_eq!(message["source"], "test", "{protocol}: {message}");
            assert_eq!(
                message["message"],
                format!("message number {seq}"),
                "{protocol}: {message}"
            );
            *seen.entry(seq).or_default() += 1;
            count += 1;
        }
        by_protocol.push((protocol, count));
    }
    assert_eq!(seen.len() as u64, PACKETS * PACKET, "{by_protocol:?}");
    assert!(seen.values().all(|n| *n == 1), "a message arrived twice");

    // Each analyzer counted what its journal holds, and the shares hold.
    for ((_, analyzer), (protocol, journaled)) in analyzers.iter().zip(&by_protocol) {
        let counted = http.get(&format!("{analyzer}/stats")).await.json()["messages"]
            .as_u64()
            .unwrap();
        assert_eq!(counted, *journaled, "{protocol}");
        assert!(counted > 0, "{protocol} got nothing: {by_protocol:?}");
    }
    assert_shares_within(&http.stats(&url).await, PACKET);
}
