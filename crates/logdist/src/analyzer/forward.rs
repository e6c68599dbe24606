//! `logdist analyzer --forward-listen ADDR`: the analyzer takes Fluent forward too, so that
//! it can be the peer of the distributor's `forward` delivery protocol (in
//! `bench/delivery.sh` and the tests) as it is of the HTTP ones ([`super::formats`]).
//!
//! Each frame is decoded by the decoder the distributor's forward ingest uses
//! (`logdist_core::forward::decode`), taken as a packet of `/packets` is ([`take`]: faults,
//! counts, journal), and its `chunk` answered `{"ack": chunk}` once taken. A frame that is
//! not taken (an injected fault, a journal that cannot be written) gets no ack and its
//! connection is closed, so the sender sends it again; bytes that are no frame close
//! their connection. One frame at a time per connection.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::BytesMut;
use logdist_core::DecodeOptions;
use logdist_core::forward::decode::{Frame, decode_forward, frame};
use logdist_core::forward::encode_ack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::{AppState, take};

/// A connection that sends nothing this long is closed.
const IDLE: Duration = Duration::from_secs(120);

/// Serves forward connections on `listener` until `stop`, then waits for each to answer
/// the frame it is taking.
pub(super) async fn serve(listener: TcpListener, state: Arc<AppState>, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "Could not accept a forward connection.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (state, stop) = (state.clone(), stop.clone());
        connections.spawn(async move {
            if let Err(why) = connection(stream, &state, &stop).await {
                debug!(why, "Forward connection closed.");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// One connection, until it ends; the error says why it ended.
async fn connection(
    mut stream: TcpStream,
    state: &AppState,
    stop: &CancellationToken,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match frame(&buf, state.max_body).map_err(|e| e.to_string())? {
            Frame::Complete(n) => {
                let bytes = buf.split_to(n);
                let events =
                    decode_forward(&bytes, &DecodeOptions::default()).map_err(|e| e.to_string())?;
                if let Some(first) = events.decoded.rejected.first() {
                    return Err(first.to_string());
                }
                take(state, &HeaderMap::new(), &events.decoded.packet.ndjson)
                    .await
                    .map_err(|answer| format!("not taken: {}", answer.status()))?;
                if let Some(chunk) = events.chunk {
                    stream
                        .write_all(&encode_ack(&chunk))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                continue;
            }
            Frame::Partial { at_least } => {
                buf.reserve((at_least - buf.len()).clamp(1, 64 * 1024));
            }
        }
        if stop.is_cancelled() {
            return Ok(());
        }
        let read = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            read = tokio::time::timeout(IDLE, stream.read_buf(&mut buf)) => read,
        };
        match read {
            Err(_) => return Err("idle".to_owned()),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
        }
    }
}
