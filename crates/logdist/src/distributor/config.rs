//! The distributor's flags, each with an environment fallback: the command line, and the
//! one place that turns it into each stage's own settings (see [`super::Distributor`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bytesize::ByteSize;
use clap::Args;

use super::delivery::address::{AnalyzerUrl, check_id};
use super::delivery::protocol::Kind;
use anyhow::Context;
use logdist_core::{Aliases, IndexTemplate, Mapping, Schema, TimestampUnit};

use super::ingest::dead_letter::DeadLetter;
use super::ingest::syslog::SyslogListen;
use super::ingest::{AckMode, OnInvalid};
use super::spool::{Fsync, SpoolSettings};

/// `--validate`: how much of each message is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidateMode {
    /// Every message parsed and its fields checked.
    Full,
    /// NDJSON framing, JSON-object boundaries and UTF-8 only.
    Framing,
}

impl From<ValidateMode> for logdist_core::Validation {
    fn from(mode: ValidateMode) -> Self {
        match mode {
            ValidateMode::Full => Self::Full,
            ValidateMode::Framing => Self::Framing,
        }
    }
}

/// `--schema`: what a record that is not a message becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaMode {
    /// Mapped to a message (the default).
    Map,
    /// Refused: only messages are taken.
    Strict,
}

/// `--map`.
fn parse_aliases(text: &str) -> Result<Aliases, String> {
    text.parse()
        .map_err(|e: logdist_core::mapping::AliasError| e.to_string())
}

/// `logdist distributor`: receives packets from agents and routes each to one analyzer.
#[derive(Debug, Clone, Args)]
pub struct DistributorArgs {
    /// Address to listen on.
    #[arg(long, env = "LOGDIST_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// An analyzer known at start, as ID=URL@WEIGHT (e.g. analyzer_1=http://127.0.0.1:3001@0.5),
    /// optionally followed by `;protocol=NAME` (`logdist`, the default; `message` for the
    /// original project's analyzer: analyzer_4=http://127.0.0.1:3004@0.5;protocol=message;
    /// `otlp` for an OpenTelemetry receiver, sent OTLP/HTTP to `{url}/v1/logs`;
    /// `forward` for a Fluentd or Fluent Bit aggregator at tcp://HOST:PORT or
    /// tls://HOST:PORT: fluentd=tcp://127.0.0.1:24224@1;protocol=forward; `loki` for a
    /// Loki, pushed to `{url}/loki/api/v1/push`).
    /// Repeat the flag, or separate with commas in the environment variable.
    #[arg(long = "analyzer", env = "LOGDIST_ANALYZERS", value_delimiter = ',')]
    pub analyzers: Vec<AnalyzerSpec>,

    /// Answer agents once an analyzer acknowledged their packet (delivered) or once it is
    /// queued (accepted).
    #[arg(long, env = "LOGDIST_ACK", value_enum, default_value = "delivered")]
    pub ack: AckMode,

    /// With --ack accepted: write every accepted packet to this directory before its 202,
    /// and keep it there until an analyzer has it, so that a crash or a restart loses
    /// none (undelivered packets are sent at the next start). One directory per
    /// distributor.
    #[arg(long, env = "LOGDIST_SPOOL")]
    pub spool: Option<PathBuf>,

    /// When the spool's writes are forced to disk: `always` (before each 202: survives a
    /// power cut), an interval such as `10ms` (a power cut loses up to that much), or `os`
    /// (the OS's writeback). A crash of logdist itself loses nothing in any case.
    #[arg(long, env = "LOGDIST_SPOOL_FSYNC", default_value = "10ms")]
    pub spool_fsync: Fsync,

    /// The most the spool holds on disk. When it is full, accepted packets get 503 with
    /// Retry-After.
    #[arg(long, env = "LOGDIST_SPOOL_MAX_BYTES", default_value = "1GiB")]
    pub spool_max_bytes: ByteSize,

