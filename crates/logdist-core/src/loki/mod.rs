//! Loki's push (`POST /loki/api/v1/push`): a `PushRequest` as snappy-compressed protobuf,
//! or its JSON form, `{"streams":[{"stream":{labels},"values":[["<ns>","line"],...]}]}`,
//! becomes one message per entry.
//!
//! | field | from |
//! | --- | --- |
//! | `timestamp` | the entry's time (protobuf `Timestamp`; in JSON a string of epoch nanoseconds), in the configured unit; a protobuf entry without one gets the arrival time |
//! | `severity` | the stream label `level`, `detected_level`, `severity` (python-logging-loki's) or `lvl`, else the same in the entry's structured metadata, read as the mapping reads words ([`crate::mapping`]); else `INFO` |
//! | `source` | the stream label `service_name`, `service`, `app`, `application`, `job` or `source` (logdist's `loki` delivery's), else `unknown` |
//! | `message` | the line, as it is |
//! | `severity_original` | the severity label's value, when it is not exactly the word written |
//! | `labels` | the stream's labels, an object, in their order |
//! | `metadata` | the entry's structured metadata, an object, when it has any |
//!
//! A line pushed in a stream whose labels are only `severity` and `source`, that is itself
//! a logdist message (four fields and all), is that message as it is: logdist's `loki`
//! delivery pushes messages so ([`encode`]), and a distributor can stand in for Loki in
//! front of another.
//!
//! Loki refuses a push whole when a stream's labels cannot be read, and so does this; an
//! entry whose time cannot be read (or does not fit the unit) is refused alone, for
//! `--on-invalid`.

mod encode;
mod labels;
pub mod proto;

pub use encode::{encode_push, push_body};

use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use prost::Message as _;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::decoded::{Decoded, Lines, RecordError};
use crate::mapping::{DEFAULT_SEVERITY, DEFAULT_SOURCE, Severity, TimestampUnit, write_string};
use crate::message::{Location, PacketError, validate};

/// How a push is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LokiEncoding {
    /// `application/x-protobuf`: a `PushRequest`, snappy block-compressed (always, in
    /// Loki's push).
    Protobuf,
    /// `application/json`
    Json,
}

const SEVERITY_LABELS: &[&str] = &["level", "detected_level", "severity", "lvl"];
/// `source` last: the label logdist's `loki` delivery adds ([`encode`]), after the
/// stream's own.
const SOURCE_LABELS: &[&str] = &[
    "service_name",
    "service",
    "app",
    "application",
    "job",
    "source",
];

/// Decodes a push into messages and refused entries. A protobuf push decompresses to at
/// most `max_len` bytes (the body limit: a few KB of snappy can claim gigabytes); `now` is
/// the arrival time.
pub fn decode_push(
    body: &[u8],
    encoding: LokiEncoding,
    max_len: usize,
    unit: TimestampUnit,
    now: SystemTime,
) -> Result<Decoded, PacketError> {
    let now = unit.from_system_time(now);
    match encoding {
        LokiEncoding::Protobuf => {
            let len = snap::raw::decompress_len(body)
                .map_err(|e| body_error(format!("not snappy-compressed: {e}")))?;
            if len > max_len {
                return Err(body_error(format!(
                    "the push decompresses to {len} bytes, more than the limit of {max_len}"
                )));
            }
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| body_error(format!("not snappy-compressed: {e}")))?;
            let request = proto::PushRequest::decode(&raw[..])
                .map_err(|e| body_error(format!("not a Loki PushRequest: {e}")))?;
            let mut lines = Lines::with_capacity(raw.len() * 2);
            let mut rejected = Vec::new();
            let mut index = 0;
            for stream in &request.streams {
                let labels = labels::parse(&stream.labels).map_err(body_error)?;
                let stream_fields = Stream::new(labels);
                for entry in &stream.entries {
                    let time = match &entry.timestamp {
                        Some(t) => {
                            let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
                            unit.from_nanos(nanos)
                        }
                        None => now,
                    };
                    let metadata: Vec<(&str, &str)> = entry
                        .structured_metadata
                        .iter()
                        .map(|p| (p.name.as_str(), p.value.as_str()))
                        .collect();
                    let result = time
                        .ok_or_else(|| out_of_range(unit))
                        .and_then(|t| stream_fields.entry(t, &entry.line, &metadata, &mut lines));
                    if let Err(reason) = result {
                        rejected.push(RecordError::new(
                            Location::Index(index),
                            reason,
                            Bytes::new(),
                        ));
                    }
                    index += 1;
                }
            }
            lines.finish(rejected)
        }
        LokiEncoding::Json => decode_json(body, unit),
    }
}

fn decode_json(body: &[u8], unit: TimestampUnit) -> Result<Decoded, PacketError> {
    let push: JsonPush<'_> =
        serde_json::from_slice(body).map_err(|e| body_error(format!("not a Loki push: {e}")))?;
    let mut lines = Lines::with_capacity(body.len() * 2);
    let mut rejected = Vec::new();
    let mut index = 0;
    for stream in push.streams {
        let stream_fields = Stream::new(stream.stream.map_or_else(Vec::new, |l| l.0));
        for raw in stream.values {
            let result = json_entry(raw.get(), unit).and_then(|entry| {
                let metadata: Vec<(&str, &str)> = entry
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                stream_fields.entry(entry.time, &entry.line, &metadata, &mut lines)
            });
            if let Err(reason) = result {
                let text = raw.get().as_bytes();
                rejected.push(RecordError::copied(Location::Index(index), reason, text));
            }
            index += 1;
        }
    }
    lines.finish(rejected)
}

