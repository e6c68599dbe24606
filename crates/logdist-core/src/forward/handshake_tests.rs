//! The handshake against digests and frames made by another implementation: Python's
//! `hashlib` and `msgpack` (the commands are above each constant), and `rmpv` for PINGs.

use rmpv::Value;

use super::*;

const SALT: &[u8] = b"0123456789abcdef";
const KEY: &str = "s3cret";
const CLIENT: &str = "client.example";
const SERVER: &str = "logdist-test";

fn nonce() -> Vec<u8> {
    (0u8..16).collect()
}

/// python3 -c "import hashlib; print(hashlib.sha512(b'0123456789abcdef' +
/// b'client.example' + bytes(range(16)) + b's3cret').hexdigest())"
const CLIENT_DIGEST: &str = "ccd3892b7788fe5ee7a27329b787a12a73fcacd5c2d5b608b837cc62f577c34637463c6d258384c900183b13448b8d1d42aee949dc86d49fbe74538db0307d22";

/// The same with b'logdist-test' for b'client.example'.
const SERVER_DIGEST: &str = "b7983b8044b4e13ce2c3e1cad243d4b0464f4cf8e99cc4fcfb7c992b8e38293a7399a83bd83e458fefd31a8f1c6393e2f3281f373a0c8ecea651822b5251eec3";

/// python3 -c "import msgpack; print(msgpack.packb(['HELO', {'nonce': bytes(range(16)),
/// 'auth': '', 'keepalive': True}], use_bin_type=True).hex())"
const HELO: &str = "92a448454c4f83a56e6f6e6365c410000102030405060708090a0b0c0d0e0fa461757468a0a96b656570616c697665c3";

/// python3 -c "import msgpack; print(msgpack.packb(['PONG', False, 'shared_key mismatch',
/// '', '']).hex())"
const PONG_MISMATCH: &str = "95a4504f4e47c2b37368617265645f6b6579206d69736d61746368a0a0";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn server() -> Server {
    Server {
        hostname: SERVER.to_owned(),
        key: KEY.parse().unwrap(),
    }
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).unwrap();
    out
}

/// A PING of `hostname` with `digest`; the salt a bin (as Python's msgpack writes bytes).
fn ping(hostname: &str, digest: &str) -> Vec<u8> {
    encode(&Value::Array(vec![
        "PING".into(),
        hostname.into(),
        Value::Binary(SALT.to_vec()),
        digest.into(),
        "".into(),
        "".into(),
    ]))
}

#[test]
fn digests_are_those_of_hashlib() {
    let nonce = nonce();
    let d = shared_key_digest(SALT, CLIENT.as_bytes(), &nonce, KEY.as_bytes());
    assert_eq!(std::str::from_utf8(&d).unwrap(), CLIENT_DIGEST);
    let d = shared_key_digest(SALT, SERVER.as_bytes(), &nonce, KEY.as_bytes());
    assert_eq!(std::str::from_utf8(&d).unwrap(), SERVER_DIGEST);
}

#[test]
fn helo_is_what_python_msgpack_writes() {
    assert_eq!(hex(&helo(&nonce())), HELO);
}

#[test]
fn the_right_key_is_answered_with_the_servers_proof() {
    let answer = answer_ping(&ping(CLIENT, CLIENT_DIGEST), &nonce(), &server());
    assert_eq!(answer.outcome, Ok(()));
    assert_eq!(answer.client.as_deref(), Some(CLIENT));
    let pong = rmpv::decode::read_value(&mut &answer.pong[..]).unwrap();
    assert_eq!(
        pong,
        Value::Array(vec![
            "PONG".into(),
            true.into(),
            "".into(),
            SERVER.into(),
            SERVER_DIGEST.into(),
        ])
    );
    // Uppercase hex is the same digest; a salt sent as a str (as Fluent Bit does) too.
    let answer = answer_ping(
        &ping(CLIENT, &CLIENT_DIGEST.to_ascii_uppercase()),
        &nonce(),
        &server(),
    );
    assert!(answer.outcome.is_ok());
    let as_str = encode(&Value::Array(vec![
        "PING".into(),
        CLIENT.into(),
        std::str::from_utf8(SALT).unwrap().into(),
        CLIENT_DIGEST.into(),
        Value::Nil,
        Value::Nil,
    ]));
    assert!(answer_ping(&as_str, &nonce(), &server()).outcome.is_ok());
}

