//! The ingest formats served over HTTP: for each, its path, the media types it takes and
//! its pure decoder (in `logdist-core`, see [`logdist_core::decoder`]). Adding a format
//! is adding a decoder there and an entry to [`HTTP_FORMATS`] here.

use axum::http::HeaderValue;
use logdist_core::decoder::{self, Decoder, JSON, NDJSON, Native, OneMessage};

use crate::http::ApiError;

/// One ingest format served over HTTP.
pub struct HttpFormat {
    /// Its name in logs and metrics.
    pub name: &'static str,
    /// The path it is served at, by `POST`.
    pub path: &'static str,
    /// The media types it takes, by their canonical names ([`canonical`]). A request
    /// with any other is answered 415; one without any is the decoder's to read.
    pub media_types: &'static [&'static str],
    /// What a 415 tells the agent to send instead.
    pub expects: &'static str,
    /// Its decoder.
    pub decoder: &'static dyn Decoder,
    /// Whether a packet answered before it is delivered (`--ack accepted`) gets 202, or
    /// 200 as the original distributor's endpoint answered.
    pub answers_accepted: bool,
}

/// `POST /packets`: logdist's own packets, a JSON array of messages or NDJSON.
pub static PACKETS: HttpFormat = HttpFormat {
    name: "packets",
    path: "/packets",
    media_types: &[JSON, NDJSON],
    expects: "send application/json (an array of messages) or application/x-ndjson",
    decoder: &Native,
    answers_accepted: true,
};

/// `POST /message/send`: one message object, as the original distributor took it.
pub static MESSAGE_SEND: HttpFormat = HttpFormat {
    name: "message",
    path: "/message/send",
    media_types: &[JSON],
    expects: "send one message as application/json",
    decoder: &OneMessage,
    answers_accepted: false,
};

/// Every ingest format served over HTTP.
pub static HTTP_FORMATS: [&HttpFormat; 2] = [&PACKETS, &MESSAGE_SEND];

/// The names NDJSON goes by, as media types.
const NDJSON_NAMES: [&str; 7] = [
    NDJSON,
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonl",
    "application/jsonlines",
    "application/x-jsonlines",
    "application/json-lines",
];

/// The media types logdist knows, each with its canonical name.
fn canonical(essence: &str) -> Option<&'static str> {
    if essence.eq_ignore_ascii_case(decoder::JSON) {
        return Some(JSON);
    }
    NDJSON_NAMES
        .iter()
        .any(|name| essence.eq_ignore_ascii_case(name))
        .then_some(NDJSON)
}

impl HttpFormat {
    /// The request's media type, by its canonical name, if the format takes it; `None`
    /// when the request has no Content-Type; 415 for any other.
    pub fn media_type(
        &self,
        content_type: Option<&HeaderValue>,
    ) -> Result<Option<&'static str>, ApiError> {
        let Some(value) = content_type else {
            return Ok(None);
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::UnsupportedMediaType("Content-Type is not ASCII".to_owned()))?;
        let essence = text.split(';').next().unwrap_or("").trim();
        match canonical(essence) {
            Some(known) if self.media_types.contains(&known) => Ok(Some(known)),
            _ => Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type `{text}` is not supported at {}; {}",
                self.path, self.expects
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn media_types_are_read_by_their_essence_and_any_name() {
        let ok = |format: &HttpFormat, value: &str| format.media_type(Some(&header(value)));
        assert_eq!(ok(&PACKETS, "application/json").unwrap(), Some(JSON));
        assert_eq!(
            ok(&PACKETS, "Application/JSON; charset=utf-8").unwrap(),
            Some(JSON)
        );
        for name in NDJSON_NAMES {
            assert_eq!(ok(&PACKETS, name).unwrap(), Some(NDJSON), "{name}");
        }
        assert_eq!(PACKETS.media_type(None).unwrap(), None);
        assert!(ok(&PACKETS, "text/xml").is_err());
        assert_eq!(ok(&MESSAGE_SEND, "application/json").unwrap(), Some(JSON));
        let refused = ok(&MESSAGE_SEND, "application/x-ndjson").unwrap_err();
        assert!(
            refused.to_string().contains("send one message"),
            "{refused}"
        );
    }

    #[test]
    fn every_format_has_its_own_path() {
        let mut paths: Vec<_> = HTTP_FORMATS.iter().map(|f| f.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), HTTP_FORMATS.len());
    }
}
