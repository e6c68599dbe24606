//! Messages to an Elasticsearch `_bulk` body, for the `elasticsearch` delivery protocol:
//! each message becomes a `create` action line and its document, in order, so that item
//! `i` of Elasticsearch's answer is message `i`.
//!
//! ```text
//! {"create":{"_index":"logdist-2026.12.06"}}
//! {"@timestamp":"2026-12-06T10:28:30.306Z","timestamp":1796553000306,"severity":"INFO",...}
//! ```
//!
//! - `create`, not `index`: it is what a data stream takes, and an index takes it too.
//!   No `_id` is given, so Elasticsearch makes one and never answers a conflict for it.
//! - The document is the message as it was sent. When it has no `@timestamp` field, one
//!   is put first, in RFC 3339 UTC with the fraction of `--timestamp-unit`, from its
//!   integer `timestamp` read in that unit (the time it is sent for a message without
//!   one): Kibana and data streams look for `@timestamp`. A line that is not a JSON object
//!   (only `--validate framing` lets one through) goes as it is, and Elasticsearch
//!   refuses that item.
//! - The index is the [`IndexTemplate`] at the message's own time in UTC (the time it is
//!   sent for a message without one), as Logstash's and Fluent Bit's
//!   `logstash-%Y.%m.%d` are.
//!
//! Pure: the caller gives the time it is sent.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::mapping::{TimestampUnit, civil_from_days, format_rfc3339};

/// The default [`IndexTemplate`] (`--elasticsearch-index`).
pub const DEFAULT_INDEX: &str = "logdist-%Y.%m.%d";

/// An index name with date codes, checked once (at startup) so that every name it gives
/// is one Elasticsearch takes: `%Y` (4-digit year), `%m` (month), `%d` (day of the
/// month), `%H` (hour, 00-23), all zero-padded and in UTC, and `%%` for a `%`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTemplate {
    /// As it was given (what it displays as).
    text: String,
    /// Its literal text and date codes, in order.
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Year,
    Month,
    Day,
    Hour,
}

/// Characters Elasticsearch does not take in an index name (besides upper case letters,
/// control characters, and a `-`, `_` or `+` first).
const FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

/// Elasticsearch's longest index name, in bytes.
const MAX_INDEX_BYTES: usize = 255;

impl FromStr for IndexTemplate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: String| Err(format!("index template `{text}`: {why}"));
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let code = match chars.next() {
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some('Y') => Part::Year,
                Some('m') => Part::Month,
                Some('d') => Part::Day,
                Some('H') => Part::Hour,
                Some(other) => {
                    return bad(format!(
                        "`%{other}` is not a date code it takes; use %Y, %m, %d, %H, or %% for a `%`"
                    ));
                }
                None => return bad("it ends with a lone `%`; write %% for a `%`".to_owned()),
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(code);
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        let literals = parts.iter().filter_map(|part| match part {
            Part::Text(text) => Some(text.as_str()),
            _ => None,
        });
        for literal in literals {
            if let Some(c) = literal
                .chars()
                .find(|c| FORBIDDEN.contains(c) || c.is_control())
            {
                return bad(format!(
                    "Elasticsearch takes no {c:?} in an index name (nor any of {})",
                    FORBIDDEN.iter().collect::<String>()
                ));
            }
            if literal.chars().any(char::is_uppercase) {
                return bad("Elasticsearch takes only lower case index names".to_owned());
            }
        }
        let template = Self {
            text: text.to_owned(),
            parts,
        };
        let sample = template.render(0);
        if sample.is_empty() || sample == "." || sample == ".." {
            return bad("an index needs a name".to_owned());
        }
        if sample.starts_with(['-', '_', '+']) {
            return bad(
                "Elasticsearch takes no index name starting with `-`, `_` or `+`".to_owned(),
            );
        }
        if sample.len() > MAX_INDEX_BYTES {
            return bad(format!(
                "Elasticsearch takes index names of at most {MAX_INDEX_BYTES} bytes"
            ));
        }
        Ok(template)
    }
}

impl fmt::Display for IndexTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Default for IndexTemplate {
    fn default() -> Self {
        DEFAULT_INDEX
            .parse()
            .expect("the default template is valid")
    }
}

impl IndexTemplate {
    /// The index name at epoch nanoseconds `nanos`, in UTC.
    pub fn render(&self, nanos: i128) -> String {
        let mut name = String::with_capacity(self.text.len() + 4);
        self.render_into(Hour::of(nanos), &mut name);
        name
    }

