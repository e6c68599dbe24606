//! Writes a packet of generated [`Record`]s as the body of each [`Protocol`]. Bodies are
//! written once, when the pool is built (see [`super::pool`]), so none of this runs while
//! sending.
//!
//! | protocol | body |
//! | --- | --- |
//! | `ndjson` | logdist's messages, one per line |
//! | `json` | a JSON array of Fluent Bit `http`-output records: `date` (float epoch seconds), `log`, `level`, `service`, `host` |
//! | `otlp`, `otlp-json` | an `ExportLogsServiceRequest`: a `ResourceLogs` per source (`service.name`), one scope (`logdist-loadgen`), a `LogRecord` per record with `timeUnixNano`, `severityNumber`, `severityText`, a string `body` and a `host.name` attribute |
//! | `bulk` | `{"index":{"_index":"logdist-loadgen"}}` then an ECS document per record: `@timestamp` (RFC 3339), `log.level`, `service.name`, `host.name`, `message` (nested objects) |
//! | `loki` | a `PushRequest`, snappy-compressed: a stream per source and level (`{service_name="api", level="info"}`), an entry per record |
//! | `syslog-tcp` | RFC 5424 messages, octet-counted: `N <14>1 2026-12-06T10:00:00.123Z host api - - - text` (facility `user`, the source as APP-NAME) |
//! | `syslog-udp` | RFC 3164 lines, one datagram each: `<14>Dec  6 10:00:00 host api: text` |

use std::time::{Duration, UNIX_EPOCH};

use logdist_core::loki::proto as loki;
use logdist_core::otlp::proto as otlp;
use prost::Message as _;
use serde::Serialize;
use serde_json::json;

use super::messages::Record;
use super::protocol::Protocol;

/// The action line before each bulk document. Elasticsearch refuses an action without an
/// index (`index is missing`) on `/_bulk`, so it names one, as shippers' outputs do.
const BULK_ACTION: &[u8] = b"{\"index\":{\"_index\":\"logdist-loadgen\"}}\n";

/// The OTLP instrumentation scope of every generated record.
const SCOPE: &str = "logdist-loadgen";

/// The body of one request of `protocol` carrying `records`.
pub(crate) fn body(protocol: Protocol, records: &[Record]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(records.len() * 200 + 64);
    match protocol {
        Protocol::Ndjson => {
            for record in records {
                record.write_message(&mut out);
                out.push(b'\n');
            }
        }
        Protocol::Json => fluent_bit(records, &mut out)?,
        Protocol::Otlp => export_request(records).encode(&mut out)?,
        Protocol::OtlpJson => serde_json::to_writer(&mut out, &otlp_json(records))?,
        Protocol::Bulk => bulk(records, &mut out)?,
        Protocol::Forward => packed_forward(records, Some(FORWARD_CHUNK), &mut out),
        Protocol::ForwardNoack => packed_forward(records, None, &mut out),
        Protocol::Loki => {
            out = logdist_core::loki::push_body(&push_request(records))
                .map_err(std::io::Error::other)?;
        }
        Protocol::SyslogTcp => {
            for record in records {
                let message = rfc5424(record);
                out.extend_from_slice(format!("{} {message}", message.len()).as_bytes());
            }
        }
        Protocol::SyslogUdp => {
            for record in records {
                out.extend_from_slice(rfc3164(record).as_bytes());
                out.push(b'\n');
            }
        }
    }
    Ok(out)
}

/// The `chunk` of every forward frame: the server answers `{"ack": chunk}`, and an agent
/// has one frame in flight on its connection at a time, so one id tells acks apart.
pub(crate) const FORWARD_CHUNK: &str = "logdist-loadgen";

