//! Hostile input for the packet decoder and validator, as property tests.
//!
//! - Arbitrary bytes, and soups of JSON tokens, never make `decode_packet` (either format)
//!   or `decode_message` panic.
//! - Valid packets mutated byte by byte, or built with one defect in chosen messages, are
//!   either accepted or rejected with a location inside the input: the line or index of
//!   the first bad message, which is bad on its own while every one before it is good.
//! - Whatever is accepted forwards NDJSON whose every line is a message object with the four
//!   required fields; decoding it again gives the very same bytes (idempotence), and the
//!   count is the number of non-blank lines or of elements.
//! - The same messages as NDJSON and as a JSON array give the same count and bytes.
//! - Adversarial megabyte bodies are decoded or refused in well under a second, and no
//!   error text grows with the input.
//!
//! `fuzz/` runs the same invariants under libFuzzer.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use logdist_core::message::Location;
use logdist_core::{Format, Packet, PacketError, decode_message, decode_packet};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

// === The invariants, for any input ===

/// The longest error text any input may produce.
const MAX_ERROR_TEXT: usize = 512;

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The lines of an NDJSON body as the decoder numbers them, without a trailing `\r`.
fn lines(body: &[u8]) -> Vec<&[u8]> {
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

fn check_error(e: &PacketError) {
    assert!(!e.reason.is_empty());
    let text = e.to_string();
    let head: String = text.chars().take(200).collect();
    assert!(
        text.len() <= MAX_ERROR_TEXT,
        "{} bytes: {head}...",
        text.len()
    );
}

/// What every accepted packet must be, whatever it came from. Returns its messages.
fn check_forwarded(p: &Packet) -> Vec<Value> {
    assert!(p.messages >= 1);
    assert_eq!(
        p.ndjson.last(),
        Some(&b'\n'),
        "forwarded NDJSON ends in a newline"
    );
    let body = &p.ndjson[..p.ndjson.len() - 1];
    let values: Vec<Value> = body
        .split(|&b| b == b'\n')
        .map(|line| {
            let v: Value = serde_json::from_slice(line).expect("a forwarded line is JSON");
            let o = v.as_object().expect("a forwarded line is an object");
            assert!(o["timestamp"].is_i64(), "timestamp: {v}");
            assert!(!o["severity"].as_str().expect("severity").is_empty());
            assert!(!o["source"].as_str().expect("source").is_empty());
            assert!(o["message"].is_string(), "message: {v}");
            v
        })
        .collect();
    assert_eq!(values.len(), p.messages as usize);
    let again = decode_packet(p.ndjson.clone(), Format::Ndjson).expect("forwarded NDJSON decodes");
    assert_eq!(again, *p, "decoding the forwarded NDJSON is the identity");
    values
}

/// `items[at]` is the first item that is neither blank nor a valid message.
fn check_first_bad(items: &[&[u8]], at: usize) {
    for (i, item) in items[..at].iter().enumerate() {
        assert!(
            is_blank(item) || decode_message(item).is_ok(),
            "item {i} is bad"
        );
    }
    assert!(!is_blank(items[at]) && decode_message(items[at]).is_err());
}

fn check_ndjson(data: &[u8], result: &Result<Packet, PacketError>) {
    let lines = lines(data);
    let messages: Vec<&[u8]> = lines.iter().copied().filter(|l| !is_blank(l)).collect();
    match result {
        Ok(p) => {
            let inputs: Vec<Value> = messages
                .iter()
                .map(|l| serde_json::from_slice(l).expect("an accepted line is JSON"))
                .collect();
            assert_eq!(check_forwarded(p), inputs, "messages forwarded as sent");
            // The same messages as a JSON array: the same count.
            let mut array = b"[".to_vec();
            for (i, m) in messages.iter().enumerate() {
                if i > 0 {
                    array.push(b',');
                }
                array.extend_from_slice(m);
            }
            array.push(b']');
            let as_json = decode_packet(Bytes::from(array), Format::Json)
                .expect("accepted NDJSON is accepted as a JSON array");
            assert_eq!(as_json.messages, p.messages);
        }
        Err(e) => {
            check_error(e);
            match e.location {
                Location::Body => assert!(is_blank(data), "NDJSON body error: {e}"),
                Location::Line(n) => {
                    assert!(n >= 1 && n <= lines.len(), "line {n} of {}", lines.len());
                    check_first_bad(&lines, n - 1);
                }
                Location::Index(_) => panic!("an NDJSON error names an index: {e}"),
            }
        }
    }
}

fn check_json(data: &[u8], result: &Result<Packet, PacketError>) {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    let elements = if first == Some(&b'{') {
        None
    } else {
        serde_json::from_slice::<Vec<&RawValue>>(data).ok()
    };
    match result {
        Ok(p) => {
            let inputs: Vec<Value> = match &elements {
                None => vec![serde_json::from_slice(data).expect("an accepted object")],
                Some(items) => items
                    .iter()
                    .map(|i| serde_json::from_str(i.get()).expect("an accepted element"))
                    .collect(),
            };
            assert_eq!(check_forwarded(p), inputs, "messages forwarded as sent");
        }
        Err(e) => {
            check_error(e);
            match e.location {
                Location::Body => {
                    if let Some(items) = &elements {
                        assert!(items.is_empty(), "a body error for a non-empty array: {e}");
                    }
                }
                Location::Index(i) => {
                    let items = elements.expect("an index error for a body that is no array");
                    assert!(i < items.len(), "index {i} of {}", items.len());
                    let raw: Vec<&[u8]> = items.iter().map(|r| r.get().as_bytes()).collect();
                    check_first_bad(&raw, i);
                }
                Location::Line(_) => panic!("a JSON error names a line: {e}"),
            }
        }
    }
}

fn check_message(data: &[u8], json: &Result<Packet, PacketError>) {
    match decode_message(data) {
        Ok(p) => {
            assert_eq!(p.messages, 1);
            check_forwarded(&p);
            assert_eq!(
                json.as_ref().ok(),
                Some(&p),
                "a lone object is a packet of one"
            );
        }
        Err(e) => {
            check_error(&e);
            assert_eq!(e.location, Location::Body);
            if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
                assert_eq!(json.as_ref().err(), Some(&e), "a lone object fails alike");
            }
        }
    }
}

