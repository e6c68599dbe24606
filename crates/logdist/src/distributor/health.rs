//! Health probes: `GET {url}/health` on every member, at once when it registers, then on a
//! fixed interval while online and with exponential backoff while unhealthy, never more
//! than `--probe-rate` a second over all members. The state flips only after several
//! consecutive results in a row (`--unhealthy-after`, `--healthy-after`), so a single slow
//! probe does not make routing flap, and each flip is logged once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

use super::Shared;
use super::member::{Member, State};

/// First wait before re-probing an unhealthy analyzer; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between probes of an unhealthy analyzer.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Watches one member until it is retired.
pub async fn watch(shared: Arc<Shared>, member: Arc<Member>) {
    let cfg = &shared.config;
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
            healthy = probe(&shared, &member) => healthy,
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
                    shared
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
                    shared.registry.mark_online(&member);
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
            _ => cfg.probe_interval,
        };
    }
}

/// One `GET {url}/health`, in its turn of `--probe-rate`: whether it answered 2xx within
/// `--probe-timeout`.
async fn probe(shared: &Shared, member: &Member) -> bool {
    tokio::time::sleep_until(shared.probes.claim()).await;
    let mut request = Request::get(member.url.health.clone());
    if let Some(auth) = &shared.analyzer_auth {
        request = request.header(http::header::AUTHORIZATION, auth.clone());
    }
    let Ok(request) = request.body(Full::new(Bytes::new())) else {
        return false;
    };
    let exchange = async {
        let response = shared.client.request(request).await.ok()?;
        let ok = response.status().is_success();
        response.into_body().collect().await.ok()?;
        Some(ok)
    };
    matches!(
        tokio::time::timeout(shared.config.probe_timeout, exchange).await,
        Ok(Some(true))
    )
}
