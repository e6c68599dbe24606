//! Fluent forward in: a connection's bytes cut into frames ([`frame`]), and each frame read
//! into one packet of messages ([`decode_forward`]).
//!
//! A frame is one MessagePack array, in one of the four modes:
//!
//! | mode | frame |
//! | --- | --- |
//! | Message | `[tag, time, record, option?]` |
//! | Forward | `[tag, [[time, record], ...], option?]` |
//! | PackedForward | `[tag, entries, option?]`, `entries` a bin (or str) of `[time, record]` arrays one after another |
//! | CompressedPackedForward | as PackedForward, `entries` gzipped, the option saying `"compressed": "gzip"` |
//!
//! `time` is an EventTime (extension type 0: seconds then nanoseconds, each a big-endian
//! `u32`), an integer of epoch seconds, or a float of them. Fluent Bit's newer entries,
//! `[[time, metadata], record]`, are read too (the metadata is skipped). The option is a
//! map: `chunk` (a string the server answers with `{"ack": chunk}`, see [`super::encode_ack`]),
//! `size` (the number of entries, checked) and `compressed` (`gzip` or `text`).
//!
//! Each record, a map, becomes JSON and is mapped to a message as shippers' JSON on
//! `POST /packets` is ([`crate::mapping`], by the [`Schema`] of the options): the entry's
//! time is its `timestamp` (unless the record has a `timestamp` of its own), written as
//! exact decimal seconds so that the mapping writes it in the configured unit; the tag is
//! added as `tag` (unless the record has a `tag` or a `source`), which the mapping takes as
//! the `source` when the record has none of the usual source fields (`service`, `app`,
//! ...), and keeps as a field otherwise. A record that is a message already (as logdist's
//! own `forward` delivery sends them) is so forwarded unchanged.
//! Strings and UTF-8 bins are JSON strings; a bin that is not UTF-8, a key that is not a
//! string or integer, or an extension other than EventTime refuse their record alone
//! ([`Decoded::rejected`], for `--on-invalid`).
//!
//! Bytes in are untrusted: nothing here panics, and nothing allocates by a length or
//! count the input claims, only by the bytes it has. The framer refuses a frame that
//! claims more than the limit (a length, or a count of elements each at least a byte)
//! as soon as the claim is read; gzip is decompressed up to the limit.

use std::fmt;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rmp::Marker;

use crate::decoded::{Decoded, Lines, RecordError};
use crate::decoder::DecodeOptions;
use crate::mapping::write_string;
use crate::message::{Location, PacketError};
use crate::shippers::take_record;

/// Where the next frame ends, as far as the bytes so far tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// The first `n` bytes are one whole frame.
    Complete(usize),
    /// The frame is not whole yet: it needs at least this many bytes in all (more may be
    /// needed once they are read). Framing again before then is wasted work.
    Partial {
        /// The fewest bytes, from the frame's start, it can take.
        at_least: usize,
    },
}

/// Bytes that are no frame: the connection cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// The offset, from the frame's start, of what is wrong.
    pub at: usize,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.at, self.reason)
    }
}

impl std::error::Error for FrameError {}

/// How long the MessagePack array at the start of `buf` is: whole, or not yet. A frame
/// longer than `max_len` (or claiming to be) is an error, as is a frame that is not an
/// array. Walks the elements without recursion or allocation, so a lying count costs
/// nothing: each element takes at least a byte, so a count larger than the bytes left
/// under `max_len` is refused when it is read.
pub fn frame(buf: &[u8], max_len: usize) -> Result<Frame, FrameError> {
    let mut c = Cursor::new(buf);
    let partial = |at_least: usize| Ok(Frame::Partial { at_least });
    // Elements still to walk, the first being the frame itself.
    let mut pending: u64 = 1;
    let mut first = true;
    while pending > 0 {
        pending -= 1;
        let at = c.pos;
        if at >= max_len {
            return Err(too_long(at, max_len));
        }
        let head = match c.head() {
            Ok(head) => head,
            Err(Short) => return partial(buf.len() + 1),
        };
        if first {
            first = false;
            if !matches!(head, Head::Array(_)) {
                return Err(FrameError {
                    at,
                    reason: format!(
                        "expected a forward frame (a MessagePack array), found {}",
                        head.kind()
                    ),
                });
            }
        }
        let (elements, bytes) = match head {
            Head::Reserved => {
                return Err(FrameError {
                    at,
                    reason: "the byte 0xc1 is no MessagePack".to_owned(),
                });
            }
            Head::Array(n) => (u64::from(n), 0),
            Head::Map(n) => (2 * u64::from(n), 0),
            Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) => (0, n),
            _ => (0, 0),
        };
        let end = c.pos.saturating_add(bytes);
        if end > max_len {
            return Err(FrameError {
                at,
                reason: format!(
                    "a value of {bytes} bytes makes the frame longer than the limit of {max_len} bytes"
                ),
            });
        }
        if end > buf.len() {
            return partial(end);
        }
        c.pos = end;
        pending += elements;
        if pending > (max_len - c.pos) as u64 {
            return Err(FrameError {
                at,
                reason: format!(
                    "{} elements claimed: more than the limit of {max_len} bytes can hold",
                    pending
                ),
            });
        }
    }
    Ok(Frame::Complete(c.pos))
}

