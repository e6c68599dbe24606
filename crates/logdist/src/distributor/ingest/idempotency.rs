//! Idempotent ingest. An agent that did not get its answer (a timeout, a reset, a
//! distributor restart behind a load balancer) sends the packet again; with the same
//! `Idempotency-Key` header, the retry gets the first answer back instead of being
//! delivered twice.
//!
//! A key is claimed when its packet arrives. While the first attempt is in flight, a retry
//! waits for its outcome; once it was answered 200/202 the answer is remembered for
//! `--idempotency-window` (bounded by `--idempotency-keys`, oldest forgotten first). A
//! first attempt that failed (400, 503, ...) is forgotten at once, so its retry is a new
//! attempt. A key reused with a different body is refused (422): it is a client bug, and
//! answering it from memory would lose the second packet.
//!
//! The keys live in this process: a retry that reaches another distributor of a fleet, or
//! this one after a restart, is delivered again (at-least-once, as without a key).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, StatusCode};
use bytes::Bytes;
use tokio::sync::watch;

use crate::http::ApiError;

/// The request header carrying the key.
pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header marking an answer given from memory.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// The answer a packet got, as its format worded it (see
/// [`HttpFormat::answer`](super::formats::HttpFormat::answer)): what a retry with its key
/// gets too, byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// 200 or 202.
    pub status: StatusCode,
    /// The body's media type.
    pub content_type: &'static str,
    /// The body that went with it.
    pub body: Bytes,
}

/// What to do with an arriving packet that carries a key.
#[derive(Debug)]
pub enum Claim {
    /// The first attempt (or the first since the last one failed): process it and
    /// [`complete`](Pending::complete) the claim with its answer.
    First(Pending),
    /// Already answered: send this again, deliver nothing.
    Replay(Answer),
    /// An attempt with this key is in flight: wait for it, then claim again.
    Wait(watch::Receiver<Option<Answer>>),
    /// The key was used for a different body.
    Mismatch,
}

