//! `POST /packets` on the express lane of the server edge (see
//! [`crate::http::server::Express`]): the common request, read and answered without
//! hyper's router.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;

use super::formats::PACKETS;
use super::{Encoding, Ingest, idempotency, process, respond};
use crate::distributor::delivery::via;
use crate::http::ApiError;
use crate::http::body::body_too_slow;
use crate::http::server::{Head, Reply};

/// `POST /packets` on the express lane: every such request an agent sends, except one
/// with an `Idempotency-Key`, from another distributor, or without the ingest token
/// (hyper's router answers those), answered as the router would answer it.
#[derive(Clone)]
pub struct Express(pub Arc<Ingest>);

impl crate::http::server::Express for Express {
    fn take(&self, head: &Head) -> Option<usize> {
        let settings = &self.0.settings;
        // A request with a key to remember, or from another distributor (`Logdist-Via`),
        // is hyper's.
        let ours = head.path() == PACKETS.path.as_bytes()
            && head.header(idempotency::HEADER.as_str()).is_none()
            && head.header(via::HEADER.as_str()).is_none()
            && settings.token.as_deref().is_none_or(|token| {
                crate::http::auth::token_matches(token, head.header("authorization").as_deref())
            });
        ours.then_some(settings.max_body)
    }

    fn body_timeout(&self) -> Duration {
        self.0.settings.body_timeout
    }

    async fn answer(&self, head: Head, body: Bytes) -> Reply {
        let value = |name: &str| {
            head.header(name)
                .map(|v| {
                    HeaderValue::from_maybe_shared(v).map_err(|_| {
                        ApiError::BadRequest(format!("header {name} is not a valid value"))
                    })
                })
                .transpose()
        };
        let result = async {
            let encoding = Encoding {
                content_type: value("content-type")?,
                content_encoding: value("content-encoding")?,
                index: None,
            };
            let media_type = PACKETS.media_type(encoding.content_type.as_ref())?;
            process(&self.0, &encoding, media_type, body, &PACKETS, None).await
        };
        match result.await {
            Ok(answer) => answer.into_reply(),
            Err(e) => respond(&PACKETS, Err(e)).into(),
        }
    }

    fn late(&self) -> Response {
        respond(&PACKETS, Err(body_too_slow(self.0.settings.body_timeout)))
    }
}
