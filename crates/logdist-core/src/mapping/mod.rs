//! The mapping of a JSON record as log shippers send it to logdist's message model:
//! `timestamp` (integer), `severity`, `source`, `message` (strings), every other field kept.
//!
//! A record is a JSON object. One that is a message already (the four fields, of their
//! types, as the native decoder checks them) is kept as sent, byte for byte. Otherwise each
//! of the four fields is taken from the first name of its
//! list below that the record has with a value that can be read as it (user aliases, see
//! [`Aliases`], are tried before these lists). A name `a.b` is a key `a.b`, or a key `b`
//! in an object under `a`: dotted keys (`"log.level"`) and nested objects (ECS's
//! `{"log":{"level":..}}`, OpenTelemetry's `service.name`) both work.
//!
//! | field | names, in order | values read | when there is none |
//! | --- | --- | --- | --- |
//! | `timestamp` | `timestamp`, `@timestamp`, `time`, `date`, `ts`, `@t`, `datetime`, `timeUnixNano`, `time_unix_nano`, `observedTimeUnixNano`, `observed_time_unix_nano`, `__REALTIME_TIMESTAMP`, `ISODATE` | an epoch number of any unit, integer or decimal, or a string of one; an RFC 3339 time (`2026-12-06T10:28:30.306Z`, an offset, a space for the `T`; no offset is UTC) | the arrival time |
//! | `severity` | `severity`, `level`, `lvl`, `loglevel`, `log_level`, `log.level`, `levelname`, `severity_text`, `severityText`, `@l`, `PRIORITY`, then `severity_number`, `severityNumber` (OpenTelemetry numbers) | a word or a number (table below) | `INFO` |
//! | `source` | `source`, `service`, `service.name`, `app`, `application`, `appname`, `program`, `PROGRAM`, `SYSLOG_IDENTIFIER`, `logger`, `logger_name`, `tag`, then `host`, `host.name`, `hostname`, `HOST`, `_HOSTNAME` | a non-empty string; a number or boolean as its text | `unknown` |
//! | `message` | `message`, `msg`, `log`, `MESSAGE`, `body`, `event`, `@m` | a string; any other value (an object, an array, a number) as its JSON text | the record is rejected |
//!
//! The upper-case names are those of syslog-ng's macros (`$(format-json ISODATE HOST
//! PROGRAM MESSAGE)`, `PRIORITY`) and of journald's fields (`MESSAGE`, `PRIORITY`,
//! `SYSLOG_IDENTIFIER`, `_HOSTNAME`, `__REALTIME_TIMESTAMP`), so that both map with nothing
//! written on their side.
//!
//! Times are written as an integer in the [`TimestampUnit`] configured (epoch
//! milliseconds by default), rounded down. The unit of an epoch number is guessed from its
//! integer part: below 10^11 seconds (until the year 5138), below 10^14 milliseconds,
//! below 10^17 microseconds, else nanoseconds. Decimal numbers are read exactly from their
//! text, not through a float (`1796552910.306` s is 1796552910306 ms, not ...305).
//!
//! Severities are written as one of `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`,
//! read case-insensitively from:
//!
//! | severity | words | syslog (0-7) | pino, bunyan | OpenTelemetry number |
//! | --- | --- | --- | --- | --- |
//! | `TRACE` | trace, verbose, finest, finer, t | | 10 | 1-4 |
//! | `DEBUG` | debug, dbg, fine, config, d | 7 | 20 | 5-8 |
//! | `INFO` | info, information, informational, notice, i | 5, 6 | 30 | 9-12 |
//! | `WARN` | warn, warning, w | 4 | 40 | 13-16 |
//! | `ERROR` | error, err, severe, e | 3 | 50 | 17-20 |
//! | `FATAL` | fatal, critical, crit, alert, emerg, emergency, panic, dpanic, f | 0, 1, 2 | 60 | 21-24 |
//!
//! OpenTelemetry's numbered words (`INFO2`, `WARN4`) are their level; a number written as
//! a string (journald's `"PRIORITY":"6"`) is a number. A word or number that is not in
//! the table gives `INFO`. Whenever the value sent is not exactly the word written (`warning`,
//! `info`, `30`, `chatty`), it is kept as `severity_original`.
//!
//! Every field the mapping did not take is kept, its value as sent, byte for byte; a
//! nested object something was taken from keeps its other fields, and goes if nothing is
//! left. A field named `timestamp`, `severity`, `source` or `message` that was not the one
//! taken for that name (an alias came first, or its value could not be read, such as
//! `"timestamp":"yesterday"`) is kept as `timestamp_original` (and so on). The four come
//! first in the line written, then `severity_original`, then the rest in the record's
//! order.
//!
//! A record is rejected, with the reason, if it is not a JSON object, has no message, or
//! is not a valid message once mapped (a value nested deeper than 128, a number out of
//! range: what the native decoder refuses).

