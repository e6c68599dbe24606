//! The ingest protocols the load generator speaks (`--protocol`): where each is sent, with
//! which media type, and how its answer says the request was taken. The bodies themselves
//! are written by [`super::encode`].

use http::StatusCode;
use logdist_core::otlp::proto::ExportLogsServiceResponse;
use prost::Message as _;

/// How a packet of records is written and where it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// logdist's own messages as NDJSON to `/packets` (the default).
    Ndjson,
    /// A JSON array of records shaped as Fluent Bit's `http` output sends them
    /// (`{"date":1796552910.306,"log":"...","level":"info","service":"api","host":"..."}`)
    /// to `/packets`, where the distributor maps them to messages.
    Json,
    /// An OTLP/HTTP `ExportLogsServiceRequest` as protobuf to `/v1/logs`: one resource
    /// (`service.name`) per source, `severityText`/`severityNumber`, `body`.
    Otlp,
    /// The same export as OTLP/JSON.
    OtlpJson,
    /// An Elasticsearch bulk body (an `index` action naming the index `logdist-loadgen`,
    /// and an ECS document, per record) to `/_bulk`.
    Bulk,
    /// A Loki `PushRequest`, protobuf compressed with snappy, to `/loki/api/v1/push`: one
    /// stream per source and level.
    Loki,
    /// Syslog over TCP to `--syslog-target`: RFC 5424 messages, octet-counted (RFC 6587),
    /// a packet's records written at once. Syslog has no answer: a packet written is acked.
    SyslogTcp,
    /// Syslog over UDP to `--syslog-target`: RFC 3164 messages, one a datagram. Not
    /// acknowledged: a packet sent is acked, whatever the distributor dropped (see its
    /// `logdist_syslog_dropped_total`).
    SyslogUdp,
    /// Fluent forward over TCP to `--forward-target` (the distributor's
    /// `--forward-listen`): one PackedForward frame per packet, with `chunk`, acknowledged
    /// by the server's `{"ack": chunk}`.
    Forward,
    /// The same without `chunk`: a packet counts as acknowledged once written (the
    /// protocol's at-most-once).
    ForwardNoack,
}

/// What an answer with a success status said about the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Taken {
    /// All of them.
    All,
    /// Not all: the answer's own words (OTLP `partial_success`, bulk `"errors":true`).
    Partly(String),
}

impl Protocol {
    /// The path requests are posted to.
    pub fn path(self) -> &'static str {
        match self {
            Self::Ndjson | Self::Json => "/packets",
            Self::Otlp | Self::OtlpJson => "/v1/logs",
            Self::Bulk => "/_bulk",
            Self::Loki => "/loki/api/v1/push",
            // Not HTTP: `/` is only what the URL of the run's stats is built from.
            Self::SyslogTcp | Self::SyslogUdp => "/",
            // Not HTTP: `--forward-target` is where frames go.
            Self::Forward | Self::ForwardNoack => "/",
        }
    }

    /// The request's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson | Self::Bulk => "application/x-ndjson",
            Self::Json | Self::OtlpJson => "application/json",
            Self::Otlp | Self::Loki => "application/x-protobuf",
            Self::SyslogTcp | Self::SyslogUdp => "text/plain",
            Self::Forward | Self::ForwardNoack => "application/msgpack",
        }
    }

    /// Whether it is sent over a socket of its own to `--syslog-target`, not by HTTP.
    pub fn is_syslog(self) -> bool {
        matches!(self, Self::SyslogTcp | Self::SyslogUdp)
    }

    /// Whether packets go over Fluent forward's TCP rather than HTTP.
    pub fn is_forward(self) -> bool {
        matches!(self, Self::Forward | Self::ForwardNoack)
    }

    /// Whether `status` is a success: 200, 202 (logdist's `--ack accepted`) or 204
    /// (Loki's answer) for every protocol, since a proxy in front of the sinks may answer
    /// any of them.
    pub(crate) fn is_success(status: StatusCode) -> bool {
        matches!(
            status,
            StatusCode::OK | StatusCode::ACCEPTED | StatusCode::NO_CONTENT
        )
    }

    /// Reads a success answer's body (its start, as the connection keeps it) for records
    /// refused one by one: OTLP's `partial_success` with `rejected_log_records` above 0,
    /// bulk's `"errors":true`. An answer that cannot be read so (from a proxy, or logdist's
    /// own `{"messages":N}`) took them all.
    pub(crate) fn taken(self, body: &[u8]) -> Taken {
        match self {
            Self::Otlp => match ExportLogsServiceResponse::decode(body) {
                Ok(ExportLogsServiceResponse {
                    partial_success: Some(partial),
                }) if partial.rejected_log_records > 0 => Taken::Partly(format!(
                    "partial_success: {} records rejected: {}",
                    partial.rejected_log_records, partial.error_message
                )),
                _ => Taken::All,
            },
            Self::OtlpJson | Self::Bulk => {
                let marker: &[u8] = match self {
                    Self::Bulk => b"\"errors\":true",
                    _ => b"\"rejectedLogRecords\"",
                };
                if memchr::memmem::find(body, marker).is_some() {
                    Taken::Partly(String::from_utf8_lossy(body).into_owned())
                } else {
                    Taken::All
                }
            }
            Self::Ndjson
            | Self::Json
            | Self::Loki
            | Self::SyslogTcp
            | Self::SyslogUdp
            | Self::Forward
            | Self::ForwardNoack => Taken::All,
        }
    }
}
