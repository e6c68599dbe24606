//! Messages to Fluent forward, for the `forward` delivery protocol: a batch is one
//! PackedForward, `[tag, entries, {"chunk": ID, "size": N}]`, whose `entries` (a bin) hold
//! one `[EventTime, record]` entry per message:
//!
//! - `record` is the message's JSON object as a MessagePack map, every field kept, in
//!   order (see [`Writer::json_record`]).
//! - the EventTime is the message's `timestamp` (an integer in the configured unit), or
//!   the time of sending (`now`) when it has none that fits an EventTime (1970 to 2106).
//! - a line that is not a JSON object (logdist validates what it forwards, so only a
//!   mistake brings one here) becomes the record `{"message": TEXT}` of its text.
//!
//! `chunk` is the id the server acknowledges the batch by, `{"ack": ID}`
//! ([`encode_ack`], [`read_ack`]); `size` the number of entries.

use rmp::decode;

use super::msgpack::{Container, EventTime, Open, Writer};
use crate::mapping::TimestampUnit;

/// A PackedForward being written, one message at a time.
#[derive(Debug)]
pub struct PackedForward {
    writer: Writer,
    entries: Open,
    size: u64,
    unit: TimestampUnit,
    now: EventTime,
}

impl PackedForward {
    /// A PackedForward under `tag`, messages' times read in `unit`, `now` the time of
    /// those without one; with room for `capacity` bytes (about the messages' JSON size).
    pub fn new(tag: &str, unit: TimestampUnit, now: EventTime, capacity: usize) -> Self {
        let mut writer = Writer::with_capacity(capacity + tag.len() + 64);
        writer.array_len(3);
        writer.str(tag);
        let entries = writer.open(Container::Bin);
        Self {
            writer,
            entries,
            size: 0,
            unit,
            now,
        }
    }

    /// Adds one message (one NDJSON line, without its newline) as an entry.
    pub fn push(&mut self, message: &[u8]) {
        let w = &mut self.writer;
        let start = w.len();
        w.array_len(2);
        // The time is known once the record is read: room for it, filled after.
        let time_at = w.len();
        w.event_time(self.now);
        let time = match w.json_record(message) {
            Ok(timestamp) => timestamp
                .and_then(|t| EventTime::from_nanos(self.unit.to_nanos(t)))
                .unwrap_or(self.now),
            Err(_) => {
                w.truncate(start);
                w.array_len(2);
                w.event_time(self.now);
                w.map_len(1);
                w.str("message");
                w.str(&String::from_utf8_lossy(message));
                self.size += 1;
                return;
            }
        };
        if time != self.now {
            w.rewrite_event_time(time_at, time);
        }
        self.size += 1;
    }

    /// Entries so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The PackedForward, with `chunk` as the id the server acknowledges it by.
    pub fn finish(self, chunk: &str) -> Vec<u8> {
        let mut w = self.writer;
        w.close(self.entries, 0);
        w.map_len(2);
        w.str("chunk");
        w.str(chunk);
        w.str("size");
        w.uint(self.size);
        w.into_vec()
    }
}

/// One PackedForward of `messages` (each one NDJSON line, without its newline) under
/// `tag`, acknowledged by `chunk`; times in `unit`, `now` for messages without one.
pub fn encode_packed_forward<M: AsRef<[u8]>>(
    tag: &str,
    messages: impl IntoIterator<Item = M>,
    unit: TimestampUnit,
    now: EventTime,
    chunk: &str,
) -> Vec<u8> {
    let mut packed = PackedForward::new(tag, unit, now, 0);
    for message in messages {
        packed.push(message.as_ref());
    }
    packed.finish(chunk)
}

/// A server's acknowledgement of `chunk`: `{"ack": chunk}`.
pub fn encode_ack(chunk: &str) -> Vec<u8> {
    let mut w = Writer::with_capacity(chunk.len() + 8);
    w.map_len(1);
    w.str("ack");
    w.str(chunk);
    w.into_vec()
}

/// What the bytes a server answered hold so far.
#[derive(Debug, PartialEq, Eq)]
pub enum AckRead {
    /// Not yet a whole answer: read more.
    Incomplete,
    /// An acknowledgement of this chunk id, in the first `len` bytes.
    Ack { chunk: String, len: usize },
    /// Not an acknowledgement: what is wrong with it.
    Invalid(String),
}

/// Reads an answer to a chunk from the start of `bytes`: a map with `"ack"`, a string.
/// Other pairs are allowed when their keys and values are strings; anything else is not
/// an acknowledgement.
pub fn read_ack(bytes: &[u8]) -> AckRead {
    let mut rd = bytes;
    let pairs = match decode::read_map_len(&mut rd) {
        Ok(n) => n,
        Err(e) => return eof_or(&e, "the answer is not a map"),
    };
    let mut chunk = None;
    for _ in 0..pairs {
        let key = match read_string(&mut rd) {
            Ok(key) => key,
            Err(read) => return read.or("a key of the answer is not a string"),
        };
        let value = match read_string(&mut rd) {
            Ok(value) => value,
            Err(read) => return read.or("a value of the answer is not a string"),
        };
        if key == "ack" {
            chunk = Some(value);
        }
    }
    match chunk {
        Some(chunk) => AckRead::Ack {
            chunk,
            len: bytes.len() - rd.len(),
        },
        None => AckRead::Invalid("the answer has no `ack`".to_owned()),
    }
}

/// Why a string could not be read: the bytes end first, or it is something else.
enum Short {
    Eof,
    Other,
}

impl Short {
    fn or(self, why: &str) -> AckRead {
        match self {
            Short::Eof => AckRead::Incomplete,
            Short::Other => AckRead::Invalid(why.to_owned()),
        }
    }
}

/// Longest string read in an answer: a chunk id is a few dozen bytes.
const MAX_ACK_STRING: u32 = 1024;

fn read_string(rd: &mut &[u8]) -> Result<String, Short> {
    let len = decode::read_str_len(rd).map_err(|e| short(&e))?;
    if len > MAX_ACK_STRING {
        return Err(Short::Other);
    }
    let len = len as usize;
    if rd.len() < len {
        return Err(Short::Eof);
    }
    let (text, rest) = rd.split_at(len);
    *rd = rest;
    String::from_utf8(text.to_vec()).map_err(|_| Short::Other)
}

fn short(e: &decode::ValueReadError<std::io::Error>) -> Short {
    match e {
        decode::ValueReadError::InvalidMarkerRead(io)
        | decode::ValueReadError::InvalidDataRead(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Short::Eof
        }
        _ => Short::Other,
    }
}

fn eof_or(e: &decode::ValueReadError<std::io::Error>, why: &str) -> AckRead {
    short(e).or(why)
}