fn too_long(at: usize, max_len: usize) -> FrameError {
    FrameError {
        at,
        reason: format!("the frame is longer than the limit of {max_len} bytes"),
    }
}

/// One frame read: its messages (and refused records), and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    /// The tag of every entry.
    pub tag: String,
    /// The messages, and the records that could not be read or mapped.
    pub decoded: Decoded,
    /// The option's `chunk`: when set, the client waits for `{"ack": chunk}`.
    pub chunk: Option<String>,
    /// How many entries the frame held (messages and refused records).
    pub entries: usize,
}

/// Reads one frame (as [`frame`] cut it) into its events. The error is for a frame that
/// cannot be read at all (not one of the four modes, truncated, a bad option, a gzip that
/// is not gzip or grows past `options.max_len`); a record that cannot be read or mapped is
/// refused alone, in [`Decoded::rejected`].
pub fn decode_forward(frame: &[u8], options: &DecodeOptions) -> Result<Events, PacketError> {
    let mut c = Cursor::new(frame);
    let len = match c.head().map_err(|_| truncated())? {
        Head::Array(n @ 2..=4) => n,
        other => {
            return Err(body_error(format!(
                "expected a forward frame, an array of 2 to 4 elements, found {}",
                other.describe()
            )));
        }
    };
    let tag = c
        .string()
        .map_err(|e| body_error(format!("the tag: {e}")))?;
    let mut out = Out::new(frame.len(), options);
    let second = c.peek().ok_or_else(truncated)?;
    let (chunk, entries) = match Marker::from_u8(second) {
        // Forward: [tag, [[time, record], ...], option?]
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            let Head::Array(n) = c.head().map_err(|_| truncated())? else {
                unreachable!("an array marker")
            };
            check_len(len, 2, "Forward")?;
            for index in 0..n as usize {
                out.entry(&mut c, &tag, index)?;
            }
            let option = read_option(&mut c, len == 3)?;
            if option.compressed {
                return Err(body_error(
                    "`compressed` is for PackedForward entries, not a Forward array",
                ));
            }
            (option.check_size(n as usize)?, n as usize)
        }
        // PackedForward: [tag, entries, option?], entries a bin or str.
        Marker::Bin8
        | Marker::Bin16
        | Marker::Bin32
        | Marker::FixStr(_)
        | Marker::Str8
        | Marker::Str16
        | Marker::Str32 => {
            let stream = c.bytes().map_err(|_| truncated())?;
            check_len(len, 2, "PackedForward")?;
            let option = read_option(&mut c, len == 3)?;
            let unpacked;
            let stream = match option.compressed {
                true => {
                    unpacked = gunzip(stream, options.max_len)?;
                    &unpacked[..]
                }
                false => stream,
            };
            let mut s = Cursor::new(stream);
            let mut index = 0;
            while s.pos < stream.len() {
                out.entry(&mut s, &tag, index)
                    .map_err(|e| body_error(format!("in the packed entries: {}", e.reason)))?;
                index += 1;
            }
            (option.check_size(index)?, index)
        }
        // Message: [tag, time, record, option?]
        _ => {
            check_len(len, 3, "Message")?;
            let time = read_time(&mut c)?;
            out.record(&mut c, &tag, time, 0)?;
            let option = read_option(&mut c, len == 4)?;
            if option.compressed {
                return Err(body_error("`compressed` is for PackedForward entries"));
            }
            (option.check_size(1)?, 1)
        }
    };
    if c.pos != frame.len() {
        return Err(body_error(format!(
            "{} bytes after the frame's end",
            frame.len() - c.pos
        )));
    }
    Ok(Events {
        tag,
        decoded: out.lines.finish(out.rejected)?,
        chunk,
        entries,
    })
}