/// A JSON entry: `["<ns>", "line"]`, or with a third element of structured metadata.
fn json_entry(raw: &str, unit: TimestampUnit) -> Result<JsonEntry, String> {
    let parts: Vec<&RawValue> = serde_json::from_str(raw)
        .map_err(|_| "an entry is an array: [\"<epoch ns>\", \"line\"]".to_owned())?;
    let (ts, line, metadata) = match parts[..] {
        [ts, line] => (ts, line, None),
        [ts, line, metadata] => (ts, line, Some(metadata)),
        _ => return Err("an entry is an array: [\"<epoch ns>\", \"line\"]".to_owned()),
    };
    let nanos = match serde_json::from_str::<String>(ts.get()) {
        Ok(text) => text.parse::<i128>().ok(),
        Err(_) => ts.get().parse::<i128>().ok(),
    }
    .ok_or_else(|| {
        format!(
            "the time {} is not epoch nanoseconds",
            crate::message::shorten(ts.get().to_owned())
        )
    })?;
    let time = unit.from_nanos(nanos).ok_or_else(|| out_of_range(unit))?;
    let line: String =
        serde_json::from_str(line.get()).map_err(|_| "the line is not a string".to_owned())?;
    let metadata = match metadata {
        Some(raw) => {
            serde_json::from_str::<Labels>(raw.get())
                .map_err(|_| "structured metadata is an object of strings".to_owned())?
                .0
        }
        None => Vec::new(),
    };
    Ok(JsonEntry {
        time,
        line,
        metadata,
    })
}

/// An entry of a JSON push, read.
struct JsonEntry {
    /// In the configured unit.
    time: i64,
    line: String,
    metadata: Vec<(String, String)>,
}

/// What a stream's entries share: its severity and source labels, and its `"labels"` field.
struct Stream {
    labels: Vec<(String, String)>,
    /// Whether the labels are only those logdist's `loki` delivery writes.
    only_logdist_labels: bool,
    /// The `"labels":{...}` field, with its leading comma, written once.
    field: Vec<u8>,
}

impl Stream {
    fn new(labels: Vec<(String, String)>) -> Stream {
        let mut field = b",\"labels\":".to_vec();
        write_object(
            &mut field,
            labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let only_logdist_labels =
            !labels.is_empty() && labels.iter().all(|(k, _)| k == "severity" || k == "source");
        Stream {
            labels,
            only_logdist_labels,
            field,
        }
    }

    fn label<'a>(list: &'a [(&str, &str)], names: &[&str]) -> Option<&'a str> {
        names.iter().find_map(|name| {
            list.iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| *v)
        })
    }

    /// Appends one entry as a message line; the error is why it is refused.
    fn entry(
        &self,
        timestamp: i64,
        line: &str,
        metadata: &[(&str, &str)],
        lines: &mut Lines,
    ) -> Result<(), String> {
        let labels: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let level = Stream::label(&labels, SEVERITY_LABELS)
            .or_else(|| Stream::label(metadata, SEVERITY_LABELS));
        let severity = level
            .and_then(Severity::from_text)
            .unwrap_or(DEFAULT_SEVERITY);
        let source = Stream::label(&labels, SOURCE_LABELS).unwrap_or(DEFAULT_SOURCE);

        if self.only_logdist_labels && validate(line).is_ok() {
            lines.push_valid(line.as_bytes());
            return Ok(());
        }
        let out = &mut lines.out;
        let start = out.len();
        out.extend_from_slice(b"{\"timestamp\":");
        out.extend_from_slice(timestamp.to_string().as_bytes());
        out.extend_from_slice(b",\"severity\":\"");
        out.extend_from_slice(severity.as_str().as_bytes());
        out.extend_from_slice(b"\",\"source\":");
        write_string(out, source);
        out.extend_from_slice(b",\"message\":");
        write_string(out, line);
        if let Some(level) = level.filter(|l| *l != severity.as_str()) {
            out.extend_from_slice(b",\"severity_original\":");
            write_string(out, level);
        }
        out.extend_from_slice(&self.field);
        if !metadata.is_empty() {
            out.extend_from_slice(b",\"metadata\":");
            write_object(out, metadata.iter().copied());
        }
        out.push(b'}');
        lines.end_built(start)
    }
}

fn write_object<'a>(out: &mut Vec<u8>, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push(b'{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, k);
        out.push(b':');
        write_string(out, v);
    }
    out.push(b'}');
}

fn out_of_range(unit: TimestampUnit) -> String {
    format!("the time is out of range for the timestamp unit ({unit})")
}

fn body_error(reason: String) -> PacketError {
    PacketError {
        location: Location::Body,
        reason: crate::message::shorten(reason),
    }
}

#[derive(Deserialize)]
struct JsonPush<'a> {
    #[serde(borrow)]
    streams: Vec<JsonStream<'a>>,
}

#[derive(Deserialize)]
struct JsonStream<'a> {
    stream: Option<Labels>,
    #[serde(borrow)]
    values: Vec<&'a RawValue>,
}

/// An object of strings, its pairs in their order.
struct Labels(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;

        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of labels")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Labels(pairs))
            }
        }

        deserializer.deserialize_map(LabelsVisitor)
    }
}

#[cfg(test)]
mod tests;
