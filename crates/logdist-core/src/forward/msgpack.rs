//! MessagePack written into a growing buffer, as the forward protocol needs it: a
//! message's JSON transcoded straight to MessagePack (no tree in between), EventTime, and
//! the header of an array, map or bin written once its content is, which JSON does not
//! count ahead.
//!
//! ## Why `rmp`
//!
//! `rmp` (0.8) is MessagePack's low-level encoders and decoders, one function a type,
//! with `num-traits` as its only dependency. The alternatives build a tree or a serde
//! data model first:
//! - `rmpv` decodes to and encodes from a `Value` tree: one allocation per string, map
//!   and array of every record, and the JSON would be parsed into a second tree first.
//! - `rmp-serde` with `serde-transcode` streams serde_json's deserializer into
//!   MessagePack without a tree, but a JSON object's length is not known before its end,
//!   so `rmp-serde` buffers every map into a `Vec` of its own and copies it; and the
//!   record's `timestamp` would still need a pass of its own. It adds `rmp-serde` and
//!   `serde-transcode` to `rmp`.
//!
//! Here a serde [`Visitor`] over serde_json's deserializer writes each value with `rmp`
//! as it is read, picks the top-level `timestamp` on the way, and writes each container's
//! header in room left before its content (see [`Writer::close`]). `rmpv` is a
//! dev-dependency only: the tests decode the output with it, an implementation that is not
//! this one.

use std::convert::Infallible;
use std::fmt;

use rmp::encode::{self, ByteBuf, ValueWriteError};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The extension type of an EventTime.
pub const EVENT_TIME_EXT: i8 = 0;

/// A moment as the forward protocol carries it: seconds since the epoch and nanoseconds,
/// each an unsigned 32-bit integer (so from 1970 to 2106).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: u32,
    /// Nanoseconds within the second, below 1,000,000,000.
    pub nanoseconds: u32,
}

impl EventTime {
    /// The moment `nanos` nanoseconds after the epoch; `None` before 1970 or after 2106.
    pub fn from_nanos(nanos: i128) -> Option<Self> {
        let seconds = u32::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
        let nanoseconds = nanos.rem_euclid(1_000_000_000) as u32;
        Some(Self {
            seconds,
            nanoseconds,
        })
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanoseconds)
    }

    /// The extension's 8 bytes: seconds, then nanoseconds, big-endian.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut bytes = [0; 8];
        bytes[..4].copy_from_slice(&self.seconds.to_be_bytes());
        bytes[4..].copy_from_slice(&self.nanoseconds.to_be_bytes());
        bytes
    }

    /// The EventTime of an extension's 8 bytes; `None` when the nanoseconds are not
    /// below a second.
    pub fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        let [s0, s1, s2, s3, n0, n1, n2, n3] = bytes;
        let time = Self {
            seconds: u32::from_be_bytes([s0, s1, s2, s3]),
            nanoseconds: u32::from_be_bytes([n0, n1, n2, n3]),
        };
        (time.nanoseconds < 1_000_000_000).then_some(time)
    }
}

/// What an encoder cannot fail on: writing to memory.
fn infallible<T>(result: Result<T, ValueWriteError<Infallible>>) -> T {
    match result {
        Ok(value) => value,
        Err(
            ValueWriteError::InvalidMarkerWrite(never) | ValueWriteError::InvalidDataWrite(never),
        ) => match never {},
    }
}

/// The kinds of container whose header [`Writer::close`] writes after their content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// Its length is its number of elements.
    Array,
    /// Its length is its number of key-value pairs.
    Map,
    /// Its length is its number of bytes.
    Bin,
}

/// A container opened by [`Writer::open`]: where its header goes.
#[derive(Debug)]
#[must_use = "a container is closed with Writer::close"]
pub struct Open {
    at: usize,
    kind: Container,
}

/// Room left for a header written later: the longest header (a marker and 32 bits).
const HEADER_ROOM: usize = 5;

/// MessagePack written into memory.
#[derive(Debug, Default)]
pub struct Writer {
    buf: ByteBuf,
}

