//! The live dashboard: one page, built into the binary (`index.html`, `app.js`,
//! `style.css`, no framework and nothing fetched from elsewhere), fed one [`Snapshot`] a
//! second over server-sent events. Read-only and open, as `/analyzer/stats` is: every route
//! here is a `GET` that changes nothing.
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /dashboard` | the page |
//! | `GET /` with `Accept: text/html` | the page (a browser); any other `GET /` stays Elasticsearch's node info, see [`negotiate`] |
//! | `GET /dashboard/events` | `text/event-stream`: a `history` event (the chart's last minutes), then a `snapshot` event each second |
//! | `GET /dashboard/snapshot` | the latest snapshot as JSON (`logdist top`, tests) |
//!
//! The snapshot is taken once a second by one [`snapshot::Sampler`] and shared by every
//! viewer through a `watch`: a hundred open pages cost a hundred serializations, not a
//! hundred walks of the members.

pub mod snapshot;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;

pub use snapshot::{Published, Snapshot};

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// The dashboard's routes.
pub fn routes(published: &Arc<Published>) -> axum::Router {
    axum::Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/app.js", get(app_js))
        .route("/dashboard/style.css", get(style_css))
        .route("/dashboard/events", get(events))
        .route("/dashboard/snapshot", get(latest))
        .with_state(published.clone())
}

/// `GET /dashboard`: the page.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP,
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
        .into_response()
}

/// `GET /dashboard/snapshot`: the latest snapshot.
async fn latest(State(published): State<Arc<Published>>) -> Json<Snapshot> {
    Json(Snapshot::clone(&published.latest.borrow()))
}

/// `GET /dashboard/events`: the chart's history, then each new snapshot, until the viewer
/// goes away (or the distributor stops sampling).
async fn events(
    State(published): State<Arc<Published>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let history: Vec<_> = published
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    let mut latest = published.latest.clone();
    // The current one goes out at once, after the history.
    latest.mark_changed();
    let first = Event::default()
        .event("history")
        .json_data(&history)
        .unwrap_or_default();
    let snapshots = futures_util::stream::unfold(latest, |mut latest| async move {
        latest.changed().await.ok()?;
        let snapshot = latest.borrow_and_update().clone();
        let event = Event::default()
            .event("snapshot")
            .json_data(&*snapshot)
            .unwrap_or_default();
        Some((Ok(event), latest))
    });
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok(first) }),
        snapshots,
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Whether a request asks for HTML: its `Accept` names `text/html`, as every browser's
/// navigation does and no Elasticsearch client's does.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
        })
}

/// `GET /` is two things: Elasticsearch's node info, which Beats and Logstash read before
/// their first bulk (behind the ingest token), and, for a browser, the dashboard (open).
/// Negotiated on `Accept` ahead of ingest's routes and its token: a `GET /` whose `Accept`
/// names `text/html` gets the page; anything else goes on to Elasticsearch's answer,
/// unchanged.
pub async fn negotiate(request: Request, next: Next) -> Response {
    if request.method() == Method::GET
        && request.uri().path() == "/"
        && wants_html(request.headers())
    {
        return page().await;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, value.parse().unwrap());
        headers
    }

    #[test]
    fn browsers_want_html_and_elasticsearch_clients_do_not() {
        // Chromium's and Firefox's navigations.
        assert!(wants_html(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(wants_html(&accept("TEXT/HTML")));
        // The Python client, Beats, Logstash, curl.
        assert!(!wants_html(&accept(
            "application/vnd.elasticsearch+json; compatible-with=8"
        )));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&HeaderMap::new()));
    }
}