/// Runs every decoder on `data` and checks every invariant.
fn check_all(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    check_ndjson(data, &decode_packet(body.clone(), Format::Ndjson));
    let json = decode_packet(body, Format::Json);
    check_json(data, &json);
    check_message(data, &json);
}

// === Valid messages, and the defects that make them invalid ===

const FIELDS: [&str; 4] = ["timestamp", "severity", "source", "message"];

/// A valid message, and how to write it.
#[derive(Debug, Clone)]
struct Msg {
    timestamp: i64,
    severity: String,
    source: String,
    text: String,
    /// Extra fields, kept and forwarded untouched.
    extras: Vec<Value>,
    /// How deep an extra `deep` field nests arrays (0: no such field); fine below 100.
    deep: usize,
    /// Sorts the fields: any order is valid.
    order: Vec<u8>,
    /// Write every string character as a `\uXXXX` escape.
    escape_all: bool,
    /// Whitespace between tokens (never a newline: NDJSON lines are one line).
    gap: &'static str,
}

fn string(s: &str, escape_all: bool) -> String {
    if !escape_all {
        return serde_json::to_string(s).unwrap();
    }
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        write!(out, "\\u{unit:04x}").unwrap();
    }
    out.push('"');
    out
}

/// One thing that makes a message invalid.
#[derive(Debug, Clone)]
enum Defect {
    Missing(usize),
    /// A second copy of a required field, its key written plainly or escaped.
    Duplicate(usize, bool),
    /// A required field with a value of the wrong type.
    WrongType(usize, &'static str),
    EmptyString(usize),
    /// A timestamp that is a number but no i64.
    TimestampOutOfRange(&'static str),
    /// An extra field nested deeper than the limit of 128.
    TooDeep(usize),
    /// An extra number out of the range of f64.
    HugeNumber(&'static str),
    /// Not an object at all.
    NotAnObject(&'static str),
    /// Bytes in the `message` string: invalid UTF-8, a lone surrogate escape.
    BadString(&'static [u8]),
    /// Bytes inside a key of a nested extra object.
    BadNestedKey(&'static [u8]),
    /// A raw control character in the `message` string.
    ControlChar(u8),
    /// A byte order mark before the object.
    Bom,
    /// Something after the object.
    Trailing(&'static str),
}

impl Defect {
    /// Whether the defect breaks the syntax of a JSON array holding the message: then the
    /// packet fails as a whole rather than at the element.
    fn breaks_array(&self) -> bool {
        match self {
            Defect::ControlChar(_) | Defect::Bom | Defect::Trailing(_) => true,
            // serde_json checks the UTF-8 of each raw element, and that every escape is
            // one (but not what a `\u` escape stands for), before the element is validated.
            Defect::BadString(b) | Defect::BadNestedKey(b) => {
                std::str::from_utf8(b).is_err() || (b.starts_with(b"\\") && !b.starts_with(b"\\u"))
            }
            _ => false,
        }
    }
}

impl Msg {
    fn render(&self, defect: Option<&Defect>) -> Vec<u8> {
        let esc = self.escape_all;
        let mut fields: Vec<(String, Vec<u8>)> = vec![
            (
                string(FIELDS[0], esc),
                self.timestamp.to_string().into_bytes(),
            ),
            (
                string(FIELDS[1], esc),
                string(&self.severity, esc).into_bytes(),
            ),
            (
                string(FIELDS[2], esc),
                string(&self.source, esc).into_bytes(),
            ),
            (string(FIELDS[3], esc), string(&self.text, esc).into_bytes()),
        ];
        for (i, v) in self.extras.iter().enumerate() {
            fields.push((string(&format!("x{i}"), esc), v.to_string().into_bytes()));
        }
        if self.deep > 0 {
            let nested = format!("{}{}", "[".repeat(self.deep), "]".repeat(self.deep));
            fields.push((string("deep", esc), nested.into_bytes()));
        }
        let mut prefix: &[u8] = b"";
        let mut suffix: &[u8] = b"";
        match defect {
            None => {}
            Some(Defect::Missing(f)) => {
                fields.remove(*f);
            }
            Some(Defect::Duplicate(f, escaped)) => {
                let copy = fields[*f].1.clone();
                fields.push((string(FIELDS[*f], *escaped), copy));
            }
            Some(Defect::WrongType(f, v)) => fields[*f].1 = v.as_bytes().to_vec(),
            Some(Defect::EmptyString(f)) => fields[*f].1 = b"\"\"".to_vec(),
            Some(Defect::TimestampOutOfRange(v)) => fields[0].1 = v.as_bytes().to_vec(),
            Some(Defect::TooDeep(d)) => {
                let nested = format!("{{\"a\":{}1{}}}", "[".repeat(*d), "]".repeat(*d));
                fields.push(("\"too_deep\"".into(), nested.into_bytes()));
            }
            Some(Defect::HugeNumber(v)) => fields.push(("\"huge\"".into(), v.as_bytes().to_vec())),
            Some(Defect::NotAnObject(v)) => return v.as_bytes().to_vec(),
            Some(Defect::BadString(bytes)) => {
                let text = &mut fields[3].1;
                text.splice(1..1, bytes.iter().copied());
            }
            Some(Defect::BadNestedKey(bytes)) => {
                let mut v = b"{\"ok\":1,\"".to_vec();
                v.extend_from_slice(bytes);
                v.extend_from_slice(b"\":[2]}");
                fields.push(("\"nested\"".into(), v));
            }
            Some(Defect::ControlChar(c)) => fields[3].1.insert(1, *c),
            Some(Defect::Bom) => prefix = "\u{feff}".as_bytes(),
            Some(Defect::Trailing(t)) => suffix = t.as_bytes(),
        }
        let mut keyed: Vec<(usize, (String, Vec<u8>))> = fields.into_iter().enumerate().collect();
        keyed.sort_by_key(|(i, _)| (self.order[i % self.order.len()], *i));
        let gap = self.gap.as_bytes();
        let mut out = prefix.to_vec();
        out.push(b'{');
        out.extend_from_slice(gap);
        for (n, (_, (key, value))) in keyed.iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(gap);
                out.push(b',');
                out.extend_from_slice(gap);
            }
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(gap);
            out.push(b':');
            out.extend_from_slice(gap);
            out.extend_from_slice(value);
        }
        out.extend_from_slice(gap);
        out.push(b'}');
        out.extend_from_slice(suffix);
        out
    }

    /// The message as the analyzer should see it.
    fn value(&self) -> Value {
        let mut m = Map::new();
        m.insert("timestamp".into(), json!(self.timestamp));
        m.insert("severity".into(), json!(self.severity));
        m.insert("source".into(), json!(self.source));
        m.insert("message".into(), json!(self.text));
        for (i, v) in self.extras.iter().enumerate() {
            // Through text, as floats are read back (to the nearest, not always exactly).
            m.insert(
                format!("x{i}"),
                serde_json::from_str(&v.to_string()).unwrap(),
            );
        }
        if self.deep > 0 {
            let mut v = json!([]);
            for _ in 1..self.deep {
                v = json!([v]);
            }
            m.insert("deep".into(), v);
        }
        Value::Object(m)
    }
}

fn chars(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), len).prop_map(String::from_iter)
}

fn extra_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        // Integers too big for u64 are read as floats: still fine.
        Just(json!(1e25)),
        chars(0..8).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((chars(0..6), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0)],
        chars(1..12),
        chars(1..12),
        chars(0..40),
        prop::collection::vec(extra_value(), 0..3),
        prop_oneof![4 => Just(0usize), 1 => 1usize..100],
        prop::collection::vec(any::<u8>(), 1..8),
        any::<bool>(),
        prop::sample::select(vec!["", " ", "\t", " \t "]),
    )
        .prop_map(
            |(timestamp, severity, source, text, extras, deep, order, escape_all, gap)| Msg {
                timestamp,
                severity,
                source,
                text,
                extras,
                deep,
                order,
                escape_all,
                gap,
            },
        )
}

fn defect() -> impl Strategy<Value = Defect> {
    let not_string = prop::sample::select(vec!["1", "-2.5", "null", "true", "[]", "{}", "[\"a\"]"]);
    prop_oneof![
        (0usize..4).prop_map(Defect::Missing),
        (0usize..4, any::<bool>()).prop_map(|(f, e)| Defect::Duplicate(f, e)),
        prop::sample::select(vec![
            "\"1\"", "1.5", "true", "null", "[]", "{}", "1e3", "-0.0"
        ])
        .prop_map(|v| Defect::WrongType(0, v)),
        (1usize..4, not_string).prop_map(|(f, v)| Defect::WrongType(f, v)),
        (1usize..3).prop_map(Defect::EmptyString),
        prop::sample::select(vec![
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "100000000000000000000000000000",
        ])
        .prop_map(Defect::TimestampOutOfRange),
        (130usize..2000).prop_map(Defect::TooDeep),
        prop::sample::select(vec!["1e999", "-1e400", "1e309"]).prop_map(Defect::HugeNumber),
        prop::sample::select(vec!["[]", "1", "\"x\"", "null", "[{}]", "\"{}\""])
            .prop_map(Defect::NotAnObject),
        prop::sample::select(vec![
            &b"\xff"[..],
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"\xf8\x88\x80\x80\x80",
            b"\\ud800",
            b"\\udc00x",
            b"\\x",
        ])
        .prop_map(Defect::BadString),
        prop::sample::select(vec![&b"\xff"[..], b"\xe2\x82", b"\\ud800", b"\\q"])
            .prop_map(Defect::BadNestedKey),
        prop::sample::select(vec![0u8, 1, 0x1f, b'\t']).prop_map(Defect::ControlChar),
        Just(Defect::Bom),
        prop::sample::select(vec![" x", "{}", ",", "}", " 1", "\u{0}"]).prop_map(Defect::Trailing),
    ]
}

// === Packets built from messages ===

/// How a packet's messages are laid out, in both formats.
#[derive(Debug, Clone)]
struct Layout {
    crlf: bool,
    final_newline: bool,
    /// Blank lines before a message (by index modulo the count) and at the end.
    blanks: Vec<(Index, &'static str)>,
    /// Opening, separator and closing of the JSON array.
    array: (&'static str, &'static str, &'static str),
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(
            (
                any::<Index>(),
                prop::sample::select(vec!["", " ", "\t", " \t  ", "\r", "\x0c"]),
            ),
            0..4,
        ),
        prop::sample::select(vec![
            ("[", ",", "]"),
            (" [ ", " , ", " ] "),
            ("[\n  ", ",\n  ", "\n]\n"),
            ("\r\n[\r\n", ",\r\n", "\r\n]"),
        ]),
    )
        .prop_map(|(crlf, final_newline, blanks, array)| Layout {
            crlf,
            final_newline,
            blanks,
            array,
        })
}

/// The packet as NDJSON, and the 1-based line of each message.
fn ndjson_body(messages: &[Vec<u8>], layout: &Layout) -> (Vec<u8>, Vec<usize>) {
    let eol: &[u8] = if layout.crlf { b"\r\n" } else { b"\n" };
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut at = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        for (where_, blank) in &layout.blanks {
            if where_.index(messages.len() + 1) == i {
                lines.push(blank.as_bytes().to_vec());
            }
        }
        lines.push(m.clone());
        at.push(lines.len());
    }
    for (where_, blank) in &layout.blanks {
        if where_.index(messages.len() + 1) == messages.len() {
            lines.push(blank.as_bytes().to_vec());
        }
    }
    let mut body = lines.join(eol);
    if layout.final_newline {
        body.extend_from_slice(eol);
    }
    (body, at)
}

fn json_body(messages: &[Vec<u8>], layout: &Layout) -> Vec<u8> {
    let (open, sep, close) = layout.array;
    let mut body = open.as_bytes().to_vec();
    body.extend(messages.join(sep.as_bytes()));
    body.extend_from_slice(close.as_bytes());
    body
}

/// Valid messages, some of them (maybe none) with a defect.
fn packet() -> impl Strategy<Value = (Vec<(Msg, Option<Defect>)>, Layout)> {
    (
        prop::collection::vec((msg(), prop::option::weighted(0.15, defect())), 1..8),
        layout(),
    )
}

// === Mutations of bytes ===

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    /// Copies a line over another place of the body.
    SpliceLine(Index, Index),
    InsertBytes(Index, &'static [u8]),
    Bom,
    Crlf,
    BlankLines(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SpliceLine(a, b)),
        (
            any::<Index>(),
            prop::sample::select(vec![
                &b"\0"[..],
                b"\xff",
                b"\xc3",
                b"\xed\xa0\x80",
                b"\\u0000",
                b"\\ud800",
                b"\"",
                b"\\",
                b"{",
                b"}",
                b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
                b"]",
                b",",
                b":",
                b"\n",
                b"\r",
                b"\r\n",
                b"\n\n\n",
                b"1e999",
                b"-",
                b"99999999999999999999999",
                b"\"timestamp\":1,",
                b"\"severity\":\"x\",",
                b"\"message\":null,",
                b"\xef\xbb\xbf",
            ])
        )
            .prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        Just(Mutation::Bom),
        Just(Mutation::Crlf),
        (any::<Index>(), 1usize..4).prop_map(|(i, n)| Mutation::BlankLines(i, n)),
    ]
}

