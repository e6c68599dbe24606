//! The items of a bulk body, as Elasticsearch answers them one by one: what a decoder
//! gives back beside its packet ([`crate::decoded::Decoded::items`]), apart from the
//! decoding so that [`crate::decoded`] needs nothing of it.

/// An action of a bulk body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Index,
    Create,
    Delete,
    Update,
}

impl BulkAction {
    /// The action's name, which is also the key of its item in the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Index => "index",
            BulkAction::Create => "create",
            BulkAction::Delete => "delete",
            BulkAction::Update => "update",
        }
    }
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The document is a message of the packet: `201`, `"result":"created"`.
    Created,
    /// A `delete`: `404`, `"result":"not_found"`, which is no error to Elasticsearch.
    NotFound,
    /// The item failed: its `status`, and its `error` object's `type` and `reason`.
    Failed {
        status: u16,
        kind: &'static str,
        reason: String,
    },
}

impl Outcome {
    /// The item's HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Created => 201,
            Outcome::NotFound => 404,
            Outcome::Failed { status, .. } => *status,
        }
    }
}

/// One item of a bulk body, for its entry in the answer's `items`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    pub action: BulkAction,
    /// The action's `_index`, else the one of the path (`POST /{index}/_bulk`).
    pub index: Option<String>,
    /// The action's `_id`, if it had one (Elasticsearch makes one up otherwise).
    pub id: Option<String>,
    pub outcome: Outcome,
}
