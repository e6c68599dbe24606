//! OTLP/JSON: the JSON mapping of the protobuf messages, as the OTLP specification gives
//! it: lower camel case keys, trace and span ids as hex (not base64), 64-bit integers as
//! strings or numbers, enums as numbers, unknown fields ignored, `null` as absent.
//!
//! The request is read down to its log records, which are kept as raw JSON and read one by
//! one: a record that is not a log record is refused alone, its text kept for the caller.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;

use super::proto::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, LogRecord, Resource, Value,
};
use super::{Writer, body_error};
use crate::decoded::{Decoded, Lines, RecordError};
use crate::message::{Location, PacketError};

pub(crate) fn decode(body: &[u8], writer: &Writer) -> Result<Decoded, PacketError> {
    let request: Request<'_> = serde_json::from_slice(body)
        .map_err(|e| body_error(format!("not an OTLP/JSON ExportLogsServiceRequest: {e}")))?;
    let mut lines = Lines::with_capacity(body.len());
    let mut rejected = Vec::new();
    let mut index = 0;
    for resource_logs in request.resource_logs.unwrap_or_default() {
        let resource = resource_logs.resource.map(Resource::from);
        let resource = writer.resource(resource.as_ref());
        for scope_logs in resource_logs.scope_logs.unwrap_or_default() {
            let scope = scope_logs.scope.map(InstrumentationScope::from);
            let scope = writer.scope(scope.as_ref());
            for raw in scope_logs.log_records.unwrap_or_default() {
                let result = serde_json::from_str::<JsonLogRecord>(raw.get())
                    .map_err(|e| crate::message::describe(&e))
                    .and_then(LogRecord::try_from)
                    .and_then(|record| writer.record(&resource, &scope, &record, &mut lines));
                if let Err(reason) = result {
                    let text = raw.get().as_bytes();
                    rejected.push(RecordError::copied(Location::Index(index), reason, text));
                }
                index += 1;
            }
        }
    }
    lines.finish(rejected)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    #[serde(borrow)]
    resource_logs: Option<Vec<ResourceLogs<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceLogs<'a> {
    resource: Option<JsonResource>,
    #[serde(borrow)]
    scope_logs: Option<Vec<ScopeLogs<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeLogs<'a> {
    scope: Option<JsonScope>,
    #[serde(borrow)]
    log_records: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct JsonResource {
    attributes: Option<Vec<JsonKeyValue>>,
}

impl From<JsonResource> for Resource {
    fn from(r: JsonResource) -> Self {
        Resource {
            attributes: key_values(r.attributes),
        }
    }
}

#[derive(Deserialize)]
struct JsonScope {
    name: Option<String>,
    version: Option<String>,
    attributes: Option<Vec<JsonKeyValue>>,
}

impl From<JsonScope> for InstrumentationScope {
    fn from(s: JsonScope) -> Self {
        InstrumentationScope {
            name: s.name.unwrap_or_default(),
            version: s.version.unwrap_or_default(),
            attributes: key_values(s.attributes),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonLogRecord {
    time_unix_nano: Option<Int<u64>>,
    observed_time_unix_nano: Option<Int<u64>>,
    severity_number: Option<Int<i32>>,
    severity_text: Option<String>,
    body: Option<JsonAnyValue>,
    attributes: Option<Vec<JsonKeyValue>>,
    flags: Option<Int<u32>>,
    trace_id: Option<String>,
    span_id: Option<String>,
    event_name: Option<String>,
}

impl TryFrom<JsonLogRecord> for LogRecord {
    type Error = String;

    fn try_from(r: JsonLogRecord) -> Result<Self, String> {
        Ok(LogRecord {
            time_unix_nano: r.time_unix_nano.map_or(0, |n| n.0),
            observed_time_unix_nano: r.observed_time_unix_nano.map_or(0, |n| n.0),
            severity_number: r.severity_number.map_or(0, |n| n.0),
            severity_text: r.severity_text.unwrap_or_default(),
            body: r.body.map(AnyValue::from),
            attributes: key_values(r.attributes),
            flags: r.flags.map_or(0, |n| n.0),
            trace_id: hex_id("traceId", r.trace_id, 16)?,
            span_id: hex_id("spanId", r.span_id, 8)?,
            event_name: r.event_name.unwrap_or_default(),
        })
    }
}

/// A trace or span id: hex of `len` bytes, any case, or empty.
fn hex_id(name: &str, hex: Option<String>, len: usize) -> Result<Vec<u8>, String> {
    let hex = hex.unwrap_or_default();
    if hex.is_empty() {
        return Ok(Vec::new());
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes: Option<Vec<u8>> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
            _ => None,
        })
        .collect();
    match bytes {
        Some(bytes) if bytes.len() == len => Ok(bytes),
        _ => Err(format!("`{name}` is not the hex of {len} bytes")),
    }
}

#[derive(Deserialize)]
struct JsonKeyValue {
    key: Option<String>,
    value: Option<JsonAnyValue>,
}

fn key_values(list: Option<Vec<JsonKeyValue>>) -> Vec<KeyValue> {
    list.unwrap_or_default()
        .into_iter()
        .map(|kv| KeyValue {
            key: kv.key.unwrap_or_default(),
            value: kv.value.map(AnyValue::from),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonAnyValue {
    string_value: Option<String>,
    bool_value: Option<bool>,
    int_value: Option<Int<i64>>,
    double_value: Option<Double>,
    array_value: Option<JsonValues<JsonAnyValue>>,
    kvlist_value: Option<JsonValues<JsonKeyValue>>,
    /// Base64, as protobuf's JSON writes bytes: kept as that text.
    bytes_value: Option<String>,
}

#[derive(Deserialize)]
struct JsonValues<T> {
    values: Option<Vec<T>>,
}

impl From<JsonAnyValue> for AnyValue {
    fn from(v: JsonAnyValue) -> Self {
        let value = if let Some(s) = v.string_value {
            Some(Value::String(s))
        } else if let Some(b) = v.bool_value {
            Some(Value::Bool(b))
        } else if let Some(n) = v.int_value {
            Some(Value::Int(n.0))
        } else if let Some(x) = v.double_value {
            Some(Value::Double(x.0))
        } else if let Some(array) = v.array_value {
            let values = array.values.unwrap_or_default();
            Some(Value::Array(ArrayValue {
                values: values.into_iter().map(AnyValue::from).collect(),
            }))
        } else if let Some(list) = v.kvlist_value {
            Some(Value::Kvlist(KeyValueList {
                values: key_values(list.values),
            }))
        } else {
            // Bytes are written as base64 text again: keep the text as sent.
            v.bytes_value.map(Value::String)
        };
        AnyValue { value }
    }
}

/// An integer of the JSON mapping: a number, or a string of one (64-bit integers are
/// strings there, and receivers take both).
struct Int<T>(T);

impl<'de, T> Deserialize<'de> for Int<T>
where
    T: TryFrom<i128> + std::str::FromStr,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor<T>(std::marker::PhantomData<T>);

        impl<T: TryFrom<i128> + std::str::FromStr> Visitor<'_> for IntVisitor<T> {
            type Value = Int<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, or a string of one")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Int<T>, E> {
                T::try_from(i128::from(n))
                    .map(Int)
                    .map_err(|_| E::custom(format!("{n} is out of range")))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Int<T>, E> {
                T::try_from(i128::from(n))
                    .map(Int)
                    .map_err(|_| E::custom(format!("{n} is out of range")))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Int<T>, E> {
                text.parse()
                    .map(Int)
                    .map_err(|_| E::custom("expected a string of an integer"))
            }
        }

        deserializer.deserialize_any(IntVisitor(std::marker::PhantomData))
    }
}

/// A double of the JSON mapping: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"` (or a
/// string of a number).
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DoubleVisitor;

        impl Visitor<'_> for DoubleVisitor {
            type Value = Double;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E>(self, x: f64) -> Result<Double, E> {
                Ok(Double(x))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Double, E> {
                Ok(Double(n as f64))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Double, E> {
                Ok(Double(n as f64))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Double, E> {
                match text {
                    "NaN" => Ok(Double(f64::NAN)),
                    "Infinity" => Ok(Double(f64::INFINITY)),
                    "-Infinity" => Ok(Double(f64::NEG_INFINITY)),
                    _ => text
                        .parse()
                        .map(Double)
                        .map_err(|_| E::custom("expected a number")),
                }
            }
        }

        deserializer.deserialize_any(DoubleVisitor)
    }
}