    /// The size of the spool's segment files (at most a quarter of --spool-max-bytes): a
    /// segment is deleted once every packet in it is delivered.
    #[arg(long, env = "LOGDIST_SPOOL_SEGMENT_BYTES", default_value = "64MiB")]
    pub spool_segment_bytes: ByteSize,

    /// Require `Authorization: Bearer TOKEN` on ingest and registration (both; see
    /// --ingest-token and --admin-token to give them different tokens).
    #[arg(long, env = "LOGDIST_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub token: Option<String>,

    /// The token agents must send to every ingest path (/packets, /message/send, /v1/logs,
    /// /loki/api/v1/push, /_bulk and Elasticsearch's first calls), as `Authorization:
    /// Bearer`, `ApiKey` or `Basic` with it as the password [default: --token].
    #[arg(long, env = "LOGDIST_INGEST_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub ingest_token: Option<String>,

    /// The token analyzers and operators must send to POST /analyzer/register and
    /// /analyzer/deregister [default: --token].
    #[arg(long, env = "LOGDIST_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub admin_token: Option<String>,

    /// Serve the Fluent forward protocol (MessagePack over TCP, as Fluentd, Fluent Bit and
    /// the Fluent loggers send it) on this address, e.g. 127.0.0.1:24224. Off by default.
    #[arg(long, env = "LOGDIST_FORWARD_LISTEN")]
    pub forward_listen: Option<SocketAddr>,

    /// A forward connection that sends nothing for this long is closed.
    #[arg(long, env = "LOGDIST_FORWARD_IDLE_TIMEOUT", default_value = "60s", value_parser = crate::parse_duration)]
    pub forward_idle_timeout: Duration,

    /// Require forward clients to prove they know this key (the forward protocol's
    /// HELO/PING/PONG handshake: Fluentd's `<security> shared_key`, Fluent Bit's
    /// `Shared_Key`). A client with another key is answered PONG false and closed. Off by
    /// default: any client may send.
    #[arg(long, env = "LOGDIST_FORWARD_SHARED_KEY", hide_env_values = true)]
    pub forward_shared_key: Option<logdist_core::forward::handshake::SharedKey>,

