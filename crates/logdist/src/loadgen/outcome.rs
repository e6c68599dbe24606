//! How an attempt went wrong: the [`Failure`] and its [`FailureKind`]. Plain data, at
//! the bottom of the load generator, so the retry policy (`retry`), the attempt
//! (`attempt`) and the agent's loop (`agent`) all use it without using each other.

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Answered with a status other than 200, 202 or 204.
    Status(u16),
    /// Answered with this success status, but the answer says some records were refused
    /// (OTLP `partial_success`, bulk `"errors":true`).
    Partial(u16),
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection could not be established.
    Connect,
    /// Still in flight when the run stopped and the drain grace ran out.
    Aborted,
    /// Anything else: a reset connection, a malformed answer.
    Other,
}

impl FailureKind {
    /// The key in the report's `failures` object and the trace's `failure` field.
    pub fn key(self) -> String {
        match self {
            Self::Status(code) => format!("http_{code}"),
            Self::Partial(_) => "partial".to_owned(),
            Self::Timeout => "timeout".to_owned(),
            Self::Connect => "connect".to_owned(),
            Self::Aborted => "aborted".to_owned(),
            Self::Other => "other".to_owned(),
        }
    }

    /// The HTTP status of the answer, when there was one.
    pub fn status(self) -> Option<u16> {
        match self {
            Self::Status(code) | Self::Partial(code) => Some(code),
            _ => None,
        }
    }
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What kind of failure, for the counts and the retry decision.
    pub kind: FailureKind,
    /// For the log: the error, or the start of the answer's body.
    pub detail: String,
    /// The answer's `Retry-After` (delay-seconds, capped), if it had one.
    pub retry_after: Option<std::time::Duration>,
}

impl Failure {
    /// A failure without an answer.
    pub fn new(kind: FailureKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_keys_and_statuses() {
        assert_eq!(FailureKind::Status(503).key(), "http_503");
        assert_eq!(FailureKind::Status(400).key(), "http_400");
        assert_eq!(FailureKind::Timeout.key(), "timeout");
        assert_eq!(FailureKind::Connect.key(), "connect");
        assert_eq!(FailureKind::Aborted.key(), "aborted");
        assert_eq!(FailureKind::Other.key(), "other");
        assert_eq!(FailureKind::Status(503).status(), Some(503));
        assert_eq!(FailureKind::Partial(200).key(), "partial");
        assert_eq!(FailureKind::Partial(200).status(), Some(200));
        assert_eq!(FailureKind::Timeout.status(), None);
    }
}