/// A Fluent forward PackedForward frame, `["loadgen", entries, {"chunk": ..}]`, each entry
/// `[EventTime, {"log", "level", "service", "host"}]` as Fluent Bit's tail input shapes
/// records (the distributor maps them).
fn packed_forward(records: &[Record], chunk: Option<&str>, out: &mut Vec<u8>) {
    use rmp::encode as mp;
    let mut entries = Vec::with_capacity(records.len() * 160);
    // Writing to a Vec cannot fail.
    for record in records {
        let _ = mp::write_array_len(&mut entries, 2);
        let _ = mp::write_ext_meta(&mut entries, 8, 0);
        let seconds = (record.timestamp_ms / 1000) as u32;
        let nanos = (record.timestamp_ms % 1000) as u32 * 1_000_000;
        entries.extend_from_slice(&seconds.to_be_bytes());
        entries.extend_from_slice(&nanos.to_be_bytes());
        let _ = mp::write_map_len(&mut entries, 4);
        for (key, value) in [
            ("log", record.message.as_str()),
            ("level", &level(record)),
            ("service", record.source),
            ("host", &record.host),
        ] {
            let _ = mp::write_str(&mut entries, key);
            let _ = mp::write_str(&mut entries, value);
        }
    }
    let _ = mp::write_array_len(out, if chunk.is_some() { 3 } else { 2 });
    let _ = mp::write_str(out, "loadgen");
    let _ = mp::write_bin(out, &entries);
    if let Some(chunk) = chunk {
        let _ = mp::write_map_len(out, 1);
        let _ = mp::write_str(out, "chunk");
        let _ = mp::write_str(out, chunk);
    }
}

/// The severity as loggers write it in lower case (`info`, `warn`...).
fn level(record: &Record) -> String {
    record.severity.to_ascii_lowercase()
}

/// OTLP's `SeverityNumber` of a generated severity (the first of its range).
fn severity_number(severity: &str) -> i32 {
    match severity {
        "TRACE" => 1,
        "DEBUG" => 5,
        "WARN" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => 9,
    }
}

/// A record as Fluent Bit's `http` output writes it with `format json`.
#[derive(Serialize)]
struct FluentBit<'a> {
    date: f64,
    log: &'a str,
    level: String,
    service: &'a str,
    host: &'a str,
}

fn fluent_bit(records: &[Record], out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let shaped = FluentBit {
            date: record.timestamp_ms as f64 / 1000.0,
            log: &record.message,
            level: level(record),
            service: record.source,
            host: &record.host,
        };
        serde_json::to_writer(&mut *out, &shaped)?;
    }
    out.push(b']');
    Ok(())
}

/// The records grouped by `key`, groups in the order of their first record.
fn grouped<K: PartialEq>(records: &[Record], key: impl Fn(&Record) -> K) -> Vec<(K, Vec<&Record>)> {
    let mut groups: Vec<(K, Vec<&Record>)> = Vec::new();
    for record in records {
        let k = key(record);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, members)) => members.push(record),
            None => groups.push((k, vec![record])),
        }
    }
    groups
}

fn string_value(text: &str) -> Option<otlp::AnyValue> {
    Some(otlp::AnyValue {
        value: Some(otlp::Value::String(text.to_owned())),
    })
}

fn key_value(key: &str, value: &str) -> otlp::KeyValue {
    otlp::KeyValue {
        key: key.to_owned(),
        value: string_value(value),
    }
}

fn export_request(records: &[Record]) -> otlp::ExportLogsServiceRequest {
    let resource_logs = grouped(records, |r| r.source)
        .into_iter()
        .map(|(source, members)| otlp::ResourceLogs {
            resource: Some(otlp::Resource {
                attributes: vec![key_value("service.name", source)],
            }),
            scope_logs: vec![otlp::ScopeLogs {
                scope: Some(otlp::InstrumentationScope {
                    name: SCOPE.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    attributes: Vec::new(),
                }),
                log_records: members
                    .into_iter()
                    .map(|r| otlp::LogRecord {
                        time_unix_nano: r.timestamp_ms.saturating_mul(1_000_000),
                        observed_time_unix_nano: 0,
                        severity_number: severity_number(r.severity),
                        severity_text: r.severity.to_owned(),
                        body: string_value(&r.message),
                        attributes: vec![key_value("host.name", &r.host)],
                        flags: 0,
                        trace_id: Vec::new(),
                        span_id: Vec::new(),
                        event_name: String::new(),
                    })
                    .collect(),
            }],
        })
        .collect();
    otlp::ExportLogsServiceRequest { resource_logs }
}

