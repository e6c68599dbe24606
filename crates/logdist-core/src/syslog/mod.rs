//! Syslog: a message of RFC 5424 or of RFC 3164 (BSD), told apart message by message, to
//! one line of logdist's message model; and the framing of a TCP stream into messages
//! ([`frame`]). Pure: the distributor's listener does the reading (UDP is one message a
//! datagram, no framing).
//!
//! | field | from |
//! | --- | --- |
//! | `timestamp` | the header's time in the configured unit; RFC 3164's `Mmm dd hh:mm:ss` is UTC, in the year that puts it closest before the arrival time (at most a day ahead of it); without one, the arrival time |
//! | `severity` | the PRI's severity, normalized as the mapping reads syslog's numbers ([`crate::mapping`]): emerg, alert, crit `FATAL`; err `ERROR`; warning `WARN`; notice, info `INFO`; debug `DEBUG` |
//! | `source` | the APP-NAME (RFC 3164: the TAG before its `[pid]`), else the HOSTNAME, else `unknown` |
//! | `message` | the MSG, without a leading UTF-8 BOM or trailing line breaks |
//! | `severity_original` | syslog's keyword of the severity (`notice`), as the mapping keeps a severity that was not its word |
//! | `facility` | the facility's name (`user`, `local0`...) |
//! | `hostname`, `procid`, `msgid` | the header's, when not `-` (RFC 3164 has no `msgid`) |
//! | `sd` | RFC 5424's structured data as objects: `{"SD-ID":{"PARAM":"value"}}`; a name given twice keeps its last value |
//!
//! A message must start with `<PRI>` (0-191) and be UTF-8. After the PRI, `1 ` starts an
//! RFC 5424 header, which is read strictly (`-` or RFC 3339 time, then HOSTNAME, APP-NAME,
//! PROCID, MSGID and the structured data); anything else is RFC 3164, read as loosely as
//! the senders of it write it: a time if there is one (`Mmm dd hh:mm:ss`, or RFC 3339 as
//! rsyslog forwards it), a HOSTNAME if the next word is not a TAG, and a TAG if a word
//! ends with `:`. What is not a header is the message.
//!
//! Why by hand and not with the `syslog_loose` crate (0.22): it reads the clock for
//! RFC 3164's year and zone (this crate takes no clocks: the arrival time is a value), it
//! brings `nom` 8 and `chrono` to a crate that has neither, it takes `&str` so a
//! non-UTF-8 message is refused before it anyway, and being loose it takes any bytes as
//! a message, where a listener wants to know that a connection is not speaking syslog.
//! The two grammars are small (about 300 lines here), and this parser is fuzzed
//! (`fuzz/fuzz_targets/decode_syslog.rs`) and property-tested.

pub mod frame;
mod rfc3164;
mod rfc5424;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::mapping::{DEFAULT_SOURCE, Severity, TimestampUnit, write_string};

pub use frame::{Frame, FrameError, Framer, Framing};

/// Why a frame is not a syslog message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageError(pub String);

impl MessageError {
    /// A short name for metrics and logs.
    pub fn reason(&self) -> &'static str {
        "invalid"
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MessageError {}

/// The start of a value quoted in an error, so that an error stays short whatever came.
fn shown(value: &str) -> &str {
    match value.char_indices().nth(40) {
        Some((at, _)) => &value[..at],
        None => value,
    }
}

fn invalid(reason: impl Into<String>) -> MessageError {
    MessageError(reason.into())
}

/// A message's header and text, borrowed from the frame.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed<'a> {
    /// Epoch nanoseconds, when the header has a time.
    pub(crate) time: Option<i128>,
    pub(crate) hostname: Option<&'a str>,
    pub(crate) appname: Option<&'a str>,
    pub(crate) procid: Option<&'a str>,
    pub(crate) msgid: Option<&'a str>,
    /// RFC 5424's structured data, in order.
    pub(crate) sd: Vec<Element<'a>>,
    pub(crate) message: &'a str,
}

/// One SD-ELEMENT: its id and its parameters, unescaped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Element<'a> {
    pub(crate) id: &'a str,
    pub(crate) params: Vec<(&'a str, String)>,
}

/// What decoding needs besides the frame: the unit of the `timestamp` written and the
/// arrival time (the time of a message without one, and the year of RFC 3164's).
#[derive(Debug, Clone, Copy)]
pub struct SyslogOptions {
    /// The unit of the `timestamp` written (`--timestamp-unit`).
    pub unit: TimestampUnit,
    /// The arrival time, epoch milliseconds.
    pub now_ms: i64,
}

