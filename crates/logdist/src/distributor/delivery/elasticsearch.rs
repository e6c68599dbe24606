//! The Elasticsearch delivery protocol (`elasticsearch`): a batch is one
//! `POST {url}/_bulk` (`Content-Type: application/x-ndjson`) of a `create` and its
//! document per message, in an index named by `--elasticsearch-index` at the message's
//! date (see [`logdist_core::encode_bulk`]). OpenSearch takes the same.
//!
//! Elasticsearch answers a bulk request item by item, in the body's order, with one
//! status each; a 2xx says only that it read the request. So the answer is read:
//! - `"errors": false`: every item is stored, and the batch is acknowledged.
//! - An item answered 2xx is stored. So is one answered 409: `create` of a document that
//!   is there already. logdist gives no `_id`, so Elasticsearch never answers it one; an
//!   ingest pipeline that sets ids may, and then the document was stored before.
//! - Items refused for their content (400, 415, 422: `mapper_parsing_exception`,
//!   `document_parsing_exception`...), and every other item stored: the delivery fails as
//!   a refusal of content that says which messages were stored. The lane counts those as
//!   delivered and fails only the packets with a refused message, each with the reason of
//!   its first refused item (422 to its agent); it does not send the batch again.
//! - Any other failed item (429 `es_rejected_execution_exception`, a 5xx, a 404 when
//!   indices are not created on demand, a 403 `cluster_block_exception`...): Elasticsearch
//!   is busy or failing. The delivery fails with that item's status, saying which
//!   messages were stored: the lane ejects the analyzer and routes the others again,
//!   refused ones included (another analyzer may take them). The stored ones are never
//!   sent again.
//! - An answer that is not a bulk response, or whose items do not match the documents:
//!   nothing of it is known to be stored, and the whole batch is in doubt.
//!
//! A request Elasticsearch answers with an error status as a whole (413, 429, 5xx...) is
//! handled as for any protocol (see the lane).
//!
//! Health: `GET {url}/` answered with a 2xx, as Beats and Logstash check it. The protocol
//! is not detected: an analyzer that speaks it is registered with it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use logdist_core::{IndexTemplate, TimestampUnit};
use serde::Deserialize;
use serde_json::Value;

use super::address::AnalyzerUrl;
use super::over_http::HttpPeers;
use super::protocol::{DeliveryError, Failed, Protocol, Sending, messages_of, refuses_content};

use crate::distributor::job::Job;

/// Where Elasticsearch takes a bulk request.
const PATH: &str = "/_bulk";

/// The media type of a bulk body.
const NDJSON: &str = "application/x-ndjson";

/// One bulk request a batch, over one keep-alive pool per worker.
pub struct ElasticsearchBulk {
    /// Its connections, and what its requests carry.
    peers: HttpPeers,
    /// The index of each document (`--elasticsearch-index`).
    index: IndexTemplate,
    /// The unit of messages' `timestamp` (`--timestamp-unit`), to write `@timestamp`.
    unit: TimestampUnit,
}

impl ElasticsearchBulk {
    /// The protocol over `peers`, writing to the indices
    /// of `index`, reading times in `unit`.
    pub fn new(peers: HttpPeers, index: IndexTemplate, unit: TimestampUnit) -> Self {
        Self { peers, index, unit }
    }

    async fn bulk(
        &self,
        lane: usize,
        to: &AnalyzerUrl,
        jobs: &[Job],
        timeout: Duration,
    ) -> Result<(), Failed> {
        let messages = jobs.iter().flat_map(|job| messages_of(&job.packet.ndjson));
        let body = logdist_core::encode_bulk(messages, &self.index, self.unit, SystemTime::now());
        let body = Full::new(Bytes::from(body));
        let answer = self
            .peers
            .post(lane, to.uri(PATH), NDJSON, jobs, body, timeout)
            .await?;
        let counts: Vec<usize> = jobs
            .iter()
            .map(|job| messages_of(&job.packet.ndjson).count())
            .collect();
        let documents = counts.iter().sum();
        let items = match verdict(&answer, documents) {
            Ok(Verdict::Stored) => return Ok(()),
            Ok(Verdict::Items(items)) => items,
            Err(malformed) => return Err(DeliveryError::Transport(malformed).into()),
        };
        Err(failed(&items, &counts))
    }
}

/// One item Elasticsearch did not store: its status, and its error's type and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ItemError {
    status: http::StatusCode,
    reason: String,
}

/// What a bulk answer says.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Every item is stored.
    Stored,
    /// Per item, in order: `None` when it is stored, else why not. At least one is not.
    Items(Vec<Option<ItemError>>),
}