impl Writer {
    /// A writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: ByteBuf::with_capacity(capacity),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.as_slice().len()
    }

    /// Whether nothing is written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What was written.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf.into_vec()
    }

    /// Forgets what was written after the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.buf.as_mut_vec().truncate(len);
    }

    /// `nil`.
    pub fn nil(&mut self) {
        let Ok(()) = encode::write_nil(&mut self.buf);
    }

    /// A boolean.
    pub fn bool(&mut self, value: bool) {
        let Ok(()) = encode::write_bool(&mut self.buf, value);
    }

    /// An unsigned integer, in its shortest form.
    pub fn uint(&mut self, value: u64) {
        infallible(encode::write_uint(&mut self.buf, value));
    }

    /// A signed integer, in its shortest form.
    pub fn sint(&mut self, value: i64) {
        infallible(encode::write_sint(&mut self.buf, value));
    }

    /// A 64-bit float.
    pub fn f64(&mut self, value: f64) {
        infallible(encode::write_f64(&mut self.buf, value));
    }

    /// A string.
    pub fn str(&mut self, value: &str) {
        infallible(encode::write_str(&mut self.buf, value));
    }

    /// A byte string.
    pub fn bin(&mut self, value: &[u8]) {
        infallible(encode::write_bin(&mut self.buf, value));
    }

    /// The header of an array of `len` elements, which follow.
    pub fn array_len(&mut self, len: u32) {
        infallible(encode::write_array_len(&mut self.buf, len));
    }

    /// The header of a map of `len` pairs, which follow.
    pub fn map_len(&mut self, len: u32) {
        infallible(encode::write_map_len(&mut self.buf, len));
    }

    /// An EventTime: extension type 0, as fixext 8.
    pub fn event_time(&mut self, time: EventTime) {
        infallible(encode::write_ext_meta(&mut self.buf, 8, EVENT_TIME_EXT));
        self.buf.as_mut_vec().extend_from_slice(&time.to_bytes());
    }

    /// Writes `time` over the EventTime that [`Writer::event_time`] wrote at `at`: a time
    /// known only after what follows it.
    pub fn rewrite_event_time(&mut self, at: usize, time: EventTime) {
        let bytes = self.buf.as_mut_vec();
        if let Some(slot) = bytes.get_mut(at + 2..at + 10) {
            slot.copy_from_slice(&time.to_bytes());
        }
    }

    /// Opens a container whose length is known only once its content is written: room is
    /// left for its header, which [`Writer::close`] writes.
    pub fn open(&mut self, kind: Container) -> Open {
        let at = self.len();
        self.buf.as_mut_vec().extend_from_slice(&[0; HEADER_ROOM]);
        Open { at, kind }
    }

    /// Closes `open` with `len` elements (pairs for a map; for a bin, its length is what
    /// was written): writes its header in its shortest form, and moves the content up to
    /// it. The move copies the content once more; a container that is written whole is
    /// better given its header first (see [`Writer::array_len`]).
    pub fn close(&mut self, open: Open, len: u32) {
        let content = open.at + HEADER_ROOM;
        let bytes = self.buf.as_mut_vec();
        let len = match open.kind {
            Container::Bin => u32::try_from(bytes.len() - content).unwrap_or(u32::MAX),
            _ => len,
        };
        let mut header = [0u8; HEADER_ROOM];
        let [short, long16, long32] = match open.kind {
            Container::Array => [0x90, 0xdc, 0xdd],
            Container::Map => [0x80, 0xde, 0xdf],
            Container::Bin => [0, 0xc4, 0xc5],
        };
        let size = match (open.kind, len) {
            (Container::Bin, 0..=0xff) => {
                header[..2].copy_from_slice(&[0xc4, len as u8]);
                2
            }
            (Container::Bin, 0x100..=0xffff) => {
                header[0] = 0xc5;
                header[1..3].copy_from_slice(&(len as u16).to_be_bytes());
                3
            }
            (Container::Bin, _) => {
                header[0] = 0xc6;
                header[1..].copy_from_slice(&len.to_be_bytes());
                5
            }
            (_, 0..=15) => {
                header[0] = short | len as u8;
                1
            }
            (_, 16..=0xffff) => {
                header[0] = long16;
                header[1..3].copy_from_slice(&(len as u16).to_be_bytes());
                3
            }
            _ => {
                header[0] = long32;
                header[1..].copy_from_slice(&len.to_be_bytes());
                5
            }
        };
        bytes[open.at..open.at + size].copy_from_slice(&header[..size]);
        if size < HEADER_ROOM {
            bytes.copy_within(content.., open.at + size);
            bytes.truncate(bytes.len() - (HEADER_ROOM - size));
        }
    }

    /// Transcodes one JSON value (`json`, the whole of it) to MessagePack: objects become
    /// maps (keys in their order, duplicates kept), arrays arrays, strings strings,
    /// integers the shortest integer, other numbers 64-bit floats, `null` nil. When the
    /// value is an object whose field `timestamp` (the first one) is an integer that fits
    /// an `i64`, returns it. On an error (`json` is not one JSON value) what was written
    /// of it is left: the caller truncates.
    pub fn json_record(&mut self, json: &[u8]) -> Result<Option<i64>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let timestamp = Record(self).deserialize(&mut de)?;
        de.end()?;
        Ok(timestamp)
    }

    /// Transcodes one JSON value, as [`Writer::json_record`] does, without looking for a
    /// timestamp.
    pub fn json(&mut self, json: &[u8]) -> Result<(), serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(json);
        Transcode(self).deserialize(&mut de)?;
        de.end()
    }
}

/// A JSON value written as MessagePack; its value is the integer it was, if one.
struct Transcode<'w>(&'w mut Writer);

