//! Messages to a Loki push: NDJSON messages in, one `PushRequest` out, for the `loki`
//! delivery protocol ([`push_body`] gives it snappy-compressed, as Promtail, Grafana Alloy
//! and Vector send it).
//!
//! | message | becomes |
//! | --- | --- |
//! | `severity`, `source` | the stream labels `severity` and `source` (`INFO` and `unknown` when absent) |
//! | `timestamp` (an integer in the configured unit) | the entry's time, in nanoseconds; the time of the push when absent |
//! | the message | the line: the message's JSON, byte for byte as the agent sent it |
//!
//! The line is the whole message because that is what a Loki user queries structured
//! logs with: `{source="api"} | json` gives every field of it, `| line_format
//! "{{.message}}"` shows the text. Labels are what Loki indexes, and it wants few of them
//! (every label set is a stream): the two of every message, of a handful of values each,
//! and nothing else, whatever fields messages carry.
//!
//! A message that logdist's Loki ingest made ([`super::decode_push`]) goes out as it came
//! in: it has `labels` (an object of strings) and a string `message`,
//! so its labels are the stream's (then `severity` and `source`, unless a label has the
//! name), its `message` is the line, and its `metadata` (an object of strings), if any, is
//! the entry's structured metadata. Loki push in, Loki push out keeps labels, line and
//! time (to `--timestamp-unit`). The ingest reads a line back: the stream's own labels
//! give severity and source first, the `severity` and `source` labels last; and a line
//! pushed with no other labels that is a logdist message is that message again.
//!
//! Streams are in the order their first entry appears, entries in the messages' order.
//! Label values are quoted as Go's `strconv.Quote` quotes them, which Loki reads; a label
//! with an empty value is left out, as Loki drops it; of a name given twice the first is
//! kept, and a name Loki does not take (not `[a-zA-Z_][a-zA-Z0-9_]*`, or reserved, `__...`)
//! is left out, as Loki refuses a push with them.

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use prost::Message as _;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::Labels;
use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};
use crate::mapping::{DEFAULT_SEVERITY, DEFAULT_SOURCE, TimestampUnit};

/// The push of `messages` (each one NDJSON line, without its newline), with times in
/// `unit`; an entry without a time gets `now`.
pub fn encode_push<M: AsRef<[u8]>>(
    messages: impl IntoIterator<Item = M>,
    unit: TimestampUnit,
    now: SystemTime,
) -> PushRequest {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    let mut request = PushRequest::default();
    // Where each stream is, by its labels as written.
    let mut streams: HashMap<String, usize> = HashMap::new();
    for message in messages {
        let (labels, entry) = entry_of(message.as_ref(), unit, now);
        let at = match streams.get(&labels) {
            Some(&at) => at,
            None => {
                request.streams.push(StreamAdapter {
                    labels: labels.clone(),
                    entries: Vec::new(),
                });
                streams.insert(labels, request.streams.len() - 1);
                request.streams.len() - 1
            }
        };
        request.streams[at].entries.push(entry);
    }
    request
}

/// A push as Loki's protobuf push takes it: the `PushRequest`, snappy block-compressed.
/// Fails only for a request too large for snappy (about 4 GiB).
pub fn push_body(request: &PushRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())
}

/// One message as a stream's labels (written) and its entry.
fn entry_of(line: &[u8], unit: TimestampUnit, now: i128) -> (String, EntryAdapter) {
    let text = String::from_utf8_lossy(line);
    let fields = serde_json::from_str::<Fields<'_>>(&text).ok();
    let field = |name: &str| {
        fields
            .as_ref()
            .and_then(|f| f.0.iter().rev().find(|(k, _)| k == name))
            .map(|(_, v)| *v)
    };
    let string =
        |name: &str| field(name).and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let nanos = field("timestamp")
        .and_then(|raw| raw.get().parse::<i64>().ok())
        .map_or(now, |t| unit.to_nanos(t));
    let severity = string("severity")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SEVERITY.as_str().to_owned());
    let source = string("source")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SOURCE.to_owned());

    // A message of the Loki ingest: its labels, its line, its metadata.
    let pushed = field("labels")
        .and_then(|raw| serde_json::from_str::<Labels>(raw.get()).ok())
        .and_then(|labels| Some((labels, string("message")?)));
    let (labels, line, metadata) = match pushed {
        Some((labels, line)) => {
            let metadata = field("metadata")
                .and_then(|raw| serde_json::from_str::<Labels>(raw.get()).ok())
                .map_or_else(Vec::new, |m| m.0);
            (labels.0, line, metadata)
        }
        None => (Vec::new(), text.into_owned(), Vec::new()),
    };
    // Loki drops a label without a value, and refuses a name twice, or one it reserves.
    let mut kept: Vec<(String, String)> = Vec::with_capacity(labels.len() + 2);
    for (name, value) in labels {
        if !value.is_empty() && is_label_name(&name) && !kept.iter().any(|(k, _)| *k == name) {
            kept.push((name, value));
        }
    }
    let mut labels = kept;
    for (name, value) in [("severity", severity), ("source", source)] {
        if !labels.iter().any(|(k, _)| k == name) {
            labels.push((name.to_owned(), value));
        }
    }
    let entry = EntryAdapter {
        timestamp: Some(Timestamp {
            seconds: i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(i64::MAX),
            // Below 1e9, so it fits.
            nanos: nanos.rem_euclid(1_000_000_000) as i32,
        }),
        line,
        structured_metadata: metadata
            .into_iter()
            .map(|(name, value)| LabelPairAdapter { name, value })
            .collect(),
    };
    (selector(&labels), entry)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not `__...`, which Loki keeps for itself.
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
        && !name.starts_with("__")
}

/// `{name="value", ...}`, values quoted as Go quotes them.
fn selector(labels: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (name, value) in labels {
        if out.len() > 1 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// A message's top-level fields, unread, in order.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;

        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}
