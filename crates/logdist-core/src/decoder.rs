//! The ingest-format seam's pure half: a request body in, a packet of messages out. Each
//! way agents send logs is a [`Decoder`] here and an entry in the distributor's table of
//! formats, which says where it is served. logdist's own packets ([`Native`]) and the
//! original distributor's one-message body ([`OneMessage`]) are the first two.

use bytes::Bytes;

use crate::message::{
    Format, Packet, PacketError, Validation, decode_message, decode_packet_with, ndjson_messages,
};

/// The media type of a JSON body.
pub const JSON: &str = "application/json";
/// The media type of an NDJSON body (one of its names; the distributor maps the others to
/// it).
pub const NDJSON: &str = "application/x-ndjson";

/// What every decoder is told besides the body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// How much of each message is checked.
    pub validation: Validation,
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
    ) -> Result<Packet, PacketError>;

    /// How many messages `body` holds if it is valid, when that can be told without
    /// decoding it (a distributor under overload refuses a packet before it pays for its
    /// decoding). `None` when it cannot be told cheaply.
    fn count(&self, body: &[u8], media_type: Option<&str>) -> Option<u64> {
        let _ = (body, media_type);
        None
    }
}

/// logdist's own packets: a JSON array of messages (a lone object is a packet of one), or
/// NDJSON. Without a media type, a body starting with `[` is an array, anything else NDJSON.
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
    ) -> Result<Packet, PacketError> {
        let format = Self::format(&body, media_type);
        decode_packet_with(body, format, options.validation)
    }

    fn count(&self, body: &[u8], media_type: Option<&str>) -> Option<u64> {
        (Self::format(body, media_type) == Format::Ndjson).then(|| ndjson_messages(body))
    }
}

/// One message object, as the original distributor's `POST /message/send` took it; always
/// fully validated.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneMessage;

impl Decoder for OneMessage {
    fn decode(
        &self,
        body: Bytes,
        _media_type: Option<&str>,
        _options: &DecodeOptions,
    ) -> Result<Packet, PacketError> {
        decode_message(&body)
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
            let packet = Native.decode(body.clone(), media, &options).unwrap();
            assert_eq!(packet.messages, 2, "{media:?}");
        }
        // An array sent as NDJSON is one line that is not an object.
        assert!(Native.decode(array, Some(NDJSON), &options).is_err());
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
        let packet = OneMessage
            .decode(Bytes::from(LINE), Some(JSON), &options)
            .unwrap();
        assert_eq!(packet.messages, 1);
        assert!(
            OneMessage
                .decode(Bytes::from(format!("[{LINE}]")), Some(JSON), &options)
                .is_err()
        );
    }
}