/// Decodes one syslog message (a frame, or a datagram) and appends it to `out` as one
/// NDJSON line. On an error nothing is appended.
pub fn decode_message(
    frame: &[u8],
    options: &SyslogOptions,
    out: &mut Vec<u8>,
) -> Result<(), MessageError> {
    let text = std::str::from_utf8(frame).map_err(|e| {
        invalid(format!(
            "not UTF-8 at byte {} of the message",
            e.valid_up_to()
        ))
    })?;
    // Line breaks and NULs some senders end a message with are not part of it.
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let (pri, rest) = priority(text)?;
    let parsed = match rest.strip_prefix("1 ") {
        Some(header) => rfc5424::parse(header)?,
        None => rfc3164::parse(rest, options.now_ms),
    };
    let nanos = parsed
        .time
        .unwrap_or(i128::from(options.now_ms) * 1_000_000);
    let timestamp = options
        .unit
        .from_nanos(nanos)
        .ok_or_else(|| invalid("the message's time is out of range for the timestamp unit"))?;
    write(pri, timestamp, &parsed, out);
    Ok(())
}

/// `<PRI>`: 1-3 digits, 0-191 (facility times 8 plus severity).
fn priority(text: &str) -> Result<(u8, &str), MessageError> {
    let shown = || text.chars().take(8).collect::<String>();
    let inner = text
        .strip_prefix('<')
        .ok_or_else(|| invalid(format!("no `<PRI>` at the start of `{}`", shown())))?;
    let close = inner
        .bytes()
        .take(4)
        .position(|b| b == b'>')
        .ok_or_else(|| invalid(format!("no `<PRI>` at the start of `{}`", shown())))?;
    let digits = &inner[..close];
    let pri = match digits.parse::<u8>() {
        Ok(pri)
            if pri <= 191 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            pri
        }
        _ => {
            return Err(invalid(format!(
                "the PRI `<{digits}>` is not a number from 0 to 191"
            )));
        }
    };
    Ok((pri, &inner[close + 1..]))
}

/// The facility names of RFC 5424's table, as syslog-ng and rsyslog name them.
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Syslog's severity keywords, 0 to 7.
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The name of a facility number (0-23).
pub fn facility_name(facility: u8) -> &'static str {
    FACILITIES[usize::from(facility.min(23))]
}

/// Syslog's keyword of a severity number (0-7).
pub fn severity_keyword(severity: u8) -> &'static str {
    SEVERITIES[usize::from(severity.min(7))]
}

/// The message's line: the four fields, then what syslog says besides.
fn write(pri: u8, timestamp: i64, parsed: &Parsed<'_>, out: &mut Vec<u8>) {
    let severity = pri & 7;
    let normalized = Severity::from_number(i64::from(severity)).expect("0-7 are syslog's");
    out.extend_from_slice(b"{\"timestamp\":");
    out.extend_from_slice(timestamp.to_string().as_bytes());
    out.extend_from_slice(b",\"severity\":\"");
    out.extend_from_slice(normalized.as_str().as_bytes());
    out.extend_from_slice(b"\",\"source\":");
    let source = parsed.appname.or(parsed.hostname).unwrap_or(DEFAULT_SOURCE);
    write_string(out, source);
    out.extend_from_slice(b",\"message\":");
    write_string(out, parsed.message);
    out.extend_from_slice(b",\"severity_original\":\"");
    out.extend_from_slice(severity_keyword(severity).as_bytes());
    out.extend_from_slice(b"\",\"facility\":\"");
    out.extend_from_slice(facility_name(pri >> 3).as_bytes());
    out.push(b'"');
    for (name, value) in [
        ("hostname", parsed.hostname),
        ("procid", parsed.procid),
        ("msgid", parsed.msgid),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            write_string(out, value);
        }
    }
    if !parsed.sd.is_empty() {
        out.extend_from_slice(b",\"sd\":{");
        // A JSON object has one value a key: the last element of an id, and the last
        // value of a name, win.
        for (i, element) in last_of_each(&parsed.sd, |e| e.id).into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_string(out, element.id);
            out.extend_from_slice(b":{");
            for (j, (name, value)) in last_of_each(&element.params, |p| p.0)
                .into_iter()
                .enumerate()
            {
                if j > 0 {
                    out.push(b',');
                }
                write_string(out, name);
                out.push(b':');
                write_string(out, value);
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
}

/// The items whose key is not given again later, in order: a set, not a scan per item,
/// so that a frame of thousands of parameters costs no more than their count.
fn last_of_each<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<&T> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut kept: Vec<&T> = items
        .iter()
        .rev()
        .filter(|item| seen.insert(key(item)))
        .collect();
    kept.reverse();
    kept
}

/// The MSG as written: without a UTF-8 BOM (RFC 5424 marks UTF-8 with one) or the line
/// breaks and NULs some senders end it with.
pub(crate) fn message_text(text: &str) -> &str {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .trim_end_matches(['\n', '\r', '\0'])
}
