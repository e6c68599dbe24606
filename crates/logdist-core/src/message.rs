//! Packets of log messages: decoding, validation, and the NDJSON forwarded to analyzers.
//!
//! A message is a JSON object with `timestamp` (an integer), `severity`, `source` and
//! `message` (strings). Other fields are kept: a validated message is forwarded as the
//! agent wrote it, never re-serialized. Every message of a packet is checked; the first bad
//! one rejects the whole packet with its line (NDJSON) or index (JSON array).
//!
//! NDJSON that is already in canonical form (no blank lines, no `\r`, a final newline) is
//! forwarded as the very same buffer, without a copy.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// How the body of a packet is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of message objects (a lone object is taken as a packet of one).
    Json,
    /// Newline-delimited JSON: one message object a line; blank lines are skipped.
    Ndjson,
}

/// How much of each message is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    /// Every message is parsed: a JSON object with the four required fields of the right
    /// types, and valid JSON throughout (the default).
    #[default]
    Full,
    /// Framing only: the body is UTF-8, and every non-blank NDJSON line is one JSON object
    /// as far as its first and last characters tell (`{` ... `}`); a JSON array is split
    /// into its elements, each of which must be an object. The fields are not checked, so
    /// a malformed message can reach an analyzer; in exchange the distributor does not
    /// parse messages at all.
    Framing,
}

/// A validated packet, ready to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The messages as NDJSON: one object a line, every line ending in `\n`.
    pub ndjson: Bytes,
    /// How many messages `ndjson` holds: what routing counts.
    pub messages: u32,
}

/// Where in a packet a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The body as a whole (empty, not JSON, not an array...).
    Body,
    /// A 1-based line of an NDJSON body.
    Line(usize),
    /// A 0-based index into a JSON array.
    Index(usize),
}

/// Why a packet was rejected, and where. Its `Display` is the message agents see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketError {
    /// Where the first problem is.
    pub location: Location,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Location::Body => write!(f, "{}", self.reason),
            Location::Line(n) => write!(f, "line {n}: {}", self.reason),
            Location::Index(i) => write!(f, "message at index {i}: {}", self.reason),
        }
    }
}

impl std::error::Error for PacketError {}

impl PacketError {
    fn new(location: Location, reason: impl Into<String>) -> Self {
        Self {
            location,
            reason: reason.into(),
        }
    }
}

/// What validation learns of a message: the four required fields were there, once each,
/// with the right types. Nothing is kept or allocated: keys and strings are read (which
/// checks their UTF-8 and escapes) in serde_json's scratch buffer or borrowed from the body.
struct Message {
    severity_empty: bool,
    source_empty: bool,
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut timestamp, mut severity, mut source, mut text) = (None, None, None, None);
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Timestamp => set(&mut timestamp, "timestamp", map.next_value::<i64>()?)?,
                Field::Severity => set(&mut severity, "severity", map.next_value::<Text>()?)?,
                Field::Source => set(&mut source, "source", map.next_value::<Text>()?)?,
                Field::Message => set(&mut text, "message", map.next_value::<Text>()?)?,
                Field::Other => map.next_value::<Nested>().map(drop)?,
            }
        }
        let missing = |field| de::Error::missing_field(field);
        timestamp.ok_or_else(|| missing("timestamp"))?;
        let severity = severity.ok_or_else(|| missing("severity"))?;
        let source = source.ok_or_else(|| missing("source"))?;
        text.ok_or_else(|| missing("message"))?;
        Ok(Message {
            severity_empty: severity.empty,
            source_empty: source.empty,
        })
    }
}

fn set<T, E: de::Error>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), E> {
    match slot.replace(value) {
        Some(_) => Err(E::duplicate_field(field)),
        None => Ok(()),
    }
}

/// A key of a message object: one of the required fields, or any other.
enum Field {
    Timestamp,
    Severity,
    Source,
    Message,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

struct FieldVisitor;

impl Visitor<'_> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, key: &str) -> Result<Field, E> {
        Ok(match key {
            "timestamp" => Field::Timestamp,
            "severity" => Field::Severity,
            "source" => Field::Source,
            "message" => Field::Message,
            _ => Field::Other,
        })
    }
}

