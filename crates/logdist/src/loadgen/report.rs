//! The summary of a run: what `--report` writes as JSON and what is printed at the end,
//! with each analyzer's share against its target (see [`super::stats`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{Endpoint, LoadgenArgs};
use super::counters::CounterSnapshot;
use super::protocol::Protocol;
use super::stats;

/// The result of a run. `Serialize` gives the `--report` JSON; field names are part of
/// the public contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The distributor loaded.
    pub target: String,
    /// Which endpoint the agents posted to.
    pub endpoint: Endpoint,
    /// How packets were written (`--protocol`).
    pub protocol: Protocol,
    /// Concurrent agents.
    pub agents: usize,
    /// Why the run ended.
    pub stopped_by: StopReason,
    /// Packets started (a `/message/send` request is a packet of one); a packet counts
    /// once however often it was resent.
    pub packets_sent: u64,
    /// Packets answered 200, 202 or 204 (and no record refused in the answer), on the
    /// first attempt or a resend.
    pub packets_acked: u64,
    /// Packets that failed for good: their last attempt failed, for a reason in
    /// `failures`.
    pub packets_failed: u64,
    /// Messages in the packets started.
    pub messages_sent: u64,
    /// Messages the distributor acknowledged.
    pub messages_acked: u64,
    /// Messages in packets that failed for good.
    pub messages_failed: u64,
    /// Wall time from the first request to the last answer, in seconds.
    pub duration_s: f64,
    /// Acknowledged messages per second.
    pub messages_per_s: f64,
    /// Acknowledged packets per second.
    pub packets_per_s: f64,
    /// Latency of acknowledged packets, from the first attempt to the acknowledgement
    /// (resends and their waits included).
    pub latency_ms: Latency,
    /// Failed ATTEMPTS by kind: `http_<status>`, `timeout`, `connect`, `aborted`, `other`.
    /// Resent attempts count too, so with `--retries` the total can exceed
    /// `packets_failed`; without it, each failed packet is one failed attempt.
    pub failures: BTreeMap<String, u64>,
    /// Resends (`--retries`) over all packets: requests sent = `packets_sent + retries`.
    pub retries: u64,
    /// The prefix of packet keys and message ids, when packets had keys (`--trace` or
    /// `--idempotency-keys`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
    /// The distributor's `/analyzer/stats` after the run, as it answered; null when it
    /// could not be fetched.
    pub analyzers: Option<serde_json::Value>,
    /// Why `analyzers` is null, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analyzers_error: Option<String>,
}

/// Latency percentiles in milliseconds (0 when nothing was acknowledged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest acknowledged request.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `--duration` elapsed.
    Duration,
    /// `--packets` were all sent.
    Packets,
    /// The caller cancelled the shutdown token (Ctrl-C).
    Shutdown,
}

impl Latency {
    /// Percentiles of a histogram recorded in microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

/// What the agents measured, gathered once they have all stopped.
pub(crate) struct Measured {
    /// Why the run ended.
    pub stopped_by: StopReason,
    /// Counter totals of this run.
    pub totals: CounterSnapshot,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Latencies of acknowledged packets, merged over the agents, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Failed attempts by kind, merged over the agents.
    pub failures: BTreeMap<String, u64>,
    /// Resends, over all agents.
    pub retries: u64,
    /// The prefix of packet keys, when packets had keys.
    pub id_prefix: Option<String>,
}

impl Report {
    /// Assembles the report of a run of `args`.
    pub(crate) fn new(
        args: &LoadgenArgs,
        measured: Measured,
        analyzers: Result<serde_json::Value, String>,
    ) -> Self {
        let Measured {
            stopped_by,
            totals,
            elapsed,
            latency_us,
            failures,
            retries,
            id_prefix,
        } = measured;
        let seconds = elapsed.as_secs_f64();
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        let (analyzers, analyzers_error) = match analyzers {
            Ok(value) => (Some(value), None),
            Err(error) => (None, Some(error)),
        };
        Self {
            target: args.target.clone(),
            endpoint: args.endpoint,
            protocol: args.protocol,
            agents: args.agents,
            stopped_by,
            packets_sent: totals.packets_sent,
            packets_acked: totals.packets_acked,
            packets_failed: totals.packets_failed,
            messages_sent: totals.messages_sent,
            messages_acked: totals.messages_acked,
            messages_failed: totals.messages_failed,
            duration_s: seconds,
            messages_per_s: per_s(totals.messages_acked),
            packets_per_s: per_s(totals.packets_acked),
            latency_ms: Latency::from_micros(&latency_us),
            failures,
            retries,
            id_prefix,
            analyzers,
            analyzers_error,
        }
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self).context("serializing the report")?;
        std::fs::write(path, json)
            .with_context(|| format!("writing the report to {}", path.display()))
    }

    /// Prints the human summary to stdout.
    pub fn print_summary(&self) {
        print!("{}", self.summary());
    }

