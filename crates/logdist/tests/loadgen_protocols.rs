//! `logdist loadgen --protocol` against a real distributor and its analyzers: every packet
//! of OTLP/HTTP (protobuf and JSON) and of Loki's push is acknowledged in its protocol's
//! terms (200 with an `ExportLogsServiceResponse`, 204), and every record arrives at an
//! analyzer as one message with its service as the source. Bulk and shippers' JSON at
//! `/packets` are decoded in the loadgen's unit tests (`src/loadgen/tests.rs`) with the same
//! decoders the distributor uses for them.
//!
//! Rerun: `cargo nextest run -p logdist --test loadgen_protocols`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The services the load generator's records come from (`src/loadgen/templates.rs`).
const SOURCES: [&str; 7] = ["api", "auth", "db", "cache", "worker", "nginx", "payments"];

/// Two journaling analyzers known to the distributor by `--analyzer`, and the distributor;
/// returns the processes, the distributor's URL and the journals.
fn stack(dir: &Path) -> (Vec<Proc>, String, Vec<PathBuf>) {
    let mut procs = Vec::new();
    let mut specs = Vec::new();
    let mut journals = Vec::new();
    for (id, weight) in [(1, 0.6), (2, 0.4)] {
        let journal = dir.join(format!("analyzer_{id}.journal"));
        let (proc, listen) = spawn_server(dir, &format!("analyzer_{id}"), |listen| {
            [
                "analyzer",
                "--id",
                &id.to_string(),
                "--listen",
                listen,
                "--no-register",
                "--journal",
                journal.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec()
        });
        specs.push(format!("analyzer_{id}=http://{listen}@{weight}"));
        procs.push(proc);
        journals.push(journal);
    }
    let (distributor, listen) = spawn_server(dir, "distributor", |listen| {
        let mut args = vec![
            "distributor".to_owned(),
            "--listen".to_owned(),
            listen.to_owned(),
            "--ack".to_owned(),
            "delivered".to_owned(),
        ];
        for spec in &specs {
            args.extend(["--analyzer".to_owned(), spec.clone()]);
        }
        args
    });
    procs.push(distributor);
    (procs, format!("http://{listen}"), journals)
}

/// The messages each analyzer journaled, in its journal's order.
fn journaled(journals: &[PathBuf]) -> Vec<Vec<Value>> {
    journals
        .iter()
        .map(|path| {
            std::fs::read(path)
                .unwrap_or_default()
                .split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| serde_json::from_slice(line).expect("a journaled message is JSON"))
                .collect()
        })
        .collect()
}

#[test]
fn loadgen_protocols_are_delivered_record_for_message() {
    let dir = scratch("loadgen-protocols");
    let (_procs, url, journals) = stack(&dir);
    // Messages already in each journal, from the protocols before.
    let mut before = vec![0; journals.len()];
    for protocol in ["otlp", "otlp-json", "loki"] {
        let report = dir.join(format!("{protocol}.json"));
        let mut loadgen = spawn(
            &dir,
            &format!("loadgen-{protocol}"),
            &[
                "loadgen",
                "--target",
                &url,
                "--protocol",
                protocol,
                "--agents",
                "4",
                "--packets",
                "120",
                "--packet-size",
                "1..40",
                "--timeout",
                "10s",
                "--seed",
                "5",
                "--report",
                report.to_str().unwrap(),
                "--quiet",
            ],
        );
        let status = loadgen.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{}", loadgen.log_text());
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(report["protocol"], protocol);
        assert_eq!(
            (&report["packets_acked"], &report["packets_failed"]),
            (&Value::from(120), &Value::from(0)),
            "{protocol}: {report:#}"
        );
        let sent = report["messages_sent"].as_u64().unwrap();
        assert_eq!(report["messages_acked"].as_u64(), Some(sent), "{protocol}");
        assert!(sent > 120, "{protocol}: packets of 1..40 records");

        // `--ack delivered`: every acknowledged record is in a journal already.
        let messages = journaled(&journals);
        let new: Vec<&Value> = messages
            .iter()
            .zip(&before)
            .flat_map(|(journal, seen)| &journal[*seen..])
            .collect();
        assert_eq!(new.len() as u64, sent, "{protocol}: one message per record");
        for message in &new {
            let source = message["source"].as_str().unwrap_or_default();
            assert!(SOURCES.contains(&source), "{protocol}: {message}");
            assert!(
                message["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{protocol}: {message}"
            );
            assert!(message["timestamp"].is_u64(), "{protocol}: {message}");
        }
        let severities: std::collections::BTreeSet<&str> =
            new.iter().filter_map(|m| m["severity"].as_str()).collect();
        assert!(
            severities.contains("INFO") && severities.contains("WARN"),
            "{protocol}: {severities:?}"
        );
        if protocol.starts_with("otlp") {
            // The resource's service.name is the source, and kept as the resource.
            assert!(
                new.iter()
                    .all(|m| m["resource"]["service.name"] == m["source"]),
                "{protocol}: {}",
                new[0]
            );
        }
        before = messages.iter().map(Vec::len).collect();
    }
}
