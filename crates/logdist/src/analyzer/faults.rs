//! Fault injection for tests (`--faults`): `PUT /faults` makes the analyzer answer every
//! packet with an error status, or only after a delay, until it is told otherwise. With
//! it a test can turn a live analyzer into a failing or a slow one without restarting it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;

/// The faults in force; all off by default.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answer packets with this status instead of taking them (0: off).
    status: AtomicU16,
    /// Wait this long before handling a packet (0: off).
    delay_ms: AtomicU64,
}

/// The body of `PUT /faults` and `GET /faults`; a field left out is switched off.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Answer every packet with this status (an error status, 400 to 599), taking none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Handle every packet only after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

impl Faults {
    /// Waits out the injected delay; returns the injected error answer, if any.
    pub async fn apply(&self) -> Option<Response> {
        let delay = self.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let status = StatusCode::from_u16(self.status.load(Ordering::Relaxed)).ok()?;
        Some(
            (
                status,
                Json(json!({"error": format!("injected fault: answering {status}")})),
            )
                .into_response(),
        )
    }

    fn spec(&self) -> FaultSpec {
        let status = self.status.load(Ordering::Relaxed);
        let delay_ms = self.delay_ms.load(Ordering::Relaxed);
        FaultSpec {
            status: (status != 0).then_some(status),
            delay_ms: (delay_ms != 0).then_some(delay_ms),
        }
    }
}

/// `GET /faults`: the faults in force.
pub async fn show(State(state): State<Arc<AppState>>) -> Json<FaultSpec> {
    Json(state.faults.as_ref().map(Faults::spec).unwrap_or_default())
}

/// `PUT /faults`: replaces the faults in force.
pub async fn set(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Json<FaultSpec>, crate::http::ApiError> {
    use crate::http::ApiError;
    let spec: FaultSpec = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid fault spec: {e}")))?;
    if let Some(status) = spec.status
        && !(400..=599).contains(&status)
    {
        return Err(ApiError::BadRequest(format!(
            "status {status} is not an error status (400 to 599)"
        )));
    }
    let Some(faults) = &state.faults else {
        return Err(ApiError::NotFound("fault injection is off".to_owned()));
    };
    faults
        .status
        .store(spec.status.unwrap_or(0), Ordering::Relaxed);
    faults
        .delay_ms
        .store(spec.delay_ms.unwrap_or(0), Ordering::Relaxed);
    tracing::warn!(?spec, "Injected faults changed.");
    Ok(Json(faults.spec()))
}
