//! The forward protocol's shared-key handshake (Forward Protocol Specification v1,
//! "Handshake Messages"), the server's side, without I/O: what to send and what to make
//! of what comes back.
//!
//! 1. On accept, the server sends HELO: `["HELO", {"nonce": NONCE, "auth": "", "keepalive": true}]`.
//!    `nonce` is random bytes the caller draws for each connection ([`helo`]); an empty
//!    `auth` says that no username and password are asked for.
//! 2. The client's first frame is PING: `["PING", client_hostname, shared_key_salt,
//!    hexdigest, username, password]`, where `hexdigest` is the lowercase hex of
//!    `sha512(salt + client_hostname + nonce + shared_key)`.
//! 3. The server answers PONG ([`answer_ping`]): `["PONG", true, "", server_hostname,
//!    hexdigest]`, `hexdigest` being `sha512(salt + server_hostname + nonce +
//!    shared_key)`, which proves to the client that the server knows the key too; or
//!    `["PONG", false, reason, "", ""]` (as Fluentd answers), and the connection is
//!    closed.
//!
//! A PING is refused when it is not a PING of six elements, when its digest is not the
//! expected one, or when the client says it has the server's own hostname (Fluentd refuses
//! that too: a node forwarding to itself). Usernames and passwords are not asked for, so
//! those fields are read (any string, bin or nil) and not checked.
//!
//! Strings of a PING may be MessagePack str or bin, and need not be UTF-8: Fluent Bit
//! sends its 16 random salt bytes as a str.

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use super::msgpack::Writer;

/// How many random bytes the server's nonce should have, as Fluentd's (16).
pub const NONCE_LEN: usize = 16;

/// A shared key: its value is never shown by `Debug`, so that a configuration printed
/// for debugging does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedKey(String);

impl SharedKey {
    /// The key's bytes, as they go into the digests.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(<hidden>)")
    }
}

impl std::str::FromStr for SharedKey {
    type Err = String;

    /// Any non-empty text.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a shared key cannot be empty".to_owned());
        }
        Ok(Self(s.to_owned()))
    }
}

/// What the server proves itself with: its hostname and the shared key.
#[derive(Debug, Clone)]
pub struct Server {
    /// Sent in the PONG and hashed into its digest (`--forward-self-hostname`).
    pub hostname: String,
    /// The key both sides know (`--forward-shared-key`).
    pub key: SharedKey,
}

/// Why a PING was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The frame is not a PING of six elements, or one of them is not a string.
    #[error("the first frame is not a PING: {0}")]
    NotPing(String),
    /// The client has the server's own hostname.
    #[error("the client's hostname is the server's own")]
    SameHostname,
    /// The digest is not the one the shared key gives.
    #[error("the shared key does not match")]
    KeyMismatch,
}

impl Refusal {
    /// The reason the PONG gives the client. Each is shorter than 32 bytes: Fluent Bit
    /// copies the reason into a buffer of 32 bytes without checking its length.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotPing(_) => "invalid ping message",
            Refusal::SameHostname => "same hostname as the server",
            Refusal::KeyMismatch => "shared_key mismatch",
        }
    }
}

/// The answer to a PING: the PONG to send, and whether the client is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The PONG's bytes, sent either way.
    pub pong: Vec<u8>,
    /// The hostname the client gave (lossy UTF-8, for logs), when its PING could be read.
    pub client: Option<String>,
    /// Whether the client is in; why not.
    pub outcome: Result<(), Refusal>,
}

/// The HELO frame carrying `nonce`.
pub fn helo(nonce: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(nonce.len() + 40);
    w.array_len(2);
    w.str("HELO");
    w.map_len(3);
    w.str("nonce");
    w.bin(nonce);
    w.str("auth");
    w.str("");
    w.str("keepalive");
    w.bool(true);
    w.into_vec()
}

/// A PONG frame.
pub fn pong(ok: bool, reason: &str, hostname: &str, hexdigest: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(reason.len() + hostname.len() + hexdigest.len() + 16);
    w.array_len(5);
    w.str("PONG");
    w.bool(ok);
    w.str(reason);
    w.str(hostname);
    // The digest is hex, so ASCII: a str, as Fluentd and Fluent Bit send it.
    w.str(std::str::from_utf8(hexdigest).unwrap_or(""));
    w.into_vec()
}

/// The lowercase hex of `sha512(salt + hostname + nonce + key)`: 128 ASCII bytes.
pub fn shared_key_digest(salt: &[u8], hostname: &[u8], nonce: &[u8], key: &[u8]) -> [u8; 128] {
    let mut hash = Sha512::new();
    hash.update(salt);
    hash.update(hostname);
    hash.update(nonce);
    hash.update(key);
    let sum = hash.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 128];
    for (i, byte) in sum.iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
    }
    out
}

