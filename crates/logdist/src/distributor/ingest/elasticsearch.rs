//! What logdist answers of Elasticsearch's REST API: enough for Elasticsearch's clients and
//! shippers (the Python `elasticsearch` client's `helpers.bulk`, Filebeat and Logstash with
//! their setup steps off, Vector's `elasticsearch` sink, Fluent Bit's `es` output) to send
//! their logs to logdist as they would to an Elasticsearch 8 node.
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /`, `HEAD /` | the node's info, as Elasticsearch [`VERSION`] gives it: the version the shippers read before their first bulk |
//! | `GET /_cluster/health` | a green cluster of one node (Vector's health check) |
//! | `GET /_license` | an active basic license (the license check of Logstash and Filebeat) |
//! | `POST` or `PUT` `/_bulk`, `/{index}/_bulk` | the bulk ([`super::formats::BULK`]), answered item by item ([`bulk`]) |
//!
//! Every answer of these, refusals of a bulk included, carries `X-Elastic-Product:
//! Elasticsearch` ([`PRODUCT`]): the Python client refuses a success without it. They are
//! behind the ingest token, which Elasticsearch's clients send as `ApiKey` or `Basic`
//! credentials (see [`crate::http::auth`]). Any other call of the API (index templates,
//! ILM, searches) is answered 404 as any unknown path, which is why the shippers' setup
//! steps must be off.
//!
//! A browser's `GET /` (its `Accept` names `text/html`) never reaches [`root`]: it gets the
//! dashboard, open, from `status::dashboard::negotiate`, which runs ahead of these routes and
//! their token. Elasticsearch's clients never ask for HTML, so they get the node info.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use logdist_core::bulk::Outcome as ItemOutcome;
use logdist_core::decoder::JSON;
use rand::Rng;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::json;

use super::Ingest;
use super::idempotency::Answer;
use super::outcome::Outcome;

/// The header Elasticsearch's clients check every success for.
pub const PRODUCT: (&str, &str) = ("x-elastic-product", "Elasticsearch");

/// The Elasticsearch version logdist answers as: an 8.x, the major version of the REST
/// API its bulk answers follow.
pub const VERSION: &str = "8.15.0";

/// The calls answered besides the bulk, for the ingest router (which puts them behind the
/// ingest token).
pub(super) fn routes() -> axum::Router<Arc<Ingest>> {
    axum::Router::new()
        .route("/", get(root))
        .route("/_cluster/health", get(cluster_health))
        .route("/_license", get(license))
}

/// `GET /` (and `HEAD /`, which axum answers with the same head and no body).
async fn root(State(ingest): State<Arc<Ingest>>) -> impl IntoResponse {
    (
        [PRODUCT],
        Json(json!({
            "name": &*ingest.via,
            "cluster_name": "logdist",
            "cluster_uuid": "logdist",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "logdist",
                "build_hash": concat!("logdist-", env!("CARGO_PKG_VERSION")),
                "build_date": "2024-08-05T10:05:34.233336849Z",
                "build_snapshot": false,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        })),
    )
}

/// `GET /_cluster/health`: green, one node, nothing pending.
async fn cluster_health() -> impl IntoResponse {
    (
        [PRODUCT],
        Json(json!({
            "cluster_name": "logdist",
            "status": "green",
            "timed_out": false,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": 0,
            "active_shards": 0,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": 0,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0,
        })),
    )
}

/// `GET /_license`: an active basic license that does not expire.
async fn license() -> impl IntoResponse {
    (
        [PRODUCT],
        Json(json!({
            "license": {
                "status": "active",
                "uid": "logdist",
                "type": "basic",
                "issue_date": "2024-08-05T00:00:00.000Z",
                "issue_date_in_millis": 1_722_816_000_000_i64,
                "max_nodes": 1000,
                "max_resource_units": null,
                "issued_to": "logdist",
                "issuer": "elasticsearch",
                "start_date_in_millis": -1,
            }
        })),
    )
}