    /// The human summary, as [`print_summary`](Self::print_summary) prints it.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let stopped = match self.stopped_by {
            StopReason::Duration => "duration reached",
            StopReason::Packets => "packet count reached",
            StopReason::Shutdown => "interrupted",
        };
        let path = match self.endpoint {
            Endpoint::Packets => self.protocol.path(),
            Endpoint::Message => "/message/send",
        };
        let _ = writeln!(
            out,
            "\nloadgen: {} agents -> {}{path}, {:.2} s, {stopped}",
            self.agents, self.target, self.duration_s
        );
        let _ = writeln!(out, "\n            {:>14} {:>14}", "packets", "messages");
        for (label, packets, messages) in [
            ("sent", self.packets_sent, self.messages_sent),
            ("acked", self.packets_acked, self.messages_acked),
            ("failed", self.packets_failed, self.messages_failed),
        ] {
            let _ = writeln!(
                out,
                "  {label:<10}{:>14} {:>14}",
                crate::thousands(packets),
                crate::thousands(messages)
            );
        }
        let _ = writeln!(out, "  retries: {}", crate::thousands(self.retries));
        if !self.failures.is_empty() {
            let kinds: Vec<String> = self
                .failures
                .iter()
                .map(|(kind, n)| format!("{kind} {}", crate::thousands(*n)))
                .collect();
            let _ = writeln!(out, "  failed attempts: {}", kinds.join(", "));
        }
        if let Some(prefix) = &self.id_prefix {
            let _ = writeln!(out, "  id prefix: {prefix}");
        }
        let _ = writeln!(
            out,
            "\n  throughput  {} msg/s acked ({} packets/s)",
            crate::thousands(self.messages_per_s.round() as u64),
            crate::thousands(self.packets_per_s.round() as u64)
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "  latency     p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
            l.p50, l.p99, l.max
        );
        out.push_str(&stats::table(
            self.analyzers.as_ref(),
            self.analyzers_error.as_deref(),
        ));
        out
    }
}

/// An empty latency histogram, in microseconds. Fixed bounds (1 µs to 10 min): an
/// auto-resizing histogram starts at 2 ms, and `saturating_record` would clamp slower
/// answers to 2 ms instead of growing it.
pub(super) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("the bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(analyzers: Result<serde_json::Value, String>) -> Report {
        let mut histogram = latency_histogram();
        for us in [900, 1000, 1100, 5000] {
            histogram.saturating_record(us);
        }
        let totals = CounterSnapshot {
            packets_sent: 10,
            messages_sent: 1000,
            packets_acked: 9,
            messages_acked: 900,
            packets_failed: 1,
            messages_failed: 100,
        };
        let measured = Measured {
            stopped_by: StopReason::Packets,
            totals,
            elapsed: Duration::from_secs(2),
            latency_us: histogram,
            failures: BTreeMap::from([("http_503".to_owned(), 3)]),
            retries: 2,
            id_prefix: Some("run1".to_owned()),
        };
        Report::new(&LoadgenArgs::default(), measured, analyzers)
    }

    #[test]
    fn report_json_has_the_contract_keys() {
        let stats = serde_json::json!([{"id": "1", "url": "http://127.0.0.1:3001", "weight": 0.5,
            "state": "online", "target_share": 1.0, "messages_sent": 900, "share": 1.0,
            "messages_total": 900, "packets_total": 9}]);
        let json = serde_json::to_value(sample(Ok(stats))).expect("serializes");
        for key in [
            "packets_sent",
            "packets_acked",
            "packets_failed",
            "messages_sent",
            "messages_acked",
            "messages_failed",
            "duration_s",
            "messages_per_s",
            "latency_ms",
            "failures",
            "retries",
            "analyzers",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
        for key in ["p50", "p99", "max"] {
            assert!(json["latency_ms"][key].is_f64(), "latency_ms.{key}");
        }
        assert_eq!(json["messages_per_s"], 450.0);
        assert_eq!(json["failures"]["http_503"], 3);
        assert_eq!(json["retries"], 2);
        assert_eq!(json["id_prefix"], "run1");
        assert!(json["analyzers"].is_array());
        assert!(json.get("analyzers_error").is_none());
    }

    #[test]
    fn missing_stats_are_null_and_explained() {
        let report = sample(Err("could not fetch: refused".to_owned()));
        let json = serde_json::to_value(&report).expect("serializes");
        assert!(json["analyzers"].is_null());
        assert!(report.summary().contains("could not fetch: refused"));
    }

    #[test]
    fn summary_shows_counts_and_shares() {
        let stats = serde_json::json!([{"id": 1, "url": "u", "weight": 0.5, "state": "online",
            "target_share": 0.5, "messages_sent": 510, "share": 0.51}]);
        let text = sample(Ok(stats)).summary();
        assert!(text.contains("1,000"), "{text}");
        assert!(text.contains("failed attempts: http_503 3"), "{text}");
        assert!(text.contains("retries: 2"), "{text}");
        assert!(text.contains("id prefix: run1"), "{text}");
        assert!(text.contains("51.00%") && text.contains("+1.00%"), "{text}");
    }

    #[test]
    fn slow_answers_are_measured_not_clamped() {
        let mut histogram = latency_histogram();
        for _ in 0..60 {
            histogram.saturating_record(3_000); // 3 ms
        }
        for _ in 0..40 {
            histogram.saturating_record(5_000_000); // 5 s
        }
        let latency = Latency::from_micros(&histogram);
        assert!((latency.p50 - 3.0).abs() < 0.01, "{latency:?}");
        assert!((latency.p99 - 5000.0).abs() < 5.0, "{latency:?}");
        assert!(latency.max >= 5000.0, "{latency:?}");
    }
}
