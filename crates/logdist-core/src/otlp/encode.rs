//! Messages back to OTLP logs: NDJSON messages in, one `ExportLogsServiceRequest` out, for
//! the `otlp` delivery protocol. It maps back what the decoder ([`super::decode_logs`])
//! maps, so that a message the decoder wrote becomes a record the decoder reads back as the
//! same message:
//!
//! | message field | becomes |
//! | --- | --- |
//! | `timestamp` (an integer in the configured unit) | `timeUnixNano` |
//! | `severity` | `severityNumber` (the first step of its word: `INFO` is 9; 0 for a word the mapping does not know), and `severityText` unless `severity_original` is there |
//! | `severity_original` | `severityText` |
//! | `source` | the resource attribute `service.name` (set first, or replacing the resource's own), but for `unknown`, logdist's word for none |
//! | `message` | `body`: a string (none when empty); any other JSON value as the `AnyValue` below |
//! | `observed_timestamp` | `observedTimeUnixNano` |
//! | `event_name` | `eventName` |
//! | `trace_id`, `span_id` | the ids, from hex of 16 and 8 bytes |
//! | `flags` | `flags` |
//! | `attributes` (an object) | the record's attributes, in order |
//! | `resource` (an object) | the resource's attributes, in order |
//! | `scope` (`{"name", "version", "attributes"}`) | the instrumentation scope |
//! | any other field, or one of the above of another type | a record attribute under its name |
//!
//! JSON values become `AnyValue`s: strings, booleans, integers (a double beyond `int64`),
//! doubles, arrays, objects as key-value lists (keys in order), `null` as an empty value.
//! A time that does not fit `timeUnixNano` (before 1970, after 2554) is left 0 and kept as
//! the attribute `timestamp`. A line that is not a JSON object becomes a record whose body
//! is its text.
//!
//! Records are grouped by resource, then by scope, in the order each first appears, so
//! that a request decoded and encoded again has its records in the same order.

use std::collections::HashMap;
use std::fmt;

use prost::Message as _;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::proto::{
    AnyValue, ArrayValue, ExportLogsServiceRequest, InstrumentationScope, KeyValue, KeyValueList,
    LogRecord, Resource, ResourceLogs, ScopeLogs, Value,
};
use crate::mapping::{DEFAULT_SOURCE, Severity, TimestampUnit};

/// The export request of `messages` (each one NDJSON line, without its newline), with
/// times in `unit`.
pub fn encode_logs<M: AsRef<[u8]>>(
    messages: impl IntoIterator<Item = M>,
    unit: TimestampUnit,
) -> ExportLogsServiceRequest {
    let mut request = ExportLogsServiceRequest::default();
    // Where each resource's group is, and each scope's within it, by their encoding.
    let mut resources: HashMap<Vec<u8>, (usize, Groups)> = HashMap::new();
    // The group of the last record: the next is most often of the same, and found
    // without encoding its resource and scope.
    let mut last: Option<(Resource, Option<InstrumentationScope>, usize, usize)> = None;
    for message in messages {
        let Parts {
            resource,
            scope,
            record,
        } = parts_of(message.as_ref(), unit);
        if let Some((last_resource, last_scope, r, s)) = &last
            && *last_resource == resource
            && *last_scope == scope
        {
            request.resource_logs[*r].scope_logs[*s]
                .log_records
                .push(record);
            continue;
        }
        let resource_key = resource.encode_to_vec();
        let (r, scopes) = resources.entry(resource_key).or_insert_with(|| {
            request.resource_logs.push(ResourceLogs {
                resource: (!resource.attributes.is_empty()).then(|| resource.clone()),
                scope_logs: Vec::new(),
            });
            (request.resource_logs.len() - 1, HashMap::new())
        });
        let scope_logs = &mut request.resource_logs[*r].scope_logs;
        let scope_key = scope
            .as_ref()
            .map(|s| s.encode_to_vec())
            .unwrap_or_default();
        let s = *scopes.entry(scope_key).or_insert_with(|| {
            scope_logs.push(ScopeLogs {
                scope: scope.clone(),
                log_records: Vec::new(),
            });
            scope_logs.len() - 1
        });
        scope_logs[s].log_records.push(record);
        last = Some((resource, scope, *r, s));
    }
    request
}

/// Where each group is, by the encoding of what its records share.
type Groups = HashMap<Vec<u8>, usize>;

/// One message as OTLP: its record, and the resource and scope it belongs to.
struct Parts {
    resource: Resource,
    scope: Option<InstrumentationScope>,
    record: LogRecord,
}