mod record;
mod severity;
mod time;

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde_json::value::RawValue;

pub(crate) use self::record::write_string;
use self::record::{Object, text};
pub use self::severity::Severity;
pub use self::time::TimestampUnit;
pub(crate) use self::time::parse_rfc3339;
pub(crate) use self::time::{civil_from_days, format_rfc3339};

/// Where the four fields come from, for a record that does not have them already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    /// The unit of the `timestamp` written.
    pub unit: TimestampUnit,
    /// The user's own names, tried before the usual ones.
    pub aliases: Aliases,
}

const TIME_NAMES: &[&str] = &[
    "timestamp",
    "@timestamp",
    "time",
    "date",
    "ts",
    "@t",
    "datetime",
    "timeUnixNano",
    "time_unix_nano",
    "observedTimeUnixNano",
    "observed_time_unix_nano",
    "__REALTIME_TIMESTAMP",
    "ISODATE",
];

const SEVERITY_NAMES: &[&str] = &[
    "severity",
    "level",
    "lvl",
    "loglevel",
    "log_level",
    "log.level",
    "levelname",
    "severity_text",
    "severityText",
    "@l",
    "PRIORITY",
];

/// Severity names whose numbers are OpenTelemetry's (1-24), tried after the others.
const OTLP_SEVERITY_NAMES: &[&str] = &["severity_number", "severityNumber"];

const SOURCE_NAMES: &[&str] = &[
    "source",
    "service",
    "service.name",
    "app",
    "application",
    "appname",
    "program",
    "PROGRAM",
    "SYSLOG_IDENTIFIER",
    "logger",
    "logger_name",
    "tag",
    "host",
    "host.name",
    "hostname",
    "HOST",
    "_HOSTNAME",
];

const MESSAGE_NAMES: &[&str] = &["message", "msg", "log", "MESSAGE", "body", "event", "@m"];

/// The severity of a record without one.
pub const DEFAULT_SEVERITY: Severity = Severity::Info;

/// The source of a record without one.
pub const DEFAULT_SOURCE: &str = "unknown";

/// What each of the four fields was read from, found before any is written.
struct Found<'a> {
    timestamp: Option<i64>,
    /// The severity, and the value sent when it was not exactly that word.
    severity: Option<(Severity, Option<&'a RawValue>)>,
    source: Option<Source<'a>>,
    message: Option<&'a RawValue>,
}

