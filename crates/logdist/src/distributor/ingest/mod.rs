//! Ingest: agents' requests in, packets out to routing, and each packet's answer back to
//! its agent. For every format of [`formats::HTTP_FORMATS`]: read the body within the
//! limit, undo its Content-Encoding ([`encoding`]), decode and validate it with the
//! format's decoder, hand the packet to routing, and answer once it is delivered (or
//! queued, with `--ack accepted`), in the format's terms ([`HttpFormat::answer`]). A
//! retry that carries an `Idempotency-Key` is answered from memory ([`idempotency`]);
//! `POST /packets` without one takes the express lane ([`express`]). Bad records a decoder
//! refused one by one refuse their body, are dropped, or are written to the dead-letter
//! file, as `--on-invalid` says ([`OnInvalid`], [`dead_letter`]). What else
//! Elasticsearch's shippers ask before their bulk is answered by [`elasticsearch`].
//!
//! Protocols that are not HTTP (syslog over TCP and UDP, [`syslog`]) come in through
//! [`stream`]: listeners, per-connection batching into packets, and the same routing.

pub mod dead_letter;
pub mod elasticsearch;
mod encoding;
pub mod express;
pub mod formats;
pub mod forward;
pub mod idempotency;
mod outcome;
pub mod stream;
pub mod syslog;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{RawPathParams, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use bytes::Bytes;
use logdist_core::{
    DecodeOptions, Decoded, Packet, RecordError, Schema, TimestampUnit, Validation,
};
use tokio::sync::oneshot;

use crate::api::PacketAck;
use crate::distributor::delivery::via;
use crate::distributor::job::{Job, Refusal};
use crate::distributor::routing::Routing;
use crate::distributor::spool::Spool;
use crate::http::server::Reply;
use crate::http::{ApiError, read_body};
use dead_letter::DeadLetter;
pub(crate) use encoding::decompress;
use formats::{HTTP_FORMATS, HttpFormat, Outcome};
use idempotency::{Answer, Claim};

/// When an agent gets its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AckMode {
    /// 200 once an analyzer has acknowledged the packet: nothing answered 200 is lost.
    Delivered,
    /// 202 once the packet is queued for an analyzer: lower latency, at-most-once.
    Accepted,
}

/// `--on-invalid`: what a bad record in a body of logdist's own formats does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnInvalid {
    /// The body is refused, 400 naming the first bad record: nothing is delivered.
    Reject,
    /// The good records are delivered; the answer says how many were dropped and why.
    Drop,
    /// As `drop`, and each dropped record is written to the dead-letter file.
    DeadLetter,
}

/// `--ack`, `--validate`, `--max-body`, `--body-timeout`, the ingest token, and what
/// becomes of records that are not messages (`--schema`, `--map`, `--timestamp-unit`,
/// `--on-invalid`).
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// When agents get their answer.
    pub ack: AckMode,
    /// How much of each message is checked.
    pub validation: Validation,
    /// Largest body, before and after decompression.
    pub max_body: usize,
    /// How long a body may take to arrive.
    pub body_timeout: Duration,
    /// The bearer token ingest requires, if any.
    pub token: Option<Arc<str>>,
    /// What a record that is not a message becomes.
    pub schema: Arc<Schema>,
    /// The unit of the timestamps decoders write.
    pub unit: TimestampUnit,
    /// What a bad record does, in a format whose answer does not report it.
    pub on_invalid: OnInvalid,
}

/// What every ingest request of one distributor shares.
pub struct Ingest {
    settings: IngestSettings,
    /// Where packets go.
    routing: Arc<Routing>,
    /// Idempotency keys of recent packets.
    idempotency: Arc<idempotency::Keys>,
    /// This distributor's id in `Logdist-Via`: a request that carries it came back in.
    via: Arc<str>,
    /// Set when shutdown begins: new packets get 503. A flag, not a cancellation token:
    /// every packet reads it, and a token's state sits behind a lock both workers take.
    shutting_down: AtomicBool,
    /// `logdist_packets_received_total` and `logdist_messages_received_total` of each
    /// format, in the order of [`HTTP_FORMATS`], registered once: ingest counts every packet.
    received: Vec<Received>,
    /// Where bad records are written, if anywhere (`--dead-letter`).
    dead_letter: Option<DeadLetter>,
    /// Where accepted packets are kept until delivered (`--spool`, with `--ack accepted`).
    spool: Option<Arc<Spool>>,
}

