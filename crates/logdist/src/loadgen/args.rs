//! The `logdist loadgen` command line: flags, their environment fallbacks and the small
//! value types they parse into (packet sizes, humane durations, endpoints, encodings).
//!
//! Parsing is kept pure so it can be unit-tested and reused by in-process callers
//! (`demo`) that build a [`LoadgenArgs`] by hand from [`LoadgenArgs::default`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::BoolishValueParser;

use super::ids::IdPrefix;
use super::protocol::Protocol;

/// Upper bound on `--packet-size`: a packet is held in memory many times over in the
/// pool, so an absurd size is refused instead of exhausting memory.
pub const MAX_PACKET_SIZE: u32 = 1_000_000;

/// How long to run when neither `--duration` nor `--packets` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// clap arguments of `logdist loadgen`. Every flag also reads an environment variable
/// so the load generator can be configured in a container without a command line.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct LoadgenArgs {
    /// Base URL of the distributor to load (plain HTTP).
    #[arg(long, env = "LOGDIST_TARGET", default_value = "http://127.0.0.1:3000")]
    pub target: String,

    /// Bearer token sent as `Authorization: Bearer TOKEN`, for a distributor run with `--token`.
    #[arg(long, env = "LOGDIST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Concurrent simulated agents; each is a task with its own keep-alive connection.
    #[arg(long, env = "LOGDIST_LOADGEN_AGENTS", default_value_t = 32, value_parser = parse_agents)]
    pub agents: usize,

    /// Messages per packet: a fixed `N` or a uniform range `MIN..MAX` (inclusive).
    #[arg(long, env = "LOGDIST_LOADGEN_PACKET_SIZE", default_value = "100")]
    pub packet_size: PacketSize,

    /// How long to send, e.g. `500ms`, `10s`, `2m` [default: 10s, unless --packets is given].
    /// With both flags the run stops at whichever limit comes first.
    #[arg(long, env = "LOGDIST_LOADGEN_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after sending this many packets in total (over all agents).
    #[arg(long, env = "LOGDIST_LOADGEN_PACKETS", value_parser = clap::value_parser!(u64).range(1..))]
    pub packets: Option<u64>,

    /// Total packets (or messages with `--endpoint message`) per second over all agents
    /// [default: unlimited].
    #[arg(long, env = "LOGDIST_LOADGEN_RATE", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Write the machine-readable summary to this JSON file.
    #[arg(long, env = "LOGDIST_LOADGEN_REPORT")]
    pub report: Option<PathBuf>,

    /// Where to send: `packets` (NDJSON packets to /packets) or `message` (one message per
    /// request to /message/send, as the original project's agents did).
    #[arg(long, env = "LOGDIST_LOADGEN_ENDPOINT", value_enum, default_value_t = Endpoint::Packets)]
    pub endpoint: Endpoint,

    /// How packets are written and where they go: `ndjson` (logdist's messages to
    /// /packets), `json` (a JSON array of Fluent Bit-shaped records to /packets), `otlp`
    /// (OTLP/HTTP protobuf to /v1/logs), `otlp-json` (OTLP/JSON to /v1/logs), `bulk`
    /// (Elasticsearch bulk to /_bulk) or `loki` (Loki's snappy protobuf push to
    /// /loki/api/v1/push), `syslog-tcp` (RFC 5424, octet-counted) or `syslog-udp`
    /// (RFC 3164, a datagram each) to `--syslog-target`, `forward` (Fluent forward
    /// PackedForward frames with `chunk` over TCP to --forward-target, acknowledged by the
    /// server's ack) or `forward-noack` (the same without acks). `--packet-size` is the records per request for each; bodies
    /// are built once at start whatever the protocol. An answer 200, 202 or 204 acks the
    /// packet, unless it reports refused records (OTLP `partial_success`, bulk
    /// `"errors":true`: failure kind `partial`).
    #[arg(long, env = "LOGDIST_LOADGEN_PROTOCOL", value_enum, default_value_t = Protocol::Ndjson)]
    pub protocol: Protocol,

    /// Where `--protocol syslog-tcp|syslog-udp` sends: HOST:PORT of the distributor's
    /// `--syslog-listen` (`--target` is still where the run's stats are read).
    #[arg(long, env = "LOGDIST_LOADGEN_SYSLOG_TARGET")]
    pub syslog_target: Option<String>,

    /// With `--protocol forward` or `forward-noack`: the distributor's `--forward-listen`
    /// address (HOST:PORT) the frames go to; `--target` is still where the run's stats are
    /// read.
    #[arg(long, env = "LOGDIST_LOADGEN_FORWARD_TARGET")]
    pub forward_target: Option<String>,

    /// Content-Encoding of packet bodies (pre-compressed once at start, so it costs
    /// nothing while sending; with `--trace`, compressed per send after the ids are
    /// stamped); exercises the distributor's decoders.
    #[arg(long, env = "LOGDIST_LOADGEN_ENCODING", value_enum, default_value_t = Encoding::Identity)]
    pub encoding: Encoding,

    /// Per-request timeout, connection included (e.g. `30s`).
    #[arg(long, env = "LOGDIST_LOADGEN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long, short, env = "LOGDIST_LOADGEN_QUIET", value_parser = BoolishValueParser::new())]
    pub quiet: bool,

    /// Seed for the message generator, to make the generated packets reproducible.
    #[arg(long, env = "LOGDIST_LOADGEN_SEED")]
    pub seed: Option<u64>,

    /// Write the packets this run would send (the pool of bodies the agents cycle
    /// through) to FILE, each followed by an empty line, and exit without sending: so that
    /// another client (wrk, a replay tool) can send exactly the same packets. A run with
    /// the same `--seed` and `--packet-size` sends the same packets but for their
    /// timestamps, which come from the clock. Uncompressed packets only, without
    /// `--trace`. With a `--protocol` other than `ndjson`, each body is instead preceded
    /// by its length in bytes (decimal) and a newline, since protobuf may hold any byte.
    #[arg(long, value_name = "FILE", env = "LOGDIST_LOADGEN_WRITE_BODIES")]
    pub write_bodies: Option<PathBuf>,

    /// Give every message a unique `"msg_id":"{key}-{i}"` (message `i` of the packet whose
    /// key is `{prefix}-{agent}-{seq}`) and write FILE as NDJSON, one line per packet once
    /// its final outcome is known: `{"key", "messages", "outcome": "acked"|"failed",
    /// "status", "failure", "attempts"}`. For fault tests that prove no acknowledged
    /// message is lost. Bodies are then built (and compressed) per send.
    #[arg(long, value_name = "FILE", env = "LOGDIST_LOADGEN_TRACE")]
    pub trace: Option<PathBuf>,

    /// Prefix of packet keys and message ids: 1 to 64 visible ASCII characters, no `"` or
    /// `\` [default: a random 8-hex-digit run id, so two runs never share ids].
    #[arg(long, value_name = "STR", env = "LOGDIST_LOADGEN_ID_PREFIX")]
    pub id_prefix: Option<IdPrefix>,

    /// Resend a packet (same body, same ids, same idempotency key) up to N times when the
    /// answer is 503, 429, 502, 504 or 408, or on a connection failure, a timeout or a
    /// broken connection. Waits `Retry-After` (at most 5 s) if the answer has one, else
    /// an exponential backoff from 100 ms to 2 s with jitter. Other answers are final.
    /// Packets started before the run stops are still retried, within the drain grace.
    #[arg(
        long,
        value_name = "N",
        env = "LOGDIST_LOADGEN_RETRIES",
        default_value_t = 0
    )]
    pub retries: u32,

    /// Send `Idempotency-Key: {prefix}-{agent}-{seq}` with every packet (the same key on
    /// its resends), so a distributor can answer a resent packet it already delivered
    /// without delivering it again.
    #[arg(long, env = "LOGDIST_LOADGEN_IDEMPOTENCY_KEYS", value_parser = BoolishValueParser::new())]
    pub idempotency_keys: bool,
}