enum Source<'a> {
    /// A JSON string, written as sent.
    String(&'a RawValue),
    /// A number or boolean, written as a string of its text.
    Text(&'a RawValue),
}

impl Mapping {
    /// Maps one record, a JSON object as text, to a message appended to `out` as one
    /// NDJSON line (`\n` included). `now` is the arrival time, used when the record has no
    /// time of its own. On an error nothing is appended, and the reason says what is wrong.
    pub fn map(&self, record: &str, now: SystemTime, out: &mut Vec<u8>) -> Result<(), String> {
        let first = record.bytes().find(|b| !b.is_ascii_whitespace());
        if first != Some(b'{') {
            return Err("expected a JSON object".to_owned());
        }
        let mut object = Object::parse(record).map_err(|e| crate::message::describe(&e))?;
        if is_message(&object) && crate::message::validate(record).is_ok() {
            write_as_sent(record, out);
            return Ok(());
        }
        let found = self.find(&mut object);
        let Some(message) = found.message else {
            return Err(format!(
                "no message: none of {} is a field of the record",
                MESSAGE_NAMES.join(", ")
            ));
        };
        let timestamp = match found.timestamp {
            Some(timestamp) => timestamp,
            None => self
                .unit
                .from_system_time(now)
                .ok_or("the arrival time is out of range for the timestamp unit")?,
        };

        let start = out.len();
        out.extend_from_slice(b"{\"timestamp\":");
        out.extend_from_slice(timestamp.to_string().as_bytes());
        out.extend_from_slice(b",\"severity\":\"");
        let (severity, original) = found.severity.unwrap_or((DEFAULT_SEVERITY, None));
        out.extend_from_slice(severity.as_str().as_bytes());
        out.extend_from_slice(b"\",\"source\":");
        match found.source {
            Some(Source::String(raw)) => out.extend_from_slice(raw.get().as_bytes()),
            Some(Source::Text(raw)) => write_string(out, raw.get()),
            None => write_string(out, DEFAULT_SOURCE),
        }
        out.extend_from_slice(b",\"message\":");
        if message.get().starts_with('"') {
            out.extend_from_slice(message.get().as_bytes());
        } else {
            write_string(out, message.get());
        }
        if let Some(original) = original {
            out.extend_from_slice(b",\"severity_original\":");
            out.extend_from_slice(original.get().as_bytes());
        }
        object.write_fields(out, |key| match key {
            "timestamp" => Some("timestamp_original"),
            "severity" => Some("severity_original"),
            "source" => Some("source_original"),
            "message" => Some("message_original"),
            _ => None,
        });
        out.push(b'}');

        // Values kept as sent may be pretty-printed: a raw line break in valid JSON is
        // whitespace between tokens (in strings it is escaped), so a space keeps the
        // message the same while making it one line.
        for byte in &mut out[start..] {
            if *byte == b'\n' || *byte == b'\r' {
                *byte = b' ';
            }
        }
        // The line is JSON built from JSON, but what the native decoder refuses in values
        // kept as sent (nesting deeper than 128, numbers out of range) is refused here too.
        let line = std::str::from_utf8(&out[start..]).expect("built from UTF-8 text");
        if let Err(reason) = crate::message::validate(line) {
            out.truncate(start);
            return Err(reason);
        }
        out.push(b'\n');
        Ok(())
    }

    /// Takes the four fields out of the record, by the aliases, then the usual names.
    fn find<'a>(&self, object: &mut Object<'a>) -> Found<'a> {
        let aliases = &self.aliases;
        let unit = self.unit;
        let mut read_time = |raw: &'a RawValue| {
            time::parse_json(raw.get()).and_then(|nanos| unit.from_nanos(nanos))
        };
        let timestamp = first(object, &aliases.timestamp, TIME_NAMES, &mut read_time);

        let mut read_level = |raw: &'a RawValue| read_severity(raw, Severity::from_number);
        let severity =
            first(object, &aliases.severity, SEVERITY_NAMES, &mut read_level).or_else(|| {
                let mut read_otlp =
                    |raw: &'a RawValue| read_severity(raw, Severity::from_otlp_number);
                first(object, &[], OTLP_SEVERITY_NAMES, &mut read_otlp)
            });

        let mut read_source = |raw: &'a RawValue| match raw.get().as_bytes()[0] {
            b'"' if raw.get() != "\"\"" => Some(Source::String(raw)),
            b'-' | b'0'..=b'9' | b't' | b'f' => Some(Source::Text(raw)),
            _ => None,
        };
        let source = first(object, &aliases.source, SOURCE_NAMES, &mut read_source);

        let mut read_message = |raw: &'a RawValue| (raw.get() != "null").then_some(raw);
        let message = first(object, &aliases.message, MESSAGE_NAMES, &mut read_message);
        Found {
            timestamp,
            severity,
            source,
            message,
        }
    }
}