/// The bulk's answer, as Elasticsearch gives it: 200 with `took`, `errors` (whether an
/// item failed) and `items`, one per action in the body's order. A document that became a
/// message is `created` (201) with its `_id` (one is made up when the action named none, as
/// Elasticsearch does); a `delete` finds nothing (404, `not_found`, no error); an
/// `update`, or a document that could not be read or mapped, fails with its `error`'s
/// `type` and `reason`, while the others are delivered.
pub fn bulk(outcome: &Outcome<'_>) -> Answer {
    let mut seq_no = 0_u64;
    let items: Vec<ItemAnswer<'_>> = outcome
        .items
        .iter()
        .map(|item| {
            let id = match &item.id {
                Some(id) => Cow::Borrowed(id.as_str()),
                None => Cow::Owned(made_up_id()),
            };
            let mut answer = ItemAnswer {
                action: item.action.as_str(),
                index: item.index.as_deref(),
                id,
                version: None,
                result: None,
                shards: None,
                seq_no: None,
                primary_term: None,
                error: None,
                status: item.outcome.status(),
            };
            match &item.outcome {
                ItemOutcome::Created | ItemOutcome::NotFound => {
                    let created = item.outcome == ItemOutcome::Created;
                    answer.version = Some(1);
                    answer.result = Some(if created { "created" } else { "not_found" });
                    answer.shards = Some(Shards {
                        total: 1,
                        successful: u8::from(created),
                        failed: 0,
                    });
                    answer.seq_no = Some(seq_no);
                    answer.primary_term = Some(1);
                    seq_no += 1;
                }
                ItemOutcome::Failed { kind, reason, .. } => {
                    answer.error = Some(ItemError { kind, reason });
                }
            }
            answer
        })
        .collect();
    let body = BulkAnswer {
        took: millis(outcome.took),
        errors: items.iter().any(|item| item.error.is_some()),
        items,
    };
    Answer {
        status: outcome.status,
        content_type: JSON,
        body: Bytes::from(serde_json::to_vec(&body).expect("a bulk answer is JSON")),
    }
}

/// The answer to a bulk request, serialized straight from these structs: a body of 100
/// items is written without building a tree of maps first.
#[derive(Serialize)]
struct BulkAnswer<'a> {
    took: u64,
    errors: bool,
    items: Vec<ItemAnswer<'a>>,
}

/// One item's answer, `{"index": {...}}` (or `create`, ...).
struct ItemAnswer<'a> {
    action: &'static str,
    index: Option<&'a str>,
    id: Cow<'a, str>,
    version: Option<u8>,
    result: Option<&'static str>,
    shards: Option<Shards>,
    seq_no: Option<u64>,
    primary_term: Option<u8>,
    error: Option<ItemError<'a>>,
    status: u16,
}

#[derive(Serialize)]
struct Shards {
    total: u8,
    successful: u8,
    failed: u8,
}

#[derive(Serialize)]
struct ItemError<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    reason: &'a str,
}

impl Serialize for ItemAnswer<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// What the action's name holds.
        struct Fields<'b, 'a>(&'b ItemAnswer<'a>);
        impl Serialize for Fields<'_, '_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let item = self.0;
                let mut map = serializer.serialize_map(None)?;
                if let Some(index) = item.index {
                    map.serialize_entry("_index", index)?;
                }
                map.serialize_entry("_id", &item.id)?;
                if let Some(version) = item.version {
                    map.serialize_entry("_version", &version)?;
                }
                if let Some(result) = item.result {
                    map.serialize_entry("result", result)?;
                }
                if let Some(shards) = &item.shards {
                    map.serialize_entry("_shards", shards)?;
                }
                if let Some(seq_no) = item.seq_no {
                    map.serialize_entry("_seq_no", &seq_no)?;
                }
                if let Some(term) = item.primary_term {
                    map.serialize_entry("_primary_term", &term)?;
                }
                if let Some(error) = &item.error {
                    map.serialize_entry("error", error)?;
                }
                map.serialize_entry("status", &item.status)?;
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.action, &Fields(self))?;
        map.end()
    }
}

/// Whole milliseconds, as `took` counts them.
fn millis(took: Duration) -> u64 {
    u64::try_from(took.as_millis()).unwrap_or(u64::MAX)
}