fn mutate(body: &mut Vec<u8>, m: &Mutation) {
    let at = |i: &Index, len: usize| i.index(len + 1);
    match m {
        Mutation::Flip(i, bit) if !body.is_empty() => {
            let i = i.index(body.len());
            body[i] ^= 1 << bit;
        }
        Mutation::Flip(..) => {}
        Mutation::Insert(i, b) => body.insert(at(i, body.len()), *b),
        Mutation::Delete(i) if !body.is_empty() => {
            body.remove(i.index(body.len()));
        }
        Mutation::Delete(_) => {}
        Mutation::Truncate(i) => body.truncate(at(i, body.len())),
        Mutation::SpliceLine(from, to) => {
            let line: Vec<u8> = {
                let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
                lines[from.index(lines.len())].to_vec()
            };
            let to = at(to, body.len());
            body.splice(to..to, line.into_iter().chain([b'\n']));
        }
        Mutation::InsertBytes(i, bytes) => {
            let i = at(i, body.len());
            body.splice(i..i, bytes.iter().copied());
        }
        Mutation::Bom => {
            body.splice(0..0, *b"\xef\xbb\xbf");
        }
        Mutation::Crlf => {
            *body = body
                .iter()
                .flat_map(|&b| {
                    if b == b'\n' {
                        vec![b'\r', b'\n']
                    } else {
                        vec![b]
                    }
                })
                .collect();
        }
        Mutation::BlankLines(i, n) => {
            let i = at(i, body.len());
            body.splice(i..i, std::iter::repeat_n(b'\n', *n));
        }
    }
}

