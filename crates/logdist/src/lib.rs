//! logdist: a log distributor. Agents send packets of log messages over HTTP; each packet
//! goes to one analyzer so that every analyzer receives a share of *messages* in
//! proportion to its weight among the analyzers online.
//!
//! The binary (`main.rs`) is a thin clap front over the `run` function of each part:
//! [`distributor`], [`analyzer`], [`loadgen`], and the [`demo`] that runs them together.
//! The routing core and message validation live in the `logdist-core` crate (no I/O).

pub mod analyzer;
pub mod api;
pub mod client;
pub mod demo;
pub mod distributor;
pub mod loadgen;
pub mod telemetry;

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM, so every part shuts down gracefully.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("Signal received; shutting down.");
        cancel.cancel();
    });
    token
}