    /// The hostname the forward listener gives clients in its PONG (and hashes into its
    /// proof of the shared key); a client with the same hostname is refused [default:
    /// this machine's hostname, or `logdist`].
    #[arg(long, env = "LOGDIST_FORWARD_SELF_HOSTNAME")]
    pub forward_self_hostname: Option<String>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key); --forward-listen
    /// speaks TLS with it too.
    #[arg(long, env = "LOGDIST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "LOGDIST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Also trust these PEM certificates when delivering to https:// analyzers (on top of
    /// the system's roots): an internal CA, or an analyzer's self-signed certificate.
    #[arg(long, env = "LOGDIST_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// A client must send a request's headers within this time (slow clients are cut
    /// off); it is also how long an idle keep-alive connection stays open.
    #[arg(long, env = "LOGDIST_HEADER_TIMEOUT", default_value = "10s", value_parser = crate::parse_duration)]
    pub header_timeout: Duration,

    /// A client must send a request's whole body within this time (408 beyond).
    #[arg(long, env = "LOGDIST_BODY_TIMEOUT", default_value = "30s", value_parser = crate::parse_duration)]
    pub body_timeout: Duration,

    /// Connections served at once; a connection past them is answered 503 (Retry-After:
    /// 1) and closed.
    #[arg(long, env = "LOGDIST_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,

    /// How long a packet's `Idempotency-Key` is remembered: a retry with the same key
    /// within this window gets the first answer and is not delivered again.
    #[arg(long, env = "LOGDIST_IDEMPOTENCY_WINDOW", default_value = "10m", value_parser = crate::parse_duration)]
    pub idempotency_window: Duration,

    /// Idempotency keys remembered at most (the oldest are forgotten first).
    #[arg(long, env = "LOGDIST_IDEMPOTENCY_KEYS", default_value_t = 1_000_000)]
    pub idempotency_keys: usize,

    /// How much of each message is checked: `full` parses every message (a JSON object
    /// with timestamp, severity, source and message); `framing` checks only that the body
    /// is UTF-8 and every line is one JSON object by its braces, and does not parse
    /// messages (cheaper; a malformed message can then reach an analyzer).
    #[arg(long, env = "LOGDIST_VALIDATE", value_enum, default_value = "full")]
    pub validate: ValidateMode,

    /// What a JSON record sent to /packets or /message/send that is not a message becomes:
    /// `map` reads its time, severity, source and message from the names shippers use
    /// (`@timestamp`, `level`, `service.name`, `log`...; see the README) and keeps its other
    /// fields; `strict` refuses it, as logdist did before it mapped.
    #[arg(long, env = "LOGDIST_SCHEMA", value_enum, default_value = "map")]
    pub schema: SchemaMode,

    /// Your own names for the four fields, tried before the usual ones, as FIELD=NAME
    /// pairs: `message=payload,source=kubernetes.pod_name`. A NAME is a key or a dotted
    /// path into nested objects.
    #[arg(long, env = "LOGDIST_MAP", value_parser = parse_aliases)]
    pub map: Option<Aliases>,

    /// A file of FIELD=NAME pairs, as --map takes them, one per line (`#` starts a
    /// comment); tried after --map's.
    #[arg(long, env = "LOGDIST_MAP_FILE")]
    pub map_file: Option<PathBuf>,

    /// The unit of the integer `timestamp` written for a record whose time was mapped
    /// (shippers' JSON, OTLP, Loki): s, ms, us or ns. Messages sent with their own
    /// `timestamp` keep it as sent.
    #[arg(long, env = "LOGDIST_TIMESTAMP_UNIT", default_value = "ms")]
    pub timestamp_unit: TimestampUnit,

    /// What a bad record in a body of /packets or /message/send does: `reject` refuses the
    /// body (400 naming the record; the agent must fix it); `drop` delivers the good
    /// records and answers 200 with how many were dropped and why (counted in /metrics);
    /// `dead-letter` also appends each dropped record, with its reason, to --dead-letter.
    /// OTLP, Loki and bulk always answer bad records in their own protocol's terms.
    #[arg(long, env = "LOGDIST_ON_INVALID", value_enum, default_value = "reject")]
    pub on_invalid: OnInvalid,

    /// The file bad records are appended to, as NDJSON with their reason, format and
    /// place: the records dropped by --on-invalid dead-letter, and the records refused one
    /// by one by OTLP, Loki and bulk (whatever --on-invalid says).
    #[arg(
        long,
        env = "LOGDIST_DEAD_LETTER",
        required_if_eq("on_invalid", "dead-letter")
    )]
    pub dead_letter: Option<PathBuf>,

    /// Largest size of the dead-letter file: beyond it, it is renamed FILE.1 (replacing
    /// the one before) and a new FILE is started.
    #[arg(long, env = "LOGDIST_DEAD_LETTER_MAX", default_value = "64MiB")]
    pub dead_letter_max: ByteSize,

    /// Largest request body accepted, as sent and once decompressed (413 beyond).
    #[arg(long, env = "LOGDIST_MAX_BODY", default_value = "8MiB")]
    pub max_body: ByteSize,

    /// Packets that may wait in one analyzer's queue; when the chosen analyzer's queue is
    /// full the agent gets 503 with Retry-After and nothing is accepted.
    #[arg(long, env = "LOGDIST_QUEUE_PACKETS", default_value_t = 4096)]
    pub queue_packets: usize,

    /// Bytes that may wait in one analyzer's queue, deliveries in flight included (same
    /// policy as --queue-packets). This bounds the distributor's memory: with 3 analyzers
    /// at most 24 MiB of packets wait by default. Raise it for many agents sending large
    /// packets, if they see 503s while the analyzers keep up.
    #[arg(long, env = "LOGDIST_QUEUE_BYTES", default_value = "8MiB")]
    pub queue_bytes: ByteSize,

    /// Longest expected wait in one analyzer's queue: a queue holding more than this
    /// analyzer delivers in this time (measured) counts as full, so agents of a slow
    /// analyzer get 503 with Retry-After at once instead of waiting toward a timeout.
    #[arg(long, env = "LOGDIST_QUEUE_WAIT", default_value = "2s", value_parser = crate::parse_duration)]
    pub queue_wait: Duration,

    /// Largest delivery: queued packets bound for one analyzer are sent together, as one
    /// NDJSON request, up to this size.
    #[arg(long, env = "LOGDIST_BATCH_BYTES", default_value = "1MiB")]
    pub batch_bytes: ByteSize,

    /// Deliveries in flight at once to one analyzer (over all workers).
    #[arg(long, env = "LOGDIST_LANE_CONCURRENCY", default_value_t = 2)]
    pub lane_concurrency: usize,

    /// Messages in flight at once to one analyzer of the `message` protocol (one request
    /// each, as the original project's analyzer takes them).
    #[arg(long, env = "LOGDIST_MESSAGE_CONCURRENCY", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub message_concurrency: u32,

    /// The tag of the events delivered to analyzers of the `forward` protocol (Fluent
    /// forward: what a Fluentd or Fluent Bit aggregator matches its routes on).
    #[arg(long, env = "LOGDIST_FORWARD_TAG", default_value = "logdist",
          value_parser = parse_forward_tag)]
    pub forward_tag: String,

    /// The index each message goes to at an analyzer of the `elasticsearch` protocol (an
    /// index or a data stream): a name with date codes of the message's own time in UTC,
    /// %Y, %m, %d and %H (%% for a `%`), as Logstash's `logstash-%Y.%m.%d`.
    #[arg(long, env = "LOGDIST_ELASTICSEARCH_INDEX", default_value = logdist_core::bulk::DEFAULT_INDEX)]
    pub elasticsearch_index: IndexTemplate,

    /// Worker threads, each an event loop serving its own connections and delivering what
    /// they bring (thread-per-core); 0 means one per CPU core.
    #[arg(long, env = "LOGDIST_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// A delivery not acknowledged within this time has failed: the analyzer is marked
    /// unhealthy and the packets are routed again.
    #[arg(long, env = "LOGDIST_DELIVERY_TIMEOUT", default_value = "5s", value_parser = crate::parse_duration)]
    pub delivery_timeout: Duration,

    /// How many analyzers a packet may be tried at before the agent gets 503.
    #[arg(long, env = "LOGDIST_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u8,

    /// Time between health probes (GET /health) of an online analyzer.
    #[arg(long, env = "LOGDIST_PROBE_INTERVAL", default_value = "2s", value_parser = crate::parse_duration)]
    pub probe_interval: Duration,

    /// A probe not answered within this time has failed.
    #[arg(long, env = "LOGDIST_PROBE_TIMEOUT", default_value = "1s", value_parser = crate::parse_duration)]
    pub probe_timeout: Duration,

    /// Consecutive failed probes that make an online analyzer unhealthy (one failed
    /// delivery does it at once).
    #[arg(long, env = "LOGDIST_UNHEALTHY_AFTER", default_value_t = 2)]
    pub unhealthy_after: u32,

    /// Consecutive good probes that bring an unhealthy analyzer back online.
    #[arg(long, env = "LOGDIST_HEALTHY_AFTER", default_value_t = 2)]
    pub healthy_after: u32,

    /// An analyzer unhealthy this long, its probes still failing, is forgotten: removed
    /// (in cluster mode its lease too), what is queued for it routed to the others, and
    /// counted in `logdist_analyzers_forgotten_total`. If it registers again it is a new
    /// analyzer. `0` or `never` keeps them; analyzers given with `--analyzer` are kept.
    #[arg(long, env = "LOGDIST_FORGET_AFTER", default_value = "10m", value_parser = crate::parse_duration_or_never)]
    pub forget_after: Duration,

    /// Ejection after a failed delivery: an analyzer whose delivery fails or times out is
    /// taken out of routing for this long, doubled for each ejection in a row (probes
    /// that pass do not end an ejection early).
    #[arg(long, env = "LOGDIST_EJECT_BASE", default_value = "2s", value_parser = crate::parse_duration)]
    pub eject_base: Duration,

    /// The longest ejection; an analyzer that delivers without a failure for this long
    /// after its last ejection starts again from --eject-base.
    #[arg(long, env = "LOGDIST_EJECT_MAX", default_value = "2m", value_parser = crate::parse_duration)]
    pub eject_max: Duration,

    /// Health probes sent per second at most, over all analyzers: probing costs a bounded
    /// amount of work whatever the number of analyzers (with many, each is probed less
    /// often than --probe-interval).
    #[arg(long, env = "LOGDIST_PROBE_RATE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub probe_rate: u32,

    /// Analyzers registered at most; a registration of a new one beyond gets 503.
    #[arg(long, env = "LOGDIST_MAX_ANALYZERS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_analyzers: u32,

    /// Registrations that add or change an analyzer, per second and source address (a
    /// burst of as many is allowed); beyond, 429 with Retry-After. Renewing a
    /// registration as it is (an analyzer's keep-alive) is not counted.
    #[arg(long, env = "LOGDIST_REGISTER_RATE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub register_rate: u32,

    /// Share analyzers, weights and counts with every distributor on this Redis
    /// (redis://HOST:PORT/DB). Without it all state is in this process.
    #[arg(long, env = "LOGDIST_REDIS")]
    pub redis: Option<String>,

    /// Prefix of every Redis key and channel, so that several fleets can share a Redis.
    #[arg(long, env = "LOGDIST_REDIS_PREFIX", default_value = "logdist:")]
    pub redis_prefix: String,

    /// In cluster mode, how long a registration lives without being renewed; analyzers
    /// renew it with their keep-alive, so one that vanishes drops out after this.
    #[arg(long, env = "LOGDIST_LEASE_TTL", default_value = "15s", value_parser = crate::parse_duration)]
    pub lease_ttl: Duration,

    /// In cluster mode, how often membership is re-read in full (on top of the pushed
    /// changes) and counters are flushed to Redis.
    #[arg(long, env = "LOGDIST_SYNC_INTERVAL", default_value = "1s", value_parser = crate::parse_duration)]
    pub sync_interval: Duration,

    /// This distributor's name in the fleet's health view [default: its listen address].
    #[arg(long, env = "LOGDIST_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// On SIGTERM/SIGINT, how long to keep answering in-flight requests and draining
    /// queues before exiting.
    #[arg(long, env = "LOGDIST_SHUTDOWN_GRACE", default_value = "10s", value_parser = crate::parse_duration)]
    pub shutdown_grace: Duration,

    /// Receive syslog (RFC 5424 and RFC 3164) on tcp://ADDR (octet-counted or
    /// newline-framed) or udp://ADDR (one message a datagram, not acknowledged). Repeat
    /// the flag, or separate with commas in the environment variable. Off by default.
    #[arg(
        long = "syslog-listen",
        env = "LOGDIST_SYSLOG_LISTEN",
        value_delimiter = ','
    )]
    pub syslog_listen: Vec<SyslogListen>,

    /// The longest syslog message taken, in bytes; a longer one closes its TCP connection
    /// (UDP: is dropped). At most --max-body.
    #[arg(long, env = "LOGDIST_SYSLOG_MAX_MESSAGE", default_value = "64KiB")]
    pub syslog_max_message: ByteSize,

    /// Stream ingest (syslog): the most messages in one packet of a connection's
    /// records. Packets are also bounded by --batch-bytes and --max-body.
    #[arg(long, env = "LOGDIST_STREAM_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub stream_batch: u32,

    /// Stream ingest: how long a connection's first record waits for others before its
    /// packet is routed.
    #[arg(long, env = "LOGDIST_STREAM_LINGER", default_value = "20ms", value_parser = crate::parse_duration)]
    pub stream_linger: Duration,

    /// Stream ingest: a connection that sends nothing this long is closed.
    #[arg(long, env = "LOGDIST_STREAM_IDLE_TIMEOUT", default_value = "5m", value_parser = crate::parse_duration)]
    pub stream_idle_timeout: Duration,
}

