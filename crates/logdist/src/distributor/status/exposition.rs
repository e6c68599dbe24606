//! The per-analyzer part of `/metrics`. Each member keeps its own counters
//! (`tally::MemberMetrics`, plain atomics), and a scrape renders them from the members there
//! are now. So an analyzer's series exist while it is a member and leave with it: a
//! registry of labelled series (the `metrics` crate's) would keep every id it ever saw,
//! and 3,000 analyzers coming and going left 69,000 series behind.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::AnalyzerStats;

use crate::distributor::delivery::Member;
use crate::distributor::delivery::tally::BUCKETS;

/// One analyzer's row: its stats (taken under the registry's lock) and its member.
pub type Row = (AnalyzerStats, std::sync::Arc<Member>);

/// A metric family of one sample per analyzer: its name, its help, and its value.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// Appends the per-analyzer families, in Prometheus text format, for `rows`.
pub fn render(rows: &[Row], out: &mut String) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let gauges: [Family<Row, f64>; 7] = [
        (
            "logdist_analyzer_weight",
            "The analyzer's registered weight.",
            |(s, _)| s.weight,
        ),
        (
            "logdist_analyzer_target_share",
            "Its weight over the online total (0 when not online).",
            |(s, _)| s.target_share,
        ),
        (
            "logdist_analyzer_share",
            "Its fraction of the messages routed in the counting window.",
            |(s, _)| s.share,
        ),
        (
            "logdist_lane_queued_packets",
            "Packets waiting in its queues.",
            |(_, m)| m.queued_packets() as f64,
        ),
        (
            "logdist_lane_queued_bytes",
            "Bytes of packets queued or in delivery to it.",
            |(_, m)| m.queued_bytes.load(Ordering::Relaxed) as f64,
        ),
        (
            "logdist_analyzer_ejected_seconds",
            "How long its current ejection still runs (0 when not ejected).",
            |(_, m)| m.ejected_for().as_secs_f64(),
        ),
        (
            "logdist_analyzer_accepts_bytes",
            "The largest delivery it is known to take (learned from 413; -1 until then).",
            |(_, m)| match m.accepts_at_most() {
                usize::MAX => -1.0,
                n => n as f64,
            },
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, help, "gauge");
        for row in rows {
            let _ = writeln!(
                out,
                "{name}{{analyzer=\"{}\"}} {}",
                label(&row.0.id),
                value(row)
            );
        }
    }
    family(
        out,
        "logdist_analyzer_state",
        "1 for the state it is in; `protocol` is the delivery protocol it is sent by.",
        "gauge",
    );
    for (stats, _) in rows {
        for state in ["online", "unhealthy", "draining"] {
            let value = u8::from(stats.state == state);
            let _ = writeln!(
                out,
                "logdist_analyzer_state{{analyzer=\"{}\",state=\"{state}\",protocol=\"{}\"}} {value}",
                label(&stats.id),
                label(&stats.protocol)
            );
        }
    }
    let counters: [Family<Member, u64>; 4] = [
        (
            "logdist_messages_delivered_total",
            "Messages it acknowledged.",
            |m| m.messages_total.load(Ordering::Relaxed),
        ),
        (
            "logdist_packets_delivered_total",
            "Packets it acknowledged.",
            |m| m.packets_total.load(Ordering::Relaxed),
        ),
        (
            "logdist_packets_rejected_by_analyzer_total",
            "Packets it refused as bad when sent alone.",
            |m| m.metrics.packets_rejected.load(Ordering::Relaxed),
        ),
        (
            "logdist_analyzer_ejections_total",
            "Times it was ejected after a failed delivery.",
            |m| m.metrics.ejections.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        family(out, name, help, "counter");
        for (stats, member) in rows {
            let _ = writeln!(
                out,
                "{name}{{analyzer=\"{}\"}} {}",
                label(&stats.id),
                value(member)
            );
        }
    }
    family(
        out,
        "logdist_deliveries_total",
        "Deliveries by outcome.",
        "counter",
    );
    for (stats, member) in rows {
        let id = label(&stats.id);
        let m = &member.metrics;
        let _ = writeln!(
            out,
            "logdist_deliveries_total{{analyzer=\"{id}\",outcome=\"ok\"}} {}",
            load(&m.deliveries_ok)
        );
        let _ = writeln!(
            out,
            "logdist_deliveries_total{{analyzer=\"{id}\",outcome=\"failed\"}} {}",
            load(&m.deliveries_failed)
        );
    }
    let name = "logdist_delivery_duration_seconds";
    family(
        out,
        name,
        "How long its acknowledged deliveries took.",
        "histogram",
    );
    for (stats, member) in rows {
        let id = label(&stats.id);
        let h = &member.metrics.duration;
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&h.buckets) {
            cumulative += load(count);
            let _ = writeln!(
                out,
                "{name}_bucket{{analyzer=\"{id}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += load(&h.over);
        let _ = writeln!(
            out,
            "{name}_bucket{{analyzer=\"{id}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = load(&h.sum_nanos) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{analyzer=\"{id}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{analyzer=\"{id}\"}} {cumulative}");
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value escaped as the text format asks (ids are visible ASCII, but may hold
/// `"` or `\`).
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
    }
}
