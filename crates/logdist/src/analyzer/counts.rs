//! What an analyzer counts: messages and packets, by severity and by source.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The fields an analyzer reads from each message.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    severity: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
}

/// Counts of one packet, made before anything is recorded so a bad packet counts nothing.
#[derive(Debug, Default)]
pub struct Tally {
    /// Messages in the packet.
    pub messages: u64,
    severity: HashMap<String, u64>,
    source: HashMap<String, u64>,
}

impl Tally {
    /// Counts the non-blank lines of an NDJSON packet without parsing them.
    pub fn lines(body: &[u8]) -> Self {
        let mut messages = 0;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', body).chain([body.len()]) {
            // A line is blank or starts with `{` at once: trimming stops there.
            if !body[start..end].trim_ascii().is_empty() {
                messages += 1;
            }
            start = end + 1;
        }
        Self {
            messages,
            ..Self::default()
        }
    }
}

/// Parses an NDJSON packet; the error names the first bad line.
pub fn tally(body: &[u8]) -> Result<Tally, String> {
    let mut tally = Tally::default();
    for (n, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        let parsed: Line<'_> =
            serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        tally.messages += 1;
        bump(&mut tally.severity, &parsed.severity, 1);
        bump(&mut tally.source, &parsed.source, 1);
    }
    Ok(tally)
}

fn bump(map: &mut HashMap<String, u64>, key: &str, by: u64) {
    match map.get_mut(key) {
        Some(count) => *count += by,
        None => {
            map.insert(key.to_owned(), by);
        }
    }
}

/// Running totals since the analyzer started.
#[derive(Debug, Default)]
pub struct Counts {
    inner: Mutex<Totals>,
}

#[derive(Debug, Default)]
struct Totals {
    messages: u64,
    packets: u64,
    severity: HashMap<String, u64>,
    source: HashMap<String, u64>,
}

/// A copy of the totals, sorted for display.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CountsSnapshot {
    /// Messages received.
    pub messages: u64,
    /// Packets (distributor deliveries) received.
    pub packets: u64,
    /// Messages by severity.
    pub severity: BTreeMap<String, u64>,
    /// Messages by source.
    pub source: BTreeMap<String, u64>,
}

impl Counts {
    /// Adds one packet's tally.
    pub fn add(&self, tally: Tally) {
        let mut totals = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        totals.messages += tally.messages;
        totals.packets += 1;
        for (k, v) in tally.severity {
            bump(&mut totals.severity, &k, v);
        }
        for (k, v) in tally.source {
            bump(&mut totals.source, &k, v);
        }
    }

    /// The totals now.
    pub fn snapshot(&self) -> CountsSnapshot {
        let totals = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        CountsSnapshot {
            messages: totals.messages,
            packets: totals.packets,
            severity: totals
                .severity
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            source: totals.source.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_without_parsing() {
        assert_eq!(Tally::lines(b"{}\n{}\n").messages, 2);
        assert_eq!(Tally::lines(b"{}\n\n  \n{}").messages, 2);
        assert_eq!(Tally::lines(b"").messages, 0);
    }

    #[test]
    fn counts_by_severity_and_source() {
        let body =
            b"{\"timestamp\":1,\"severity\":\"WARN\",\"source\":\"app\",\"message\":\"a\"}\n\
{\"timestamp\":2,\"severity\":\"INFO\",\"source\":\"app\",\"message\":\"b\",\"x\":1}\n";
        let counts = Counts::default();
        counts.add(tally(body).unwrap());
        counts.add(tally(body).unwrap());
        let s = counts.snapshot();
        assert_eq!((s.messages, s.packets), (4, 2));
        assert_eq!(s.severity["WARN"], 2);
        assert_eq!(s.source["app"], 4);
    }

    #[test]
    fn a_bad_line_counts_nothing() {
        let err = tally(b"{\"severity\":\"a\",\"source\":\"b\"}\nnot json\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
