//! One agent's Fluent forward connection (`--protocol forward|forward-noack`): frames
//! written to `--forward-target` over plain TCP, one in flight at a time, and with
//! `forward` the server's `{"ack": chunk}` awaited within `--timeout`. A frame that is not
//! acknowledged (the server closed the connection, as logdist does when it cannot route a
//! chunk, or the ack is late) fails its attempt and the connection is opened again, so the
//! agent's `--retries` resend it as Fluentd's `require_ack_response` would.

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::encode::FORWARD_CHUNK;
use super::outcome::{Failure, FailureKind};
use super::plan::Plan;
use super::protocol::Protocol;

/// A connection to a forward listener, opened when first needed.
pub(crate) struct ForwardConn {
    /// HOST:PORT.
    target: String,
    stream: Option<TcpStream>,
}

impl ForwardConn {
    pub(crate) fn new(target: String) -> Self {
        Self {
            target,
            stream: None,
        }
    }

    /// Writes one frame and, for `forward`, waits for its ack; `200` stands for an ack,
    /// as the report counts answers by status.
    pub(crate) async fn send(&mut self, plan: &Plan, frame: &[u8]) -> Result<StatusCode, Failure> {
        let exchange = self.exchange(plan.protocol == Protocol::Forward, frame);
        let outcome = match tokio::time::timeout(plan.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::new(
                FailureKind::Timeout,
                format!("no ack within {:?}", plan.timeout),
            )),
        };
        if outcome.is_err() {
            // Half a frame or half an ack may be in the connection: start again.
            self.stream = None;
        }
        outcome
    }

    async fn exchange(&mut self, ack: bool, frame: &[u8]) -> Result<StatusCode, Failure> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(&self.target).await.map_err(|e| {
                    Failure::new(FailureKind::Connect, format!("{}: {e}", self.target))
                })?;
                let _ = stream.set_nodelay(true);
                self.stream.insert(stream)
            }
        };
        let failed = |e: std::io::Error| Failure::new(FailureKind::Other, e.to_string());
        stream.write_all(frame).await.map_err(failed)?;
        if !ack {
            return Ok(StatusCode::OK);
        }
        let expected = logdist_core::forward::encode_ack(FORWARD_CHUNK);
        let mut answer = vec![0; expected.len()];
        stream.read_exact(&mut answer).await.map_err(|e| {
            Failure::new(
                FailureKind::Other,
                format!("no ack, the connection ended: {e}"),
            )
        })?;
        if answer != expected {
            return Err(Failure::new(
                FailureKind::Other,
                format!("an answer that is not the ack of the chunk: {answer:02x?}"),
            ));
        }
        Ok(StatusCode::OK)
    }
}