/// A frame of `len` elements is `base` of a mode, or one more with the option.
fn check_len(len: u32, base: u32, mode: &str) -> Result<(), PacketError> {
    if len == base || len == base + 1 {
        Ok(())
    } else {
        Err(body_error(format!(
            "a {mode} frame has {base} or {} elements, this one {len}",
            base + 1
        )))
    }
}

/// The option of a frame.
#[derive(Default)]
struct Options {
    chunk: Option<String>,
    size: Option<u64>,
    compressed: bool,
}

impl Options {
    /// The chunk, once `size` (when given) agrees with the entries read.
    fn check_size(self, entries: usize) -> Result<Option<String>, PacketError> {
        match self.size {
            Some(size) if size != entries as u64 => Err(body_error(format!(
                "the option `size` says {size} entries, the frame holds {entries}"
            ))),
            _ => Ok(self.chunk),
        }
    }
}

/// The option map, when the frame has one (`present`); nil is no option.
fn read_option(c: &mut Cursor<'_>, present: bool) -> Result<Options, PacketError> {
    let mut option = Options::default();
    if !present {
        return Ok(option);
    }
    let pairs = match c.head().map_err(|_| truncated())? {
        Head::Nil => return Ok(option),
        Head::Map(n) => n,
        other => {
            return Err(body_error(format!(
                "the option: expected a map, found {}",
                other.describe()
            )));
        }
    };
    for _ in 0..pairs {
        let key = c
            .string()
            .map_err(|e| body_error(format!("the option's key: {e}")))?;
        match key.as_str() {
            "chunk" => {
                let chunk = c
                    .string()
                    .map_err(|e| body_error(format!("the option `chunk`: {e}")))?;
                option.chunk = Some(chunk);
            }
            "size" => match c.head().map_err(|_| truncated())? {
                Head::Uint(n) => option.size = Some(n),
                other => {
                    return Err(body_error(format!(
                        "the option `size`: expected a count, found {}",
                        other.describe()
                    )));
                }
            },
            "compressed" => {
                let how = c
                    .string()
                    .map_err(|e| body_error(format!("the option `compressed`: {e}")))?;
                option.compressed = match how.as_str() {
                    "gzip" => true,
                    "text" => false,
                    other => {
                        let other: String = other.chars().take(32).collect();
                        return Err(body_error(format!(
                            "the option `compressed`: `{other}` is not `gzip` or `text`"
                        )));
                    }
                };
            }
            _ => c.skip().map_err(|_| truncated())?,
        }
    }
    Ok(option)
}

/// Decompresses CompressedPackedForward's entries (one gzip member or several, as Fluent
/// Bit appends them) up to `max_len` bytes.
fn gunzip(bytes: &[u8], max_len: usize) -> Result<Vec<u8>, PacketError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(max_len));
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes).take(max_len as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| body_error(format!("the entries are not gzip: {e}")))?;
    if out.len() > max_len {
        return Err(body_error(format!(
            "the entries decompress to more than the limit of {max_len} bytes"
        )));
    }
    Ok(out)
}

/// An entry's time, as the mapping reads it: exact decimal seconds, or the number sent.
enum Time {
    /// An EventTime.
    Event { seconds: u32, nanos: u32 },
    /// An integer of seconds.
    Int(i128),
    /// A float of seconds.
    Float(f64),
}

impl Time {
    fn write(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = match self {
            Time::Event { seconds, nanos } => write!(out, "{seconds}.{nanos:09}"),
            Time::Int(n) => write!(out, "{n}"),
            Time::Float(f) => write!(out, "{f}"),
        };
    }
}

/// An entry's time; an error is the frame's (a time that is not one breaks the stream's
/// shape, not only its record).
fn read_time(c: &mut Cursor<'_>) -> Result<Time, PacketError> {
    let at = c.pos;
    let head = c.head().map_err(|_| truncated())?;
    let time = match head {
        Head::Uint(n) => Time::Int(i128::from(n)),
        Head::Int(n) => Time::Int(i128::from(n)),
        Head::F64(f) if f.is_finite() => Time::Float(f),
        Head::F32(f) if f.is_finite() => Time::Float(f64::from(f)),
        Head::Ext(0, 8) => {
            let raw = c.take(8).map_err(|_| truncated())?;
            let seconds = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let nanos = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
            if nanos >= 1_000_000_000 {
                return Err(body_error(format!(
                    "byte {at}: an EventTime of {nanos} nanoseconds, more than a second"
                )));
            }
            Time::Event { seconds, nanos }
        }
        other => {
            return Err(body_error(format!(
                "byte {at}: expected a time (an integer, a float or an EventTime), found {}",
                other.describe()
            )));
        }
    };
    Ok(time)
}