fn parts_of(line: &[u8], unit: TimestampUnit) -> Parts {
    let mut record = LogRecord::default();
    let mut resource = Resource::default();
    let fields = match serde_json::from_slice::<Json>(line) {
        Ok(Json::Object(fields)) => fields,
        _ => {
            record.body = Some(string(String::from_utf8_lossy(line).into_owned()));
            return Parts {
                resource,
                scope: None,
                record,
            };
        }
    };
    let mut scope = None;
    let mut severity = None;
    let mut severity_original = None;
    let mut source = None;
    let mut extra = Vec::new();
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("timestamp", Json::Int(t)) if nanos(unit, t).is_some() => {
                record.time_unix_nano = nanos(unit, t).unwrap_or_default();
            }
            ("observed_timestamp", Json::Int(t)) if nanos(unit, t).is_some() => {
                record.observed_time_unix_nano = nanos(unit, t).unwrap_or_default();
            }
            ("severity", Json::String(word)) => severity = Some(word),
            ("severity_original", Json::String(text)) => severity_original = Some(text),
            ("source", Json::String(name)) => source = Some(name),
            ("message", Json::String(text)) => {
                record.body = (!text.is_empty()).then(|| string(text));
            }
            ("message", value) => record.body = Some(any(value)),
            ("event_name", Json::String(name)) => record.event_name = name,
            ("trace_id", Json::String(hex)) if from_hex(&hex, 16).is_some() => {
                record.trace_id = from_hex(&hex, 16).unwrap_or_default();
            }
            ("span_id", Json::String(hex)) if from_hex(&hex, 8).is_some() => {
                record.span_id = from_hex(&hex, 8).unwrap_or_default();
            }
            ("flags", Json::Int(n)) if u32::try_from(n).is_ok() => {
                record.flags = u32::try_from(n).unwrap_or_default();
            }
            ("attributes", Json::Object(list)) => record.attributes = key_values(list),
            ("resource", Json::Object(list)) => resource.attributes = key_values(list),
            ("scope", Json::Object(list)) if is_scope(&list) => scope = Some(scope_of(list)),
            (_, value) => extra.push(key_value(key, value)),
        }
    }
    record.attributes.append(&mut extra);
    record.severity_number = severity
        .as_deref()
        .and_then(Severity::from_text)
        .map_or(0, Severity::otlp_number);
    record.severity_text = severity_original.or(severity).unwrap_or_default();
    if let Some(source) = source {
        set_service_name(&mut resource.attributes, source);
    }
    Parts {
        resource,
        scope,
        record,
    }
}

/// Makes `source` the resource's `service.name`, unless it is the word for none.
fn set_service_name(attributes: &mut Vec<KeyValue>, source: String) {
    if source == DEFAULT_SOURCE {
        return;
    }
    let is_name = |kv: &KeyValue| kv.key == "service.name";
    let names_it = |kv: &KeyValue| {
        is_name(kv)
            && matches!(&kv.value, Some(AnyValue { value: Some(Value::String(name)) }) if *name == source)
    };
    if attributes.iter().any(names_it) {
        return;
    }
    let name = Some(string(source));
    match attributes.iter_mut().find(|kv| is_name(kv)) {
        Some(kv) => kv.value = name,
        None => attributes.insert(
            0,
            KeyValue {
                key: "service.name".to_owned(),
                value: name,
            },
        ),
    }
}

/// A time in `unit` as `fixed64` nanoseconds; `None` before 1970 or past 2554.
fn nanos(unit: TimestampUnit, time: i64) -> Option<u64> {
    u64::try_from(unit.to_nanos(time)).ok()
}

/// Whether a `scope` object is one the decoder writes: only `name`, `version` (strings)
/// and `attributes` (an object).
fn is_scope(fields: &[(String, Json)]) -> bool {
    fields.iter().all(|(key, value)| {
        matches!(
            (key.as_str(), value),
            ("name" | "version", Json::String(_)) | ("attributes", Json::Object(_))
        )
    })
}

fn scope_of(fields: Vec<(String, Json)>) -> InstrumentationScope {
    let mut scope = InstrumentationScope::default();
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("name", Json::String(name)) => scope.name = name,
            ("version", Json::String(version)) => scope.version = version,
            ("attributes", Json::Object(list)) => scope.attributes = key_values(list),
            _ => {}
        }
    }
    scope
}

fn from_hex(hex: &str, len: usize) -> Option<Vec<u8>> {
    if hex.len() != 2 * len {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn key_values(list: Vec<(String, Json)>) -> Vec<KeyValue> {
    list.into_iter().map(|(k, v)| key_value(k, v)).collect()
}

fn key_value(key: String, value: Json) -> KeyValue {
    KeyValue {
        key,
        value: Some(any(value)),
    }
}

fn string(text: String) -> AnyValue {
    AnyValue {
        value: Some(Value::String(text)),
    }
}

/// A JSON value as an `AnyValue` (see the module documentation).
fn any(value: Json) -> AnyValue {
    let value = match value {
        Json::Null => None,
        Json::Bool(b) => Some(Value::Bool(b)),
        Json::Int(n) => Some(Value::Int(n)),
        Json::BigInt(n) => Some(Value::Double(n as f64)),
        Json::Double(x) => Some(Value::Double(x)),
        Json::String(text) => Some(Value::String(text)),
        Json::Array(items) => Some(Value::Array(ArrayValue {
            values: items.into_iter().map(any).collect(),
        })),
        Json::Object(list) => Some(Value::Kvlist(KeyValueList {
            values: key_values(list),
        })),
    };
    AnyValue { value }
}

/// A JSON value that keeps an object's keys in order, duplicates included (as the decoder
/// writes attributes: as sent).
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer past `i64::MAX`.
    BigInt(u64),
    Double(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
        Ok(Json::Int(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
        Ok(i64::try_from(n).map_or(Json::BigInt(n), Json::Int))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Json, E> {
        Ok(Json::Double(x))
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Json, E> {
        Ok(Json::String(text.to_owned()))
    }
    fn visit_string<E>(self, text: String) -> Result<Json, E> {
        Ok(Json::String(text))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut fields = Vec::new();
        while let Some(field) = map.next_entry()? {
            fields.push(field);
        }
        Ok(Json::Object(fields))
    }
}