/// An `_id` for a document whose action named none: 20 characters of Elasticsearch's
/// alphabet for them (URL-safe base64), random, as its made-up ids look to a client.
fn made_up_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // 20 characters of 6 bits each, from one random 128-bit number.
    let mut bits: u128 = rand::rng().random();
    let mut id = String::with_capacity(20);
    for _ in 0..20 {
        id.push(char::from(ALPHABET[(bits & 63) as usize]));
        bits >>= 6;
    }
    id
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use logdist_core::decoder::{Bulk, Decoder, NDJSON};
    use logdist_core::{DecodeOptions, RecordError};
    use serde_json::Value;

    use super::*;
    use crate::api::PacketAck;

    #[test]
    fn every_item_is_answered_in_order_and_a_failed_one_sets_errors() {
        let body = concat!(
            "{\"index\":{\"_index\":\"logs\",\"_id\":1}}\n",
            "{\"message\":\"taken\"}\n",
            "{\"create\":{}}\n",
            "\"not an object\"\n",
            "{\"delete\":{\"_id\":\"d\"}}\n",
            "{\"update\":{\"_id\":\"u\"}}\n",
            "{\"doc\":{}}\n",
            "{\"create\":{}}\n",
            "{\"message\":\"no id\"}\n",
        );
        let options = DecodeOptions {
            index: Some(Arc::from("path-index")),
            ..DecodeOptions::default()
        };
        let decoded = Bulk
            .decode(Bytes::from(body), Some(NDJSON), &options)
            .unwrap();
        let ack = PacketAck {
            messages: decoded.packet.messages,
            status: "delivered".to_owned(),
            analyzer: Some("analyzer_1".to_owned()),
            ..PacketAck::default()
        };
        let rejected: &[RecordError] = &decoded.rejected;
        let answer = bulk(&Outcome {
            status: StatusCode::OK,
            ack: &ack,
            rejected,
            media_type: Some(NDJSON),
            items: &decoded.items,
            took: Duration::from_micros(3_400),
        });
        assert_eq!((answer.status, answer.content_type), (StatusCode::OK, JSON));
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["took"], 3);
        assert_eq!(body["errors"], true);
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), 5);
        let first = &items[0]["index"];
        assert_eq!(
            (
                &first["_index"],
                &first["_id"],
                &first["status"],
                &first["result"]
            ),
            (&json!("logs"), &json!("1"), &json!(201), &json!("created")),
        );
        let bad = &items[1]["create"];
        assert_eq!(bad["_index"], "path-index");
        assert_eq!(bad["status"], 400);
        assert_eq!(bad["error"]["type"], "document_parsing_exception");
        assert!(bad["error"]["reason"].is_string(), "{bad}");
        assert_eq!(items[2]["delete"]["result"], "not_found");
        assert_eq!(items[2]["delete"]["status"], 404);
        assert!(items[2]["delete"].get("error").is_none());
        assert_eq!(
            items[3]["update"]["error"]["type"],
            "document_missing_exception"
        );
        let made_up = items[4]["create"]["_id"].as_str().unwrap();
        assert_eq!(made_up.len(), 20);
        assert_ne!(
            made_up,
            bad["_id"].as_str().unwrap(),
            "ids are made up anew"
        );
    }

    #[test]
    fn a_body_of_good_documents_has_no_errors() {
        let items = [logdist_core::BulkItem {
            action: logdist_core::BulkAction::Create,
            index: Some("logs".to_owned()),
            id: None,
            outcome: ItemOutcome::Created,
        }];
        let ack = PacketAck {
            messages: 1,
            status: "delivered".to_owned(),
            analyzer: None,
            ..PacketAck::default()
        };
        let answer = bulk(&Outcome {
            status: StatusCode::OK,
            ack: &ack,
            rejected: &[],
            media_type: None,
            items: &items,
            took: Duration::ZERO,
        });
        let body: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["errors"], false);
        assert_eq!(body["items"][0]["create"]["status"], 201);
    }
}
