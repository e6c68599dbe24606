//! The Fluent forward protocol (Forward Protocol Specification v1): what Fluentd and Fluent
//! Bit speak between each other over TCP, as MessagePack.
//!
//! A client sends events in one of four modes, each a MessagePack array:
//! - Message: `[tag, time, record, option?]`, one event.
//! - Forward: `[tag, [[time, record], ...], option?]`.
//! - PackedForward: `[tag, entries, option?]`, where `entries` is a bin (or str) holding
//!   the `[time, record]` entries one after another (a MessagePackEventStream).
//! - CompressedPackedForward: the same, `entries` gzipped, with `"compressed": "gzip"`
//!   in the option.
//!
//! `time` is an integer of seconds, or an EventTime: the MessagePack extension of type 0
//! holding seconds and nanoseconds, each a big-endian 32-bit unsigned integer. When the
//! option carries `"chunk": ID`, the server answers `{"ack": ID}` once it has the events:
//! that is the acknowledgement logdist waits for.
//!
//! - [`msgpack`]: the MessagePack writing this needs (JSON to MessagePack, EventTime,
//!   headers written after their content), over `rmp`, for every forward encoder and
//!   decoder of the crate.
//! - [`decode`]: a connection's bytes cut into frames, and each frame (one of the four
//!   modes) read into a packet of messages, for `--forward-listen`.
//! - [`encode`]: messages to one PackedForward, for the `forward` delivery protocol; and
//!   acknowledgements, written and read.
//! - [`handshake`]: the shared-key handshake (HELO, PING, PONG), the server's side.

pub mod decode;
pub mod encode;
pub mod handshake;
pub mod msgpack;

pub use encode::{AckRead, encode_ack, encode_packed_forward, read_ack};
pub use msgpack::EventTime;

#[cfg(test)]
mod tests;
