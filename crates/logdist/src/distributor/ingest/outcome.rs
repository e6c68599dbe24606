//! What became of a request's packet, as each format's answer reads it (see
//! [`super::formats::HttpFormat::answer`]): apart from the table of formats, so that a
//! format's answer in a file of its own ([`super::elasticsearch`]) needs nothing of it.

use std::time::Duration;

use axum::http::StatusCode;
use logdist_core::{BulkItem, RecordError};

use crate::api::PacketAck;

/// What became of a request's packet: all a format's
/// [`answer`](super::formats::HttpFormat::answer) needs.
pub struct Outcome<'a> {
    /// 200, or 202 for a packet queued but not yet delivered when the format says so
    /// ([`super::formats::HttpFormat::answers_accepted`]).
    pub status: StatusCode,
    /// How many messages, and which analyzer acknowledged them.
    pub ack: &'a PacketAck,
    /// The records the decoder refused one by one, in the body's order, that were not
    /// delivered (dropped, or reported in the format's answer).
    pub rejected: &'a [RecordError],
    /// The request's media type (canonical), if it named one.
    pub media_type: Option<&'static str>,
    /// Every item of the body, for a format answered item by item (bulk); else empty.
    pub items: &'a [BulkItem],
    /// How long the request took, from its body read to its packet's outcome.
    pub took: Duration,
}
