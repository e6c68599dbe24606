//! OpenTelemetry OTLP logs (`POST /v1/logs`): an `ExportLogsServiceRequest`, as protobuf
//! or as OTLP/JSON, becomes one message per log record, and the answer
//! (`ExportLogsServiceResponse`, with `partial_success` for the records refused) is
//! written in the request's encoding.
//!
//! A log record becomes:
//!
//! | field | from |
//! | --- | --- |
//! | `timestamp` | `timeUnixNano`, else `observedTimeUnixNano`, else the arrival time; in the configured unit |
//! | `severity` | `severityNumber` (1-24), else `severityText` read as the mapping reads words ([`crate::mapping`]), else `INFO` |
//! | `source` | the resource's `service.name`, else `unknown` |
//! | `message` | `body`: a string as it is, bytes as base64, any other value as its JSON text (below); none is `""` |
//! | `severity_original` | `severityText`, when it is not exactly the word written |
//! | `observed_timestamp` | `observedTimeUnixNano` when set, in the configured unit |
//! | `event_name` | `eventName`, when set |
//! | `trace_id`, `span_id` | the ids as lower-case hex, when set |
//! | `flags` | the record's flags (W3C trace flags in the low byte), when not 0 |
//! | `attributes` | the record's attributes, an object |
//! | `resource` | the resource's attributes, an object (`service.name` included) |
//! | `scope` | `{"name", "version", "attributes"}` of the instrumentation scope, what is set of it |
//!
//! Attributes keep their keys as sent (`"service.name"` is one key, not nested). Values are
//! JSON: strings, booleans, integers, doubles (`"NaN"`, `"Infinity"`, `"-Infinity"` as
//! strings, which JSON has no numbers for), arrays, key-value lists as objects, and bytes
//! as base64. Empty fields are left out.
//!
//! A record is refused (and counted in `partial_success`) when its time does not fit the
//! configured unit, or, in OTLP/JSON, when it is not a log record (a field of the wrong
//! type, an id that is not hex). A request that is not an `ExportLogsServiceRequest` at all
//! is the request's error (`400`).
//!
//! ## Why messages declared by hand
//!
//! The `opentelemetry-proto` crate (0.33, features `gen-tonic-messages`, `logs`,
//! `with-serde`) brings the OpenTelemetry API and SDK crates with it: a clean
//! `cargo build -p logdist-core` went from 16 crates and 115 s to 38 crates and 255 s on the
//! 2-core build machine. The dozen messages of a logs export declared for prost
//! (`proto.rs`) take it to 22 crates and 171 s. OTLP/JSON is read by this module's own serde
//! types (`json.rs`), which also lets each record of a JSON request fail alone.

mod encode;
mod json;
pub mod proto;

pub use encode::encode_logs;

use std::time::SystemTime;

use prost::Message as _;

use self::proto::{AnyValue, KeyValue, LogRecord, Value};
use crate::decoded::{Decoded, Lines, RecordError};
use crate::mapping::{DEFAULT_SEVERITY, DEFAULT_SOURCE, Severity, TimestampUnit, write_string};
use crate::message::{Location, PacketError};

/// How an OTLP request (and its answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`: the OTLP/JSON mapping of the protobuf messages.
    Json,
}

/// Decodes an `ExportLogsServiceRequest` into messages and refused records. `now` is the
/// arrival time, for records without a time.
pub fn decode_logs(
    body: &[u8],
    encoding: OtlpEncoding,
    unit: TimestampUnit,
    now: SystemTime,
) -> Result<Decoded, PacketError> {
    let writer = Writer {
        unit,
        now: unit.from_system_time(now),
    };
    match encoding {
        OtlpEncoding::Protobuf => {
            let request = proto::ExportLogsServiceRequest::decode(body)
                .map_err(|e| body_error(format!("not an OTLP ExportLogsServiceRequest: {e}")))?;
            let mut lines = Lines::with_capacity(body.len() * 2);
            let mut rejected = Vec::new();
            let mut index = 0;
            for resource_logs in &request.resource_logs {
                let resource = writer.resource(resource_logs.resource.as_ref());
                for scope_logs in &resource_logs.scope_logs {
                    let scope = writer.scope(scope_logs.scope.as_ref());
                    for record in &scope_logs.log_records {
                        if let Err(reason) = writer.record(&resource, &scope, record, &mut lines) {
                            let empty = bytes::Bytes::new();
                            rejected.push(RecordError::new(Location::Index(index), reason, empty));
                        }
                        index += 1;
                    }
                }
            }
            lines.finish(rejected)
        }
        OtlpEncoding::Json => json::decode(body, &writer),
    }
}

