//! The HTTP plumbing that the distributor and the analyzer both use, and nothing of
//! either: the server edge ([`server`]: connections, TLS, timeouts, the express lane),
//! reading bodies ([`body`]), the JSON error every answer uses ([`error`]), bearer tokens
//! ([`auth`]), the client ([`client`]) and TLS configuration ([`tls`]).

pub mod auth;
pub mod body;
pub mod client;
pub mod error;
pub mod server;
pub mod tls;

pub use body::read_body;
pub use client::{HttpClient, http_client};
pub use error::ApiError;