/// Whether the record has the four fields with values of their types, as far as their
/// text tells (the native validator has the last word).
fn is_message(object: &Object<'_>) -> bool {
    let string = |key, empty_too| {
        object.get(key).is_some_and(|raw| {
            let raw = raw.get();
            raw.starts_with('"') && (empty_too || raw != "\"\"")
        })
    };
    let timestamp = object.get("timestamp").is_some_and(|raw| {
        let digits = raw.get().strip_prefix('-').unwrap_or(raw.get());
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    timestamp && string("severity", false) && string("source", false) && string("message", true)
}

/// A message written as sent, as one line: a raw line break in valid JSON is whitespace
/// between tokens (in strings it is escaped), so a space keeps the message the same.
fn write_as_sent(record: &str, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(record.trim_ascii().as_bytes());
    for byte in &mut out[start..] {
        if *byte == b'\n' || *byte == b'\r' {
            *byte = b' ';
        }
    }
    out.push(b'\n');
}

/// The first value that `read` makes something of, at the aliases, then at the usual names.
fn first<'a, T>(
    object: &mut Object<'a>,
    aliases: &[String],
    names: &[&str],
    read: &mut impl FnMut(&'a RawValue) -> Option<T>,
) -> Option<T> {
    let mut paths = aliases
        .iter()
        .map(String::as_str)
        .chain(names.iter().copied());
    paths.find_map(|path| object.take(path, read))
}

/// A severity word or number, normalized; the value sent is returned when it is not
/// exactly the word. `None` for a value that is neither a string nor a number.
fn read_severity(
    raw: &RawValue,
    number: fn(i64) -> Option<Severity>,
) -> Option<(Severity, Option<&RawValue>)> {
    let severity = match text(raw) {
        Some(word) => {
            let severity = if word.trim().bytes().all(|b| b.is_ascii_digit()) {
                word.trim().parse().ok().and_then(number)
            } else {
                Severity::from_text(&word)
            };
            let severity = severity.unwrap_or(DEFAULT_SEVERITY);
            if word == severity.as_str() {
                return Some((severity, None));
            }
            severity
        }
        None => {
            let first = raw.get().as_bytes()[0];
            if first != b'-' && !first.is_ascii_digit() {
                return None;
            }
            raw.get()
                .parse()
                .ok()
                .and_then(number)
                .unwrap_or(DEFAULT_SEVERITY)
        }
    };
    Some((severity, Some(raw)))
}

// === Aliases ===

/// The user's own names for the four fields (`--map message=payload,source=kubernetes.pod_name`),
/// tried in the order given, before the usual names.
///
/// Written as `field=name` pairs, separated by commas or line breaks (so a small mapping
/// file reads the same way, with `#` starting a comment line). A field is `timestamp` (or
/// `time`), `severity` (or `level`), `source` or `message`; it may be given more than once.
/// A name is a key, or a dotted path into nested objects (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    timestamp: Vec<String>,
    severity: Vec<String>,
    source: Vec<String>,
    message: Vec<String>,
}

/// Why a list of aliases was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alias `{alias}`: {reason}")]
pub struct AliasError {
    alias: String,
    reason: &'static str,
}

impl FromStr for Aliases {
    type Err = AliasError;

    fn from_str(text: &str) -> Result<Self, AliasError> {
        let mut aliases = Aliases::default();
        let items = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty());
        for item in items {
            let refuse = |reason| AliasError {
                alias: item.to_owned(),
                reason,
            };
            let (field, name) = item
                .split_once('=')
                .ok_or_else(|| refuse("expected field=name"))?;
            let (field, name) = (field.trim(), name.trim());
            let list = match field {
                "timestamp" | "time" => &mut aliases.timestamp,
                "severity" | "level" => &mut aliases.severity,
                "source" => &mut aliases.source,
                "message" => &mut aliases.message,
                _ => {
                    return Err(refuse(
                        "the field is one of timestamp, severity, source, message",
                    ));
                }
            };
            if name.is_empty() || name.split('.').any(str::is_empty) {
                return Err(refuse(
                    "the name is a key or a dotted path, without empty parts",
                ));
            }
            list.push(name.to_owned());
        }
        Ok(aliases)
    }
}

impl fmt::Display for Aliases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = [
            ("timestamp", &self.timestamp),
            ("severity", &self.severity),
            ("source", &self.source),
            ("message", &self.message),
        ];
        let mut pairs = fields
            .iter()
            .flat_map(|(field, names)| names.iter().map(move |name| (field, name)));
        if let Some((field, name)) = pairs.next() {
            write!(f, "{field}={name}")?;
        }
        pairs.try_for_each(|(field, name)| write!(f, ",{field}={name}"))
    }
}

#[cfg(test)]
mod tests;
