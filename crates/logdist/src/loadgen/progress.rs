//! The live progress bar on stderr: elapsed time, packets, messages per second and
//! failures, redrawn every 200 ms from the shared [`Counters`].
//!
//! It only reads the counters, so it never slows the agents down, and it is not drawn at
//! all with `--quiet` or when stderr is not a terminal (CI logs, pipes).

use std::collections::VecDeque;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::counters::{CounterSnapshot, Counters};

/// Redraw period.
const TICK: Duration = Duration::from_millis(200);
/// The msg/s shown is averaged over this many ticks (one second), to keep it readable.
const WINDOW: usize = 5;

/// A running progress bar; [`Progress::finish`] clears it.
pub(crate) struct Progress {
    bar: ProgressBar,
    done: CancellationToken,
    task: JoinHandle<()>,
}

/// What the bar fills up towards.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal {
    /// `--packets N`: answered packets out of N.
    Packets(u64),
    /// `--duration`: time elapsed out of the duration.
    Time(Duration),
}

impl Progress {
    /// Starts the bar, unless `quiet` or stderr is not a terminal.
    pub fn start(counters: Arc<Counters>, goal: Goal, quiet: bool) -> Option<Self> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let length = match goal {
            Goal::Packets(n) => n,
            Goal::Time(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        };
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        match ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:25}] {msg}") {
            Ok(style) => bar.set_style(style.progress_chars("=> ")),
            Err(e) => tracing::debug!(%e, "Progress bar template refused."),
        }
        let done = CancellationToken::new();
        let task = tokio::spawn(tick(bar.clone(), counters, goal, done.clone()));
        Some(Self { bar, done, task })
    }

    /// Stops redrawing and clears the bar, so the summary prints on a clean screen.
    pub async fn finish(self) {
        self.done.cancel();
        if let Err(e) = self.task.await {
            tracing::debug!(%e, "Progress task ended abnormally.");
        }
        self.bar.finish_and_clear();
    }
}

async fn tick(bar: ProgressBar, counters: Arc<Counters>, goal: Goal, done: CancellationToken) {
    let start = Instant::now();
    let mut history: VecDeque<(Instant, CounterSnapshot)> = VecDeque::with_capacity(WINDOW + 1);
    history.push_back((start, counters.snapshot()));
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = done.cancelled() => return,
        }
        let now = Instant::now();
        let snapshot = counters.snapshot();
        history.push_back((now, snapshot));
        if history.len() > WINDOW + 1 {
            history.pop_front();
        }
        let rate = match history.front() {
            Some((then, old)) if now > *then => {
                let messages = snapshot.messages_acked.saturating_sub(old.messages_acked);
                messages as f64 / (now - *then).as_secs_f64()
            }
            _ => 0.0,
        };
        let position = match goal {
            Goal::Packets(_) => snapshot.packets_acked + snapshot.packets_failed,
            Goal::Time(_) => u64::try_from((now - start).as_millis()).unwrap_or(u64::MAX),
        };
        bar.set_position(position);
        bar.set_message(line(&snapshot, rate));
    }
}

/// The text beside the bar.
fn line(s: &CounterSnapshot, rate: f64) -> String {
    format!(
        "{} packets, {} msgs acked | {:.0} msg/s | {} failed | {} in flight",
        s.packets_acked,
        s.messages_acked,
        rate,
        s.packets_failed,
        s.in_flight()
    )
}