impl DistributorArgs {
    /// The token ingest requires, if any.
    pub fn ingest_token(&self) -> Option<&str> {
        self.ingest_token.as_deref().or(self.token.as_deref())
    }

    /// What a record that is not a message becomes: `--schema`, with `--map` and
    /// `--map-file`'s aliases and `--timestamp-unit`.
    pub fn schema(&self) -> anyhow::Result<Schema> {
        if self.schema == SchemaMode::Strict {
            return Ok(Schema::Strict);
        }
        let mut text = self
            .map
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        if let Some(path) = &self.map_file {
            let file = std::fs::read_to_string(path)
                .with_context(|| format!("--map-file {}", path.display()))?;
            text = format!("{text}\n{file}");
        }
        let aliases = text.parse().with_context(|| match &self.map_file {
            Some(path) => format!("--map or --map-file {}", path.display()),
            None => "--map".to_owned(),
        })?;
        Ok(Schema::Map(Mapping {
            unit: self.timestamp_unit,
            aliases,
        }))
    }

    /// The dead-letter file, opened for appending, if `--dead-letter` names one.
    /// The spool's settings, with `--spool`. A spool keeps what `--ack accepted`
    /// acknowledges: with `--ack delivered` nothing is acknowledged before an analyzer has
    /// it, and `--spool` is refused as a mistake.
    pub(super) fn spool(&self) -> anyhow::Result<Option<SpoolSettings>> {
        let Some(dir) = &self.spool else {
            return Ok(None);
        };
        if self.ack != AckMode::Accepted {
            anyhow::bail!(
                "--spool keeps the packets --ack accepted answers before they are delivered; with --ack delivered an agent is answered only once an analyzer has its packet, so there is nothing to spool. Add --ack accepted, or drop --spool."
            );
        }
        let max_bytes = self.spool_max_bytes.as_u64();
        Ok(Some(SpoolSettings {
            dir: dir.clone(),
            fsync: self.spool_fsync,
            max_bytes,
            segment_bytes: self
                .spool_segment_bytes
                .as_u64()
                .min(max_bytes / 4)
                .max(64 * 1024),
        }))
    }