impl Ingest {
    /// Ingest into `routing`.
    pub fn new(
        settings: IngestSettings,
        routing: Arc<Routing>,
        idempotency: Arc<idempotency::Keys>,
        via: Arc<str>,
        dead_letter: Option<DeadLetter>,
        spool: Option<Arc<Spool>>,
    ) -> Arc<Self> {
        // A counter registered before the recorder is installed is a no-op for good: the
        // recorder must exist first (the status endpoint installs it only after this).
        crate::telemetry::metrics();
        Arc::new(Self {
            settings,
            routing,
            idempotency,
            via,
            shutting_down: AtomicBool::new(false),
            received: HTTP_FORMATS.iter().map(|f| Received::new(f.name)).collect(),
            dead_letter,
            spool,
        })
    }

    /// The counters of `format`.
    fn received(&self, format: &HttpFormat) -> &Received {
        let at = HTTP_FORMATS
            .iter()
            .position(|f| std::ptr::eq(*f, format))
            .expect("every format served is in HTTP_FORMATS");
        &self.received[at]
    }

    /// The spool accepted packets are written to, when there is one (it is only
    /// opened with `--ack accepted`).
    fn spooling(&self) -> Option<&Arc<Spool>> {
        self.spool.as_ref()
    }

    /// From now on, new packets are answered 503: the distributor is shutting down.
    pub fn stop_accepting(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// The routes of every HTTP format, and the calls of Elasticsearch's API its shippers
    /// make before their bulk ([`elasticsearch`]), behind the ingest token when one is set.
    pub fn routes(self: &Arc<Self>) -> axum::Router {
        let mut routes = elasticsearch::routes();
        for format in HTTP_FORMATS {
            let handler = move |State(ingest): State<Arc<Ingest>>,
                                params: RawPathParams,
                                headers: HeaderMap,
                                body: Body| async move {
                // The index a path names (`/{index}/_bulk`), for the decoder.
                let index = params
                    .iter()
                    .find(|(name, _)| *name == "index")
                    .map(|(_, value)| Arc::<str>::from(value));
                respond(
                    format,
                    receive(&ingest, &headers, body, format, index).await,
                )
            };
            for path in std::iter::once(&format.path).chain(format.also_at) {
                routes = routes.route(path, on(format.methods, handler));
            }
        }
        crate::http::auth::guarded(routes, self.settings.token.as_deref()).with_state(self.clone())
    }
}

/// The packets and messages one format received.
struct Received {
    packets: metrics::Counter,
    messages: metrics::Counter,
}

impl Received {
    fn new(format: &'static str) -> Self {
        Self {
            packets: metrics::counter!("logdist_packets_received_total", "format" => format),
            messages: metrics::counter!("logdist_messages_received_total", "format" => format),
        }
    }
}

/// Reads the body, answers a retry of an answered packet from memory (its
/// `Idempotency-Key`), and otherwise decodes, routes and answers the packet. `index` is
/// the index the path names, if it names one.
async fn receive(
    ingest: &Ingest,
    headers: &HeaderMap,
    body: Body,
    format: &'static HttpFormat,
    index: Option<Arc<str>>,
) -> Result<Response, ApiError> {
    let encoding = Encoding {
        index,
        ..Encoding::of(headers)
    };
    let via = via::incoming(headers, &ingest.via)?;
    let media_type = format.media_type(encoding.content_type.as_ref())?;
    let key = idempotency::key_of(headers)?;
    let settings = &ingest.settings;
    let body = read_body(body, headers, settings.max_body, settings.body_timeout).await?;
    let Some(key) = key else {
        return Ok(process(ingest, &encoding, media_type, body, format, via)
            .await?
            .into_response());
    };
    let fingerprint = idempotency::fingerprint(format.path, headers, &body);
    let pending = loop {
        match ingest.idempotency.claim(key, fingerprint) {
            Claim::First(pending) => break pending,
            Claim::Replay(answer) => {
                metrics::counter!("logdist_packets_replayed_total").increment(1);
                let mut response = answer.into_response();
                response
                    .headers_mut()
                    .insert(idempotency::REPLAYED, HeaderValue::from_static("true"));
                return Ok(response);
            }
            Claim::Mismatch => {
                return Err(ApiError::Unprocessable(format!(
                    "Idempotency-Key `{key}` was already used for a different packet; use a new key per packet"
                )));
            }
            // The first attempt is in flight: its answer (or its failure) decides.
            Claim::Wait(mut done) => {
                let _ = done.wait_for(Option::is_some).await;
            }
        }
    };
    let answer = process(ingest, &encoding, media_type, body, format, via).await?;
    pending.complete(&answer);
    Ok(answer.into_response())
}

/// The headers that say how to read a body, and the index its path names: all the
/// decoding needs of a request.
#[derive(Debug, Clone)]
struct Encoding {
    content_type: Option<HeaderValue>,
    content_encoding: Option<HeaderValue>,
    /// The index of `/{index}/_bulk`: the `_index` of the items that name none.
    index: Option<Arc<str>>,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Self {
        Self {
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            content_encoding: headers.get(header::CONTENT_ENCODING).cloned(),
            index: None,
        }
    }
}

/// Decodes and validates the body, routes the packet, and answers as its format does.
async fn process(
    ingest: &Ingest,
    encoding: &Encoding,
    media_type: Option<&'static str>,
    body: Bytes,
    format: &'static HttpFormat,
    via: Option<Arc<str>>,
) -> Result<Answer, ApiError> {
    let started = Instant::now();
    let settings = &ingest.settings;
    let limit = settings.max_body;
    let now_ms = epoch_ms(SystemTime::now());
    let options = DecodeOptions {
        index: encoding.index.clone(),
        validation: settings.validation,
        unit: settings.unit,
        now_ms,
        max_len: limit,
        schema: settings.schema.clone(),
    };
    let decoded = if body.len() <= INLINE_DECODE_BYTES && encoding.content_encoding.is_none() {
        refuse_early_if_full(ingest, format, media_type, &body)?;
        decode(encoding, media_type, body, limit, format, &options)?
    } else {
        // Decompressing and validating megabytes takes milliseconds of CPU: do it off
        // the async workers, which also run every lane and probe.
        let encoding = encoding.clone();
        tokio::task::spawn_blocking(move || {
            decode(&encoding, media_type, body, limit, format, &options)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("decoding failed: {e}")))??
    };
    let status = match (format.answers_accepted, ingest.settings.ack) {
        (true, AckMode::Accepted) => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    let Decoded {
        packet,
        rejected,
        items,
    } = decoded;
    if !rejected.is_empty() {
        set_aside(
            ingest,
            format.name,
            format.reports_records,
            now_ms,
            &rejected,
        )?;
    }
    let ack = accept(ingest, ingest.received(format), packet, via).await?;
    Ok((format.answer)(&Outcome {
        status,
        ack: &ack,
        rejected: &rejected,
        media_type,
        items: &items,
        took: started.elapsed(),
    }))
}

/// What becomes of the records a decoder refused one by one, before the others are
/// routed. A format whose answer reports them (OTLP's `partial_success`, Loki's 400) has
/// them written to the dead-letter file when there is one. logdist's own formats do as
/// `--on-invalid` says: refuse the body (400 with the first bad record, today's answer),
/// or drop them (and write them). A dead letter that cannot be written refuses the body
/// with 503, so that nothing is lost: the agent sends it again.
fn set_aside(
    ingest: &Ingest,
    format: &'static str,
    reports_records: bool,
    now_ms: i64,
    rejected: &[RecordError],
) -> Result<(), ApiError> {
    let count = |action: &'static str| {
        metrics::counter!("logdist_records_invalid_total", "format" => format, "action" => action)
            .increment(rejected.len() as u64);
    };
    let policy = match reports_records {
        true => OnInvalid::DeadLetter,
        false => ingest.settings.on_invalid,
    };
    let letters = match (policy, &ingest.dead_letter) {
        (OnInvalid::Reject, _) => {
            count("rejected");
            return Err(ApiError::BadRequest(rejected[0].to_string()));
        }
        (OnInvalid::DeadLetter, Some(letters)) => letters,
        (OnInvalid::Drop | OnInvalid::DeadLetter, _) => {
            count("dropped");
            return Ok(());
        }
    };
    match letters.write(format, now_ms, rejected) {
        Ok(()) => {
            count("dead_lettered");
            Ok(())
        }
        Err(e) => {
            tracing::error!(format, error = %e, "Could not write to the dead-letter file; the body is refused with 503.");
            count("unwritten");
            Err(ApiError::Unavailable {
                reason: format!("the dead-letter file cannot be written: {e}"),
                retry_after: Duration::from_secs(5),
            })
        }
    }
}

/// Epoch milliseconds of `at` (negative before 1970).
fn epoch_ms(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Under overload, a packet whose analyzer's queue is full gets its 503 before it is
/// validated: validating a packet that is then refused is the costliest way to shed
/// load. Its messages are counted cheaply where its format can ([`logdist_core::Decoder::count`],
/// NDJSON by its lines); a malformed packet refused here gets its 400 when it is sent
/// again.
fn refuse_early_if_full(
    ingest: &Ingest,
    format: &HttpFormat,
    media_type: Option<&str>,
    body: &[u8],
) -> Result<(), ApiError> {
    let registry = &ingest.routing.registry;
    // With a spool, a full queue refuses nothing: the packet waits on disk.
    if ingest.spool.is_none()
        && registry.refusing()
        && let Some(messages) = format.decoder.count(body, media_type)
        && registry.queue_full_for(messages, body.len())
    {
        return Err(unavailable(Refusal::QueueFull));
    }
    Ok(())
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        // No content, so no content type (Loki's 204).
        if self.status == StatusCode::NO_CONTENT {
            return self.status.into_response();
        }
        let content_type = HeaderValue::from_static(self.content_type);
        (
            self.status,
            [(header::CONTENT_TYPE, content_type)],
            self.body,
        )
            .into_response()
    }
}

impl Answer {
    /// The same answer for the express lane: a JSON body is written as it is.
    fn into_reply(self) -> Reply {
        if self.content_type == logdist_core::decoder::JSON {
            Reply::Json(self.status, Vec::from(self.body))
        } else {
            self.into_response().into()
        }
    }
}

/// Bodies up to this size (and not compressed) are decoded on the async worker: below it,
/// handing the work to the blocking pool costs more than it saves.
const INLINE_DECODE_BYTES: usize = 256 * 1024;

/// Undoes the Content-Encoding, then decodes and validates every message.
fn decode(
    encoding: &Encoding,
    media_type: Option<&str>,
    body: Bytes,
    limit: usize,
    format: &HttpFormat,
    options: &DecodeOptions,
) -> Result<Decoded, ApiError> {
    let body = encoding::decompress(encoding.content_encoding.as_ref(), body, limit)?;
    format
        .decoder
        .decode(body, media_type, options)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The answer to a request of `format`, with the format's headers; a refusal is counted
/// (and logged at debug level).
fn respond(format: &HttpFormat, result: Result<Response, ApiError>) -> Response {
    let mut response = result.unwrap_or_else(|e| {
        tracing::debug!(format = format.name, error = %e, "Refused a request.");
        metrics::counter!("logdist_rejected_total", "reason" => e.reason(), "format" => format.name)
            .increment(1);
        e.into_response()
    });
    for &(name, value) in format.headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Routes the packet and waits for its outcome as the ack mode says, counting it in
/// `received` (its format's counters) once it is routed. A packet of no
/// messages (an export whose every record was refused, or that had none) goes nowhere: it
/// is answered at once.
async fn accept(
    ingest: &Ingest,
    received: &Received,
    packet: Packet,
    via: Option<Arc<str>>,
) -> Result<PacketAck, ApiError> {
    if ingest.shutting_down.load(Ordering::Acquire) {
        return Err(unavailable(Refusal::ShuttingDown));
    }
    let messages = packet.messages;
    if messages == 0 {
        return Ok(PacketAck {
            messages,
            status: "accepted".to_owned(),
            ..PacketAck::default()
        });
    }
    if let Some(spool) = ingest.spooling() {
        ingest
            .routing
            .accept_spooled(spool, packet, via)
            .await
            .map_err(unavailable)?;
        received.packets.increment(1);
        received.messages.increment(u64::from(messages));
        return Ok(PacketAck {
            messages,
            status: "accepted".to_owned(),
            ..PacketAck::default()
        });
    }
    let (ack, outcome) = match ingest.settings.ack {
        AckMode::Delivered => {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        }
        AckMode::Accepted => (None, None),
    };
    let job = Job {
        packet,
        ack,
        attempts: 0,
        via,
        spooled: None,
    };
    ingest
        .routing
        .dispatch(job)
        .map_err(|(_, why)| unavailable(why))?;
    received.packets.increment(1);
    received.messages.increment(u64::from(messages));
    let analyzer = match outcome {
        None => None,
        Some(rx) => match rx.await {
            Ok(Ok(analyzer)) => Some(analyzer.to_string()),
            Ok(Err(why)) => return Err(unavailable(why)),
            Err(_) => return Err(unavailable(Refusal::ShuttingDown)),
        },
    };
    Ok(PacketAck {
        messages,
        status: if analyzer.is_some() {
            "delivered"
        } else {
            "accepted"
        }
        .to_owned(),
        analyzer,
        ..PacketAck::default()
    })
}

/// The answer to a packet that was not delivered: 503 with Retry-After when sending it
/// again may work, 413 or 422 (with the analyzer's reason) when it cannot.
fn unavailable(why: Refusal) -> ApiError {
    let retry_after = match why {
        Refusal::NoAnalyzer | Refusal::ShuttingDown => Duration::from_secs(5),
        Refusal::QueueFull | Refusal::DeliveryFailed | Refusal::Spool(_) => Duration::from_secs(1),
        Refusal::TooLarge { .. } => return ApiError::TooLargeForAnalyzers(why.to_string()),
        Refusal::Rejected(_) => return ApiError::RefusedByAnalyzer(why.to_string()),
    };
    ApiError::Unavailable {
        reason: why.to_string(),
        retry_after,
    }
}
