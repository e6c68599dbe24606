//! The books of a fault test: what the load generator says it sent and had acknowledged
//! (its `--trace`), against what the analyzers wrote to their journals before
//! acknowledging. Every message carries a unique `msg_id`, so a lost or a duplicated
//! message shows by its id.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

/// One packet's final outcome, as the load generator's `--trace` writes it.
#[derive(Debug, Deserialize)]
pub struct Traced {
    pub key: String,
    pub messages: u64,
    pub outcome: String,
    pub status: Option<u16>,
    pub failure: Option<String>,
    pub attempts: u32,
}

/// Reads a `--trace` file.
pub fn read_trace(path: &Path) -> Vec<Traced> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading the trace {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("trace line {l:?}: {e}")))
        .collect()
}

/// How many times each `msg_id` was written to the journals. A line cut short by a
/// SIGKILL (never acknowledged) has no complete id and is skipped.
pub fn read_journals(paths: &[impl AsRef<Path>]) -> HashMap<String, u32> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    for path in paths {
        let Ok(text) = std::fs::read(path.as_ref()) else {
            continue;
        };
        for line in text.split(|b| *b == b'\n') {
            if let Some(id) = msg_id(line) {
                *seen.entry(id.to_owned()).or_default() += 1;
            }
        }
    }
    seen
}

/// Adds to `seen` how many times each `msg_id` is in `paths`, files of one JSON message a
/// line written by another program (the Flask analyzer's `RECEIVED_FILE`, whose JSON has
/// its own spacing). A line that does not parse (cut short by a kill) is skipped.
pub fn add_received(seen: &mut HashMap<String, u32>, paths: &[impl AsRef<Path>]) {
    for path in paths {
        let Ok(text) = std::fs::read_to_string(path.as_ref()) else {
            continue;
        };
        for line in text.lines() {
            let id = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|m| m["msg_id"].as_str().map(str::to_owned));
            if let Some(id) = id {
                *seen.entry(id).or_default() += 1;
            }
        }
    }
}

/// The bytes of each packet as the journals hold it (its lines with their newlines), by
/// packet key; a message journaled more than once counts once.
pub fn packet_bytes(paths: &[impl AsRef<Path>]) -> HashMap<String, u64> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut bytes: HashMap<String, u64> = HashMap::new();
    for path in paths {
        let Ok(text) = std::fs::read(path.as_ref()) else {
            continue;
        };
        for line in text.split(|b| *b == b'\n') {
            let Some(id) = msg_id(line) else {
                continue;
            };
            // The key is the id without its last `-{index}`.
            let Some((key, _)) = id.rsplit_once('-') else {
                continue;
            };
            if seen.insert(id.to_owned()) {
                *bytes.entry(key.to_owned()).or_default() += line.len() as u64 + 1;
            }
        }
    }
    bytes
}

/// The `msg_id` of one NDJSON line, found without parsing the whole line.
fn msg_id(line: &[u8]) -> Option<&str> {
    const FIELD: &[u8] = b"\"msg_id\":\"";
    let at = line.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let rest = &line[at..];
    let end = rest.iter().position(|b| *b == b'"')?;
    // A complete line ends with the object's closing brace.
    if line.last() != Some(&b'}') {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// The totals of one test run.
#[derive(Debug, Default)]
pub struct Books {
    pub packets_sent: u64,
    pub packets_acked: u64,
    pub packets_failed: u64,
    pub messages_sent: u64,
    pub messages_acked: u64,
    /// Distinct messages found at an analyzer.
    pub messages_delivered: u64,
    /// Extra copies: a message found n times counts n - 1.
    pub duplicates: u64,
    /// Acknowledged messages found at no analyzer (must be empty).
    pub lost: Vec<String>,
    /// Messages of failed packets that reached an analyzer anyway (their delivery was in
    /// doubt when the agent was told to retry).
    pub delivered_unacked: u64,
    /// Resends by the agents.
    pub retries: u64,
}

/// Balances the trace against the journals.
pub fn balance(trace: &[Traced], journals: &HashMap<String, u32>) -> Books {
    let mut books = Books {
        messages_delivered: journals.len() as u64,
        duplicates: journals.values().map(|n| u64::from(n - 1)).sum(),
        ..Books::default()
    };
    for packet in trace {
        books.packets_sent += 1;
        books.messages_sent += packet.messages;
        books.retries += u64::from(packet.attempts.saturating_sub(1));
        let acked = packet.outcome == "acked";
        if acked {
            books.packets_acked += 1;
            books.messages_acked += packet.messages;
        } else {
            books.packets_failed += 1;
        }
        for i in 0..packet.messages {
            let id = format!("{}-{i}", packet.key);
            match (acked, journals.contains_key(&id)) {
                (true, false) => books.lost.push(id),
                (false, true) => books.delivered_unacked += 1,
                _ => {}
            }
        }
    }
    books
}

impl std::fmt::Display for Books {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "packets sent {} acked {} failed {} (retries {}); messages sent {} acked {} \
             delivered {} duplicated {} ({:.4}%) lost {} delivered-but-unacked {}",
            self.packets_sent,
            self.packets_acked,
            self.packets_failed,
            self.retries,
            self.messages_sent,
            self.messages_acked,
            self.messages_delivered,
            self.duplicates,
            100.0 * self.duplicates as f64 / self.messages_delivered.max(1) as f64,
            self.lost.len(),
            self.delivered_unacked,
        )
    }
}
