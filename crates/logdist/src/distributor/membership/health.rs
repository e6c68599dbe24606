//! Health probes by each member's protocol (`GET {url}/health` for logdist's own): at
//! once when it registers, then on a fixed interval while online and with exponential
//! backoff while unhealthy, never more than `--probe-rate` a second over all members. The state flips only after several
//! consecutive results in a row (`--unhealthy-after`, `--healthy-after`), so a single slow
//! probe does not make routing flap, and each flip is logged once. A member whose protocol
//! was not given has it detected when its probe fails (see `Probes::probe`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::distributor::delivery::protocol::Protocols;
use crate::distributor::delivery::{Member, State};
use crate::distributor::routing::Routing;
use crate::pacer::Pacer;
use tracing::info;

/// `--probe-interval`, `--probe-timeout`, `--unhealthy-after`, `--healthy-after`.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Between probes of an online analyzer.
    pub interval: Duration,
    /// How long a probe may take.
    pub timeout: Duration,
    /// Failed probes in a row that take an online analyzer out.
    pub unhealthy_after: u32,
    /// Good probes in a row that bring an analyzer back (its first one suffices).
    pub healthy_after: u32,
    /// How long a member may stay unhealthy, its probes failing, before it is forgotten
    /// (`--forget-after`); `None` keeps it for good. Pinned members are never forgotten.
    pub forget_after: Option<Duration>,
}

/// Why a health watcher ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The member was retired (deregistered, replaced, or the distributor stops).
    Retired,
    /// The member stayed unhealthy for `--forget-after`, its last probe failing: the
    /// caller forgets it (see `Fleet::forget`).
    Forgotten,
}

/// What every health watcher of one distributor shares.
pub struct Probes {
    /// Their settings.
    pub settings: ProbeSettings,
    /// Probes over all analyzers (`--probe-rate`).
    pub pacer: Pacer,
    /// Where state flips are made.
    pub routing: Arc<Routing>,
    /// How an analyzer is probed: by its own protocol.
    pub protocols: Arc<Protocols>,
}

/// Where the backoff of an unhealthy analyzer starts. It doubles at each failed probe
/// before the wait, so the wait after a failed probe is 400 ms, then 800 ms, up to
/// [`MAX_BACKOFF`]; right after failed probes take a member out, the first wait is this.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between probes of an unhealthy analyzer.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Watches one member until it is retired, or until it has stayed unhealthy for
/// `--forget-after` (probed once more at that moment, and that probe failed too).
pub async fn watch(probes: Arc<Probes>, member: Arc<Member>) -> Ended {
    let cfg = &probes.settings;
    let (mut failures, mut successes, mut backoff) = (0u32, 0u32, MIN_BACKOFF);
    let mut last_state = member.state();
    // When the member last turned unhealthy (a new member starts so), as this watcher saw.
    let mut unhealthy_since = tokio::time::Instant::now();
    let forget_after = cfg.forget_after.filter(|_| !member.pinned);
    // A new member is probed at once: it is routed to from its first good probe.
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = member.retire.cancelled() => return Ended::Retired,
        }
        let healthy = tokio::select! {
            healthy = probes.probe(&member) => healthy,
            () = member.retire.cancelled() => return Ended::Retired,
        };
        member.metrics.last_probe.record(healthy);
        let state = member.state();
        if state != last_state {
            // The state changed under us (a failed delivery, a recovery): count afresh.
            (failures, successes, backoff) = (0, 0, MIN_BACKOFF);
            last_state = state;
            unhealthy_since = tokio::time::Instant::now();
        }
        match (state, healthy) {
            (State::Online, true) => failures = 0,
            (State::Online, false) => {
                failures += 1;
                if failures >= cfg.unhealthy_after.max(1) {
                    probes
                        .routing
                        .registry
                        .mark_unhealthy(&member, "health probes failed");
                    (failures, successes, backoff) = (0, 0, MIN_BACKOFF);
                    last_state = member.state();
                    unhealthy_since = tokio::time::Instant::now();
                }
            }
            (State::Unhealthy, true) => {
                successes += 1;
                backoff = MIN_BACKOFF;
                let needed = if member.joined.load(Ordering::Relaxed) {
                    cfg.healthy_after.max(1)
                } else {
                    1
                };
                // An ejected member comes back only once its ejection is over.
                if successes >= needed && member.ejected_for().is_zero() {
                    probes.routing.registry.mark_online(&member);
                    (failures, successes) = (0, 0);
                    last_state = member.state();
                }
            }
            (State::Unhealthy, false) => {
                successes = 0;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if let Some(after) = forget_after
                    && unhealthy_since.elapsed() >= after
                {
                    member.probed.cancel();
                    return Ended::Forgotten;
                }
            }
            (State::Draining, _) => {}
        }
        member.probed.cancel();
        wait = match member.state() {
            // While ejected, the next probe that can bring it back is at the ejection's end.
            State::Unhealthy => backoff.max(member.ejected_for()),
            _ => cfg.interval,
        };
        if let (Some(after), State::Unhealthy) = (forget_after, member.state()) {
            // Probed again when its time is up, so that it is forgotten on time.
            let left = after.saturating_sub(unhealthy_since.elapsed());
            if !left.is_zero() {
                wait = wait.min(left);
            }
        }
    }
}

