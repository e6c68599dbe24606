//! logdist: a log distributor. Agents send packets of log messages over HTTP; each packet
//! goes to one analyzer so that every analyzer receives a share of *messages* in
//! proportion to its weight among the analyzers online.
//!
//! The binary (`main.rs`) is a thin clap front over the `run` function of each part:
//! [`distributor`], [`analyzer`], [`loadgen`], the [`demo`] that runs them together, and
//! [`top`], a distributor's dashboard in a terminal.
//! The routing core and message validation live in the `logdist-core` crate (no I/O).

pub mod analyzer;
pub mod api;
pub mod demo;
pub mod distributor;
pub mod http;
pub mod loadgen;
pub mod pacer;
pub mod telemetry;
pub mod top;
pub mod workers;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Parses a positive duration for a flag: `500ms`, `10s`, `2m`, `1h 30m` (humantime's
/// syntax); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let duration = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("`{s}` is not a duration like 500ms, 10s or 2m ({e})"))?,
    };
    if duration.is_zero() {
        return Err("a duration must be greater than zero".to_owned());
    }
    Ok(duration)
}

/// A duration as [`parse_duration`] reads it, or `0` or `never`: [`Duration::ZERO`],
/// for a setting that can be turned off.
pub fn parse_duration_or_never(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" | "never" => Ok(Duration::ZERO),
        other => parse_duration(other),
    }
}

/// An error and its sources on one line, e.g. "client error (Connect): tcp connect error:
/// Connection refused": hyper's errors say little without their causes.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `1234567` as `1,234,567`, for human summaries.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