/// The messages of a frame, as they are read.
struct Out<'o> {
    lines: Lines,
    rejected: Vec<RecordError>,
    options: &'o DecodeOptions,
    now: SystemTime,
    /// The JSON of the record being read, reused.
    json: Vec<u8>,
}

impl<'o> Out<'o> {
    fn new(frame_len: usize, options: &'o DecodeOptions) -> Self {
        let since = Duration::from_millis(options.now_ms.unsigned_abs());
        let now = match options.now_ms >= 0 {
            true => UNIX_EPOCH + since,
            false => UNIX_EPOCH - since,
        };
        Out {
            // JSON is about as long as MessagePack, with room for the fields added.
            lines: Lines::with_capacity(frame_len.saturating_mul(2)),
            rejected: Vec::new(),
            options,
            now,
            json: Vec::new(),
        }
    }

    /// One `[time, record]` entry (or Fluent Bit's `[[time, metadata], record]`).
    fn entry(&mut self, c: &mut Cursor<'_>, tag: &str, index: usize) -> Result<(), PacketError> {
        let at = c.pos;
        match c.head().map_err(|_| truncated())? {
            Head::Array(2) => {}
            other => {
                return Err(body_error(format!(
                    "byte {at}: entry {index}: expected [time, record], found {}",
                    other.describe()
                )));
            }
        }
        let time = match c.peek().map(Marker::from_u8) {
            Some(Marker::FixArray(2)) => {
                c.pos += 1;
                let time = read_time(c)?;
                c.skip().map_err(|_| truncated())?;
                time
            }
            _ => read_time(c)?,
        };
        self.record(c, tag, time, index)
    }

    /// One record, read into JSON and mapped; one that cannot be is refused alone. The
    /// error is a frame's that ends within the record.
    fn record(
        &mut self,
        c: &mut Cursor<'_>,
        tag: &str,
        time: Time,
        index: usize,
    ) -> Result<(), PacketError> {
        let start = c.pos;
        c.skip().map_err(|_| truncated())?;
        let raw = &c.buf[start..c.pos];
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        let result = to_json(raw, tag, &time, &mut json).and_then(|()| {
            let text = std::str::from_utf8(&json).map_err(|e| e.to_string())?;
            take_record(
                text,
                self.options.validation,
                &self.options.schema,
                self.now,
                &mut self.lines,
            )
        });
        if let Err(reason) = result {
            let text = match std::str::from_utf8(&json) {
                Ok(_) if !json.is_empty() => Bytes::copy_from_slice(&json),
                _ => Bytes::new(),
            };
            let mut error = RecordError::new(Location::Index(index), reason, text);
            error.reason = format!("entry {index}: {}", error.reason);
            self.rejected.push(error);
        }
        self.json = json;
        Ok(())
    }
}

/// The deepest nesting a record is read to (the message model's own bound).
const MAX_DEPTH: usize = 128;

/// A record (a map) as a JSON object, with the entry's time as `timestamp` unless the
/// record has one, and the tag as `tag` unless it has a `tag` or a `source`. `raw` is one
/// whole value.
fn to_json(raw: &[u8], tag: &str, time: &Time, out: &mut Vec<u8>) -> Result<(), String> {
    let mut c = Cursor::new(raw);
    let pairs = match c.head().map_err(|_| "truncated".to_owned())? {
        Head::Map(n) => n,
        other => {
            return Err(format!(
                "expected a record (a map), found {}",
                other.describe()
            ));
        }
    };
    out.push(b'{');
    let (mut has_time, mut has_tag) = (false, false);
    for i in 0..pairs {
        if i > 0 {
            out.push(b',');
        }
        let key = key(&mut c)?;
        has_time |= key == "timestamp";
        has_tag |= key == "tag" || key == "source";
        write_string(out, &key);
        out.push(b':');
        value(&mut c, out, 1)?;
    }
    let mut comma = pairs > 0;
    let mut sep = |out: &mut Vec<u8>| {
        if std::mem::replace(&mut comma, true) {
            out.push(b',');
        }
    };
    if !has_time {
        sep(out);
        out.extend_from_slice(b"\"timestamp\":");
        time.write(out);
    }
    if !has_tag {
        sep(out);
        out.extend_from_slice(b"\"tag\":");
        write_string(out, tag);
    }
    out.push(b'}');
    Ok(())
}

