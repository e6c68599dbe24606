//! The Fluent forward protocol (Forward Protocol Specification v1): MessagePack over TCP,
//! as Fluentd, Fluent Bit and the Fluent logger libraries send it.
//!
//! - [`decode`]: a connection's bytes cut into frames, and each frame (one of the four
//!   modes) read into a packet of messages, for `--forward-listen`.

pub mod decode;