    pub(super) fn dead_letter(&self) -> anyhow::Result<Option<DeadLetter>> {
        let Some(path) = &self.dead_letter else {
            return Ok(None);
        };
        DeadLetter::open(path, self.dead_letter_max.as_u64())
            .map(Some)
            .with_context(|| format!("--dead-letter {}", path.display()))
    }

    /// The token registration and deregistration require, if any.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref().or(self.token.as_deref())
    }

    /// The bounds of stream ingest (syslog): `--stream-*`, `--batch-bytes`, `--max-body`
    /// and `--max-connections`.
    pub fn stream_settings(&self) -> super::ingest::stream::StreamSettings {
        super::ingest::stream::StreamSettings {
            batch_messages: self.stream_batch,
            batch_bytes: self.batch_bytes.as_u64().min(self.max_body.as_u64()) as usize,
            linger: self.stream_linger,
            idle_timeout: self.stream_idle_timeout,
            max_connections: self.max_connections,
        }
    }

    /// `--syslog-max-message`, at most `--max-body`.
    pub fn syslog_max_message(&self) -> usize {
        self.syslog_max_message.as_u64().min(self.max_body.as_u64()) as usize
    }

    /// The defaults, listening on `listen`; what the demo and tests start from.
    pub fn with_listen(listen: SocketAddr) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: DistributorArgs,
        }
        let mut args = Wrapper::parse_from(["logdist"]).args;
        args.listen = listen;
        args
    }
}