/// A map's key as text: a string, or an integer's digits.
fn key(c: &mut Cursor<'_>) -> Result<String, String> {
    match c.head().map_err(|_| "truncated".to_owned())? {
        Head::Str(n) | Head::Bin(n) => {
            let raw = c.take(n).map_err(|_| "truncated".to_owned())?;
            std::str::from_utf8(raw)
                .map(str::to_owned)
                .map_err(|_| "a key that is not UTF-8".to_owned())
        }
        Head::Uint(n) => Ok(n.to_string()),
        Head::Int(n) => Ok(n.to_string()),
        other => Err(format!(
            "a key that is {}, not a string or an integer",
            other.describe()
        )),
    }
}

/// One value as JSON.
fn value(c: &mut Cursor<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), String> {
    use std::io::Write;
    if depth > MAX_DEPTH {
        return Err(format!("a value nested deeper than {MAX_DEPTH}"));
    }
    let short = |_| "truncated".to_owned();
    let at = c.pos;
    match c.head().map_err(short)? {
        Head::Nil => out.extend_from_slice(b"null"),
        Head::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Head::Uint(n) => {
            let _ = write!(out, "{n}");
        }
        Head::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Head::F32(f) => float(out, f64::from(f)),
        Head::F64(f) => float(out, f),
        Head::Str(n) | Head::Bin(n) => {
            let raw = c.take(n).map_err(short)?;
            let text = std::str::from_utf8(raw)
                .map_err(|_| format!("byte {at}: a string or bin that is not UTF-8"))?;
            write_string(out, text);
        }
        Head::Array(n) => {
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                value(c, out, depth + 1)?;
            }
            out.push(b']');
        }
        Head::Map(n) => {
            out.push(b'{');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                let key = key(c)?;
                write_string(out, &key);
                out.push(b':');
                value(c, out, depth + 1)?;
            }
            out.push(b'}');
        }
        Head::Ext(0, 8) => {
            c.pos = at;
            match read_time(c) {
                Ok(time) => time.write(out),
                Err(e) => return Err(e.reason),
            }
        }
        Head::Ext(kind, _) => {
            return Err(format!("byte {at}: an extension of type {kind}"));
        }
        Head::Reserved => return Err(format!("byte {at}: the byte 0xc1 is no MessagePack")),
    }
    Ok(())
}

/// A float as a JSON number; JSON has no NaN or infinity, so those are null.
fn float(out: &mut Vec<u8>, f: f64) {
    use std::io::Write;
    if f.is_finite() {
        let _ = write!(out, "{f}");
        // `1` from 1.0: still a number, and the same one.
    } else {
        out.extend_from_slice(b"null");
    }
}

fn truncated() -> PacketError {
    body_error("the frame ends early")
}

fn body_error(reason: impl Into<String>) -> PacketError {
    PacketError {
        location: Location::Body,
        reason: reason.into(),
    }
}

/// The bytes ran out.
#[derive(Debug)]
struct Short;

/// A value's head: its kind, with its scalar or its length.
#[derive(Debug, Clone, Copy)]
enum Head {
    Nil,
    Reserved,
    Bool(bool),
    Uint(u64),
    Int(i64),
    F32(f32),
    F64(f64),
    Str(usize),
    Bin(usize),
    Array(u32),
    Map(u32),
    Ext(i8, usize),
}

impl Head {
    fn kind(self) -> &'static str {
        match self {
            Head::Nil => "nil",
            Head::Reserved => "the byte 0xc1",
            Head::Bool(_) => "a boolean",
            Head::Uint(_) | Head::Int(_) => "an integer",
            Head::F32(_) | Head::F64(_) => "a float",
            Head::Str(_) => "a string",
            Head::Bin(_) => "a bin",
            Head::Array(_) => "an array",
            Head::Map(_) => "a map",
            Head::Ext(..) => "an extension",
        }
    }

    fn describe(self) -> String {
        match self {
            Head::Array(n) => format!("an array of {n}"),
            Head::Map(n) => format!("a map of {n}"),
            other => other.kind().to_owned(),
        }
    }
}