impl Default for LoadgenArgs {
    /// The same values as an empty command line, for in-process callers.
    fn default() -> Self {
        Self {
            target: "http://127.0.0.1:3000".to_owned(),
            token: None,
            agents: 32,
            packet_size: PacketSize::fixed(100),
            duration: None,
            packets: None,
            rate: None,
            report: None,
            endpoint: Endpoint::Packets,
            protocol: Protocol::Ndjson,
            syslog_target: None,
            forward_target: None,
            encoding: Encoding::Identity,
            timeout: Duration::from_secs(30),
            quiet: false,
            seed: None,
            write_bodies: None,
            trace: None,
            id_prefix: None,
            retries: 0,
            idempotency_keys: false,
        }
    }
}

/// Which distributor endpoint the agents load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /packets` with an NDJSON body of `--packet-size` messages.
    Packets,
    /// `POST /message/send` with a single JSON message.
    Message,
}

/// `Content-Encoding` applied to `/packets` bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Uncompressed.
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `Content-Encoding: zstd`.
    Zstd,
}

/// Messages per packet: fixed when `min == max`, otherwise drawn uniformly from the
/// inclusive range for each generated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSize {
    /// Smallest packet, at least 1.
    pub min: u32,
    /// Largest packet, at least `min` and at most [`MAX_PACKET_SIZE`].
    pub max: u32,
}

/// Why a `--packet-size` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketSizeError {
    /// Not `N` or `MIN..MAX` with positive integers.
    #[error("expected N or MIN..MAX with positive integers, got {0:?}")]
    Syntax(String),
    /// A packet must carry at least one message.
    #[error("a packet size must be at least 1")]
    Zero,
    /// `MIN..MAX` with `MIN > MAX`.
    #[error("empty range {0}..{1}: MIN must not exceed MAX")]
    Empty(u32, u32),
    /// Larger than [`MAX_PACKET_SIZE`].
    #[error("a packet size must be at most {MAX_PACKET_SIZE}")]
    TooLarge,
}

