//! Health probes: `GET {url}/health` on every member, on a fixed interval while online and
//! with exponential backoff while unhealthy. The state flips only after several
//! consecutive results in a row (`--unhealthy-after`, `--healthy-after`), so a single slow
//! probe does not make routing flap, and each flip is logged once.

use std::sync::Arc;
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
    loop {
        let wait = match member.state() {
            State::Unhealthy => backoff,
            _ => cfg.probe_interval,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = member.retire.cancelled() => return,
        }
        let healthy = probe(&shared, &member).await;
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
                if successes >= cfg.healthy_after.max(1) {
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
    }
}

async fn probe(shared: &Shared, member: &Member) -> bool {
    let Ok(request) = Request::get(member.url.health.clone()).body(Full::new(Bytes::new())) else {
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
