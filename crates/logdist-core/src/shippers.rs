//! `POST /packets` as log shippers send it: a JSON array or NDJSON of records, each either
//! a message already or a JSON object to map to one ([`crate::mapping`]).
//!
//! A body whose records are all messages takes the native decoder's path as it is, at its
//! speed, forwarded byte for byte (canonical NDJSON without even a copy). Only a body with
//! a record that is not a message is read record by record: each message forwarded as
//! sent, each other object mapped, and each record that is neither reported in
//! [`Decoded::rejected`] without failing the others.

use std::time::SystemTime;

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::decoded::{Decoded, Lines, RecordError};
use crate::mapping::Mapping;
use crate::message::{
    Format, Location, PacketError, Validation, decode_packet_with, describe, validate,
};

/// What a record that is not a message already becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// It is mapped to one (the default).
    Map(Mapping),
    /// It is bad: only messages are taken, as before shippers' JSON was (`--schema strict`).
    Strict,
}

impl Default for Schema {
    fn default() -> Self {
        Schema::Map(Mapping::default())
    }
}

/// Decodes a body of records (`format` as [`decode_packet_with`] takes it) into messages
/// and bad records. `now` is the arrival time, for records without a time.
///
/// The error is for a body that cannot be read as records at all: empty, not JSON (an
/// NDJSON body with no line that is JSON), or of more than `u32::MAX` records.
///
/// With [`Validation::Framing`] nothing is parsed, so nothing is mapped: the records are
/// checked as [`decode_packet_with`] checks them, and the schema has no effect.
pub fn decode_records(
    body: Bytes,
    format: Format,
    validation: Validation,
    schema: &Schema,
    now: SystemTime,
) -> Result<Decoded, PacketError> {
    let first_error = match decode_packet_with(body.clone(), format, validation) {
        Ok(packet) => {
            return Ok(Decoded::from(packet));
        }
        Err(e) => e,
    };
    let lone_object = format == Format::Json && body.trim_ascii_start().starts_with(b"{");
    if first_error.location == Location::Body && !lone_object {
        return Err(first_error);
    }
    let reader = Reader {
        body: &body,
        schema: match validation {
            Validation::Full => schema,
            Validation::Framing => &Schema::Strict,
        },
        validation,
        now,
    };
    match format {
        Format::Ndjson => reader.ndjson(),
        Format::Json if lone_object => reader.lone_object(),
        Format::Json => reader.array(),
    }
}

/// Reads a body record by record, once the native path has found a record that is not a
/// message.
struct Reader<'a> {
    body: &'a Bytes,
    schema: &'a Schema,
    validation: Validation,
    now: SystemTime,
}

impl Reader<'_> {
    fn ndjson(&self) -> Result<Decoded, PacketError> {
        let body = &self.body[..];
        let mut lines = Lines::with_capacity(body.len() + body.len() / 2);
        let mut rejected = Vec::new();
        // Whether some line is JSON: a body none of whose lines is, is no NDJSON at all.
        let mut any_json = false;
        let mut start = 0;
        for (n, piece) in body.split(|&b| b == b'\n').enumerate() {
            let at = start;
            start += piece.len() + 1;
            let line = piece.strip_suffix(b"\r").unwrap_or(piece);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let result = match std::str::from_utf8(line) {
                Ok(text) => self.record(text, &mut lines).inspect_err(|_| {
                    any_json = any_json || serde_json::from_str::<IgnoredAny>(text).is_ok();
                }),
                Err(e) => Err(format!("invalid UTF-8 at byte {}", at + e.valid_up_to())),
            };
            if let Err(reason) = result {
                let raw = self.body.slice(at..at + line.len());
                rejected.push(RecordError::new(Location::Line(n + 1), reason, raw));
            }
        }
        if lines.messages == 0
            && !any_json
            && let Some(first) = rejected.first()
        {
            return Err(first.clone().into());
        }
        lines.finish(rejected)
    }

    fn array(&self) -> Result<Decoded, PacketError> {
        // The native path read the array before it found a bad element, so this succeeds.
        let text = std::str::from_utf8(self.body).map_err(|_| body_error("invalid UTF-8"))?;
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| body_error(&describe(&e)))?;
        let mut lines = Lines::with_capacity(text.len() + text.len() / 2);
        let mut rejected = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Err(reason) = self.record(item.get(), &mut lines) {
                let raw = self.body.slice_ref(item.get().as_bytes());
                rejected.push(RecordError::new(Location::Index(i), reason, raw));
            }
        }
        lines.finish(rejected)
    }

    /// A JSON body that is one object: a packet of one record, whose location is the body.
    fn lone_object(&self) -> Result<Decoded, PacketError> {
        let mut lines = Lines::default();
        let result = match std::str::from_utf8(self.body) {
            Ok(text) => self.record(text, &mut lines),
            Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
        };
        let mut rejected = Vec::new();
        if let Err(reason) = result {
            let error = RecordError::new(Location::Body, reason, self.body.clone());
            // Not JSON at all: the body's error.
            if serde_json::from_slice::<IgnoredAny>(self.body).is_err() {
                return Err(error.into());
            }
            rejected.push(error);
        }
        lines.finish(rejected)
    }

    fn record(&self, text: &str, lines: &mut Lines) -> Result<(), String> {
        take_record(text, self.validation, self.schema, self.now, lines)
    }
}

/// One record: forwarded as sent if it is a message, else mapped (or refused, as the
/// schema says), and appended to `lines`. The error is the reason it is bad.
pub(crate) fn take_record(
    text: &str,
    validation: Validation,
    schema: &Schema,
    now: SystemTime,
    lines: &mut Lines,
) -> Result<(), String> {
    match (schema, validation) {
        // The mapping keeps a message as sent. A body whose records are all messages took
        // the native path; here most records are not, so each is parsed once, by the
        // mapping, without a scan for a plain message first.
        (Schema::Map(mapping), Validation::Full) => {
            mapping.map(text, now, &mut lines.out)?;
            lines.messages += 1;
        }
        (Schema::Strict, Validation::Full) => {
            validate(text)?;
            lines.push_valid(text.as_bytes());
        }
        (_, Validation::Framing) => {
            crate::message::check_framing(text)?;
            lines.push_valid(text.as_bytes());
        }
    }
    Ok(())
}

fn body_error(reason: &str) -> PacketError {
    PacketError {
        location: Location::Body,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests;