/// A JSON string, checked and dropped: only whether it is empty is kept.
struct Text {
    empty: bool,
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E>(self, text: &str) -> Result<Text, E> {
        Ok(Text {
            empty: text.is_empty(),
        })
    }
}

/// Any JSON value, walked with `deserialize_any` so that serde_json's recursion limit
/// applies to extra fields too (its fast skip of unknown fields has no depth limit, and
/// analyzers downstream may not cope with a value nested 100,000 deep).
struct Nested;

impl<'de> Deserialize<'de> for Nested {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NestedVisitor)
    }
}

struct NestedVisitor;

impl<'de> Visitor<'de> for NestedVisitor {
    type Value = Nested;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Nested, E> {
        Ok(Nested)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Nested, E> {
        Ok(Nested)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Nested, E> {
        Ok(Nested)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Nested, E> {
        Ok(Nested)
    }
    fn visit_str<E>(self, _: &str) -> Result<Nested, E> {
        Ok(Nested)
    }
    fn visit_unit<E>(self) -> Result<Nested, E> {
        Ok(Nested)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Nested, A::Error> {
        while seq.next_element::<Nested>()?.is_some() {}
        Ok(Nested)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Nested, A::Error> {
        while map.next_entry::<IgnoredAny, Nested>()?.is_some() {}
        Ok(Nested)
    }
}

/// Validates one message given as raw JSON text (already known to be UTF-8, so serde_json
/// does not check the UTF-8 of every string again): the plain shape almost every log line
/// has is recognized fast ([`crate::plain`]); serde_json decides the rest.
pub(crate) fn validate(raw: &str) -> Result<(), String> {
    if crate::plain::is_plain_valid(raw.as_bytes()) {
        return Ok(());
    }
    validate_with_serde(raw)
}

/// The validator of record: serde_json reads the message and says what is wrong with it.
pub(crate) fn validate_with_serde(raw: &str) -> Result<(), String> {
    let first = raw.bytes().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') {
        return Err(match first {
            None => "empty message".to_owned(),
            Some(_) => "expected a JSON object".to_owned(),
        });
    }
    let message: Message = serde_json::from_str(raw).map_err(|e| describe(&e))?;
    if message.severity_empty {
        return Err("`severity` is empty".to_owned());
    }
    if message.source_empty {
        return Err("`source` is empty".to_owned());
    }
    Ok(())
}

/// serde_json's message without its "at line 1 column N" tail when the position is useless.
pub(crate) fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    shorten(match text.rfind(" at line ") {
        Some(cut) if e.line() <= 1 => format!("{} (column {})", &text[..cut], e.column()),
        _ => text,
    })
}

/// The longest reason an error gives, in bytes. serde_json quotes a value of the wrong type
/// whole (a timestamp sent as a 1 MB string): unbounded, a few KB of gzip would come back
/// as a megabyte of error.
const MAX_REASON: usize = 240;

/// Cuts the middle out of a long reason, keeping its start (what is wrong) and its end
/// (what was expected, and where).
pub(crate) fn shorten(text: String) -> String {
    if text.len() <= MAX_REASON {
        return text;
    }
    const CUT: &str = " ... ";
    let keep = MAX_REASON - CUT.len();
    let mut head = keep * 2 / 3;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (keep - keep * 2 / 3);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{CUT}{}", &text[..head], &text[tail..])
}

/// Decodes and fully validates a packet body.
pub fn decode_packet(body: Bytes, format: Format) -> Result<Packet, PacketError> {
    decode_packet_with(body, format, Validation::Full)
}

/// Decodes a packet body, checking each message as `validation` says.
pub fn decode_packet_with(
    body: Bytes,
    format: Format,
    validation: Validation,
) -> Result<Packet, PacketError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PacketError::new(Location::Body, "the packet is empty"));
    }
    match format {
        Format::Ndjson => decode_ndjson(body, validation),
        Format::Json => match std::str::from_utf8(&body) {
            Ok(text) => decode_json(text, checker(validation)),
            Err(_) if body.trim_ascii_start().starts_with(b"{") => decode_message(&body),
            // Whatever serde_json finds first, at or before the bad byte, is the error.
            Err(e) => Err(serde_json::from_slice::<Vec<&RawValue>>(&body)
                .err()
                .map_or_else(
                    || utf8_error(&body, e.valid_up_to(), format),
                    |e| json_error(&body, &e),
                )),
        },
    }
}

