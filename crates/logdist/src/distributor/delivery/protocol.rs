//! The delivery-protocol seam: how a batch for one analyzer is encoded, sent and
//! acknowledged, and how the analyzer's health is checked. A lane decides *when* to send
//! and what to do with the outcome (split, shrink, eject, re-route); a protocol decides
//! *how*. logdist's own NDJSON to `POST /packets` ([`super::ndjson`]) is the first;
//! the original project's one message a `POST /message/process` ([`super::message`]) the
//! second; OpenTelemetry's OTLP/HTTP to `POST /v1/logs` ([`super::otlp`]) the third;
//! Loki's push to `POST /loki/api/v1/push` ([`super::loki`]).
//!
//! Each member speaks one protocol, a [`Kind`]: given at registration (`"protocol"`) or
//! with `--analyzer ...;protocol=`, or else `logdist` until detection finds otherwise (see
//! [`Protocols::detect`]). A distributor holds one [`Protocols`] table, built once, that
//! lanes and probes look a member's protocol up in.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use logdist_core::Packet;

use super::address::AnalyzerUrl;
use crate::distributor::job::Job;

/// A future a protocol returns: boxed, because a distributor holds its protocols as trait
/// objects (one a batch, so one allocation per delivery, not per packet).
pub type Sending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How batches reach one kind of analyzer.
pub trait Protocol: Send + Sync + 'static {
    /// Its name, as registration, stats and metrics give it.
    fn name(&self) -> &'static str;

    /// Sends `jobs` as one delivery from worker `lane` (each worker has its own
    /// connections) to the analyzer at `to`. `Ok` once the analyzer acknowledged every
    /// packet of it; within `timeout`, or [`DeliveryError::Timeout`]. A failure says
    /// which messages were acknowledged nonetheless, when the protocol knows (see
    /// [`Failed`]).
    fn send<'a>(
        &'a self,
        lane: usize,
        to: &'a AnalyzerUrl,
        jobs: &'a [Job],
        timeout: Duration,
    ) -> Sending<'a, Result<(), Failed>>;

    /// One health check of the analyzer at `to`: whether it is there and well. The caller
    /// bounds it in time.
    fn probe<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool>;

    /// Whether the analyzer at `to` speaks this protocol, asked when a member whose
    /// protocol was not given fails its probes. It must deliver nothing. By default, its
    /// probe.
    fn recognizes<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        self.probe(to)
    }
}

/// The delivery protocols a member may speak, by the name registration gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Kind {
    /// logdist's own: NDJSON to `POST /packets`, health at `GET /health` (the default).
    #[default]
    Logdist = 0,
    /// The original project's analyzer: one `POST /message/process` per message as
    /// `{"data": message}`; health is a TCP connect.
    Message = 1,
    /// OpenTelemetry: OTLP/HTTP protobuf to `POST /v1/logs`; health is an empty export.
    /// Never detected: given at registration.
    Otlp = 2,
    /// Fluent forward: a PackedForward per batch over TCP (`tcp://`, `tls://`), each
    /// acknowledged by its chunk; health is a TCP connect. Never detected.
    Forward = 3,
    /// Elasticsearch (or OpenSearch): a `POST /_bulk` of `create` actions into an index
    /// named by a date template; health is `GET /` answered 2xx. Never detected.
    Elasticsearch = 4,
    /// Loki: a snappy-compressed protobuf push to `POST /loki/api/v1/push`; health is
    /// `GET /ready`. Never detected: given at registration.
    Loki = 5,
}

impl Kind {
    /// Every kind, in the order detection tries them.
    pub const ALL: [Kind; 6] = [
        Kind::Logdist,
        Kind::Message,
        Kind::Otlp,
        Kind::Forward,
        Kind::Elasticsearch,
        Kind::Loki,
    ];

    /// Its name, in registrations, stats, metrics and `--analyzer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logdist => "logdist",
            Self::Message => "message",
            Self::Otlp => "otlp",
            Self::Forward => "forward",
            Self::Elasticsearch => "elasticsearch",
            Self::Loki => "loki",
        }
    }

    /// The kind stored as `u8` (its value); `logdist` for anything else.
    pub fn from_u8(n: u8) -> Self {
        Self::ALL
            .into_iter()
            .find(|kind| *kind as u8 == n)
            .unwrap_or_default()
    }

    /// Its place in [`Kind::ALL`] (and in a [`Protocols`] table), which its `repr` need
    /// not be.
    fn position(self) -> usize {
        Self::ALL.iter().position(|kind| *kind == self).unwrap_or(0)
    }
}