/// Bytes that are mostly JSON tokens, so that arbitrary input reaches deep into the parser.
fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        &b"{"[..],
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"\"timestamp\"",
        b"\"severity\"",
        b"\"source\"",
        b"\"message\"",
        b"\"time\\u0073tamp\"",
        b"\"x\"",
        b"\"\"",
        b"\"a\\n\\u00e9\"",
        b"1",
        b"-7",
        b"0",
        b"1.5",
        b"1e999",
        b"9223372036854775808",
        b"null",
        b"true",
        b" ",
        b"\n",
        b"\r\n",
        b"\t",
        b"\"",
        b"\\",
        b"\0",
        b"\xff",
        b"\xef\xbb\xbf",
    ]);
    prop::collection::vec(token, 0..64).prop_map(|t| t.concat())
}

const VALID: &str =
    r#"{"timestamp":1020,"severity":"WARN","source":"app","message":"hello world!"}"#;

/// `n` cases, or `PROPTEST_CASES` for a longer (or shorter) run of every property here.
fn cases(n: u32) -> ProptestConfig {
    let env = std::env::var("PROPTEST_CASES").ok();
    ProptestConfig {
        cases: env.and_then(|c| c.parse().ok()).unwrap_or(n),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(16_384))]

    /// (a) Arbitrary bytes: no panic, and every answer holds up.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        check_all(&data);
    }

    /// (a) Arbitrary bytes around a valid message, to get past the first byte.
    #[test]
    fn arbitrary_bytes_after_a_valid_line_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..256),
        newline in any::<bool>(),
    ) {
        let mut body = VALID.as_bytes().to_vec();
        if newline {
            body.push(b'\n');
        }
        body.extend_from_slice(&data);
        check_all(&body);
    }

    /// (a) Soups of JSON tokens: no panic, and every answer holds up.
    #[test]
    fn json_token_soup_never_panics(data in token_soup()) {
        check_all(&data);
        let mut wrapped = b"[".to_vec();
        wrapped.extend_from_slice(&data);
        wrapped.push(b']');
        check_all(&wrapped);
    }
}