/// Reads the answer to a bulk request of `documents` documents (see the module
/// documentation). The error says why it is not a bulk answer, which leaves the whole
/// request in doubt.
fn verdict(answer: &[u8], documents: usize) -> Result<Verdict, String> {
    #[derive(Deserialize)]
    struct Head {
        errors: bool,
    }
    #[derive(Deserialize)]
    struct Answer {
        items: Vec<Item>,
    }
    /// An item: its action's name, and what became of it.
    #[derive(Deserialize)]
    struct Item {
        #[serde(alias = "index", alias = "update", alias = "delete")]
        create: Option<Outcome>,
    }
    #[derive(Deserialize)]
    struct Outcome {
        status: u16,
        #[serde(default)]
        error: Option<Value>,
    }
    let not_bulk = |why: String| format!("the answer to a bulk request is no bulk response: {why}");
    let head: Head = serde_json::from_slice(answer).map_err(|e| not_bulk(e.to_string()))?;
    if !head.errors {
        return Ok(Verdict::Stored);
    }
    let Answer { items } = serde_json::from_slice(answer).map_err(|e| not_bulk(e.to_string()))?;
    if items.len() != documents {
        return Err(not_bulk(format!(
            "{} items for {documents} documents",
            items.len()
        )));
    }
    let mut errors = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let outcome = item
            .create
            .ok_or_else(|| not_bulk(format!("item {i} is not of a create")))?;
        let status = http::StatusCode::from_u16(outcome.status)
            .map_err(|_| not_bulk(format!("item {i} has status {}", outcome.status)))?;
        let stored = status.is_success() || status == http::StatusCode::CONFLICT;
        errors.push((!stored).then(|| ItemError {
            status,
            reason: reason_of(outcome.error.as_ref()),
        }));
    }
    if errors.iter().all(Option::is_none) {
        // `errors` said otherwise, but every item says it is stored.
        return Ok(Verdict::Stored);
    }
    Ok(Verdict::Items(errors))
}

/// Longest reason of an item passed on to an agent, in characters.
const MAX_REASON: usize = 300;

/// An item's error as `type: reason` (Elasticsearch gives both), with the type and
/// reason of its cause when it has one.
fn reason_of(error: Option<&Value>) -> String {
    let text = |error: &Value| match error {
        Value::Object(fields) => {
            let field = |name| fields.get(name).and_then(Value::as_str);
            match (field("type"), field("reason")) {
                (Some(kind), Some(reason)) => format!("{kind}: {reason}"),
                (Some(text), None) | (None, Some(text)) => text.to_owned(),
                (None, None) => error.to_string(),
            }
        }
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let Some(error) = error else {
        return "no reason given".to_owned();
    };
    let mut reason = text(error);
    if let Some(cause) = error.get("caused_by") {
        reason = format!("{reason} (caused by {})", text(cause));
    }
    let mut reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON) {
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

/// The failure of a delivery whose `items` are not all stored: `counts` messages per job,
/// in order. A refusal of content when every failed item was refused for its content (the
/// lane refuses the packets of those, each with its own reason); else the status of the
/// first item that failed otherwise (the lane ejects the analyzer and routes the rest
/// again). Either way it says which messages were stored.
fn failed(items: &[Option<ItemError>], counts: &[usize]) -> Failed {
    let mut acknowledged = Vec::with_capacity(counts.len());
    let mut reasons = Vec::with_capacity(counts.len());
    let mut at = 0;
    for &count in counts {
        let own = &items[at..at + count];
        acknowledged.push(own.iter().map(Option::is_none).collect::<Vec<bool>>());
        // No place in the packet: a packet routed again after a failure has only the
        // messages not stored before, and its agent numbers them otherwise.
        let refused = own.iter().flatten().count();
        reasons.push(own.iter().flatten().next().map(|first| match refused {
            1 => format!("1 message refused: {}", first.reason),
            _ => format!("{refused} messages refused, the first: {}", first.reason),
        }));
        at += count;
    }
    let failures: Vec<&ItemError> = items.iter().flatten().collect();
    let sick = failures.iter().find(|e| !refuses_content(e.status));
    let first = sick.unwrap_or(&failures[0]);
    let error = DeliveryError::Status(
        first.status,
        format!(
            "{} of {} bulk items failed, the first with {}",
            failures.len(),
            items.len(),
            first.reason
        ),
    );
    Failed {
        error,
        acknowledged,
        // Reasons for refused packets are for a refusal of content only.
        reasons: if sick.is_none() { reasons } else { Vec::new() },
    }
}

impl Protocol for ElasticsearchBulk {
    fn name(&self) -> &'static str {
        "elasticsearch"
    }

    fn send<'a>(
        &'a self,
        lane: usize,
        to: &'a AnalyzerUrl,
        jobs: &'a [Job],
        timeout: Duration,
    ) -> Sending<'a, Result<(), Failed>> {
        Box::pin(self.bulk(lane, to, jobs, timeout))
    }

    fn probe<'a>(&'a self, to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(self.peers.get_ok(to.uri("/")))
    }

    /// Never: `GET /` is answered 2xx by any web server.
    fn recognizes<'a>(&'a self, _to: &'a AnalyzerUrl) -> Sending<'a, bool> {
        Box::pin(async { false })
    }
}

#[cfg(test)]
mod tests;