impl Probes {
    /// One probe by the member's protocol, in its turn of `--probe-rate`: whether it
    /// answered well within `--probe-timeout`. When it did not and the member's protocol
    /// was not given, which protocol the analyzer speaks is detected (see
    /// [`Protocols::detect`]): an analyzer registered by `port` alone may be the original
    /// project's, which serves no `/health`. Its protocol is switched to the one found,
    /// which probes it again.
    async fn probe(&self, member: &Member) -> bool {
        tokio::time::sleep_until(self.pacer.claim()).await;
        let timeout = self.settings.timeout;
        let once = |kind| tokio::time::timeout(timeout, self.protocols.of(kind).probe(&member.url));
        let current = member.protocol();
        if once(current).await.unwrap_or(false) {
            return true;
        }
        if member.protocol_given() {
            return false;
        }
        let found = tokio::time::timeout(timeout, self.protocols.detect(&member.url))
            .await
            .ok()
            .flatten();
        match found {
            Some(kind) if kind != current => {
                // Still not given: should the analyzer be replaced by another kind at the
                // same address, detection finds that too.
                member.set_protocol(kind, false);
                info!(analyzer = %member.id, url = %member.url.base, from = %current, to = %kind, "Analyzer speaks another delivery protocol than assumed; delivering to it by that one.");
                once(kind).await.unwrap_or(false)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    use super::*;
    use crate::distributor::delivery::QueueLimits;
    use crate::distributor::delivery::address::AnalyzerUrl;
    use crate::distributor::delivery::protocol::{Failed, Protocol, Sending};
    use crate::distributor::job::Job;
    use crate::distributor::routing::Registry;
    use crate::workers::Workers;

    /// How an analyzer answers one probe.
    #[derive(Debug, Clone, Copy)]
    enum Answer {
        Good,
        Bad,
        /// Not at all: the probe fails at `--probe-timeout`.
        Silent,
    }
    use Answer::{Bad, Good, Silent};

    /// A protocol whose probes answer from a script (its last answer again once it runs
    /// out), noting when each probe was sent. It sends no batches: a watcher does not.
    struct Scripted {
        answers: Mutex<VecDeque<Answer>>,
        start: Instant,
        sent: Mutex<Vec<Duration>>,
    }

    impl Protocol for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }

        fn send<'a>(
            &'a self,
            _: usize,
            _: &'a AnalyzerUrl,
            _: &'a [Job],
            _: Duration,
        ) -> Sending<'a, Result<(), Failed>> {
            unreachable!("a health watcher sends no batches")
        }