/// The body as text: one UTF-8 check for the whole body, which is much faster than one
/// per string. The error names the line (NDJSON) or the body (an array) of the first
/// bad byte.
fn utf8(body: &[u8], format: Format) -> Result<&str, PacketError> {
    std::str::from_utf8(body).map_err(|e| utf8_error(body, e.valid_up_to(), format))
}

/// The error for a body whose bytes stop being UTF-8 at `at`.
fn utf8_error(body: &[u8], at: usize, format: Format) -> PacketError {
    let location = match format {
        Format::Ndjson => Location::Line(memchr::memchr_iter(b'\n', &body[..at]).count() + 1),
        Format::Json => Location::Body,
    };
    PacketError::new(location, format!("invalid UTF-8 at byte {at}"))
}

/// Framing only: one JSON object, as far as its first and last characters tell.
pub(crate) fn check_framing(raw: &str) -> Result<(), String> {
    let raw = raw.trim_ascii();
    match (raw.as_bytes().first(), raw.as_bytes().last()) {
        (Some(b'{'), Some(b'}')) => Ok(()),
        (Some(b'{'), _) => Err("the object does not end where its line ends".to_owned()),
        (None, _) => Err("empty message".to_owned()),
        _ => Err("expected a JSON object".to_owned()),
    }
}

/// Decodes the body of `POST /message/send`: exactly one message object.
pub fn decode_message(body: &[u8]) -> Result<Packet, PacketError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PacketError::new(Location::Body, "the body is empty"));
    }
    one_message(utf8(body, Format::Json)?, validate)
}

/// A body that is one message object, checked and made one NDJSON line.
fn one_message(text: &str, check: Check) -> Result<Packet, PacketError> {
    check(text).map_err(|reason| PacketError::new(Location::Body, reason))?;
    let mut out = BytesMut::with_capacity(text.len() + 1);
    push_line(&mut out, text.as_bytes());
    Ok(Packet {
        ndjson: out.freeze(),
        messages: 1,
    })
}

/// Checks one message given as raw JSON text; the error says what is wrong.
type Check = fn(&str) -> Result<(), String>;

fn checker(validation: Validation) -> Check {
    match validation {
        Validation::Full => validate,
        Validation::Framing => check_framing,
    }
}

/// The messages an NDJSON body holds if it is valid: its non-blank lines. One pass for
/// newlines, no parsing: enough to ask, before validating, whether the packet can be
/// taken at all.
pub fn ndjson_messages(body: &[u8]) -> u64 {
    lines(body)
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .count() as u64
}

/// The lines of a body, each without its `\n`; the last may be empty (after a final `\n`).
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', body);
    std::iter::from_fn(move || {
        if start > body.len() {
            return None;
        }
        let end = ends.next().unwrap_or(body.len());
        let line = &body[start..end];
        start = end + 1;
        Some(line)
    })
}

fn decode_ndjson(body: Bytes, validation: Validation) -> Result<Packet, PacketError> {
    let (messages, canonical) = scan_ndjson(&body, validation)?;
    if canonical {
        return Ok(Packet {
            ndjson: body,
            messages,
        });
    }
    let mut out = BytesMut::with_capacity(body.len() + 1);
    for line in lines(&body) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            push_line(&mut out, line);
        }
    }
    Ok(Packet {
        ndjson: out.freeze(),
        messages,
    })
}