/// The answer to an export: `partial_success` when records were refused (how many, and
/// the first reason), in the request's encoding.
pub fn export_logs_response(rejected: &[RecordError], encoding: OtlpEncoding) -> Vec<u8> {
    let partial_success = rejected
        .first()
        .map(|first| proto::ExportLogsPartialSuccess {
            rejected_log_records: rejected.len() as i64,
            error_message: first.to_string(),
        });
    match encoding {
        OtlpEncoding::Protobuf => {
            proto::ExportLogsServiceResponse { partial_success }.encode_to_vec()
        }
        OtlpEncoding::Json => match partial_success {
            None => b"{}".to_vec(),
            Some(partial) => {
                // int64 is a string in the JSON mapping of protobuf.
                let mut out = format!(
                    "{{\"partialSuccess\":{{\"rejectedLogRecords\":\"{}\",\"errorMessage\":",
                    partial.rejected_log_records
                )
                .into_bytes();
                write_string(&mut out, &partial.error_message);
                out.extend_from_slice(b"}}");
                out
            }
        },
    }
}

/// Writes log records as messages.
pub(crate) struct Writer {
    unit: TimestampUnit,
    /// The arrival time in `unit`; `None` if it does not fit (then records without a time
    /// are refused).
    now: Option<i64>,
}

/// What records share from their resource: its `service.name`, and the `"resource":{...}`
/// field (with its leading comma), written once.
pub(crate) struct ResourceFields {
    source: Option<String>,
    field: Vec<u8>,
}

