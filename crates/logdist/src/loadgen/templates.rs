//! The vocabulary of generated messages: severities and their weights, sources, and
//! the templates their lines are made from. Data only; [`super::messages`] fills it in.

/// Severities with their weights: mostly INFO, some DEBUG and WARN, few ERROR and FATAL.
pub(super) const SEVERITIES: [(&str, u32); 5] = [
    ("DEBUG", 15),
    ("INFO", 70),
    ("WARN", 10),
    ("ERROR", 4),
    ("FATAL", 1),
];

/// A source (service name), its usual lines and its error lines. Placeholders:
/// `{n}` a small count, `{ms}` a latency, `{id}` a hex id, `{user}` a user id,
/// `{path}` an URL path, `{ip}` an address, `{status}` an HTTP status.
pub(super) struct Source {
    pub name: &'static str,
    pub normal: &'static [&'static str],
    pub errors: &'static [&'static str],
}

pub(super) const SOURCES: &[Source] = &[
    Source {
        name: "api",
        normal: &[
            "GET {path} {status} in {ms}ms request_id={id}",
            "POST {path} {status} in {ms}ms user={user}",
            "rate limit at {n}% for client {ip}",
        ],
        errors: &["upstream timeout after {ms}ms on {path} request_id={id}"],
    },
    Source {
        name: "auth",
        normal: &[
            "user {user} logged in from {ip}",
            "token refreshed for user {user}, expires in {n}m",
            "password check took {ms}ms",
        ],
        errors: &["invalid signature on token {id} from {ip}"],
    },
    Source {
        name: "db",
        normal: &[
            "query took {ms}ms rows={n} plan={id}",
            "connection pool {n}/64 in use",
            "checkpoint complete: wrote {n} buffers in {ms}ms",
        ],
        errors: &["deadlock detected, transaction {id} rolled back"],
    },
    Source {
        name: "cache",
        normal: &[
            "hit ratio {n}% over the last minute",
            "evicted {n} keys in {ms}ms",
            "GET session:{id} miss",
        ],
        errors: &["lost connection to replica {ip}, retrying in {n}s"],
    },
    Source {
        name: "worker",
        normal: &[
            "job {id} done in {ms}ms, {n} items",
            "picked job {id} from queue emails, attempt {n}",
        ],
        errors: &["job {id} failed after {n} attempts: exit status 1"],
    },
    Source {
        name: "nginx",
        normal: &[
            "{ip} \"GET {path} HTTP/1.1\" {status} {n} {ms}ms",
            "{ip} \"POST {path} HTTP/1.1\" {status} {n} {ms}ms",
        ],
        errors: &["connect() failed (111: Connection refused) while connecting to upstream {ip}"],
    },
    Source {
        name: "payments",
        normal: &[
            "charge {id} authorized for user {user}, {n}.99 EUR",
            "refund {id} queued in {ms}ms",
        ],
        errors: &["charge {id} declined by issuer: insufficient funds"],
    },
];

pub(super) const PATHS: &[&str] = &[
    "/v1/orders",
    "/v1/orders/{id}",
    "/v1/users/{user}",
    "/v1/cart",
    "/healthz",
    "/static/app.js",
    "/v2/search",
];
pub(super) const STATUSES: &[u16] = &[200, 200, 200, 200, 201, 204, 301, 304, 400, 404, 429, 500];