impl PacketSize {
    /// Every packet has exactly `n` messages.
    pub fn fixed(n: u32) -> Self {
        Self { min: n, max: n }
    }

    /// The average packet size, used to size the pre-generated pool.
    pub fn mean(&self) -> f64 {
        (f64::from(self.min) + f64::from(self.max)) / 2.0
    }
}

impl FromStr for PacketSize {
    type Err = PacketSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| -> Result<u32, PacketSizeError> {
            let n: u32 = part
                .trim()
                .parse()
                .map_err(|_| PacketSizeError::Syntax(s.to_owned()))?;
            match n {
                0 => Err(PacketSizeError::Zero),
                n if n > MAX_PACKET_SIZE => Err(PacketSizeError::TooLarge),
                n => Ok(n),
            }
        };
        let (min, max) = match s.split_once("..") {
            Some((min, max)) => (number(min)?, number(max)?),
            None => {
                let n = number(s)?;
                (n, n)
            }
        };
        if min > max {
            return Err(PacketSizeError::Empty(min, max));
        }
        Ok(Self { min, max })
    }
}

impl fmt::Display for PacketSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

pub use crate::parse_duration;

/// Parses `--agents`: a positive integer.
fn parse_agents(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("at least one agent is needed".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

/// Parses `--rate`: a positive, finite number of requests per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("a rate must be a positive number per second".to_owned()),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    #[test]
    fn packet_size_parses_fixed_and_ranges() {
        assert_eq!("100".parse(), Ok(PacketSize::fixed(100)));
        assert_eq!("1..1000".parse(), Ok(PacketSize { min: 1, max: 1000 }));
        assert_eq!("7..7".parse(), Ok(PacketSize::fixed(7)));
        assert_eq!(PacketSize { min: 1, max: 1000 }.to_string(), "1..1000");
        assert_eq!(PacketSize::fixed(100).to_string(), "100");
    }

    #[test]
    fn packet_size_rejects_bad_values() {
        assert_eq!("0".parse::<PacketSize>(), Err(PacketSizeError::Zero));
        assert_eq!("0..5".parse::<PacketSize>(), Err(PacketSizeError::Zero));
        assert_eq!(
            "5..2".parse::<PacketSize>(),
            Err(PacketSizeError::Empty(5, 2))
        );
        assert!(matches!(
            "abc".parse::<PacketSize>(),
            Err(PacketSizeError::Syntax(_))
        ));
        assert!(matches!(
            "1..".parse::<PacketSize>(),
            Err(PacketSizeError::Syntax(_))
        ));
        assert!(matches!(
            "-3".parse::<PacketSize>(),
            Err(PacketSizeError::Syntax(_))
        ));
        assert_eq!(
            "2000000".parse::<PacketSize>(),
            Err(PacketSizeError::TooLarge)
        );
    }

    #[test]
    fn durations_are_humane() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1s 500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "0s", "abc", "10x", "s", "-1s", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn clap_defaults_match_default_impl() {
        let cli = Cli::try_parse_from(["loadgen"]).expect("empty command line parses");
        assert_eq!(cli.args, LoadgenArgs::default());
    }

    #[test]
    fn clap_parses_every_flag() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--target=http://10.0.0.1:3000",
            "--agents=4",
            "--packet-size=1..50",
            "--duration=2m",
            "--packets=7",
            "--rate=12.5",
            "--report=r.json",
            "--endpoint=message",
            "--protocol=otlp-json",
            "--encoding=zstd",
            "--timeout=500ms",
            "--quiet",
            "--seed=9",
            "--trace=t.ndjson",
            "--id-prefix=chaos-1",
            "--retries=3",
            "--idempotency-keys",
        ])
        .expect("valid command line");
        let a = cli.args;
        assert_eq!(a.agents, 4);
        assert_eq!(a.packet_size, PacketSize { min: 1, max: 50 });
        assert_eq!(a.duration, Some(Duration::from_secs(120)));
        assert_eq!(a.packets, Some(7));
        assert_eq!(a.rate, Some(12.5));
        assert_eq!(a.endpoint, Endpoint::Message);
        assert_eq!(a.protocol, Protocol::OtlpJson);
        assert_eq!(a.encoding, Encoding::Zstd);
        assert_eq!(a.timeout, Duration::from_millis(500));
        assert!(a.quiet);
        assert_eq!(a.trace, Some(PathBuf::from("t.ndjson")));
        assert_eq!(a.id_prefix.as_ref().map(IdPrefix::as_str), Some("chaos-1"));
        assert_eq!(a.retries, 3);
        assert!(a.idempotency_keys);
        for bad in [
            ["loadgen", "--agents=0"],
            ["loadgen", "--rate=0"],
            ["loadgen", "--packets=0"],
            ["loadgen", "--retries=-1"],
            ["loadgen", "--id-prefix=a\"b"],
            ["loadgen", "--id-prefix="],
            ["loadgen", "--protocol=grpc"],
        ] {
            assert!(
                Cli::try_parse_from(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
