//! The ingest-format seam's pure half: a request body in, a packet of messages out. Each
//! way agents send logs is a [`Decoder`] here and an entry in the distributor's table of
//! formats, which says where it is served. logdist's own packets ([`Native`]), the
//! original distributor's one-message body ([`OneMessage`]), OpenTelemetry's OTLP logs
//! ([`Otlp`]) and Loki's push ([`Loki`]) are served. logdist's packets and the one-message
//! body also take the JSON shippers send, mapped to messages by the [`Schema`] of the
//! options ([`crate::shippers`]).
//!
//! A decoder gives back a [`Decoded`]: the packet of the records that are messages, and the
//! records it refused one by one. The native formats refuse a body whole (one bad message
//! is the body's error, as the original distributor answered), so they never refuse a
//! record alone; a protocol whose answer reports refused records (OTLP's
//! `partial_success`, Loki's 400 after the rest is stored) does.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::decoded::Decoded;
use crate::loki::{LokiEncoding, decode_push};
use crate::mapping::TimestampUnit;
use crate::message::{Format, Location, PacketError, Validation, ndjson_messages};
use crate::otlp::{OtlpEncoding, decode_logs};
use crate::shippers::{Schema, decode_records};

/// The media type of a JSON body.
pub const JSON: &str = "application/json";
/// The media type of an NDJSON body (one of its names; the distributor maps the others to
/// it).
pub const NDJSON: &str = "application/x-ndjson";
/// The media type of a protobuf body, as OTLP/HTTP names it.
pub const PROTOBUF: &str = "application/x-protobuf";

/// What every decoder is told besides the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// How much of each message is checked.
    pub validation: Validation,
    /// The unit of the `timestamp` a decoder writes, for formats whose records carry their
    /// time in another form (OTLP's nanoseconds). Formats that forward messages as sent
    /// leave their time as it is.
    pub unit: TimestampUnit,
    /// The arrival time, in epoch milliseconds: the time of a record that carries none.
    /// A value, not a clock, so that decoding stays pure.
    pub now_ms: i64,
    /// The most a body may grow to when its format compresses it itself (Loki's snappy),
    /// as the distributor's body limit bounds a Content-Encoding: a few KB of snappy can
    /// claim gigabytes.
    pub max_len: usize,
    /// What a record of logdist's own formats that is not a message becomes: mapped to
    /// one (`--map`, `--timestamp-unit`), or refused (`--schema strict`). Shared: the
    /// options of every request hold the same one.
    pub schema: Arc<Schema>,
}

/// The default schema, shared by every default [`DecodeOptions`].
static DEFAULT_SCHEMA: LazyLock<Arc<Schema>> = LazyLock::new(Arc::default);

impl Default for DecodeOptions {
    /// Full validation, milliseconds, the epoch as the arrival time, the distributor's
    /// default body limit (8 MiB), and the default mapping.
    fn default() -> Self {
        Self {
            validation: Validation::default(),
            unit: TimestampUnit::default(),
            now_ms: 0,
            max_len: 8 * 1024 * 1024,
            schema: DEFAULT_SCHEMA.clone(),
        }
    }
}

impl DecodeOptions {
    /// [`now_ms`](Self::now_ms) as a moment.
    fn now(&self) -> SystemTime {
        let since = Duration::from_millis(self.now_ms.unsigned_abs());
        if self.now_ms >= 0 {
            UNIX_EPOCH + since
        } else {
            UNIX_EPOCH - since
        }
    }
}

/// One ingest format's decoder: pure, so it is tested and fuzzed without a server.
pub trait Decoder: Send + Sync {
    /// Decodes a body, already decompressed. `media_type` is the request's media type
    /// (lowercase, without parameters), one the format is served with, or `None` when the
    /// request named none.
    fn decode(
        &self,
        body: Bytes,
        media_type: Option<&str>,
        options: &DecodeOptions,
    ) -> Result<Decoded, PacketError>;

    /// How many messages `body` holds if it is valid, when that can be told without
    /// decoding it (a distributor under overload refuses a packet before it pays for its
    /// decoding). `None` when it cannot be told cheaply.
    fn count(&self, body: &[u8], media_type: Option<&str>) -> Option<u64> {
        let _ = (body, media_type);
        None
    }
}

/// logdist's own packets: a JSON array of records (a lone object is a packet of one), or
/// NDJSON. Without a media type, a body starting with `[` is an array, anything else NDJSON.
/// A record that is a message is forwarded as sent; any other JSON object is mapped to one
/// by the options' [`Schema`] (see [`decode_records`]); a record that is neither is
/// refused alone, in [`Decoded::rejected`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Native;

impl Native {
    fn format(body: &[u8], media_type: Option<&str>) -> Format {
        match media_type {
            Some(JSON) => Format::Json,
            Some(_) => Format::Ndjson,
            None if body.trim_ascii_start().starts_with(b"[") => Format::Json,
            None => Format::Ndjson,
        }
    }
}