impl Kind {
    /// Whether this protocol can be spoken at `url`: `forward` at `tcp://` or `tls://`,
    /// every other protocol at `http://` or `https://`. The error says what to give.
    pub fn check_url(self, url: &AnalyzerUrl) -> Result<(), String> {
        let stream = matches!(self, Kind::Forward);
        match (stream, url.transport().is_http()) {
            (true, true) => Err(format!(
                "`{}`: protocol `{self}` is spoken over TCP; give tcp://host:port (or tls://host:port)",
                url.base
            )),
            (false, false) => Err(format!(
                "`{}`: protocol `{self}` is spoken over HTTP; give http://host:port or https://host:port (tcp:// and tls:// are for protocol `forward`)",
                url.base
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "protocol `{s}` is not known; use one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// One protocol for each [`Kind`], shared by every lane and health watcher.
pub struct Protocols {
    /// In the order of [`Kind::ALL`] (see [`Kind::position`]).
    table: Vec<std::sync::Arc<dyn Protocol>>,
}

impl Protocols {
    /// The table of `protocols`, one per kind in the order of [`Kind::ALL`].
    pub fn new(protocols: Vec<std::sync::Arc<dyn Protocol>>) -> Self {
        debug_assert_eq!(protocols.len(), Kind::ALL.len());
        Self { table: protocols }
    }

    /// The same protocol for every kind (tests that need one protocol only).
    #[cfg(test)]
    pub fn only(protocol: std::sync::Arc<dyn Protocol>) -> Self {
        Self {
            table: Kind::ALL.iter().map(|_| protocol.clone()).collect(),
        }
    }

    /// The protocol of `kind`.
    pub fn of(&self, kind: Kind) -> &dyn Protocol {
        let index = kind.position().min(self.table.len() - 1);
        self.table[index].as_ref()
    }

    /// Which protocol the analyzer at `to` speaks, asked of each in the order of
    /// [`Kind::ALL`]: the first that recognizes it, or `None` when none does (it is not
    /// listening, say).
    pub async fn detect(&self, to: &AnalyzerUrl) -> Option<Kind> {
        for kind in Kind::ALL {
            if self.of(kind).recognizes(to).await {
                return Some(kind);
            }
        }
        None
    }
}

/// A failed delivery: why, and what of it the analyzer acknowledged before it failed.
/// A protocol that sends message by message knows; one that sends the batch whole does
/// not, and then nothing of it counts as acknowledged. The lane routes again only what
/// was not acknowledged, so that acknowledged messages are not delivered twice.
#[derive(Debug)]
pub struct Failed {
    /// Why.
    pub error: DeliveryError,
    /// Per job of the delivery, in order, and per message of its packet (in the order of
    /// [`messages_of`]): whether the analyzer acknowledged it. Empty when not known.
    pub acknowledged: Vec<Vec<bool>>,
    /// Per job of the delivery, in order, when the error refuses content (see
    /// [`refuses_content`]) and the analyzer judged every message of the delivery, so
    /// that each one not in `acknowledged` is one it refused: why it refused a message of
    /// the job's packet (`None` for a packet it refused nothing of). Then the lane sends
    /// nothing of the delivery again. Empty otherwise (a protocol that stops at the first
    /// refusal leaves it empty: the messages after it were not judged).
    pub reasons: Vec<Option<String>>,
}

impl From<DeliveryError> for Failed {
    fn from(error: DeliveryError) -> Self {
        Self {
            error,
            acknowledged: Vec::new(),
            reasons: Vec::new(),
        }
    }
}

/// The messages of a packet's NDJSON, one a line without its newline, blank lines
/// skipped: slices of the packet's buffer, not copies.
pub fn messages_of(ndjson: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    ndjson
        .split(|b| *b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
        .map(|line| ndjson.slice_ref(line))
}

/// The packet of the messages of `packet` whose flag in `acknowledged` is not set (in
/// the order of [`messages_of`]); `None` when every one is.
pub fn unacknowledged(packet: &Packet, acknowledged: &[bool]) -> Option<Packet> {
    let mut ndjson = BytesMut::new();
    let mut messages = 0;
    for (i, line) in messages_of(&packet.ndjson).enumerate() {
        if !acknowledged.get(i).copied().unwrap_or(false) {
            ndjson.extend_from_slice(&line);
            ndjson.extend_from_slice(b"\n");
            messages += 1;
        }
    }
    (messages > 0).then(|| Packet {
        ndjson: ndjson.freeze(),
        messages,
    })
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No answer within `--delivery-timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Could not connect: nothing was sent, so nothing can have been delivered.
    #[error("{0}")]
    Refused(String),
    /// The connection broke: the analyzer may or may not have the packets.
    #[error("{0}")]
    Transport(String),
    /// The analyzer answered with an error status, and said this.
    #[error("analyzer answered {0}: {1}")]
    Status(http::StatusCode, String),
}

/// Whether an analyzer's error status is about the request's content (some packet in it
/// is bad), as opposed to the analyzer itself: a 401, 403, 404 or 405 says it is
/// misconfigured (every packet would get it), a 408 or 429 that it is busy, a 5xx that it
/// is failing. A 413 is about the body's size, handled on its own.
pub fn refuses_content(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 415 | 422)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_not_acknowledged_is_left() {
        let ndjson = Bytes::from_static(b"{\"a\":1}\n\n{\"b\":2}\n{\"c\":3}\n");
        let lines: Vec<Bytes> = messages_of(&ndjson).collect();
        assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        let packet = Packet {
            ndjson,
            messages: 3,
        };
        let left = unacknowledged(&packet, &[true, false, true]).unwrap();
        assert_eq!((&left.ndjson[..], left.messages), (&b"{\"b\":2}\n"[..], 1));
        assert!(unacknowledged(&packet, &[true; 3]).is_none());
        let all = unacknowledged(&packet, &[]).unwrap();
        assert_eq!(
            (&all.ndjson[..], all.messages),
            (&b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"[..], 3)
        );
    }

    #[test]
    fn forward_is_spoken_over_streams_and_the_others_over_http() {
        let url = |s: &str| s.parse::<AnalyzerUrl>().unwrap();
        let (tcp, tls, http) = (
            url("tcp://127.0.0.1:24224"),
            url("tls://fluentd.internal"),
            url("http://127.0.0.1:3001"),
        );
        assert!(Kind::Forward.check_url(&tcp).is_ok());
        assert!(Kind::Forward.check_url(&tls).is_ok());
        assert!(Kind::Logdist.check_url(&http).is_ok());
        let why = Kind::Forward.check_url(&http).unwrap_err();
        assert!(why.contains("give tcp://host:port"), "{why}");
        for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Forward) {
            let why = kind.check_url(&tcp).unwrap_err();
            assert!(why.contains("spoken over HTTP"), "{why}");
        }
    }

    #[test]
    fn kinds_are_named_and_parsed_back() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>().unwrap(), kind);
            assert_eq!(Kind::from_u8(kind as u8), kind);
        }
        assert_eq!(Kind::default(), Kind::Logdist);
        assert!(
            "otlp2"
                .parse::<Kind>()
                .unwrap_err()
                .contains("logdist, message, otlp, forward, elasticsearch, loki")
        );
    }

    /// A protocol that only has a name.
    struct Named(&'static str);

    impl Protocol for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn send<'a>(
            &'a self,
            _lane: usize,
            _to: &'a AnalyzerUrl,
            _jobs: &'a [Job],
            _timeout: Duration,
        ) -> Sending<'a, Result<(), Failed>> {
            Box::pin(async { Ok(()) })
        }
        fn probe<'a>(&'a self, _to: &'a AnalyzerUrl) -> Sending<'a, bool> {
            Box::pin(async { true })
        }
    }

    #[test]
    fn each_kind_finds_its_protocol_whatever_its_number() {
        // Kinds are numbered for good (members and leases keep the number), not by their
        // place in the table.
        let protocols = Protocols::new(
            Kind::ALL
                .iter()
                .map(|kind| {
                    std::sync::Arc::new(Named(kind.as_str())) as std::sync::Arc<dyn Protocol>
                })
                .collect(),
        );
        for kind in Kind::ALL {
            assert_eq!(protocols.of(kind).name(), kind.as_str());
        }
        assert_eq!(
            Kind::from_u8(Kind::Elasticsearch as u8),
            Kind::Elasticsearch
        );
        assert_eq!(Kind::from_u8(200), Kind::Logdist);
    }

    #[test]
    fn content_refusals_are_told_from_sick_analyzers() {
        use http::StatusCode;
        for status in [400, 415, 422] {
            assert!(
                refuses_content(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        for status in [401, 403, 404, 405, 408, 413, 429, 500, 502, 503, 504] {
            assert!(
                !refuses_content(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }
}