proptest! {
    #![proptest_config(cases(8192))]

    /// (b) Valid packets mutated byte by byte: accepted, or rejected at the first bad line
    /// or index inside the input.
    #[test]
    fn mutated_valid_packets_fail_in_place(
        (messages, layout) in packet(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let rendered: Vec<Vec<u8>> = messages.iter().map(|(m, _)| m.render(None)).collect();
        let (mut ndjson, _) = ndjson_body(&rendered, &layout);
        let mut json = json_body(&rendered, &layout);
        for m in &mutations {
            mutate(&mut ndjson, m);
            mutate(&mut json, m);
        }
        check_all(&ndjson);
        check_all(&json);
    }

}

proptest! {
    #![proptest_config(cases(4096))]

    /// (b) Messages with one defect each: the packet is rejected at the line (NDJSON) or
    /// index (JSON array) of the first one, or as a whole where the defect breaks the
    /// array's syntax; alone, each is rejected by `decode_message`.
    #[test]
    fn defective_messages_are_rejected_at_their_line_or_index((messages, layout) in packet()) {
        let rendered: Vec<Vec<u8>> =
            messages.iter().map(|(m, d)| m.render(d.as_ref())).collect();
        let first_bad = messages.iter().position(|(_, d)| d.is_some());

        let (ndjson, line_of) = ndjson_body(&rendered, &layout);
        let json = json_body(&rendered, &layout);
        check_all(&ndjson);
        check_all(&json);
        let from_ndjson = decode_packet(Bytes::from(ndjson), Format::Ndjson);
        let from_json = decode_packet(Bytes::from(json), Format::Json);
        for ((m, d), raw) in messages.iter().zip(&rendered) {
            match d {
                None => {
                    let p = decode_message(raw).expect("a valid message is accepted");
                    prop_assert_eq!(&check_forwarded(&p), &[m.value()]);
                }
                Some(d) => {
                    let e = decode_message(raw).expect_err("a defective message is rejected");
                    prop_assert_eq!(e.location, Location::Body, "{:?}: {}", d, e);
                }
            }
        }
        match first_bad {
            Some(i) => {
                let e = from_ndjson.expect_err("a packet with a bad message is rejected");
                prop_assert_eq!(e.location, Location::Line(line_of[i]), "{}", e);
                let e = from_json.expect_err("a packet with a bad message is rejected");
                if messages.iter().any(|(_, d)| d.as_ref().is_some_and(Defect::breaks_array)) {
                    // The first syntax error may come after the first bad element.
                    prop_assert!(
                        matches!(e.location, Location::Body | Location::Index(_)),
                        "{}", e
                    );
                } else {
                    prop_assert_eq!(e.location, Location::Index(i), "{}", e);
                }
            }
            None => {
                let (a, b) = (from_ndjson.unwrap(), from_json.unwrap());
                let want: Vec<Value> = messages.iter().map(|(m, _)| m.value()).collect();
                prop_assert_eq!(&check_forwarded(&a), &want);
                // (d) The same messages as NDJSON and as a JSON array: the same forwarded
                // bytes, hence the same count.
                prop_assert_eq!(a.messages as usize, messages.len());
                prop_assert_eq!(&a, &b);
            }
        }
    }

}

proptest! {
    #![proptest_config(cases(2048))]

    /// (c) Whatever is accepted round-trips: the forwarded NDJSON decodes to itself, with
    /// one line per non-blank line or element, each the message as sent.
    #[test]
    fn accepted_packets_round_trip((messages, layout) in packet()) {
        let rendered: Vec<Vec<u8>> = messages.iter().map(|(m, _)| m.render(None)).collect();
        let want: Vec<Value> = messages.iter().map(|(m, _)| m.value()).collect();
        let (ndjson, _) = ndjson_body(&rendered, &layout);
        let json = json_body(&rendered, &layout);
        for (body, format) in [(ndjson, Format::Ndjson), (json, Format::Json)] {
            let p = decode_packet(Bytes::from(body), format).unwrap();
            prop_assert_eq!(&check_forwarded(&p), &want);
            let twice = decode_packet(p.ndjson.clone(), Format::Ndjson).unwrap();
            prop_assert_eq!(&twice.ndjson, &p.ndjson);
            // Canonical NDJSON is forwarded as the very same buffer.
            prop_assert_eq!(twice.ndjson.as_ptr(), p.ndjson.as_ptr());
        }
    }
}

// === Adversarial bodies of a megabyte ===

const MB: usize = 1 << 20;

/// Decodes `body` in every way, checking the answers, and fails when any takes a second.
fn quick(name: &str, body: Vec<u8>) -> [Result<Packet, PacketError>; 3] {
    let started = Instant::now();
    let out = [
        decode_packet(Bytes::from(body.clone()), Format::Ndjson),
        decode_packet(Bytes::from(body.clone()), Format::Json),
        decode_message(&body),
    ];
    let took = started.elapsed();
    // Linear, each of these takes milliseconds even in the debug profile.
    assert!(took < Duration::from_secs(1), "{name}: {took:?}");
    for r in &out {
        match r {
            Ok(p) => {
                check_forwarded(p);
            }
            Err(e) => check_error(e),
        }
    }
    out
}

fn message_with(field: &str, value: &str) -> String {
    let mut v: Map<String, Value> = serde_json::from_str(VALID).unwrap();
    v.remove(field);
    let rest = serde_json::to_string(&v).unwrap();
    format!(r#"{{"{field}":{value},{}"#, &rest[1..])
}

#[test]
fn megabyte_bodies_are_decoded_or_refused_quickly() {
    let escapes = "\\n\\\"\\u00e9\\ud83d\\ude00".repeat(MB / 24);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("500k [", "[".repeat(MB / 2).into_bytes(), false),
        ("500k {", "{".repeat(MB / 2).into_bytes(), false),
        (
            "{\"a\": nested",
            "{\"a\":".repeat(MB / 5).into_bytes(),
            false,
        ),
        (
            "nested in a message",
            message_with("x", &"[".repeat(MB / 2)).into_bytes(),
            false,
        ),
        (
            "nested in an array",
            format!("[{}]", message_with("x", &"[".repeat(MB / 2))).into_bytes(),
            false,
        ),
        ("1M blank lines", "\n".repeat(MB).into_bytes(), false),
        ("500k CRLF", "\r\n".repeat(MB / 2).into_bytes(), false),
        (
            "1M blank lines then a message",
            format!("{}{VALID}", "\n".repeat(MB)).into_bytes(),
            true,
        ),
        (
            "a message after 250k blank lines of spaces",
            format!("{}{VALID}\n", "   \n".repeat(MB / 4)).into_bytes(),
            true,
        ),
        (
            "a 1 MB message of escapes",
            message_with("message", &format!("\"{escapes}\"")).into_bytes(),
            true,
        ),
        (
            "a 1 MB timestamp of escapes",
            message_with("timestamp", &format!("\"{escapes}\"")).into_bytes(),
            false,
        ),
        (
            "a 1 MB top-level string",
            format!("\"{escapes}\"").into_bytes(),
            false,
        ),
        (
            "a 1 MB unknown key",
            message_with(&format!("k{escapes}"), "1").into_bytes(),
            true,
        ),
        (
            "500k numbers",
            format!("[{}1]", "1,".repeat(MB / 2)).into_bytes(),
            false,
        ),
        (
            "a 1 MB number",
            message_with("x", &"9".repeat(MB)).into_bytes(),
            false,
        ),
        (
            "16k messages",
            format!("{VALID}\n")
                .repeat(MB / (VALID.len() + 1))
                .into_bytes(),
            true,
        ),
        (
            "16k messages in an array",
            format!(
                "[{VALID}{}]",
                format!(",{VALID}").repeat(MB / (VALID.len() + 1))
            )
            .into_bytes(),
            true,
        ),
    ];
    for (name, body, accepted) in cases {
        let [ndjson, json, _] = quick(name, body);
        let either = ndjson.is_ok() || json.is_ok();
        assert_eq!(either, accepted, "{name}: {ndjson:?} {json:?}");
    }
}