impl Decoder for Native {
    fn decode(
        &self,
        body: Bytes,
        media_type: Option<&str>,
        options: &DecodeOptions,
    ) -> Result<Decoded, PacketError> {
        let format = Self::format(&body, media_type);
        decode_records(
            body,
            format,
            options.validation,
            &options.schema,
            options.now(),
        )
    }

    fn count(&self, body: &[u8], media_type: Option<&str>) -> Option<u64> {
        (Self::format(body, media_type) == Format::Ndjson).then(|| ndjson_messages(body))
    }
}

/// One message object, as the original distributor's `POST /message/send` took it; always
/// fully validated. An object that is not a message is mapped to one, as [`Native`] maps
/// it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneMessage;

impl Decoder for OneMessage {
    fn decode(
        &self,
        body: Bytes,
        _media_type: Option<&str>,
        options: &DecodeOptions,
    ) -> Result<Decoded, PacketError> {
        let reason = match body.trim_ascii_start().first() {
            Some(b'{') => None,
            None => Some("the body is empty"),
            Some(_) => Some("expected a JSON object: one message"),
        };
        if let Some(reason) = reason {
            return Err(PacketError {
                location: Location::Body,
                reason: reason.to_owned(),
            });
        }
        decode_records(
            body,
            Format::Json,
            Validation::Full,
            &options.schema,
            options.now(),
        )
    }
}

/// OpenTelemetry's OTLP logs: an `ExportLogsServiceRequest` as protobuf
/// (`application/x-protobuf`, also when the request names no media type, as OTLP/HTTP's
/// default) or as OTLP/JSON (`application/json`). See [`crate::otlp`] for the mapping.
#[derive(Debug, Clone, Copy, Default)]
pub struct Otlp;

impl Otlp {
    /// The encoding of a request (and of its answer) with `media_type`.
    pub fn encoding(media_type: Option<&str>) -> OtlpEncoding {
        match media_type {
            Some(JSON) => OtlpEncoding::Json,
            _ => OtlpEncoding::Protobuf,
        }
    }
}

impl Decoder for Otlp {
    fn decode(
        &self,
        body: Bytes,
        media_type: Option<&str>,
        options: &DecodeOptions,
    ) -> Result<Decoded, PacketError> {
        let encoding = Self::encoding(media_type);
        decode_logs(&body, encoding, options.unit, options.now())
    }
}

/// Loki's push: a `PushRequest` as snappy-compressed protobuf (`application/x-protobuf`,
/// also when the request names no media type, as Loki reads it) or as JSON
/// (`application/json`). See [`crate::loki`] for the mapping.
#[derive(Debug, Clone, Copy, Default)]
pub struct Loki;

impl Loki {
    /// The encoding of a request with `media_type`.
    pub fn encoding(media_type: Option<&str>) -> LokiEncoding {
        match media_type {
            Some(JSON) => LokiEncoding::Json,
            _ => LokiEncoding::Protobuf,
        }
    }
}

