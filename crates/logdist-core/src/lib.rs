//! The pure core of logdist: no I/O, no async, no clocks.
//!
//! - [`decoder`] is the seam every ingest format plugs into: a body in, a packet out.
//! - [`message`] decodes and validates packets of log messages (a JSON array, NDJSON, or
//!   one object) into the NDJSON that is forwarded to analyzers.
//! - [`mapping`] maps the JSON records shippers send to the message model;
//!   [`shippers`], [`bulk`], [`otlp`] and [`loki`] decode their bodies with it, record by
//!   record ([`decoded`]). Each is served behind the [`decoder::Decoder`] seam: shippers'
//!   JSON on `POST /packets` ([`decoder::Native`]), OTLP (`POST /v1/logs`,
//!   [`decoder::Otlp`]), Loki (`POST /loki/api/v1/push`, [`decoder::Loki`]) and
//!   Elasticsearch's bulk (`POST /_bulk`, [`decoder::Bulk`]).
//! - [`forward`] is Fluent forward: it reads the protocol's four modes into packets
//!   (`--forward-listen`), and writes messages as PackedForward for the `forward`
//!   delivery protocol, with its acknowledgements.
//! - [`syslog`] decodes syslog messages (RFC 5424 and RFC 3164) and cuts TCP streams of
//!   them into frames (RFC 6587), for the distributor's syslog listener.
//! - [`spool`] is the on-disk format of `--spool`: checksummed records of packets, and
//!   the release entries of those delivered.
//! - [`routing`] chooses the analyzer for each packet so that every analyzer's share of
//!   *messages* stays within one packet of its weight's share.
//!
//! Everything here is deterministic, so it is tested exhaustively with property tests.

pub mod bulk;
pub mod decoded;
pub mod decoder;
pub mod forward;
mod framing;
pub mod loki;
pub mod mapping;
pub mod message;
pub mod otlp;
mod plain;
pub mod routing;
pub mod shippers;
pub mod spool;
pub mod syslog;

pub use bulk::{Bulk, BulkAction, BulkItem, IndexTemplate, decode_bulk, encode_bulk};
pub use decoded::{Decoded, RecordError};
pub use decoder::{DecodeOptions, Decoder};
pub use loki::{LokiEncoding, decode_push, encode_push};
pub use mapping::{Aliases, Mapping, Severity, TimestampUnit};
pub use message::{
    Format, Packet, PacketError, Validation, decode_message, decode_packet, decode_packet_with,
    ndjson_messages,
};
pub use otlp::{OtlpEncoding, decode_logs, encode_logs, export_logs_response};
pub use routing::{Router, WeightError};
pub use shippers::{Schema, decode_records};
pub use syslog::{SyslogOptions, decode_message as decode_syslog};
