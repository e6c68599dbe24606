//! The names of every Redis key and channel of a fleet, and the lease's value. The layout
//! is documented in the module above.

use serde::{Deserialize, Serialize};

/// The names of every key and channel, under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub(super) prefix: String,
}

impl Keys {
    pub(super) fn generation(&self) -> String {
        format!("{}generation", self.prefix)
    }
    pub(super) fn analyzers(&self) -> String {
        format!("{}analyzers", self.prefix)
    }
    pub(super) fn lease(&self, id: &str) -> String {
        format!("{}analyzer:{id}", self.prefix)
    }
    pub(super) fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
    pub(super) fn events(&self) -> String {
        format!("{}events", self.prefix)
    }
    pub(super) fn counts(&self, id: &str) -> String {
        format!("{}counts:{id}", self.prefix)
    }
    pub(super) fn window(&self, epoch: u64) -> String {
        format!("{}window:{epoch}", self.prefix)
    }
    pub(super) fn flush_seq(&self, instance: &str, run: u64) -> String {
        format!("{}flushed:{instance}:{run:016x}", self.prefix)
    }
    pub(super) fn health(&self, id: &str) -> String {
        format!("{}health:{id}", self.prefix)
    }
}

/// A lease's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Lease {
    pub(super) url: String,
    pub(super) weight: f64,
    /// The delivery protocol given at registration; absent when none was (each
    /// distributor then detects it on its own) and in leases of older distributors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) protocol: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A given protocol travels in the lease; a lease without one (none was given, or an
    /// older distributor wrote it) still reads.
    #[test]
    fn leases_carry_a_given_protocol_and_read_without_one() {
        let lease = Lease {
            url: "http://127.0.0.1:3004".to_owned(),
            weight: 0.5,
            protocol: Some("message".to_owned()),
        };
        let text = serde_json::to_string(&lease).unwrap();
        assert_eq!(
            text,
            r#"{"url":"http://127.0.0.1:3004","weight":0.5,"protocol":"message"}"#
        );
        assert_eq!(serde_json::from_str::<Lease>(&text).unwrap(), lease);
        let old: Lease = serde_json::from_str(r#"{"url":"http://h:1","weight":1.0}"#).unwrap();
        assert_eq!(old.protocol, None);
        let none = Lease {
            protocol: None,
            ..lease
        };
        assert!(!serde_json::to_string(&none).unwrap().contains("protocol"));
    }
}