#[test]
fn a_wrong_key_or_nonce_is_refused_without_the_servers_proof() {
    let answer = answer_ping(&ping(CLIENT, SERVER_DIGEST), &nonce(), &server());
    assert_eq!(answer.outcome, Err(Refusal::KeyMismatch));
    assert_eq!(answer.client.as_deref(), Some(CLIENT));
    assert_eq!(hex(&answer.pong), PONG_MISMATCH);
    // The right digest for another connection's nonce.
    let other: Vec<u8> = (1u8..17).collect();
    let answer = answer_ping(&ping(CLIENT, CLIENT_DIGEST), &other, &server());
    assert_eq!(answer.outcome, Err(Refusal::KeyMismatch));
    // Another key.
    let mut wrong = server();
    wrong.key = "s3cret2".parse().unwrap();
    let answer = answer_ping(&ping(CLIENT, CLIENT_DIGEST), &nonce(), &wrong);
    assert_eq!(answer.outcome, Err(Refusal::KeyMismatch));
    // A digest cut short.
    let answer = answer_ping(&ping(CLIENT, &CLIENT_DIGEST[..127]), &nonce(), &server());
    assert_eq!(answer.outcome, Err(Refusal::KeyMismatch));
}

#[test]
fn a_client_with_the_servers_hostname_is_refused() {
    let digest = shared_key_digest(SALT, SERVER.as_bytes(), &nonce(), KEY.as_bytes());
    let answer = answer_ping(
        &ping(SERVER, std::str::from_utf8(&digest).unwrap()),
        &nonce(),
        &server(),
    );
    assert_eq!(answer.outcome, Err(Refusal::SameHostname));
    let pong = rmpv::decode::read_value(&mut &answer.pong[..]).unwrap();
    assert_eq!(pong[1], Value::Boolean(false));
    assert_eq!(pong[2].as_str(), Some("same hostname as the server"));
}

#[test]
fn what_is_not_a_ping_is_refused() {
    let event = encode(&Value::Array(vec![
        "app".into(),
        1_700_000_000.into(),
        Value::Map(vec![("message".into(), "hi".into())]),
    ]));
    let five = encode(&Value::Array(vec![
        "PING".into(),
        CLIENT.into(),
        Value::Binary(SALT.to_vec()),
        CLIENT_DIGEST.into(),
        "".into(),
    ]));
    let number_for_salt = encode(&Value::Array(vec![
        "PING".into(),
        CLIENT.into(),
        7.into(),
        CLIENT_DIGEST.into(),
        "".into(),
        "".into(),
    ]));
    let mut cut = ping(CLIENT, CLIENT_DIGEST);
    cut.truncate(cut.len() - 20);
    for frame in [
        event,
        five,
        number_for_salt,
        cut,
        encode(&Value::Map(vec![])),
        Vec::new(),
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
    ] {
        let answer = answer_ping(&frame, &nonce(), &server());
        assert_eq!(answer.client, None);
        assert!(
            matches!(answer.outcome, Err(Refusal::NotPing(_))),
            "{frame:x?}: {:?}",
            answer.outcome
        );
        let pong = rmpv::decode::read_value(&mut &answer.pong[..]).unwrap();
        assert_eq!(pong[2].as_str(), Some("invalid ping message"));
    }
}

#[test]
fn reasons_fit_fluent_bits_buffer_and_keys_do_not_show() {
    for refusal in [
        Refusal::NotPing(String::new()),
        Refusal::SameHostname,
        Refusal::KeyMismatch,
    ] {
        assert!(refusal.reason().len() < 32);
    }
    let key: SharedKey = "hunter2".parse().unwrap();
    assert!(!format!("{key:?}").contains("hunter2"));
    assert!("".parse::<SharedKey>().is_err());
}