/// A position in untrusted MessagePack.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Short)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<usize, Short> {
        Ok(usize::from(self.array::<1>()?[0]))
    }

    fn u16(&mut self) -> Result<usize, Short> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn len32(&mut self) -> Result<usize, Short> {
        // usize is at least 32 bits on every target this builds for; saturating keeps a
        // smaller one from wrapping.
        Ok(usize::try_from(self.u32()?).unwrap_or(usize::MAX))
    }

    /// Reads a value's marker and what follows it up to its content: the scalar, or the
    /// length of a string, bin or extension (whose bytes are next), or the count of an
    /// array or map (whose elements are next).
    fn head(&mut self) -> Result<Head, Short> {
        let byte = self.take(1)?[0];
        Ok(match Marker::from_u8(byte) {
            Marker::FixPos(n) => Head::Uint(u64::from(n)),
            Marker::FixNeg(n) => Head::Int(i64::from(n)),
            Marker::FixMap(n) => Head::Map(u32::from(n)),
            Marker::FixArray(n) => Head::Array(u32::from(n)),
            Marker::FixStr(n) => Head::Str(usize::from(n)),
            Marker::Null => Head::Nil,
            Marker::Reserved => Head::Reserved,
            Marker::False => Head::Bool(false),
            Marker::True => Head::Bool(true),
            Marker::Bin8 => Head::Bin(self.u8()?),
            Marker::Bin16 => Head::Bin(self.u16()?),
            Marker::Bin32 => Head::Bin(self.len32()?),
            Marker::Ext8 => {
                let len = self.u8()?;
                Head::Ext(self.array::<1>()?[0] as i8, len)
            }
            Marker::Ext16 => {
                let len = self.u16()?;
                Head::Ext(self.array::<1>()?[0] as i8, len)
            }
            Marker::Ext32 => {
                let len = self.len32()?;
                Head::Ext(self.array::<1>()?[0] as i8, len)
            }
            Marker::FixExt1 => Head::Ext(self.array::<1>()?[0] as i8, 1),
            Marker::FixExt2 => Head::Ext(self.array::<1>()?[0] as i8, 2),
            Marker::FixExt4 => Head::Ext(self.array::<1>()?[0] as i8, 4),
            Marker::FixExt8 => Head::Ext(self.array::<1>()?[0] as i8, 8),
            Marker::FixExt16 => Head::Ext(self.array::<1>()?[0] as i8, 16),
            Marker::F32 => Head::F32(f32::from_be_bytes(self.array()?)),
            Marker::F64 => Head::F64(f64::from_be_bytes(self.array()?)),
            Marker::U8 => Head::Uint(self.u8()? as u64),
            Marker::U16 => Head::Uint(self.u16()? as u64),
            Marker::U32 => Head::Uint(u64::from(self.u32()?)),
            Marker::U64 => Head::Uint(u64::from_be_bytes(self.array()?)),
            Marker::I8 => Head::Int(i64::from(i8::from_be_bytes(self.array()?))),
            Marker::I16 => Head::Int(i64::from(i16::from_be_bytes(self.array()?))),
            Marker::I32 => Head::Int(i64::from(i32::from_be_bytes(self.array()?))),
            Marker::I64 => Head::Int(i64::from_be_bytes(self.array()?)),
            Marker::Str8 => Head::Str(self.u8()?),
            Marker::Str16 => Head::Str(self.u16()?),
            Marker::Str32 => Head::Str(self.len32()?),
            Marker::Array16 => Head::Array(self.u16()? as u32),
            Marker::Array32 => Head::Array(self.u32()?),
            Marker::Map16 => Head::Map(self.u16()? as u32),
            Marker::Map32 => Head::Map(self.u32()?),
        })
    }

    /// A string (or a bin, as old Fluentd clients send text) that is UTF-8.
    fn string(&mut self) -> Result<String, String> {
        let n = match self.head().map_err(|_| "the frame ends early".to_owned())? {
            Head::Str(n) | Head::Bin(n) => n,
            other => return Err(format!("expected a string, found {}", other.describe())),
        };
        let raw = self
            .take(n)
            .map_err(|_| "the frame ends early".to_owned())?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| "a string that is not UTF-8".to_owned())
    }

    /// The content of a string or bin.
    fn bytes(&mut self) -> Result<&'a [u8], Short> {
        match self.head()? {
            Head::Str(n) | Head::Bin(n) => self.take(n),
            _ => Err(Short),
        }
    }

    /// Skips one whole value, without recursion: each element takes a byte at least, so a
    /// lying count ends with the bytes.
    fn skip(&mut self) -> Result<(), Short> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            match self.head()? {
                Head::Array(n) => pending += u64::from(n),
                Head::Map(n) => pending += 2 * u64::from(n),
                Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) => {
                    self.take(n)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