    fn render_into(&self, hour: Hour, name: &mut String) {
        use std::fmt::Write as _;
        let (year, month, day) = civil_from_days(hour.0.div_euclid(24));
        for part in &self.parts {
            // Writing to a `String` does not fail.
            let _ = match part {
                Part::Text(text) => name.write_str(text),
                Part::Year => write!(name, "{year:04}"),
                Part::Month => write!(name, "{month:02}"),
                Part::Day => write!(name, "{day:02}"),
                Part::Hour => write!(name, "{:02}", hour.0.rem_euclid(24)),
            };
        }
    }
}

/// An hour since the epoch: what an index name can depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hour(i64);

impl Hour {
    fn of(nanos: i128) -> Self {
        // Times in `i64` of any unit are within the bounds; they keep the date arithmetic
        // from overflowing for any other.
        let bound = i128::from(i64::MAX / 48);
        Self(nanos.div_euclid(3_600_000_000_000).clamp(-bound, bound) as i64)
    }
}

/// The `_bulk` body of `messages` (each one NDJSON line, without its newline; see the
/// module documentation), their `timestamp` read in `unit`, `now` the time of those
/// without one. One item per message, in order.
pub fn encode_bulk<M: AsRef<[u8]>>(
    messages: impl IntoIterator<Item = M>,
    index: &IndexTemplate,
    unit: TimestampUnit,
    now: SystemTime,
) -> Vec<u8> {
    let now = unit.to_nanos(unit.from_system_time(now).unwrap_or(0));
    let mut body = Vec::new();
    // The action line of the last message's hour: most messages of a batch share it.
    let mut action: Option<(Hour, Vec<u8>)> = None;
    for message in messages {
        let line = message.as_ref().trim_ascii();
        let times = Times::of(line);
        let nanos = times
            .as_ref()
            .and_then(|t| t.timestamp)
            .map_or(now, |t| unit.to_nanos(t));
        let hour = Hour::of(nanos);
        let line_of_hour = match action.take() {
            Some(same) if same.0 == hour => &action.insert(same).1,
            _ => &action.insert((hour, action_line(index, hour))).1,
        };
        body.extend_from_slice(line_of_hour);
        match times {
            Some(Times { at: false, .. }) => {
                // `line` is an object: it starts with `{`.
                let rest = &line[1..];
                body.extend_from_slice(b"{\"@timestamp\":\"");
                format_rfc3339(nanos, unit, &mut body);
                body.push(b'"');
                if !rest.trim_ascii_start().starts_with(b"}") {
                    body.push(b',');
                }
                body.extend_from_slice(rest);
            }
            _ => body.extend_from_slice(line),
        }
        body.push(b'\n');
    }
    body
}

/// The action line of a message of `hour`.
fn action_line(index: &IndexTemplate, hour: Hour) -> Vec<u8> {
    let mut name = String::new();
    index.render_into(hour, &mut name);
    let mut line = Vec::with_capacity(name.len() + 32);
    line.extend_from_slice(b"{\"create\":{\"_index\":\"");
    // No character that JSON escapes: the template refuses them.
    line.extend_from_slice(name.as_bytes());
    line.extend_from_slice(b"\"}}\n");
    line
}

/// What the encoder reads of a message: whether it has an `@timestamp`, and its integer
/// `timestamp`. `None` for a line that is not a JSON object.
struct Times {
    at: bool,
    timestamp: Option<i64>,
}

impl Times {
    fn of(line: &[u8]) -> Option<Self> {
        serde_json::from_slice(line).ok()
    }
}

impl<'de> Deserialize<'de> for Times {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TimesVisitor)
    }
}

struct TimesVisitor;

impl<'de> Visitor<'de> for TimesVisitor {
    type Value = Times;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Times, A::Error> {
        let mut times = Times {
            at: false,
            timestamp: None,
        };
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::At => {
                    times.at = true;
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Timestamp => {
                    let raw = map.next_value::<&RawValue>()?;
                    times.timestamp = raw.get().parse().ok();
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(times)
    }
}

/// A key of a message, as far as the encoder cares.
enum Key {
    At,
    Timestamp,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "@timestamp" => Key::At,
                    "timestamp" => Key::Timestamp,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests;