impl Writer {
    pub(crate) fn resource(&self, resource: Option<&proto::Resource>) -> ResourceFields {
        let attributes = resource.map_or(&[][..], |r| &r.attributes);
        let source = attributes.iter().find_map(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(Value::String(name)),
            }) if kv.key == "service.name" && !name.is_empty() => Some(name.clone()),
            _ => None,
        });
        let mut field = Vec::new();
        if !attributes.is_empty() {
            field.extend_from_slice(b",\"resource\":");
            write_attributes(&mut field, attributes);
        }
        ResourceFields { source, field }
    }

    /// The `"scope":{...}` field (with its leading comma), or nothing.
    pub(crate) fn scope(&self, scope: Option<&proto::InstrumentationScope>) -> Vec<u8> {
        let mut out = Vec::new();
        let Some(scope) = scope else {
            return out;
        };
        let mut fields = Vec::new();
        if !scope.name.is_empty() {
            fields.extend_from_slice(b",\"name\":");
            write_string(&mut fields, &scope.name);
        }
        if !scope.version.is_empty() {
            fields.extend_from_slice(b",\"version\":");
            write_string(&mut fields, &scope.version);
        }
        if !scope.attributes.is_empty() {
            fields.extend_from_slice(b",\"attributes\":");
            write_attributes(&mut fields, &scope.attributes);
        }
        if !fields.is_empty() {
            out.extend_from_slice(b",\"scope\":{");
            out.extend_from_slice(&fields[1..]);
            out.push(b'}');
        }
        out
    }

    /// Appends one record as a message line; the error is why it is refused.
    pub(crate) fn record(
        &self,
        resource: &ResourceFields,
        scope: &[u8],
        record: &LogRecord,
        lines: &mut Lines,
    ) -> Result<(), String> {
        let time = [record.time_unix_nano, record.observed_time_unix_nano]
            .into_iter()
            .find(|&t| t != 0);
        let timestamp = match time {
            Some(nanos) => self.unit.from_nanos(i128::from(nanos)),
            None => self.now,
        }
        .ok_or_else(|| {
            format!(
                "the time is out of range for the timestamp unit ({})",
                self.unit
            )
        })?;
        let severity = Severity::from_otlp_number(i64::from(record.severity_number))
            .or_else(|| Severity::from_text(&record.severity_text))
            .unwrap_or(DEFAULT_SEVERITY);

        let out = &mut lines.out;
        let start = out.len();
        out.extend_from_slice(b"{\"timestamp\":");
        out.extend_from_slice(timestamp.to_string().as_bytes());
        out.extend_from_slice(b",\"severity\":\"");
        out.extend_from_slice(severity.as_str().as_bytes());
        out.extend_from_slice(b"\",\"source\":");
        write_string(out, resource.source.as_deref().unwrap_or(DEFAULT_SOURCE));
        out.extend_from_slice(b",\"message\":");
        match record.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::String(text)) => write_string(out, text),
            None => out.extend_from_slice(b"\"\""),
            Some(Value::Bytes(bytes)) => {
                out.push(b'"');
                write_base64(out, bytes);
                out.push(b'"');
            }
            Some(_) => {
                let mut text = Vec::new();
                write_any(&mut text, record.body.as_ref());
                let text = String::from_utf8(text).expect("JSON written from strings");
                write_string(out, &text);
            }
        }
        if !record.severity_text.is_empty() && record.severity_text != severity.as_str() {
            out.extend_from_slice(b",\"severity_original\":");
            write_string(out, &record.severity_text);
        }
        if record.observed_time_unix_nano != 0
            && let Some(observed) = self
                .unit
                .from_nanos(i128::from(record.observed_time_unix_nano))
        {
            out.extend_from_slice(b",\"observed_timestamp\":");
            out.extend_from_slice(observed.to_string().as_bytes());
        }
        if !record.event_name.is_empty() {
            out.extend_from_slice(b",\"event_name\":");
            write_string(out, &record.event_name);
        }
        for (name, id) in [("trace_id", &record.trace_id), ("span_id", &record.span_id)] {
            if !id.is_empty() {
                out.extend_from_slice(format!(",\"{name}\":\"").as_bytes());
                write_hex(out, id);
                out.push(b'"');
            }
        }
        if record.flags != 0 {
            out.extend_from_slice(format!(",\"flags\":{}", record.flags).as_bytes());
        }
        if !record.attributes.is_empty() {
            out.extend_from_slice(b",\"attributes\":");
            write_attributes(out, &record.attributes);
        }
        out.extend_from_slice(&resource.field);
        out.extend_from_slice(scope);
        out.push(b'}');
        lines.end_built(start)
    }
}

/// Key-value pairs as a JSON object, keys as sent.
fn write_attributes(out: &mut Vec<u8>, attributes: &[KeyValue]) {
    out.push(b'{');
    for (i, kv) in attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, &kv.key);
        out.push(b':');
        write_any(out, kv.value.as_ref());
    }
    out.push(b'}');
}

/// An `AnyValue` as JSON (see the module documentation); an empty one is `null`.
fn write_any(out: &mut Vec<u8>, value: Option<&AnyValue>) {
    match value.and_then(|v| v.value.as_ref()) {
        None => out.extend_from_slice(b"null"),
        Some(Value::String(text)) => write_string(out, text),
        Some(Value::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(Value::Int(n)) => out.extend_from_slice(n.to_string().as_bytes()),
        Some(Value::Double(x)) if x.is_nan() => out.extend_from_slice(b"\"NaN\""),
        Some(Value::Double(x)) if x.is_infinite() => out.extend_from_slice(if *x > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        }),
        Some(Value::Double(x)) => {
            serde_json::to_writer(&mut *out, x).expect("writing to a Vec never fails");
        }
        Some(Value::Array(array)) => {
            out.push(b'[');
            for (i, item) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_any(out, Some(item));
            }
            out.push(b']');
        }
        Some(Value::Kvlist(list)) => write_attributes(out, &list.values),
        Some(Value::Bytes(bytes)) => {
            out.push(b'"');
            write_base64(out, bytes);
            out.push(b'"');
        }
    }
}

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

/// Standard base64 with padding (RFC 4648), as the JSON mapping of protobuf writes bytes.
fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

fn body_error(reason: String) -> PacketError {
    PacketError {
        location: Location::Body,
        reason: crate::message::shorten(reason),
    }
}

#[cfg(test)]
mod tests;
