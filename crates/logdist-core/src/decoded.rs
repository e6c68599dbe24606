//! What the decoders of shippers' protocols give back: the packet of the records that are
//! messages, and each record that is not, with where it was, why, and its text.
//!
//! A bad record does not fail its body: the caller decides, by its `--on-invalid` policy,
//! whether the body is refused ([`Decoded::into_packet`] gives the first bad record as the
//! body's error, as the native decoder words it), whether bad records are dropped, or
//! written to a dead-letter file.

use std::fmt;

use bytes::Bytes;

use crate::bulk::item::BulkItem;
use crate::message::{Location, Packet, PacketError, validate};

/// A decoded body: the records that are messages, and those that are not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The messages, one NDJSON line each. It may hold none, when every record was bad.
    pub packet: Packet,
    /// The bad records, in the body's order.
    pub rejected: Vec<RecordError>,
    /// Every item of a body whose protocol answers item by item (Elasticsearch's bulk), in
    /// the body's order; empty for the others.
    pub items: Vec<BulkItem>,
}

impl Decoded {
    /// The packet if no record was bad, else the first bad record's error: today's answer
    /// of `/packets`, where one bad message refuses the packet.
    pub fn into_packet(self) -> Result<Packet, PacketError> {
        match self.rejected.into_iter().next() {
            Some(first) => Err(first.into()),
            None => Ok(self.packet),
        }
    }
}

/// A packet refused by none of its records: what a decoder that refuses bad bodies whole
/// (the native ones) gives.
impl From<Packet> for Decoded {
    fn from(packet: Packet) -> Self {
        Decoded {
            packet,
            rejected: Vec::new(),
            items: Vec::new(),
        }
    }
}

/// The longest start of a bad record kept in its [`RecordError`], in bytes.
///
/// Bad records are kept to be written to the dead-letter file, which is bounded in size
/// and rotated: one record of megabytes (a body can be one line) would push every other
/// out of it. 16 KiB keeps any usual log record whole. The record is a slice of the body
/// (no copy), so what is kept costs nothing until it is written.
pub const MAX_RECORD_KEPT: usize = 16 * 1024;

/// A record that is not a message, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Where it is in the body, numbered as the native decoder numbers messages.
    pub location: Location,
    /// What is wrong, in words.
    pub reason: String,
    /// The record as sent, up to [`MAX_RECORD_KEPT`] bytes (cut at a character boundary
    /// when it is UTF-8). Empty for records of binary protocols, which have no text of
    /// their own.
    pub record: Bytes,
    /// The record's whole length in bytes: more than `record.len()` when it was cut.
    pub record_len: usize,
}

impl RecordError {
    /// An error for `record`, a slice of the body, keeping its start.
    pub(crate) fn new(location: Location, reason: impl Into<String>, record: Bytes) -> Self {
        let keep = kept_len(&record);
        RecordError {
            location,
            reason: reason.into(),
            record: record.slice(..keep),
            record_len: record.len(),
        }
    }

    /// An error for `record`, copying only the start that is kept: for decoders that have
    /// the body as a borrowed slice.
    pub(crate) fn copied(location: Location, reason: impl Into<String>, record: &[u8]) -> Self {
        RecordError {
            location,
            reason: reason.into(),
            record: Bytes::copy_from_slice(&record[..kept_len(record)]),
            record_len: record.len(),
        }
    }

    /// Whether `record` is only the start of the record.
    pub fn truncated(&self) -> bool {
        self.record.len() < self.record_len
    }
}

/// How much of a record is kept: at most [`MAX_RECORD_KEPT`] bytes, cut where a character
/// starts when the record is UTF-8.
fn kept_len(record: &[u8]) -> usize {
    let mut keep = record.len().min(MAX_RECORD_KEPT);
    if keep < record.len() && std::str::from_utf8(record).is_ok() {
        // A UTF-8 continuation byte is 0b10xx_xxxx.
        while (record[keep] as i8) < -0x40 {
            keep -= 1;
        }
    }
    keep
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        PacketError::from(self.clone()).fmt(f)
    }
}

impl std::error::Error for RecordError {}

impl From<RecordError> for PacketError {
    fn from(e: RecordError) -> Self {
        PacketError {
            location: e.location,
            reason: e.reason,
        }
    }
}

/// The NDJSON of the messages a decoder accepts, as they are accepted.
#[derive(Default)]
pub(crate) struct Lines {
    pub(crate) out: Vec<u8>,
    /// How many lines `out` holds; more than a packet may hold is refused at the end.
    pub(crate) messages: u64,
}

impl Lines {
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Lines {
            out: Vec::with_capacity(bytes),
            messages: 0,
        }
    }

    /// Appends a valid message as sent, as one line: a raw line break in valid JSON is
    /// whitespace between tokens, so a space keeps the message the same.
    pub(crate) fn push_valid(&mut self, raw: &[u8]) {
        let raw = raw.trim_ascii();
        let start = self.out.len();
        self.out.extend_from_slice(raw);
        for byte in &mut self.out[start..] {
            if *byte == b'\n' || *byte == b'\r' {
                *byte = b' ';
            }
        }
        self.out.push(b'\n');
        self.messages += 1;
    }

    /// Ends a message a decoder built in `out` from `start`: checked as the native decoder
    /// checks a message (which keeps values nested too deep for it out), then ended as a
    /// line and counted. On an error it is taken back out, and the reason says why.
    pub(crate) fn end_built(&mut self, start: usize) -> Result<(), String> {
        let line = std::str::from_utf8(&self.out[start..]).expect("JSON written from strings");
        if let Err(reason) = validate(line) {
            self.out.truncate(start);
            return Err(reason);
        }
        self.out.push(b'\n');
        self.messages += 1;
        Ok(())
    }

    pub(crate) fn finish(self, rejected: Vec<RecordError>) -> Result<Decoded, PacketError> {
        let messages = u32::try_from(self.messages).map_err(|_| PacketError {
            location: Location::Body,
            reason: "too many messages in one packet".to_owned(),
        })?;
        Ok(Decoded {
            packet: Packet {
                ndjson: Bytes::from(self.out),
                messages,
            },
            rejected,
            items: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cut_where_a_character_starts() {
        let mut text = "a".repeat(MAX_RECORD_KEPT - 1);
        text.push('é');
        text.push_str("tail");
        let e = RecordError::new(Location::Line(3), "bad", Bytes::from(text.clone()));
        assert_eq!(
            (e.record.len(), e.record_len),
            (MAX_RECORD_KEPT - 1, text.len())
        );
        assert!(e.truncated());
        let copied = RecordError::copied(Location::Line(3), "bad", text.as_bytes());
        assert_eq!(copied, e);
        // Bytes that are not UTF-8 are cut at the bound.
        let bytes = vec![0xff; MAX_RECORD_KEPT + 5];
        let e = RecordError::copied(Location::Index(0), "bad", &bytes);
        assert_eq!(e.record.len(), MAX_RECORD_KEPT);
        // A short record is kept whole.
        let e = RecordError::copied(Location::Body, "bad", b"{}");
        assert!(!e.truncated());
        assert_eq!(e.to_string(), "bad");
    }

    #[test]
    fn the_first_bad_record_is_the_packets_error() {
        let decoded = Decoded {
            packet: Packet {
                ndjson: Bytes::new(),
                messages: 0,
            },
            rejected: vec![
                RecordError::copied(Location::Line(2), "first", b"x"),
                RecordError::copied(Location::Line(5), "second", b"y"),
            ],
            items: Vec::new(),
        };
        let e = decoded.into_packet().unwrap_err();
        assert_eq!(e.to_string(), "line 2: first");
    }
}