/// A PING's fields, borrowed from its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping<'a> {
    /// The client's `self_hostname`.
    pub hostname: &'a [u8],
    /// Random bytes the client chose.
    pub salt: &'a [u8],
    /// The hex digest the client computed.
    pub hexdigest: &'a [u8],
}

/// Reads `frame` (one whole MessagePack value, as [`super::decode::frame`] cuts them) as
/// a PING.
pub fn read_ping(frame: &[u8]) -> Result<Ping<'_>, Refusal> {
    let not_ping = |why: &str| Refusal::NotPing(why.to_owned());
    let mut rd = frame;
    let len = array_len(&mut rd).ok_or_else(|| not_ping("not an array"))?;
    let kind = text(&mut rd).ok_or_else(|| not_ping("its first element is not a string"))?;
    if kind != b"PING" {
        return Err(Refusal::NotPing(format!(
            "it begins with {:?}",
            String::from_utf8_lossy(&kind[..kind.len().min(64)])
        )));
    }
    if len != 6 {
        return Err(Refusal::NotPing(format!(
            "a PING has 6 elements, this one {len}"
        )));
    }
    let hostname = field(&mut rd, "client hostname")?;
    let salt = field(&mut rd, "shared key salt")?;
    let hexdigest = field(&mut rd, "shared key digest")?;
    // Username and password: asked for by no HELO of logdist's, so only read.
    for name in ["username", "password"] {
        if rd.first() == Some(&0xc0) {
            rd = &rd[1..];
        } else {
            field(&mut rd, name)?;
        }
    }
    Ok(Ping {
        hostname,
        salt,
        hexdigest,
    })
}

/// A PING's string field called `name`.
fn field<'a>(rd: &mut &'a [u8], name: &str) -> Result<&'a [u8], Refusal> {
    text(rd).ok_or_else(|| Refusal::NotPing(format!("its {name} is not a string")))
}

/// Checks the PING in `frame` against the `nonce` this connection's HELO carried, and
/// writes the PONG.
pub fn answer_ping(frame: &[u8], nonce: &[u8], server: &Server) -> Answer {
    let read = read_ping(frame);
    let client = read
        .as_ref()
        .ok()
        .map(|ping| String::from_utf8_lossy(ping.hostname).into_owned());
    let outcome = read.and_then(|ping| {
        if ping.hostname == server.hostname.as_bytes() {
            return Err(Refusal::SameHostname);
        }
        let expected = shared_key_digest(ping.salt, ping.hostname, nonce, server.key.as_bytes());
        // `subtle` rather than `==` or a loop of our own: the time of the comparison must
        // not tell how many leading bytes of a guess were right, and its `ct_eq` keeps the
        // optimizer from turning the loop back into an early exit. It is what
        // `http/auth.rs` compares tokens with already. Only the length (128, public) may
        // end it early. Hex digits are compared lowercase: the spec says hexdigest, and
        // some encoders write uppercase.
        let given = ping.hexdigest.to_ascii_lowercase();
        if bool::from(given.as_slice().ct_eq(&expected[..])) {
            Ok(ping)
        } else {
            Err(Refusal::KeyMismatch)
        }
    });
    match outcome {
        Ok(ping) => {
            let digest = shared_key_digest(
                ping.salt,
                server.hostname.as_bytes(),
                nonce,
                server.key.as_bytes(),
            );
            Answer {
                pong: pong(true, "", &server.hostname, &digest),
                client,
                outcome: Ok(()),
            }
        }
        Err(refusal) => Answer {
            pong: pong(false, refusal.reason(), "", b""),
            client,
            outcome: Err(refusal),
        },
    }
}

/// An array's header, its count.
fn array_len(rd: &mut &[u8]) -> Option<u32> {
    let (&marker, rest) = rd.split_first()?;
    *rd = rest;
    match marker {
        0x90..=0x9f => Some(u32::from(marker & 0x0f)),
        0xdc => be(rd, 2).map(|n| n as u32),
        0xdd => be(rd, 4).map(|n| n as u32),
        _ => None,
    }
}

/// A str's or bin's bytes.
fn text<'a>(rd: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&marker, rest) = rd.split_first()?;
    *rd = rest;
    let len = match marker {
        0xa0..=0xbf => usize::from(marker & 0x1f),
        0xd9 | 0xc4 => be(rd, 1)?,
        0xda | 0xc5 => be(rd, 2)?,
        0xdb | 0xc6 => be(rd, 4)?,
        _ => return None,
    };
    if rd.len() < len {
        return None;
    }
    let (bytes, rest) = rd.split_at(len);
    *rd = rest;
    Some(bytes)
}

/// A big-endian unsigned integer of `n` bytes (1, 2 or 4).
fn be(rd: &mut &[u8], n: usize) -> Option<usize> {
    if rd.len() < n {
        return None;
    }
    let (bytes, rest) = rd.split_at(n);
    *rd = rest;
    Some(
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
    )
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