/// Checks every line, UTF-8 included; returns the message count and whether the body is
/// canonical (no blank lines, no `\r`, a final newline), so it can be forwarded as it is.
///
/// The lines at the start of the body that are written the usual way (usually all of
/// them) are taken in one pass: with full validation, the plain messages, in one walk over
/// the body without splitting it into lines first (which checks their UTF-8 as it goes);
/// with framing, the lines that are an object and nothing else, from one pass that marks
/// newlines and bytes that are not ASCII. The line-by-line path takes over at the first
/// other line.
fn scan_ndjson(body: &[u8], validation: Validation) -> Result<(u32, bool), PacketError> {
    let check = checker(validation);
    let start = match validation {
        Validation::Full => crate::plain::plain_ndjson_prefix(body),
        Validation::Framing => {
            let (lines, end, ascii) = crate::framing::framed_prefix(body);
            // Its lines are framed right, so a byte that is not UTF-8 is the first problem
            // there can be in them.
            if !ascii {
                utf8(&body[..end], Format::Ndjson)?;
            }
            (lines, end)
        }
    };
    let rest = text_after(body, start, check)?;
    scan_lines(rest, check, start.0)
}

/// What is left of the body once its first `messages` lines are taken (they end at `end`,
/// just after a `\n`, or 0), as text. If it is not UTF-8, the error is that of the first
/// bad message on a line before the bad byte, if any: the first problem in the body.
fn text_after(
    body: &[u8],
    (messages, end): (u32, usize),
    check: Check,
) -> Result<&str, PacketError> {
    let rest = &body[end..];
    std::str::from_utf8(rest).map_err(|e| {
        let at = e.valid_up_to();
        let line_start = memchr::memrchr(b'\n', &rest[..at]).map_or(0, |i| i + 1);
        // UTF-8 up to `at`, so up to the start of its line too.
        let before = std::str::from_utf8(&rest[..line_start]).unwrap_or_default();
        match scan_lines(before, check, messages) {
            Err(earlier) => earlier,
            Ok(_) => utf8_error(body, end + at, Format::Ndjson),
        }
    })
}

/// The line-by-line check of [`scan_ndjson`] for `text`, what is left of a body once its
/// first `messages` lines are taken (a message each, so `text` starts at line
/// `messages + 1`).
fn scan_lines(text: &str, check: Check, mut messages: u32) -> Result<(u32, bool), PacketError> {
    let first_line = messages as usize;
    // Nothing left: the body ended with the last line taken, and so with a `\n`.
    let mut canonical = text.is_empty() || text.ends_with('\n');
    let mut start = 0;
    for (n, piece) in lines(text.as_bytes()).enumerate() {
        let n = first_line + n;
        // Line boundaries are `\n` bytes, so they are char boundaries too.
        let piece = &text[start..start + piece.len()];
        // The empty piece after the final newline is where the body ends, not a blank line.
        let at_end = start + piece.len() == text.len();
        start += piece.len() + 1;
        let line = piece
            .strip_suffix('\r')
            .inspect(|_| canonical = false)
            .unwrap_or(piece);
        if line.bytes().all(|b| b.is_ascii_whitespace()) {
            if !(line.is_empty() && at_end) {
                canonical = false;
            }
            continue;
        }
        check(line).map_err(|reason| PacketError::new(Location::Line(n + 1), reason))?;
        messages = count(messages)?;
    }
    Ok((messages, canonical))
}

fn decode_json(body: &str, check: Check) -> Result<Packet, PacketError> {
    let first = body.bytes().find(|b| !b.is_ascii_whitespace());
    if first == Some(b'{') {
        return one_message(body, check);
    }
    let items: Vec<&RawValue> =
        serde_json::from_str(body).map_err(|e| json_error(body.as_bytes(), &e))?;
    if items.is_empty() {
        return Err(PacketError::new(Location::Body, "the packet is empty"));
    }
    let mut out = BytesMut::with_capacity(body.len());
    let mut messages: u32 = 0;
    for (i, item) in items.iter().enumerate() {
        let raw = item.get();
        check(raw).map_err(|reason| PacketError::new(Location::Index(i), reason))?;
        push_line(&mut out, raw.as_bytes());
        messages = count(messages)?;
    }
    Ok(Packet {
        ndjson: out.freeze(),
        messages,
    })
}