/// The same export as [`export_request`] in the OTLP/JSON mapping (64-bit integers as
/// strings, camelCase names).
fn otlp_json(records: &[Record]) -> serde_json::Value {
    let resource_logs: Vec<_> = grouped(records, |r| r.source)
        .into_iter()
        .map(|(source, members)| {
            let log_records: Vec<_> = members
                .into_iter()
                .map(|r| {
                    json!({
                        "timeUnixNano": r.timestamp_ms.saturating_mul(1_000_000).to_string(),
                        "severityNumber": severity_number(r.severity),
                        "severityText": r.severity,
                        "body": {"stringValue": r.message},
                        "attributes": [{"key": "host.name", "value": {"stringValue": r.host}}],
                    })
                })
                .collect();
            json!({
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": source}}]},
                "scopeLogs": [{
                    "scope": {"name": SCOPE, "version": env!("CARGO_PKG_VERSION")},
                    "logRecords": log_records,
                }],
            })
        })
        .collect();
    json!({ "resourceLogs": resource_logs })
}

fn bulk(records: &[Record], out: &mut Vec<u8>) -> serde_json::Result<()> {
    for record in records {
        out.extend_from_slice(BULK_ACTION);
        let at = UNIX_EPOCH + Duration::from_millis(record.timestamp_ms);
        let document = json!({
            "@timestamp": humantime::format_rfc3339_millis(at).to_string(),
            "log": {"level": level(record)},
            "service": {"name": record.source},
            "host": {"name": record.host},
            "message": record.message,
        });
        serde_json::to_writer(&mut *out, &document)?;
        out.push(b'\n');
    }
    Ok(())
}

fn push_request(records: &[Record]) -> loki::PushRequest {
    let streams = grouped(records, |r| (r.source, r.severity))
        .into_iter()
        .map(|((source, severity), members)| loki::StreamAdapter {
            labels: format!(
                "{{service_name=\"{source}\", level=\"{}\"}}",
                severity.to_ascii_lowercase()
            ),
            entries: members
                .into_iter()
                .map(|r| loki::EntryAdapter {
                    timestamp: Some(loki::Timestamp {
                        seconds: i64::try_from(r.timestamp_ms / 1000).unwrap_or(i64::MAX),
                        // Below 1e9, so it fits.
                        nanos: ((r.timestamp_ms % 1000) * 1_000_000) as i32,
                    }),
                    line: r.message.clone(),
                    structured_metadata: Vec::new(),
                })
                .collect(),
        })
        .collect();
    loki::PushRequest { streams }
}

/// Syslog's PRI of a record: facility `user` (1), the severity as logdist's words map back
/// to syslog's (TRACE is debug).
fn syslog_pri(record: &Record) -> u8 {
    let severity = match record.severity {
        "FATAL" => 2,
        "ERROR" => 3,
        "WARN" => 4,
        "INFO" => 6,
        _ => 7,
    };
    8 + severity
}

/// The record's time as RFC 3339 with milliseconds.
fn rfc3339(record: &Record) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(record.timestamp_ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// One RFC 5424 message (without its octet count).
fn rfc5424(record: &Record) -> String {
    format!(
        "<{}>1 {} {} {} - - - {}",
        syslog_pri(record),
        rfc3339(record),
        record.host,
        record.source,
        record.message.replace('\n', " "),
    )
}

/// One RFC 3164 line (without its line feed): `Mmm dd hh:mm:ss`, UTC.
fn rfc3164(record: &Record) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`
    let stamp = rfc3339(record);
    let month = stamp[5..7].parse::<usize>().unwrap_or(1);
    let day = stamp[8..10].parse::<u8>().unwrap_or(1);
    format!(
        "<{}>{} {day:>2} {} {} {}: {}",
        syslog_pri(record),
        MONTHS[month.clamp(1, 12) - 1],
        &stamp[11..19],
        record.host,
        record.source,
        record.message.replace('\n', " "),
    )
}
