//! Elasticsearch's `_bulk` body: NDJSON of action lines, each `index` or `create` followed
//! by its document, which becomes a message (forwarded as sent if it is one already, else
//! mapped by [`crate::mapping`]).
//!
//! What the caller needs for Elasticsearch's answer comes back item by item, in the
//! body's order ([`BulkItem`]): the action, `_index` and `_id`, and the outcome. logdist
//! keeps no documents, so a `delete` finds none (`404`, `not_found`, as Elasticsearch
//! answers for a document it does not have) and an `update` fails as Elasticsearch fails
//! one of a missing document (`404`, `document_missing_exception`). A document that is
//! not JSON or cannot be mapped fails its item alone (`400`,
//! `document_parsing_exception`), and is in [`Decoded::rejected`] too, for `--on-invalid`.
//!
//! A body Elasticsearch would refuse whole is refused whole: an action line that is not
//! one of the four actions, or an action without its document.

use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::decoded::{Decoded, Lines, RecordError};
use crate::message::{Location, PacketError, Validation};
use crate::shippers::{Schema, take_record};

mod encode;
pub(crate) mod item;

pub use encode::{DEFAULT_INDEX, IndexTemplate, encode_bulk};
pub use item::{BulkAction, BulkItem, Outcome};

/// A decoded bulk body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bulk {
    /// The documents that are messages, and the records that failed their item.
    pub decoded: Decoded,
    /// Every item, in the body's order.
    pub items: Vec<BulkItem>,
}

/// Decodes a `_bulk` body. `default_index` is the path's index, if any; `now` the arrival
/// time, for documents without a time.
pub fn decode_bulk(
    body: Bytes,
    default_index: Option<&str>,
    schema: &Schema,
    now: SystemTime,
) -> Result<Bulk, PacketError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(body_error("the request body is required"));
    }
    let mut lines = Lines::with_capacity(body.len());
    let mut rejected = Vec::new();
    let mut items = Vec::new();
    let mut numbered = numbered_lines(&body);
    while let Some((n, _, line)) = numbered.next() {
        let (action, meta) = action(n, line)?;
        let index = meta
            .get("_index")
            .and_then(Value::as_str)
            .or(default_index)
            .map(str::to_owned);
        let id = meta.get("_id").and_then(|id| match id {
            Value::String(id) => Some(id.clone()),
            Value::Number(id) => Some(id.to_string()),
            _ => None,
        });
        let has_document = matches!(
            action,
            BulkAction::Index | BulkAction::Create | BulkAction::Update
        );
        let document = if has_document {
            Some(numbered.next().ok_or_else(|| {
                line_error(
                    n,
                    format!(
                        "the {} action is not followed by its document",
                        action.as_str()
                    ),
                )
            })?)
        } else {
            None
        };
        let outcome = match (action, document) {
            (BulkAction::Delete, _) => Outcome::NotFound,
            (BulkAction::Update, _) => Outcome::Failed {
                status: 404,
                kind: "document_missing_exception",
                reason: format!(
                    "[{}]: document missing (logdist keeps no documents to update; only index and create are taken)",
                    id.as_deref().unwrap_or("")
                ),
            },
            (_, _) if index.is_none() => Outcome::Failed {
                status: 400,
                kind: "action_request_validation_exception",
                reason: "Validation Failed: 1: index is missing;".to_owned(),
            },
            (_, Some((doc_n, doc_at, doc))) => match document_line(doc, schema, now, &mut lines) {
                Ok(()) => Outcome::Created,
                Err(reason) => {
                    let raw = body.slice(doc_at..doc_at + doc.len());
                    rejected.push(RecordError::new(Location::Line(doc_n), &reason, raw));
                    Outcome::Failed {
                        status: 400,
                        kind: "document_parsing_exception",
                        reason,
                    }
                }
            },
            (_, None) => unreachable!("index and create always take their document"),
        };
        items.push(BulkItem {
            action,
            index,
            id,
            outcome,
        });
    }
    Ok(Bulk {
        decoded: lines.finish(rejected)?,
        items,
    })
}

/// The non-blank lines of a body, each with its 1-based number and where it starts, `\r`
/// taken off the end.
fn numbered_lines(body: &[u8]) -> impl Iterator<Item = (usize, usize, &[u8])> {
    let mut start = 0;
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(move |(n, piece)| {
            let at = start;
            start += piece.len() + 1;
            (n + 1, at, piece.strip_suffix(b"\r").unwrap_or(piece))
        })
        .filter(|(_, _, line)| !line.iter().all(u8::is_ascii_whitespace))
}

/// An action line: `{"index":{...}}` and the like, its metadata object.
fn action(n: usize, line: &[u8]) -> Result<(BulkAction, Map<String, Value>), PacketError> {
    let malformed =
        |what: String| line_error(n, format!("Malformed action/metadata line [{n}], {what}"));
    let object: Map<String, Value> = serde_json::from_slice(line)
        .map_err(|e| malformed(format!("expected an object of one action ({e})")))?;
    let mut entries = object.into_iter();
    let (Some((name, meta)), None) = (entries.next(), entries.next()) else {
        return Err(malformed("expected an object of one action".to_owned()));
    };
    let action = match name.as_str() {
        "index" => BulkAction::Index,
        "create" => BulkAction::Create,
        "delete" => BulkAction::Delete,
        "update" => BulkAction::Update,
        _ => {
            return Err(malformed(format!(
                "expected one of [create, delete, index, update] but found [{}]",
                crate::message::shorten(name)
            )));
        }
    };
    let Value::Object(meta) = meta else {
        return Err(malformed(format!(
            "expected the metadata of [{}] to be an object",
            action.as_str()
        )));
    };
    Ok((action, meta))
}

/// A document, as a record of `POST /packets` is taken.
fn document_line(
    line: &[u8],
    schema: &Schema,
    now: SystemTime,
    lines: &mut Lines,
) -> Result<(), String> {
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    take_record(text, Validation::Full, schema, now, lines)
}

fn line_error(n: usize, reason: String) -> PacketError {
    PacketError {
        location: Location::Line(n),
        reason,
    }
}

fn body_error(reason: &str) -> PacketError {
    PacketError {
        location: Location::Body,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests;