/// The error of a body that is not a JSON array of values.
fn json_error(body: &[u8], e: &serde_json::Error) -> PacketError {
    let reason = if body.trim_ascii_start().starts_with(b"[") {
        e.to_string()
    } else {
        format!("expected a JSON array of messages or one message object ({e})")
    };
    PacketError::new(Location::Body, shorten(reason))
}

fn count(messages: u32) -> Result<u32, PacketError> {
    messages
        .checked_add(1)
        .ok_or_else(|| PacketError::new(Location::Body, "too many messages in one packet"))
}

/// Appends one message as one NDJSON line. A raw newline in valid JSON can only be
/// whitespace between tokens (inside strings it must be escaped), so turning it into a
/// space keeps the message identical while making it one line.
fn push_line(out: &mut BytesMut, raw: &[u8]) {
    let raw = raw.trim_ascii();
    if raw.contains(&b'\n') || raw.contains(&b'\r') {
        out.extend(
            raw.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    } else {
        out.put_slice(raw);
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HELLO: &str =
        r#"{"timestamp":1020,"severity":"WARN","source":"app","message":"hello world!"}"#;

    fn ndjson(s: &str) -> Result<Packet, PacketError> {
        decode_packet(Bytes::copy_from_slice(s.as_bytes()), Format::Ndjson)
    }

    fn json(s: &str) -> Result<Packet, PacketError> {
        decode_packet(Bytes::copy_from_slice(s.as_bytes()), Format::Json)
    }

    #[test]
    fn the_origin_curl_message_is_accepted() {
        let p = decode_message(HELLO.as_bytes()).unwrap();
        assert_eq!(p.messages, 1);
        assert_eq!(p.ndjson, format!("{HELLO}\n"));
    }

    #[test]
    fn canonical_ndjson_is_forwarded_without_a_copy() {
        let body = Bytes::from(format!("{HELLO}\n{HELLO}\n"));
        let p = decode_packet(body.clone(), Format::Ndjson).unwrap();
        assert_eq!(p.messages, 2);
        assert_eq!(p.ndjson.as_ptr(), body.as_ptr());
    }

    #[test]
    fn ndjson_is_normalized() {
        let p = ndjson(&format!("\r\n{HELLO}\r\n\n  \n{HELLO}")).unwrap();
        assert_eq!(p.messages, 2);
        assert_eq!(p.ndjson, format!("{HELLO}\n{HELLO}\n"));
    }

    #[test]
    fn json_arrays_become_ndjson_and_keep_extra_fields() {
        let extra = r#"{"timestamp":1,"severity":"INFO","source":"db","message":"x","trace":{"id":"abc"},"n":[1,2]}"#;
        let p = json(&format!("[\n  {HELLO},\n  {extra}\n]")).unwrap();
        assert_eq!(p.messages, 2);
        assert_eq!(p.ndjson, format!("{HELLO}\n{extra}\n"));
    }

    #[test]
    fn pretty_printed_messages_become_one_line_each() {
        let p = json("[{\n\"timestamp\": 1,\n\"severity\": \"a\\nb\",\n\"source\": \"s\",\n\"message\": \"m\"\n}]").unwrap();
        let text = std::str::from_utf8(&p.ndjson).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["severity"], "a\nb");
    }

    #[test]
    fn a_lone_object_is_a_packet_of_one() {
        assert_eq!(json(HELLO).unwrap().messages, 1);
    }

    #[test]
    fn errors_say_what_and_where() {
        let cases: &[(&str, Format, &str)] = &[
            ("", Format::Ndjson, "the packet is empty"),
            ("[]", Format::Json, "the packet is empty"),
            (
                &format!("{HELLO}\n{{\"timestamp\":1}}"),
                Format::Ndjson,
                "line 2: missing field `severity`",
            ),
            (
                &format!("{HELLO}\n{HELLO}\n\n{{\"timestamp\":1}}\n{HELLO}\n"),
                Format::Ndjson,
                "line 4: missing field `severity`",
            ),
            (
                &format!("[{HELLO}, 5]"),
                Format::Json,
                "message at index 1: expected a JSON object",
            ),
            (
                r#"{"timestamp":"x","severity":"a","source":"b","message":"c"}"#,
                Format::Ndjson,
                "line 1: invalid type: string \"x\", expected i64",
            ),
            (
                r#"{"timestamp":1.5,"severity":"a","source":"b","message":"c"}"#,
                Format::Ndjson,
                "line 1: invalid type: floating point",
            ),
            (
                r#"{"timestamp":99999999999999999999,"severity":"a","source":"b","message":"c"}"#,
                Format::Ndjson,
                "line 1: invalid",
            ),
            (
                r#"{"timestamp":1,"severity":"","source":"b","message":"c"}"#,
                Format::Ndjson,
                "line 1: `severity` is empty",
            ),
            (
                r#"{"timestamp":1,"severity":"a","source":"b","message":"c"} {}"#,
                Format::Ndjson,
                "line 1: trailing characters",
            ),
            (
                r#"{"timestamp":1,"timestamp":2,"severity":"a","source":"b","message":"c"}"#,
                Format::Ndjson,
                "line 1: duplicate field `timestamp`",
            ),
            ("[1,2", Format::Json, "EOF while parsing"),
            (
                "hello",
                Format::Json,
                "expected a JSON array of messages or one message object",
            ),
        ];
        for (body, format, want) in cases {
            let err = decode_packet(Bytes::copy_from_slice(body.as_bytes()), *format).unwrap_err();
            assert!(err.to_string().contains(want), "got {err}, want {want:?}");
        }
    }

    #[test]
    fn ndjson_messages_counts_what_decoding_counts() {
        for body in [
            format!("{HELLO}\n"),
            HELLO.to_owned(),
            format!("\n{HELLO}\r\n  \n{HELLO}\n\n"),
            format!("{HELLO}\n{HELLO}\n{HELLO}"),
        ] {
            let packet = decode_packet(Bytes::from(body.clone()), Format::Ndjson).unwrap();
            assert_eq!(
                ndjson_messages(body.as_bytes()),
                u64::from(packet.messages),
                "{body:?}"
            );
        }
        assert_eq!(ndjson_messages(b" \n\r\n"), 0);
    }

    /// Blank lines once made every blank line re-scan the whole body (quadratic): 8 MiB of
    /// newlines, a few KB gzipped, could stall the server. Now it is one pass.
    #[test]
    fn many_blank_lines_are_linear() {
        let mut body = "\n".repeat(4_000_000);
        body.push_str(HELLO);
        let started = std::time::Instant::now();
        let p = ndjson(&body).unwrap();
        assert_eq!(p.messages, 1);
        assert_eq!(p.ndjson, format!("{HELLO}\n"));
        // Linear, this is a few milliseconds; the quadratic version took hours.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn invalid_utf8_and_nul_are_rejected() {
        let mut bad = HELLO.as_bytes().to_vec();
        bad[60] = 0xff;
        let err = decode_packet(Bytes::from(bad), Format::Ndjson).unwrap_err();
        assert_eq!(err.location, Location::Line(1));
        let nul = HELLO.replace("hello", "hel\0lo");
        assert!(ndjson(&nul).is_err());
    }

    /// serde_json quotes a value of the wrong type whole: a timestamp sent as a 1 MB string
    /// (a few KB gzipped) once came back as a megabyte of error. The middle is cut now,
    /// keeping what is wrong, what was expected and where.
    #[test]
    fn long_values_are_not_echoed_in_errors() {
        let long = "\\u00e9x".repeat(100_000);
        let timestamp =
            format!(r#"{{"timestamp":"{long}","severity":"a","source":"b","message":"c"}}"#);
        let err = ndjson(&timestamp).unwrap_err();
        let text = err.to_string();
        assert!(text.len() <= MAX_REASON + 20, "{} bytes", text.len());
        assert!(
            text.starts_with("line 1: invalid type: string \"éxéx"),
            "{text}"
        );
        assert!(
            text.ends_with("éx\", expected i64 (column 700015)"),
            "{text}"
        );

        let err = json(&format!("\"{long}\"")).unwrap_err();
        assert_eq!(err.location, Location::Body);
        assert!(err.reason.len() <= MAX_REASON, "{} bytes", err.reason.len());
        assert!(
            err.reason.starts_with("expected a JSON array"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let deep = format!(
            r#"{{"timestamp":1,"severity":"a","source":"b","message":"c","x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let err = ndjson(&deep).expect_err("a value nested 100,000 deep was accepted");
        assert!(err.reason.contains("recursion limit"), "{}", err.reason);
    }

    fn framing(s: &[u8], format: Format) -> Result<Packet, PacketError> {
        decode_packet_with(Bytes::copy_from_slice(s), format, Validation::Framing)
    }

    #[test]
    fn framing_checks_lines_objects_and_utf8_only() {
        let body = format!("{HELLO}\n{HELLO}\n");
        let p = framing(body.as_bytes(), Format::Ndjson).unwrap();
        assert_eq!((p.messages, &p.ndjson[..]), (2, body.as_bytes()));
        // Fields are not checked in this mode...
        assert_eq!(framing(b"{\"x\":1}\n", Format::Ndjson).unwrap().messages, 1);
        // ...but framing is.
        for (body, error) in [
            (&b"{\"a\":1}\n[1]\n"[..], "line 2: expected a JSON object"),
            (
                b"{\"a\":1}\n{\"a\":\n",
                "line 2: the object does not end where its line ends",
            ),
            (
                b"{\"a\":1}\n{\"a\":\"\xff\"}\n",
                "line 2: invalid UTF-8 at byte 14",
            ),
            (b"\n \n", "the packet is empty"),
        ] {
            let e = framing(body, Format::Ndjson).unwrap_err();
            assert_eq!(e.to_string(), error);
        }
        // Arrays are split into their elements, each an object.
        let p = framing(format!("[{HELLO},{{\"x\":1}}]").as_bytes(), Format::Json).unwrap();
        assert_eq!(p.messages, 2);
        let e = framing(b"[{\"x\":1}, 2]", Format::Json).unwrap_err();
        assert_eq!(e.to_string(), "message at index 1: expected a JSON object");
    }

    /// Up to a dozen lines (or array items) of the kinds the two validation modes tell
    /// apart: messages, framed objects that are not messages, bad framing, blank lines and
    /// spaces, carriage returns, and arbitrary text.
    fn lines_of_every_kind() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            prop_oneof![
                Just(HELLO.to_owned()),
                Just(format!("{HELLO}\r")),
                Just(format!(" {HELLO} ")),
                Just(String::new()),
                Just("  ".to_owned()),
                Just(
                    r#"{"timestamp":1,"severity":"E","source":"s","message":"m","x":[{}]}"#
                        .to_owned()
                ),
                Just(r#"{"timestamp":1}"#.to_owned()),
                Just("{}".to_owned()),
                Just("{".to_owned()),
                Just("}".to_owned()),
                Just("[1]".to_owned()),
                "\\PC{0,20}",
            ],
            0..12,
        )
    }

    proptest! {
        /// Framing is the weaker check: whatever full validation accepts, it accepts as the
        /// same NDJSON with the same count.
        #[test]
        fn framing_accepts_whatever_full_validation_accepts(
            parts in lines_of_every_kind(),
            as_json in any::<bool>(),
        ) {
            let (body, format) = if as_json {
                (format!("[{}]", parts.join(",")), Format::Json)
            } else {
                (parts.join("\n"), Format::Ndjson)
            };
            let body = Bytes::from(body);
            if let Ok(full) = decode_packet(body.clone(), format) {
                let weak = decode_packet_with(body, format, Validation::Framing);
                prop_assert_eq!(weak, Ok(full));
            }
        }
    }

    /// The line-by-line check of a whole body, after one UTF-8 check of all of it, as
    /// both validation modes ran before their one-pass starts checked UTF-8 themselves.
    fn line_by_line(body: &[u8], check: Check) -> Result<(u32, bool), PacketError> {
        match std::str::from_utf8(body) {
            Ok(text) => scan_lines(text, check, 0),
            Err(e) => {
                let at = e.valid_up_to();
                let line_start = memchr::memrchr(b'\n', &body[..at]).map_or(0, |i| i + 1);
                scan_lines(std::str::from_utf8(&body[..line_start]).unwrap(), check, 0)?;
                Err(utf8_error(body, at, Format::Ndjson))
            }
        }
    }

    proptest! {
        /// The one-pass starts change nothing: every body, UTF-8 or not, gets the answer
        /// of the line-by-line check after a UTF-8 check of the whole body, errors and
        /// all, in both modes (full validation checks UTF-8 as it walks; framing only where
        /// a byte is not ASCII).
        #[test]
        fn validation_in_one_pass_answers_as_line_by_line(
            parts in lines_of_every_kind(),
            texts in prop::collection::vec("[a-zé日😀\"\\\\]{0,6}", 12),
            bad in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![Just(0x80_u8), Just(0xc3), Just(0xe6), Just(0xed), Just(0xff)]), 0..2),
            final_newline in any::<bool>(),
        ) {
            // Most lines valid messages, their text not all ASCII.
            let parts: Vec<String> = parts.iter().zip(&texts).map(|(part, text)| {
                part.replacen("world", text, 1)
            }).collect();
            let mut body = parts.join("\n").into_bytes();
            if final_newline {
                body.push(b'\n');
            }
            for (at, byte) in bad {
                let at = at.index(body.len() + 1);
                body.insert(at, byte);
            }
            prop_assert_eq!(scan_ndjson(&body, Validation::Full), line_by_line(&body, validate));
            prop_assert_eq!(
                scan_ndjson(&body, Validation::Framing),
                line_by_line(&body, check_framing)
            );
        }
    }

    proptest! {
        /// No input makes the decoder panic, and whatever it accepts is canonical NDJSON
        /// whose every line is a valid message (to serde_json, not the fast path it took).
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), as_json in any::<bool>()) {
            let format = if as_json { Format::Json } else { Format::Ndjson };
            if let Ok(p) = decode_packet(Bytes::from(body), format) {
                prop_assert!(p.ndjson.ends_with(b"\n"));
                let lines: Vec<_> = p.ndjson[..p.ndjson.len() - 1].split(|&b| b == b'\n').collect();
                prop_assert_eq!(lines.len(), p.messages as usize);
                for line in lines {
                    prop_assert!(std::str::from_utf8(line).is_ok_and(|l| validate_with_serde(l).is_ok()));
                }
            }
        }

        /// Well-formed messages with arbitrary strings and extra fields round-trip exactly.
        #[test]
        fn valid_messages_round_trip(
            msgs in prop::collection::vec((any::<i64>(), "\\PC{1,12}", "\\PC{1,12}", "\\PC{0,40}", any::<bool>()), 1..30),
        ) {
            let lines: Vec<String> = msgs.iter().map(|(ts, sev, src, text, extra)| {
                let mut v = serde_json::json!({"timestamp": ts, "severity": sev, "source": src, "message": text});
                if *extra { v["extra"] = serde_json::json!({"k": [1, "two"]}); }
                v.to_string()
            }).collect();
            let body = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
            let p = ndjson(&body).unwrap();
            prop_assert_eq!(p.messages as usize, lines.len());
            prop_assert_eq!(&p.ndjson[..], body.as_bytes());
            let arr = format!("[{}]", lines.join(","));
            prop_assert_eq!(json(&arr).unwrap().ndjson, Bytes::from(body));
        }
    }
}