impl Decoder for Loki {
    fn decode(
        &self,
        body: Bytes,
        media_type: Option<&str>,
        options: &DecodeOptions,
    ) -> Result<Decoded, PacketError> {
        let encoding = Self::encoding(media_type);
        decode_push(
            &body,
            encoding,
            options.max_len,
            options.unit,
            options.now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"timestamp":1,"severity":"INFO","source":"s","message":"m"}"#;

    #[test]
    fn native_reads_by_media_type_then_by_first_byte() {
        let options = DecodeOptions::default();
        let array = Bytes::from(format!("[{LINE},{LINE}]"));
        let lines = Bytes::from(format!("{LINE}\n{LINE}\n"));
        for (body, media) in [
            (&array, Some(JSON)),
            (&array, None),
            (&lines, Some(NDJSON)),
            (&lines, None),
        ] {
            let decoded = Native.decode(body.clone(), media, &options).unwrap();
            assert_eq!(decoded.packet.messages, 2, "{media:?}");
            assert!(decoded.rejected.is_empty());
        }
        // An array sent as NDJSON is one line that is not an object: a bad record.
        let decoded = Native.decode(array, Some(NDJSON), &options).unwrap();
        assert_eq!((decoded.packet.messages, decoded.rejected.len()), (0, 1));
        assert_eq!(decoded.rejected[0].location, Location::Line(1));
    }

    #[test]
    fn native_maps_shippers_records_unless_the_schema_is_strict() {
        let fluent_bit = Bytes::from_static(
            br#"[{"date":1796552910.306,"log":"disk full","level":"warning"},42]"#,
        );
        let options = DecodeOptions::default();
        let decoded = Native.decode(fluent_bit.clone(), None, &options).unwrap();
        assert_eq!((decoded.packet.messages, decoded.rejected.len()), (1, 1));
        assert_eq!(decoded.rejected[0].location, Location::Index(1));
        let line = std::str::from_utf8(&decoded.packet.ndjson).unwrap();
        assert!(
            line.starts_with(
                r#"{"timestamp":1796552910306,"severity":"WARN","source":"unknown","message":"disk full""#
            ),
            "{line}"
        );
        let strict = DecodeOptions {
            schema: Arc::new(Schema::Strict),
            ..DecodeOptions::default()
        };
        let decoded = Native.decode(fluent_bit, None, &strict).unwrap();
        assert_eq!((decoded.packet.messages, decoded.rejected.len()), (0, 2));
        // The one-message body is mapped too, and takes one object only.
        let one = Bytes::from_static(br#"{"msg":"hi","ts":"2026-12-06T10:28:30.306Z"}"#);
        let decoded = OneMessage.decode(one, Some(JSON), &options).unwrap();
        assert_eq!(decoded.packet.messages, 1);
        assert!(
            std::str::from_utf8(&decoded.packet.ndjson)
                .unwrap()
                .starts_with(r#"{"timestamp":1796552910306,"#)
        );
    }

    #[test]
    fn counting_is_cheap_only_for_ndjson() {
        let lines = format!("{LINE}\n{LINE}\n\n{LINE}\n");
        assert_eq!(Native.count(lines.as_bytes(), Some(NDJSON)), Some(3));
        assert_eq!(Native.count(lines.as_bytes(), None), Some(3));
        assert_eq!(Native.count(b"[{}]", None), None);
        assert_eq!(Native.count(b"{}", Some(JSON)), None);
        assert_eq!(OneMessage.count(LINE.as_bytes(), Some(JSON)), None);
    }

    #[test]
    fn one_message_takes_one_object() {
        let options = DecodeOptions::default();
        let decoded = OneMessage
            .decode(Bytes::from(LINE), Some(JSON), &options)
            .unwrap();
        assert_eq!(decoded.packet.messages, 1);
        assert!(
            OneMessage
                .decode(Bytes::from(format!("[{LINE}]")), Some(JSON), &options)
                .is_err()
        );
    }

    #[test]
    fn otlp_reads_by_media_type_and_dates_records_without_a_time_at_arrival() {
        let options = DecodeOptions {
            now_ms: 1_796_552_910_306,
            ..DecodeOptions::default()
        };
        let json = r#"{"resourceLogs":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"checkout"}}]},
            "scopeLogs":[{"logRecords":[{"body":{"stringValue":"paid"}},
            {"traceId":"not hex","body":{"stringValue":"refused"}}]}]}]}"#;
        let decoded = Otlp
            .decode(Bytes::from(json), Some(JSON), &options)
            .unwrap();
        assert_eq!(decoded.packet.messages, 1);
        assert_eq!(decoded.rejected.len(), 1);
        let line = std::str::from_utf8(&decoded.packet.ndjson).unwrap();
        assert!(
            line.starts_with(
                r#"{"timestamp":1796552910306,"severity":"INFO","source":"checkout","message":"paid""#
            ),
            "{line}"
        );
        // Without a media type (and with `application/x-protobuf`) the body is protobuf.
        for media in [None, Some(PROTOBUF)] {
            let garbage = Bytes::from_static(b"\xff\xff\xff");
            assert!(Otlp.decode(garbage, media, &options).is_err(), "{media:?}");
        }
        assert_eq!(Otlp::encoding(None), OtlpEncoding::Protobuf);
        assert_eq!(Otlp::encoding(Some(JSON)), OtlpEncoding::Json);
    }

    #[test]
    fn loki_reads_by_media_type_and_bounds_the_snappy_it_inflates() {
        let options = DecodeOptions::default();
        let json = r#"{"streams":[{"stream":{"app":"cart","level":"warn"},
            "values":[["1796552910306000000","one"],["later","refused"],["1796552910307000000","two"]]}]}"#;
        let decoded = Loki
            .decode(Bytes::from(json), Some(JSON), &options)
            .unwrap();
        assert_eq!((decoded.packet.messages, decoded.rejected.len()), (2, 1));
        let line = std::str::from_utf8(&decoded.packet.ndjson).unwrap();
        assert!(
            line.starts_with(
                r#"{"timestamp":1796552910306,"severity":"WARN","source":"cart","message":"one""#
            ),
            "{line}"
        );
        // Without a media type the body is snappy-compressed protobuf, as Loki reads it:
        // an empty PushRequest is zero bytes, one byte of snappy.
        let empty = Bytes::from(snap::raw::Encoder::new().compress_vec(b"").unwrap());
        for media in [None, Some(PROTOBUF)] {
            let decoded = Loki.decode(empty.clone(), media, &options).unwrap();
            assert_eq!(decoded.packet.messages, 0, "{media:?}");
            assert!(Loki.decode(Bytes::from(json), media, &options).is_err());
        }
        // The snappy header claims 100 bytes: refused under a limit of 99.
        let claims = Bytes::from(snap::raw::Encoder::new().compress_vec(&[0; 100]).unwrap());
        let small = DecodeOptions {
            max_len: 99,
            ..options
        };
        let e = Loki.decode(claims, None, &small).unwrap_err();
        assert!(e.reason.contains("more than the limit of 99"), "{e}");
        assert_eq!(Loki::encoding(None), LokiEncoding::Protobuf);
        assert_eq!(Loki::encoding(Some(JSON)), LokiEncoding::Json);
    }
}
