//! The `--trace` file: one NDJSON [`TraceLine`] per packet once its final outcome is
//! known, so a fault test can compare what the agents were told with what the analyzers
//! received.
//!
//! Agents hand their lines to a bounded channel; a dedicated blocking thread serializes
//! them into a buffered file, so the hot path takes no lock and does no I/O. When the
//! channel is full an agent waits for room (the outcome of every packet must be written,
//! so a slow disk slows the load rather than losing lines). [`TraceWriter::finish`]
//! waits until every line is written and flushed.

use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Lines waiting for the writer; agents wait when it is full.
const CHANNEL_CAPACITY: usize = 4096;
/// Size of the file buffer.
const BUFFER_BYTES: usize = 256 * 1024;

/// The final outcome of one packet, as a line of the `--trace` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceLine {
    /// The packet key `{prefix}-{agent}-{seq}`; message `i` carries `msg_id` `{key}-{i}`.
    pub key: String,
    /// Messages in the packet.
    pub messages: u64,
    /// Whether the distributor acknowledged the packet, retries included.
    pub outcome: TraceOutcome,
    /// Status of the last answer (200 or 202 when acked); null when the last attempt
    /// got no answer.
    pub status: Option<u16>,
    /// Why the last attempt failed (`http_503`, `timeout`, `connect`, `aborted`,
    /// `other`); null when acked.
    pub failure: Option<String>,
    /// Requests sent for the packet: 1 plus its resends (0 if its body could not be built).
    pub attempts: u32,
}

/// Acknowledged or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceOutcome {
    /// Answered 200 or 202: the distributor is responsible for its messages.
    Acked,
    /// Never acknowledged: the agent would still hold its messages.
    Failed,
}

/// The writing end handed to each agent; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct TraceSender {
    lines: mpsc::Sender<TraceLine>,
}

impl TraceSender {
    /// Queues `line` for the file, waiting while the queue is full.
    pub async fn send(&self, line: TraceLine) {
        if self.lines.send(line).await.is_err() {
            // The writer drains until every sender is gone, so this means it died.
            tracing::error!("The trace writer stopped; a packet's outcome is missing.");
        }
    }
}

/// The thread that writes the trace file.
pub(crate) struct TraceWriter {
    sender: TraceSender,
    thread: JoinHandle<io::Result<u64>>,
}

impl TraceWriter {
    /// Creates (or truncates) the file at `path` and starts the writer.
    pub async fn create(path: &Path) -> io::Result<Self> {
        let file = tokio::fs::File::create(path).await?.into_std().await;
        let (lines, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let thread = tokio::task::spawn_blocking(move || write_lines(receiver, file));
        Ok(Self {
            sender: TraceSender { lines },
            thread,
        })
    }

    /// A sender for one agent.
    pub fn sender(&self) -> TraceSender {
        self.sender.clone()
    }

    /// Waits until every sender is dropped and every line is written and flushed;
    /// returns the number of lines.
    pub async fn finish(self) -> io::Result<u64> {
        drop(self.sender);
        self.thread.await.map_err(io::Error::other)?
    }
}

/// The writer thread: serializes lines until every sender is gone, then flushes. After
/// an error it keeps draining (so no agent waits forever) and reports the first error.
fn write_lines(mut receiver: mpsc::Receiver<TraceLine>, file: File) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, file);
    let mut written = 0;
    let mut error = None;
    while let Some(line) = receiver.blocking_recv() {
        if error.is_some() {
            continue;
        }
        let result = serde_json::to_writer(&mut out, &line)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        match result {
            Ok(()) => written += 1,
            Err(e) => {
                tracing::error!(error = %e, "Could not write the trace file; it is incomplete.");
                error = Some(e);
            }
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    out.flush()?;
    out.get_ref().sync_data()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_documented_form() {
        let acked = TraceLine {
            key: "ab12cd34-3-17".to_owned(),
            messages: 12,
            outcome: TraceOutcome::Acked,
            status: Some(200),
            failure: None,
            attempts: 2,
        };
        let text = serde_json::to_string(&acked).expect("serializes");
        assert_eq!(
            text,
            r#"{"key":"ab12cd34-3-17","messages":12,"outcome":"acked","status":200,"failure":null,"attempts":2}"#
        );
        let failed = TraceLine {
            outcome: TraceOutcome::Failed,
            status: None,
            failure: Some("timeout".to_owned()),
            ..acked.clone()
        };
        let text = serde_json::to_string(&failed).expect("serializes");
        assert!(text.contains(r#""outcome":"failed","status":null,"failure":"timeout""#));
        for line in [acked, failed] {
            let json = serde_json::to_string(&line).expect("serializes");
            assert_eq!(serde_json::from_str::<TraceLine>(&json).ok(), Some(line));
        }
    }

    #[tokio::test]
    async fn every_queued_line_is_written_by_finish() {
        let path = std::env::temp_dir().join(format!(
            "logdist-trace-unit-{}-{}.ndjson",
            std::process::id(),
            rand::random::<u32>()
        ));
        let writer = TraceWriter::create(&path).await.expect("created");
        let mut agents = Vec::new();
        for agent in 0..4 {
            let sender = writer.sender();
            agents.push(tokio::spawn(async move {
                for seq in 0..2000 {
                    sender
                        .send(TraceLine {
                            key: format!("t-{agent}-{seq}"),
                            messages: 1,
                            outcome: TraceOutcome::Acked,
                            status: Some(200),
                            failure: None,
                            attempts: 1,
                        })
                        .await;
                }
            }));
        }
        for agent in agents {
            agent.await.expect("agent");
        }
        assert_eq!(writer.finish().await.expect("written"), 8000);
        let text = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        let lines: Vec<TraceLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a trace line"))
            .collect();
        assert_eq!(lines.len(), 8000);
        let keys: std::collections::BTreeSet<&str> = lines.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys.len(), 8000);
    }

    #[tokio::test]
    async fn an_unwritable_path_is_an_error_at_start() {
        let path = std::env::temp_dir().join("logdist-no-such-dir/x/trace.ndjson");
        assert!(TraceWriter::create(&path).await.is_err());
    }
}
