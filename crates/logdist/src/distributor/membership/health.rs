//! Health probes by each member's protocol (`GET {url}/health` for logdist's own): at
//! once when it registers, then on a fixed interval while online and with exponential
//! backoff while unhealthy, never more than `--probe-rate` a second over all members. The state flips only after several
//! consecutive results in a row (`--unhealthy-after`, `--healthy-after`), so a single slow
//! probe does not make routing flap, and each flip is logged once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::distributor::delivery::{Member, Protocol, State};
use crate::distributor::routing::Routing;
use crate::pacer::Pacer;

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
}

/// What every health watcher of one distributor shares.
pub struct Probes {
    /// Their settings.
    pub settings: ProbeSettings,
    /// Probes over all analyzers (`--probe-rate`).
    pub pacer: Pacer,
    /// Where state flips are made.
    pub routing: Arc<Routing>,
    /// How an analyzer is probed.
    pub protocol: Arc<dyn Protocol>,
}

/// First wait before re-probing an unhealthy analyzer; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between probes of an unhealthy analyzer.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Watches one member until it is retired.
pub async fn watch(probes: Arc<Probes>, member: Arc<Member>) {
    let cfg = &probes.settings;
    let (mut failures, mut successes, mut backoff) = (0u32, 0u32, MIN_BACKOFF);
    let mut last_state = member.state();
    // A new member is probed at once: it is routed to from its first good probe.
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = member.retire.cancelled() => return,
        }
        let healthy = tokio::select! {
            healthy = probes.probe(&member) => healthy,
            () = member.retire.cancelled() => return,
        };
        let state = member.state();
        if state != last_state {
            // The state changed under us (a failed delivery, a recovery): count afresh.
            (failures, successes, backoff) = (0, 0, MIN_BACKOFF);
            last_state = state;
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
            }
            (State::Draining, _) => {}
        }
        member.probed.cancel();
        wait = match member.state() {
            // While ejected, the next probe that can bring it back is at the ejection's end.
            State::Unhealthy => backoff.max(member.ejected_for()),
            _ => cfg.interval,
        };
    }
}

impl Probes {
    /// One probe by the member's protocol, in its turn of `--probe-rate`: whether it
    /// answered well within `--probe-timeout`.
    async fn probe(&self, member: &Member) -> bool {
        tokio::time::sleep_until(self.pacer.claim()).await;
        tokio::time::timeout(self.settings.timeout, self.protocol.probe(&member.url))
            .await
            .unwrap_or(false)
    }
}