        fn probe<'a>(&'a self, _: &'a AnalyzerUrl) -> Sending<'a, bool> {
            self.sent.lock().unwrap().push(self.start.elapsed());
            let mut answers = self.answers.lock().unwrap();
            let answer = match answers.len() {
                0 | 1 => answers.front().copied().unwrap_or(Good),
                _ => answers.pop_front().unwrap_or(Good),
            };
            match answer {
                Good => Box::pin(std::future::ready(true)),
                Bad => Box::pin(std::future::ready(false)),
                Silent => Box::pin(std::future::pending()),
            }
        }
    }

    const SETTINGS: ProbeSettings = ProbeSettings {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(300),
        unhealthy_after: 3,
        healthy_after: 2,
        forget_after: None,
    };

    /// One member, just registered, and its health watcher with `settings`, probing it as
    /// `answers` say; built as `Distributor::new` builds them, on paused time.
    struct Watched {
        member: Arc<Member>,
        routing: Arc<Routing>,
        script: Arc<Scripted>,
        watcher: JoinHandle<Ended>,
    }

    fn watch_member(settings: ProbeSettings, answers: &[Answer]) -> Watched {
        watch_with(settings, answers, false)
    }

    /// As [`watch_member`], of a member given with `--analyzer` when `pinned`.
    fn watch_with(settings: ProbeSettings, answers: &[Answer], pinned: bool) -> Watched {
        let limits = QueueLimits {
            lanes: 1,
            packets: 8,
            concurrency: 1,
        };
        let registry = Registry::new(limits, 1 << 20, Duration::from_secs(2), 8);
        let routing = Arc::new(Routing::new(registry, Workers::current(), 16, 3));
        let url = "http://127.0.0.1:9".parse().unwrap();
        let (_, new) = routing.registry.register("a", url, 1.0, pinned).unwrap();
        let (member, _queues) = new.expect("a new member");
        // Given, so that its failed probes are not followed by detection's.
        member.set_protocol(crate::distributor::delivery::protocol::Kind::Logdist, true);
        let script = Arc::new(Scripted {
            answers: Mutex::new(answers.iter().copied().collect()),
            start: Instant::now(),
            sent: Mutex::new(Vec::new()),
        });
        let probes = Arc::new(Probes {
            settings,
            pacer: Pacer::new(500.0),
            routing: routing.clone(),
            protocols: Arc::new(Protocols::only(script.clone())),
        });
        let watcher = tokio::spawn(watch(probes, member.clone()));
        Watched {
            member,
            routing,
            script,
            watcher,
        }
    }

    impl Watched {
        /// Lets virtual time run until `ms` after the start; returns the member's state.
        async fn at(&self, ms: u64) -> State {
            tokio::time::sleep_until(self.script.start + Duration::from_millis(ms)).await;
            self.member.state()
        }

        /// When each probe so far was sent, in milliseconds after the start.
        fn probes(&self) -> Vec<u64> {
            let sent = self.script.sent.lock().unwrap();
            sent.iter().map(|t| t.as_millis() as u64).collect()
        }

        fn online(&self) -> usize {
            self.routing.registry.online_count()
        }

        /// Retires the member: its watcher ends.
        async fn retire(self) {
            self.member.retire.cancel();
            let ended = self.watcher.await.expect("the watcher ends");
            assert_eq!(ended, Ended::Retired);
        }
    }

    /// The milliseconds between consecutive probes.
    fn gaps(probes: &[u64]) -> Vec<u64> {
        probes.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_member_is_probed_at_once_and_routed_to_from_its_first_good_probe() {
        let w = watch_member(SETTINGS, &[Bad, Good]);
        assert_eq!(w.at(1).await, State::Unhealthy);
        assert_eq!(w.probes(), [0], "probed at once");
        assert!(w.member.probed.is_cancelled(), "its first probe answered");
        // The failure doubles the backoff before the wait: the next probe is at 400ms.
        assert_eq!(w.at(399).await, State::Unhealthy);
        assert_eq!(w.online(), 0);
        // One good probe brings a new member in, although --healthy-after is 2.
        assert_eq!(w.at(401).await, State::Online);
        assert_eq!(w.online(), 1);
        assert!(w.member.joined.load(Ordering::Relaxed));
        // Online, it is probed every --probe-interval.
        w.at(3_401).await;
        assert_eq!(w.probes(), [0, 400, 1_400, 2_400, 3_400]);
        w.retire().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_online_member_turns_unhealthy_after_exactly_its_failed_probes_in_a_row() {
        // Two failures, a good probe that starts the count again, two more failures, and a
        // probe that is never answered: the third failure in a row, at its timeout.
        let w = watch_member(SETTINGS, &[Good, Bad, Bad, Good, Bad, Bad, Silent, Bad]);
        assert_eq!(
            w.at(2_500).await,
            State::Online,
            "two failures are not three"
        );
        assert_eq!(
            w.at(5_500).await,
            State::Online,
            "nor are two after a good one"
        );
        assert_eq!(
            w.at(6_299).await,
            State::Online,
            "the silent probe has not failed yet"
        );
        assert_eq!(w.at(6_301).await, State::Unhealthy);
        assert_eq!(w.online(), 0);
        // Unhealthy, it is probed again after the shortest backoff.
        w.at(6_501).await;
        assert_eq!(
            w.probes(),
            [0, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 6_500]
        );
        w.retire().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_unhealthy_member_is_probed_with_backoff_and_comes_back_after_good_probes() {
        // Online at its first probe; three failures take it out and seven more follow.
        // Then one good probe, a failure that starts the count again, and two good ones.
        let mut answers = vec![Good];
        answers.extend([Bad; 10]);
        answers.extend([Good, Bad, Good, Good]);
        let w = watch_member(SETTINGS, &answers);
        assert_eq!(w.at(3_001).await, State::Unhealthy);
        assert_eq!(w.probes(), [0, 1_000, 2_000, 3_000]);
        assert_eq!(
            w.at(24_300).await,
            State::Unhealthy,
            "one good probe of two"
        );
        assert_eq!(
            w.at(24_900).await,
            State::Unhealthy,
            "a failure between two"
        );
        assert_eq!(w.at(25_001).await, State::Online);
        assert_eq!(w.online(), 1);
        w.at(26_001).await;
        let probes = w.probes();
        assert_eq!(
            probes[3..],
            [
                3_000, 3_200, 3_600, 4_400, 6_000, 9_200, 14_200, 19_200, 24_200, 24_400, 24_800,
                25_000, 26_000
            ]
        );
        assert_eq!(
            gaps(&probes[3..]),
            // Doubling from 200ms to 5s while it fails; from 200ms again after a good probe;
            // every --probe-interval once it is back.
            [
                200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000, 200, 400, 200, 1_000
            ]
        );
        w.retire().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejected_member_comes_back_only_once_its_ejection_is_over() {
        // Even one good probe would bring it back, but for its ejection.
        let settings = ProbeSettings {
            healthy_after: 1,
            ..SETTINGS
        };
        let w = watch_member(settings, &[Good]);
        assert_eq!(w.at(500).await, State::Online);
        // A delivery fails: the lane ejects it for 3s and takes it out of routing.
        let ejection = w
            .member
            .eject(Duration::from_secs(3), Duration::from_secs(60));
        assert_eq!(ejection, Duration::from_secs(3));
        w.routing
            .registry
            .mark_unhealthy(&w.member, "delivery failed");
        // Its next probe, at 1s, is good but does not end the ejection; the next probe is
        // at the ejection's end, 3.5s, not after the 200ms backoff.
        assert_eq!(w.at(3_499).await, State::Unhealthy);
        assert_eq!(w.probes(), [0, 1_000]);
        assert_eq!(w.at(3_501).await, State::Online);
        assert_eq!(w.probes(), [0, 1_000, 3_500]);
        w.retire().await;
    }

    const FORGET: ProbeSettings = ProbeSettings {
        forget_after: Some(Duration::from_secs(10)),
        ..SETTINGS
    };

    #[tokio::test(start_paused = true)]
    async fn a_member_unhealthy_for_forget_after_is_forgotten_at_a_probe_on_time() {
        // Online, then three failures take it out at 3s; it never answers again.
        let mut answers = vec![Good];
        answers.extend([Bad; 3]);
        let w = watch_member(FORGET, &answers);
        assert_eq!(w.at(3_001).await, State::Unhealthy);
        w.at(12_999).await;
        assert!(!w.watcher.is_finished(), "unhealthy for less than 10s");
        w.at(13_001).await;
        assert!(w.watcher.is_finished());
        // The backoff's 5s would have put the last probe at 14.2s: it is at 13s, when
        // its time is up, and it failed too.
        assert_eq!(
            w.probes()[3..],
            [3_000, 3_200, 3_600, 4_400, 6_000, 9_200, 13_000]
        );
        assert_eq!(w.watcher.await.unwrap(), Ended::Forgotten);
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_that_never_answers_is_forgotten_after_forget_after_from_registering() {
        let w = watch_member(FORGET, &[Bad]);
        w.at(9_999).await;
        assert!(!w.watcher.is_finished());
        w.at(10_001).await;
        assert_eq!(w.probes(), [0, 400, 1_200, 2_800, 6_000, 10_000]);
        assert_eq!(w.watcher.await.unwrap(), Ended::Forgotten);
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_that_recovers_in_time_starts_its_count_again() {
        // Unhealthy at 3s; back online after two good probes at ~9.4s; out again later.
        let mut answers = vec![Good];
        answers.extend([Bad; 7]);
        answers.extend([Good, Good]);
        answers.extend([Bad; 40]);
        let w = watch_member(FORGET, &answers);
        assert_eq!(w.at(3_001).await, State::Unhealthy);
        assert_eq!(w.at(12_000).await, State::Online);
        // It fails again and turns unhealthy, but 10s after its first turn it is kept.
        assert_eq!(w.at(16_000).await, State::Unhealthy);
        assert!(!w.watcher.is_finished());
        w.at(60_000).await;
        assert_eq!(w.watcher.await.unwrap(), Ended::Forgotten);
    }

    #[tokio::test(start_paused = true)]
    async fn without_forget_after_an_unhealthy_member_is_kept() {
        let w = watch_member(SETTINGS, &[Bad]);
        assert_eq!(w.at(3_600_000).await, State::Unhealthy);
        assert!(!w.watcher.is_finished());
        w.retire().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_given_with_analyzer_is_never_forgotten() {
        let w = watch_with(FORGET, &[Bad], true);
        assert_eq!(w.at(3_600_000).await, State::Unhealthy);
        assert!(!w.watcher.is_finished());
        w.retire().await;
    }
}
