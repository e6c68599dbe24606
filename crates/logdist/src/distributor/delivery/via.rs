//! Loop detection at run time: every delivery carries `Logdist-Via`, the ids of the
//! distributors its packets have passed through, this one's first. A distributor that
//! finds its own id in an incoming request's `Logdist-Via` answers 508 Loop Detected, and
//! the distributor that sent it takes that analyzer out of routing.
//!
//! Registration already refuses an analyzer URL that resolves to the distributor itself
//! (see `self_loop`). This catches what a check at registration cannot: a name that
//! resolves elsewhere later, a forwarded port, or a loop through another distributor
//! (A delivers to B, which delivers back to A).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::distributor::job::Job;
use crate::http::ApiError;

/// The header.
pub const HEADER: HeaderName = HeaderName::from_static("logdist-via");

/// Longest `Logdist-Via` kept: a chain longer than this is cut (its oldest ids go), which
/// can only delay the detection of a loop through more distributors than fit in it.
const MAX_CHAIN: usize = 1024;

/// A new id for this distributor: 16 random hexadecimal digits.
pub fn new_id() -> Arc<str> {
    Arc::from(format!("{:016x}", rand::random::<u64>()))
}

/// The chain an incoming request carries, or 508 if `own` is in it.
pub fn incoming(headers: &HeaderMap, own: &str) -> Result<Option<Arc<str>>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let chain = value.to_str().unwrap_or("").trim();
    if chain.split(',').any(|id| id.trim() == own) {
        return Err(ApiError::LoopDetected(format!(
            "this packet has already passed through this distributor ({HEADER}: {chain}); an analyzer registered here leads back to it"
        )));
    }
    Ok((!chain.is_empty()).then(|| Arc::from(chain)))
}

/// The `Logdist-Via` of a delivery of `jobs` from the distributor `own`: `own`, then the
/// chains the packets arrived with, without repeats. `plain` is `own` alone, ready made,
/// for the usual delivery whose packets all came from agents.
pub fn outgoing(own: &str, plain: &HeaderValue, jobs: &[Job]) -> HeaderValue {
    if jobs.iter().all(|job| job.via.is_none()) {
        return plain.clone();
    }
    let mut ids: Vec<&str> = vec![own];
    for id in jobs
        .iter()
        .filter_map(|job| job.via.as_deref())
        .flat_map(|chain| chain.split(','))
        .map(str::trim)
    {
        if !id.is_empty() && !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut chain = ids.join(", ");
    if chain.len() > MAX_CHAIN {
        let mut end = MAX_CHAIN;
        while !chain.is_char_boundary(end) {
            end -= 1;
        }
        chain.truncate(end);
    }
    HeaderValue::from_str(&chain).unwrap_or_else(|_| plain.clone())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn job(via: Option<&str>) -> Job {
        Job {
            via: via.map(Arc::from),
            ..Job::of(Bytes::from_static(b"{}\n"))
        }
    }

    fn headers(via: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_str(via).unwrap());
        headers
    }

    #[test]
    fn a_request_through_this_distributor_is_a_loop() {
        assert!(incoming(&HeaderMap::new(), "aa").unwrap().is_none());
        assert_eq!(
            incoming(&headers("bb, cc"), "aa").unwrap().as_deref(),
            Some("bb, cc")
        );
        for chain in ["aa", "bb, aa", "aa,bb", " bb ,aa "] {
            let error = incoming(&headers(chain), "aa").unwrap_err();
            assert_eq!(error.status().as_u16(), 508, "{chain}");
        }
        assert!(
            incoming(&headers("aaa"), "aa").is_ok(),
            "ids are compared whole"
        );
    }

    #[test]
    fn a_delivery_carries_every_chain_once() {
        let plain = HeaderValue::from_static("aa");
        assert_eq!(outgoing("aa", &plain, &[job(None), job(None)]), "aa");
        let jobs = [
            job(None),
            job(Some("bb, cc")),
            job(Some("cc")),
            job(Some("aa, dd")),
        ];
        assert_eq!(outgoing("aa", &plain, &jobs), "aa, bb, cc, dd");
        let long = (0..500)
            .map(|i| format!("{i:04}"))
            .collect::<Vec<_>>()
            .join(",");
        let value = outgoing("aa", &plain, &[job(Some(&long))]);
        assert!(value.len() <= MAX_CHAIN && value.to_str().unwrap().starts_with("aa, 0000"));
    }
}