/// The remembered keys of one distributor.
#[derive(Debug)]
pub struct Keys {
    inner: Mutex<Store>,
    window: Duration,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Store {
    entries: HashMap<Arc<str>, Entry>,
    /// Answered keys in the order they were answered, to forget them in that order.
    answered: VecDeque<(Instant, Arc<str>)>,
    /// Distinguishes claims of the same key, so a stale claim cannot remove a newer one.
    next_claim: u64,
}

#[derive(Debug)]
enum Entry {
    InFlight {
        fingerprint: u64,
        claim: u64,
        done: watch::Receiver<Option<Answer>>,
    },
    Answered {
        fingerprint: u64,
        answer: Answer,
        at: Instant,
    },
}

/// A claimed key whose packet is being processed. Dropped without being completed (the
/// packet was refused), it frees the key and wakes the retries waiting on it.
#[derive(Debug)]
pub struct Pending {
    keys: Arc<Keys>,
    key: Arc<str>,
    claim: u64,
    done: Option<watch::Sender<Option<Answer>>>,
}

impl Pending {
    /// Remembers the answer for the window and hands it to the retries waiting on it.
    pub fn complete(mut self, answer: &Answer) {
        let now = Instant::now();
        let mut store = self.keys.lock();
        if let Some(Entry::InFlight {
            fingerprint, claim, ..
        }) = store.entries.get(&self.key)
            && *claim == self.claim
        {
            let fingerprint = *fingerprint;
            store.entries.insert(
                self.key.clone(),
                Entry::Answered {
                    fingerprint,
                    answer: answer.clone(),
                    at: now,
                },
            );
            store.answered.push_back((now, self.key.clone()));
        }
        drop(store);
        if let Some(done) = self.done.take() {
            let _ = done.send(Some(answer.clone()));
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.done.is_none() {
            return;
        }
        let mut store = self.keys.lock();
        if let Some(Entry::InFlight { claim, .. }) = store.entries.get(&self.key)
            && *claim == self.claim
        {
            store.entries.remove(&self.key);
        }
        // Dropping the sender wakes the waiters; they claim again.
    }
}

impl Keys {
    /// Remembers answers for `window`, at most `capacity` of them.
    pub fn new(window: Duration, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::default(),
            window,
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `key` for a packet whose body hashes to `fingerprint`.
    pub fn claim(self: &Arc<Self>, key: &str, fingerprint: u64) -> Claim {
        let now = Instant::now();
        let mut store = self.lock();
        self.forget_old(&mut store, now);
        match store.entries.get(key) {
            Some(Entry::Answered {
                fingerprint: f,
                answer,
                ..
            }) => {
                return if *f == fingerprint {
                    Claim::Replay(answer.clone())
                } else {
                    Claim::Mismatch
                };
            }
            Some(Entry::InFlight {
                fingerprint: f,
                done,
                ..
            }) => {
                return if *f == fingerprint {
                    Claim::Wait(done.clone())
                } else {
                    Claim::Mismatch
                };
            }
            None => {}
        }
        let key: Arc<str> = Arc::from(key);
        let (tx, rx) = watch::channel(None);
        store.next_claim += 1;
        let claim = store.next_claim;
        store.entries.insert(
            key.clone(),
            Entry::InFlight {
                fingerprint,
                claim,
                done: rx,
            },
        );
        Claim::First(Pending {
            keys: self.clone(),
            key,
            claim,
            done: Some(tx),
        })
    }

    /// Forgets answers older than the window, and the oldest beyond the capacity.
    fn forget_old(&self, store: &mut Store, now: Instant) {
        while let Some((at, key)) = store.answered.front() {
            let expired = now.duration_since(*at) >= self.window;
            if !expired && store.answered.len() <= self.capacity {
                break;
            }
            let (at, key) = (*at, key.clone());
            store.answered.pop_front();
            // Only if it is still that answer (not a newer claim of the same key).
            if let Some(Entry::Answered { at: current, .. }) = store.entries.get(&key)
                && *current == at
            {
                store.entries.remove(&key);
            }
        }
    }

    /// Keys remembered or in flight.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

/// The request's `Idempotency-Key`, if it has one: 1 to 255 visible ASCII characters.
pub fn key_of(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "header Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(key))
}

/// A fingerprint of a request body (with its encoding), to tell a retry from a reuse.
pub fn fingerprint(path: &str, headers: &HeaderMap, body: &[u8]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    path.hash(&mut hasher);
    for name in [
        axum::http::header::CONTENT_TYPE,
        axum::http::header::CONTENT_ENCODING,
    ] {
        headers.get(&name).map(|v| v.as_bytes()).hash(&mut hasher);
    }
    body.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(messages: u32) -> Answer {
        Answer {
            status: StatusCode::OK,
            content_type: "application/json",
            body: Bytes::from(format!(
                r#"{{"messages":{messages},"status":"delivered","analyzer":"analyzer_1"}}"#
            )),
        }
    }

    #[test]
    fn a_retry_gets_the_first_answer() {
        let keys = Keys::new(Duration::from_secs(60), 100);
        let Claim::First(pending) = keys.claim("k1", 7) else {
            panic!("first claim")
        };
        assert!(matches!(keys.claim("k1", 7), Claim::Wait(_)));
        assert!(matches!(keys.claim("k1", 8), Claim::Mismatch));
        pending.complete(&answer(3));
        match keys.claim("k1", 7) {
            Claim::Replay(a) => assert_eq!(a, answer(3)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(keys.claim("k1", 8), Claim::Mismatch));
        assert!(matches!(keys.claim("k2", 7), Claim::First(_)));
    }

    #[test]
    fn a_failed_attempt_frees_the_key_and_wakes_waiters() {
        let keys = Keys::new(Duration::from_secs(60), 100);
        let Claim::First(pending) = keys.claim("k", 1) else {
            panic!()
        };
        let Claim::Wait(waiter) = keys.claim("k", 1) else {
            panic!()
        };
        drop(pending);
        // The sender is gone: the waiter learns it and claims again.
        assert!(waiter.has_changed().is_err());
        assert_eq!(keys.len(), 0);
        assert!(matches!(keys.claim("k", 1), Claim::First(_)));
    }

    #[test]
    fn waiters_see_the_answer() {
        let keys = Keys::new(Duration::from_secs(60), 100);
        let Claim::First(pending) = keys.claim("k", 1) else {
            panic!()
        };
        let Claim::Wait(waiter) = keys.claim("k", 1) else {
            panic!()
        };
        pending.complete(&answer(5));
        assert_eq!(*waiter.borrow(), Some(answer(5)));
    }

    #[test]
    fn answers_are_forgotten_after_the_window_and_beyond_capacity() {
        let keys = Keys::new(Duration::from_millis(30), 100);
        let Claim::First(p) = keys.claim("old", 1) else {
            panic!()
        };
        p.complete(&answer(1));
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(keys.claim("old", 1), Claim::First(_)));

        let keys = Keys::new(Duration::from_secs(60), 2);
        for key in ["a", "b", "c"] {
            let Claim::First(p) = keys.claim(key, 1) else {
                panic!()
            };
            p.complete(&answer(1));
        }
        // Claiming forgets the oldest beyond the capacity.
        assert!(matches!(keys.claim("b", 1), Claim::Replay(_)));
        assert!(matches!(keys.claim("a", 1), Claim::First(_)));
    }

    #[test]
    fn keys_are_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(key_of(&headers).unwrap(), None);
        headers.insert(HEADER, "agent-7-packet-42".parse().unwrap());
        assert_eq!(key_of(&headers).unwrap(), Some("agent-7-packet-42"));
        for bad in ["", "a b", &"k".repeat(256)] {
            headers.insert(HEADER, bad.parse().unwrap());
            assert!(key_of(&headers).is_err(), "{bad:?}");
        }
    }
}
