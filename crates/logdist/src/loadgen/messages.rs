//! Realistic log messages: a seeded generator that picks a severity (mostly INFO), a
//! source and one of its templates, fills in numbers, ids, paths and addresses, and gives
//! the [`Record`], which [`super::encode`] writes in each protocol's form (logdist's own
//! JSON message here). Generation is seeded, so a `--seed` run is reproducible.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::args::PacketSize;
use super::templates::{PATHS, SEVERITIES, SOURCES, STATUSES};

/// One message as sent in logdist's own form. Field order follows the original project's
/// form; `host` is an extra field the distributor must forward untouched.
#[derive(Serialize)]
struct Message<'a> {
    timestamp: u64,
    severity: &'a str,
    source: &'a str,
    message: &'a str,
    host: &'a str,
}

/// One generated log record, before it is written in a protocol's form (see
/// [`super::encode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Unix milliseconds.
    pub timestamp_ms: u64,
    /// One of the severities of [`SEVERITIES`], upper case.
    pub severity: &'static str,
    /// The service that logged it.
    pub source: &'static str,
    /// The filled-in line.
    pub message: String,
    /// The host it came from (`{source}-{1..8}`).
    pub host: String,
}

impl Record {
    /// Appends the record as logdist's own message, one JSON object (no newline).
    pub fn write_message(&self, out: &mut Vec<u8>) {
        let message = Message {
            timestamp: self.timestamp_ms,
            severity: self.severity,
            source: self.source,
            message: &self.message,
            host: &self.host,
        };
        // Writing plain strings and integers into a Vec cannot fail.
        if let Err(e) = serde_json::to_writer(&mut *out, &message) {
            tracing::error!(%e, "Could not serialize a generated message.");
        }
    }
}

/// Builds realistic messages from a seeded RNG.
pub(crate) struct MessageGen {
    rng: SmallRng,
    /// Unix milliseconds at the start; messages are stamped shortly before it.
    now_ms: u64,
    /// Scratch buffer for the filled-in message text.
    text: String,
}

impl MessageGen {
    pub fn new(seed: u64) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self {
            rng: SmallRng::seed_from_u64(seed),
            now_ms,
            text: String::new(),
        }
    }

    /// One record stamped `timestamp` (Unix milliseconds).
    pub fn record(&mut self, timestamp: u64) -> Record {
        let severity = self.severity();
        let source = &SOURCES[self.rng.random_range(0..SOURCES.len())];
        let templates = match severity {
            "ERROR" | "FATAL" => source.errors,
            _ => source.normal,
        };
        let template = templates[self.rng.random_range(0..templates.len())];
        self.fill(template);
        let host = format!("{}-{}", source.name, self.rng.random_range(1..=8));
        Record {
            timestamp_ms: timestamp,
            severity,
            source: source.name,
            message: self.text.clone(),
            host,
        }
    }

    /// One message as a JSON object, stamped now.
    pub fn single(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        self.record(self.now_ms).write_message(&mut out);
        out
    }

    /// A packet size drawn uniformly from `size`.
    pub fn packet_size(&mut self, size: PacketSize) -> u32 {
        self.rng.random_range(size.min..=size.max)
    }

    /// The records of a packet of `size`, timestamps rising within the packet.
    pub fn records(&mut self, size: u32) -> Vec<Record> {
        let mut timestamp = self.now_ms.saturating_sub(self.rng.random_range(0..5_000));
        (0..size)
            .map(|_| {
                timestamp += self.rng.random_range(0..20);
                self.record(timestamp)
            })
            .collect()
    }

    fn severity(&mut self) -> &'static str {
        let total: u32 = SEVERITIES.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.random_range(0..total);
        for (name, weight) in SEVERITIES {
            if pick < weight {
                return name;
            }
            pick -= weight;
        }
        "INFO"
    }

    /// Fills `template` into `self.text`, replacing each `{placeholder}`.
    fn fill(&mut self, template: &str) {
        self.text.clear();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            self.text.push_str(&rest[..open]);
            let name = &rest[open + 1..open + close];
            self.placeholder(name);
            rest = &rest[open + close + 1..];
        }
        self.text.push_str(rest);
    }

    fn placeholder(&mut self, name: &str) {
        use std::fmt::Write as _;
        let r = &mut self.rng;
        // Writing into a String cannot fail.
        let _ = match name {
            "n" => write!(self.text, "{}", r.random_range(1..100)),
            "ms" => write!(
                self.text,
                "{}",
                r.random_range(1..100) * r.random_range(1..20)
            ),
            "id" => write!(self.text, "{:012x}", r.random::<u64>() >> 16),
            "user" => write!(self.text, "u{}", r.random_range(1000..99_999)),
            "status" => write!(self.text, "{}", STATUSES[r.random_range(0..STATUSES.len())]),
            "ip" => {
                write!(
                    self.text,
                    "10.{}.{}.{}",
                    r.random::<u8>(),
                    r.random::<u8>(),
                    r.random::<u8>()
                )
            }
            "path" => {
                let path = PATHS[r.random_range(0..PATHS.len())];
                self.fill_path(path);
                Ok(())
            }
            other => write!(self.text, "{{{other}}}"),
        };
    }

    /// Paths hold `{id}` and `{user}` too; filled without recursion into `fill`.
    fn fill_path(&mut self, path: &str) {
        let id = format!("{:08x}", self.rng.random::<u32>());
        let user = format!("u{}", self.rng.random_range(1000..99_999));
        self.text
            .push_str(&path.replace("{id}", &id).replace("{user}", &user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bodies() {
        let packet = |seed| {
            let records = MessageGen::new(seed).records(10);
            super::super::encode::body(super::super::Protocol::Ndjson, &records).expect("NDJSON")
        };
        let (a, b) = (packet(5), packet(5));
        // Timestamps follow the clock; compare the text only.
        let strip = |v: &[u8]| -> Vec<String> {
            v.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_slice(l).expect("JSON");
                    v["message"].to_string()
                })
                .collect()
        };
        assert_eq!(strip(&a), strip(&b));
    }

    #[test]
    fn severities_are_weighted() {
        let mut generator = MessageGen::new(11);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..10_000 {
            *counts.entry(generator.severity()).or_insert(0u32) += 1;
        }
        assert!(
            counts["INFO"] > 6_000 && counts["INFO"] < 8_000,
            "{counts:?}"
        );
        assert!(counts["FATAL"] > 0 && counts["FATAL"] < 300, "{counts:?}");
        assert!(counts["ERROR"] < counts["WARN"], "{counts:?}");
    }

    #[test]
    fn templates_are_filled() {
        let mut generator = MessageGen::new(3);
        generator.fill("GET {path} in {ms}ms id={id} {unknown");
        assert!(!generator.text.contains("{path}") && !generator.text.contains("{ms}"));
        assert!(generator.text.ends_with(" {unknown"), "{}", generator.text);
    }
}