impl<'de> DeserializeSeed<'de> for Transcode<'_> {
    type Value = Option<i64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<i64>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Transcode<'_> {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Option<i64>, E> {
        self.0.bool(v);
        Ok(None)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Option<i64>, E> {
        self.0.sint(v);
        Ok(Some(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Option<i64>, E> {
        self.0.uint(v);
        Ok(i64::try_from(v).ok())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Option<i64>, E> {
        self.0.f64(v);
        Ok(None)
    }

    fn visit_str<E>(self, v: &str) -> Result<Option<i64>, E> {
        self.0.str(v);
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<i64>, E> {
        self.0.nil();
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<i64>, A::Error> {
        let open = self.0.open(Container::Array);
        let mut len = 0u32;
        while seq.next_element_seed(Transcode(self.0))?.is_some() {
            len = len.saturating_add(1);
        }
        self.0.close(open, len);
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<i64>, A::Error> {
        // A nested object's `timestamp` is not the record's.
        Record(self.0).visit_map(map).map(|_| None)
    }
}

/// A JSON object written as a MessagePack map; its value is its `timestamp`, when that is
/// an integer that fits an `i64`.
struct Record<'w>(&'w mut Writer);

impl<'de> DeserializeSeed<'de> for Record<'_> {
    type Value = Option<i64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<i64>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Record<'_> {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<i64>, A::Error> {
        let open = self.0.open(Container::Map);
        let mut len = 0u32;
        let mut timestamp = None;
        let mut seen_timestamp = false;
        while let Some(is_timestamp) = map.next_key_seed(Key(self.0))? {
            let value = map.next_value_seed(Transcode(self.0))?;
            if is_timestamp && !seen_timestamp {
                seen_timestamp = true;
                timestamp = value;
            }
            len = len.saturating_add(1);
        }
        self.0.close(open, len);
        Ok(timestamp)
    }
}

/// A JSON object's key written as a MessagePack string; its value is whether it is
/// `timestamp`.
struct Key<'w>(&'w mut Writer);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.0.str(v);
        Ok(v == "timestamp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(kind: Container, content: &[u8], len: u32) -> Vec<u8> {
        let mut w = Writer::default();
        w.nil();
        let open = w.open(kind);
        w.buf.as_mut_vec().extend_from_slice(content);
        w.close(open, len);
        w.into_vec()
    }

    #[test]
    fn headers_written_after_are_the_shortest() {
        assert_eq!(closed(Container::Array, &[1, 2], 2), [0xc0, 0x92, 1, 2]);
        assert_eq!(closed(Container::Map, &[], 0), [0xc0, 0x80]);
        assert_eq!(closed(Container::Bin, &[7; 3], 0), [0xc0, 0xc4, 3, 7, 7, 7]);
        let long = closed(Container::Array, &[0xc0; 16], 16);
        assert_eq!(&long[..4], [0xc0, 0xdc, 0, 16]);
        assert_eq!(long.len(), 4 + 16);
        let bin = closed(Container::Bin, &[1; 300], 0);
        assert_eq!(&bin[..4], [0xc0, 0xc5, 1, 44]);
        assert_eq!(bin.len(), 4 + 300);
        let big = closed(Container::Map, &[], 70_000);
        assert_eq!(big, [0xc0, 0xdf, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn event_times_hold_seconds_and_nanoseconds() {
        let t = EventTime::from_nanos(1_700_000_000_123_456_789).unwrap();
        assert_eq!((t.seconds, t.nanoseconds), (1_700_000_000, 123_456_789));
        assert_eq!(EventTime::from_bytes(t.to_bytes()), Some(t));
        assert_eq!(t.as_nanos(), 1_700_000_000_123_456_789);
        assert_eq!(EventTime::from_nanos(-1), None);
        assert_eq!(EventTime::from_nanos(1 << 33).map(|t| t.seconds), Some(8));
        assert_eq!(
            EventTime::from_nanos((i128::from(u32::MAX) + 1) * 1_000_000_000),
            None
        );
        assert_eq!(
            EventTime::from_bytes([0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        let mut w = Writer::default();
        w.event_time(t);
        let bytes = w.into_vec();
        assert_eq!(&bytes[..2], [0xd7, 0x00]);
        assert_eq!(&bytes[2..], t.to_bytes());
    }

    #[test]
    fn json_is_transcoded_and_the_timestamp_found() {
        let mut w = Writer::default();
        let ts = w
            .json_record(
                br#"{"a":[1,-2,{"b":null}],"timestamp":17,"timestamp":9,"x":1.5,"t":true}"#,
            )
            .unwrap();
        assert_eq!(ts, Some(17));
        let value = rmpv::decode::read_value(&mut &w.into_vec()[..]).unwrap();
        assert_eq!(
            value.to_string(),
            r#"{"a": [1, -2, {"b": nil}], "timestamp": 17, "timestamp": 9, "x": 1.5, "t": true}"#
        );
        let mut w = Writer::default();
        assert_eq!(w.json_record(br#"{"timestamp":"17"}"#).unwrap(), None);
        assert_eq!(
            w.json_record(br#"{"timestamp":18446744073709551615}"#)
                .unwrap(),
            None
        );
        assert!(w.json_record(b"[1]").is_err());
        assert!(w.json_record(b"{} {}").is_err());
        assert!(w.json_record(b"{\"a\":").is_err());
        let mut w = Writer::default();
        w.json(br#"["\u00e9",18446744073709551615]"#).unwrap();
        let value = rmpv::decode::read_value(&mut &w.into_vec()[..]).unwrap();
        assert_eq!(value.to_string(), r#"["é", 18446744073709551615]"#);
    }
}