/// A bearer token: not empty (an empty `LOGDIST_TOKEN=` would otherwise leave the
/// distributor open without saying so), and without whitespace or control characters.
fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(
            "a token must not be empty (leave the flag out for an open distributor)".to_owned(),
        );
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token must be visible ASCII characters, without spaces".to_owned());
    }
    Ok(s.to_owned())
}

/// A `--forward-tag`: 1 to 256 visible ASCII characters.
fn parse_forward_tag(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "`{s}` is not a tag: 1 to 256 visible ASCII characters (e.g. logdist.events)"
        ));
    }
    Ok(s.to_owned())
}

/// `ID=URL@WEIGHT[;protocol=NAME]`, as given to `--analyzer`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzerSpec {
    /// The analyzer's id.
    pub id: String,
    /// Its base URL.
    pub url: AnalyzerUrl,
    /// Its relative weight.
    pub weight: f64,
    /// Its delivery protocol, when given (`;protocol=NAME`).
    pub protocol: Option<Kind>,
}

impl FromStr for AnalyzerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "`{s}` is not ID=URL@WEIGHT[;protocol=NAME] (e.g. analyzer_1=http://127.0.0.1:3001@0.5)"
            )
        };
        let (spec, options) = match s.split_once(';') {
            Some((spec, options)) => (spec, Some(options)),
            None => (s, None),
        };
        let mut protocol = None;
        for option in options.into_iter().flat_map(|o| o.split(';')) {
            match option.trim().split_once('=') {
                Some(("protocol", name)) => protocol = Some(name.trim().parse::<Kind>()?),
                _ => {
                    return Err(format!(
                        "`{option}` in `{s}` is not an analyzer option; the one there is is protocol=NAME"
                    ));
                }
            }
        }
        let (id, rest) = spec.split_once('=').ok_or_else(usage)?;
        let (url, weight) = rest.rsplit_once('@').ok_or_else(usage)?;
        let weight: f64 = weight
            .parse()
            .map_err(|_| format!("weight `{weight}` is not a number"))?;
        let url: AnalyzerUrl = url.parse()?;
        protocol.unwrap_or_default().check_url(&url)?;
        Ok(Self {
            id: check_id(id)?.to_owned(),
            url,
            weight: logdist_core::routing::check_weight(weight).map_err(|e| e.to_string())?,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyzer_specs_parse() {
        let spec: AnalyzerSpec = "analyzer_1=http://127.0.0.1:3001@0.5".parse().unwrap();
        assert_eq!(spec.id, "analyzer_1");
        assert_eq!(spec.url.base, "http://127.0.0.1:3001");
        assert_eq!(spec.url.uri("/packets"), "http://127.0.0.1:3001/packets");
        assert_eq!(spec.weight, 0.5);
        assert_eq!(spec.protocol, None);
        let spec: AnalyzerSpec = "analyzer_4=http://127.0.0.1:3004@0.5;protocol=message"
            .parse()
            .unwrap();
        assert_eq!(
            (spec.id.as_str(), spec.weight, spec.protocol),
            ("analyzer_4", 0.5, Some(Kind::Message))
        );
        assert_eq!(spec.url.base, "http://127.0.0.1:3004");
        let spec: AnalyzerSpec = "a=http://h:1@1;protocol=logdist".parse().unwrap();
        assert_eq!(spec.protocol, Some(Kind::Logdist));
        // Container names as in the original run instructions and docker-compose.yml.
        let url: AnalyzerUrl = "http://analyzer_1:3001".parse().unwrap();
        assert_eq!(url.uri("/packets"), "http://analyzer_1:3001/packets");
        for bad in [
            "a=http://h:1",
            "=http://h:1@1",
            "a=http://h:1@0",
            "a=http://h:1@-1",
            "a=http://h:1@NaN",
            "a=ftp://h:1@1",
            "a=file:///etc/passwd@1",
            "a=http://u:p@h:1@1",
            "a=http://h:1/x@1",
            "a=h:1@1",
            "a=http://h:0@1",
            "a=http://0.0.0.0:3001@1",
            "a=http://169.254.169.254:80@1",
            "a=http://[fe80::1]:3001@1",
            "a=http://224.0.0.1:3001@1",
            "a=http://bad_host!:3001@1",
            "a=gopher://h:70@1",
            "a=http://h:99999@1",
            "a=http://h:65536@1",
            "a=http://h:@1",
            "a=http://[]:1@1",
            "a=http://*:1@1",
            "a=http://a!b$c:1@1",
            "a=http://[fe80::1%25eth0]:1@1",
            "a=http://h:1#frag@1",
            "a=http://h:1@1;protocol=carrier-pigeon",
            "a=http://h:1@1;colour=blue",
            "a=http://h:1@1;protocol",
            "a=http://h:1@1;protocol=forward",
            "a=tcp://h:1@1",
            "a=tcp://h:1@1;protocol=message",
        ] {
            assert!(bad.parse::<AnalyzerSpec>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn forward_analyzers_are_at_tcp_or_tls_urls() {
        let spec: AnalyzerSpec = "fluentd=tcp://127.0.0.1:24224@1;protocol=forward"
            .parse()
            .unwrap();
        assert_eq!(spec.protocol, Some(Kind::Forward));
        assert_eq!(spec.url.base, "tcp://127.0.0.1:24224");
        let spec: AnalyzerSpec = "f=tls://fluentd.internal@2;protocol=forward"
            .parse()
            .unwrap();
        assert_eq!(spec.url.port, 24224);
        let why = "f=http://h:1@1;protocol=forward"
            .parse::<AnalyzerSpec>()
            .unwrap_err();
        assert!(why.contains("give tcp://host:port"), "{why}");
        assert_eq!(parse_forward_tag("app.logs").unwrap(), "app.logs");
        assert!(parse_forward_tag("").is_err());
        assert!(parse_forward_tag("a b").is_err());
    }

    #[test]
    fn tokens_are_checked() {
        assert!(parse_token("").is_err());
        assert!(parse_token("a b").is_err());
        assert_eq!(parse_token("s3cret").unwrap(), "s3cret");
    }

    #[test]
    fn defaults_are_sane() {
        let args = DistributorArgs::with_listen("127.0.0.1:0".parse().unwrap());
        assert_eq!(args.max_body.as_u64(), 8 * 1024 * 1024);
        assert_eq!(args.ack, AckMode::Delivered);
        assert_eq!(args.elasticsearch_index.to_string(), "logdist-%Y.%m.%d");
    }

    #[test]
    fn index_templates_are_checked_at_startup() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: DistributorArgs,
        }
        let parse = |template: &str| {
            Wrapper::try_parse_from(["logdist", "--elasticsearch-index", template])
                .map(|w| w.args.elasticsearch_index.render(0))
        };
        assert_eq!(parse("logs-%Y.%m.%d-%H").unwrap(), "logs-1970.01.01-00");
        let error = parse("logs-%j").map(drop).unwrap_err().to_string();
        assert!(
            error.contains("--elasticsearch-index")
                && error.contains("`%j` is not a date code it takes; use %Y, %m, %d, %H"),
            "{error}"
        );
        assert!(parse("Logs").is_err());
    }
}
