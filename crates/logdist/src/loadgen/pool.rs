//! The pool of pre-built request bodies the agents send.
//!
//! Formatting JSON per request would make the load generator the bottleneck on a small
//! machine, so every body is generated (and compressed) once at start; sending is then a
//! cheap `Bytes` clone. The pool is sized to a memory budget, so huge packets get fewer
//! distinct bodies rather than exhausting memory.
//!
//! With `--trace` every message must carry its own id, so the pool keeps its bodies
//! uncompressed along with where the ids go ([`IdSlots`]); [`Packet::stamped`] builds the
//! body of one send from them, compressing after stamping.

use std::io::Write;

use bytes::Bytes;

use super::args::{Encoding, Endpoint, PacketSize};
use super::encode;
use super::ids::IdSlots;
use super::messages::MessageGen;
use super::protocol::Protocol;

/// Bodies in a pool: enough distinct packets that the distributor does not see the same
/// few over and over, few enough to generate in well under a second.
const MAX_POOL: usize = 1024;
/// Even for huge packets, keep a few distinct bodies.
const MIN_POOL: usize = 16;
/// Rough memory budget of a pool (an NDJSON message is ~170 bytes).
const POOL_BYTES: f64 = 32.0 * 1024.0 * 1024.0;
const BYTES_PER_MESSAGE: f64 = 170.0;

/// A pre-built request body and the number of messages it carries.
#[derive(Debug, Clone)]
pub(crate) struct Packet {
    /// The body exactly as sent (a packet in its protocol's form, a single JSON object,
    /// compressed or not); in a pool built for ids, uncompressed NDJSON without ids.
    pub body: Bytes,
    /// Messages in the body: what an ack counts for.
    pub messages: u64,
    /// Where each message's id goes; only in a pool built for ids.
    pub id_slots: Option<IdSlots>,
}

impl Packet {
    /// The body of the send whose packet key is `key`: `"msg_id":"{key}-{i}"` added to
    /// message `i`, then compressed with `encoding`. Without id slots, `body` as it is.
    pub fn stamped(&self, key: &str, encoding: Encoding) -> std::io::Result<Bytes> {
        let Some(slots) = &self.id_slots else {
            return Ok(self.body.clone());
        };
        let mut text = Vec::new();
        slots.stamp(&self.body, key, &mut text);
        encode(text, encoding).map(Bytes::from)
    }
}

/// The bodies the agents cycle through, built once at start.
pub(crate) struct PacketPool {
    packets: Vec<Packet>,
}

impl PacketPool {
    /// Generates the pool, packets written in `protocol`'s form (`endpoint` message sends
    /// single messages, whatever the protocol). With `ids`, bodies stay uncompressed and
    /// carry their [`IdSlots`] (`encoding` is then applied per send by
    /// [`Packet::stamped`]); ids go in logdist's NDJSON only. CPU-bound: call it from a
    /// blocking thread.
    pub fn generate(
        endpoint: Endpoint,
        protocol: Protocol,
        size: PacketSize,
        encoding: Encoding,
        seed: u64,
        ids: bool,
    ) -> std::io::Result<Self> {
        if ids && endpoint == Endpoint::Packets && protocol != Protocol::Ndjson {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "message ids are stamped into NDJSON packets only",
            ));
        }
        let mut generator = MessageGen::new(seed);
        let count = pool_len(endpoint, size);
        let mut packets = Vec::with_capacity(count);
        for _ in 0..count {
            let (text, messages) = match endpoint {
                Endpoint::Message => (generator.single(), 1),
                Endpoint::Packets => {
                    let n = generator.packet_size(size);
                    let records = generator.records(n);
                    (encode::body(protocol, &records)?, u64::from(n))
                }
            };
            let packet = if ids {
                with_id_slots(text, messages)?
            } else {
                let body = match endpoint {
                    Endpoint::Message => text,
                    Endpoint::Packets => encode(text, encoding)?,
                };
                Packet {
                    body: body.into(),
                    messages,
                    id_slots: None,
                }
            };
            packets.push(packet);
        }
        Ok(Self { packets })
    }

    /// The `i`-th body, wrapping around.
    pub fn get(&self, i: usize) -> &Packet {
        &self.packets[i % self.packets.len()]
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }
}

/// An uncompressed packet with the places of its ids, checked against its size.
fn with_id_slots(text: Vec<u8>, messages: u64) -> std::io::Result<Packet> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let slots = IdSlots::find(&text).map_err(|e| invalid(e.to_string()))?;
    if slots.len() as u64 != messages {
        return Err(invalid(format!(
            "a generated body has {} messages, expected {messages}",
            slots.len()
        )));
    }
    Ok(Packet {
        body: text.into(),
        messages,
        id_slots: Some(slots),
    })
}

/// How many bodies to pre-build for this packet size, within the memory budget.
fn pool_len(endpoint: Endpoint, size: PacketSize) -> usize {
    match endpoint {
        Endpoint::Message => MAX_POOL,
        Endpoint::Packets => {
            let fits = POOL_BYTES / (size.mean() * BYTES_PER_MESSAGE);
            (fits as usize).clamp(MIN_POOL, MAX_POOL)
        }
    }
}

/// Compresses `body` with `encoding`.
fn encode(body: Vec<u8>, encoding: Encoding) -> std::io::Result<Vec<u8>> {
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&body)?;
            encoder.finish()
        }
        Encoding::Zstd => zstd::bulk::compress(&body, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::templates::SEVERITIES;
    use std::collections::BTreeSet;
    use std::io::Read;

    /// Checks one NDJSON line and returns its severity.
    fn check_message(line: &[u8]) -> String {
        let value: serde_json::Value = serde_json::from_slice(line).expect("line is JSON");
        let object = value.as_object().expect("line is a JSON object");
        assert!(object["timestamp"].is_u64(), "integer timestamp in {value}");
        for field in ["severity", "source", "message", "host"] {
            assert!(object[field].is_string(), "string {field} in {value}");
        }
        assert!(
            !object["message"].as_str().unwrap_or("{").contains('{'),
            "filled: {value}"
        );
        object["severity"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn packets_are_valid_ndjson_in_range() {
        let size = PacketSize { min: 3, max: 40 };
        let pool = PacketPool::generate(
            Endpoint::Packets,
            Protocol::Ndjson,
            size,
            Encoding::Identity,
            1,
            false,
        )
        .expect("generated");
        assert_eq!(pool.len(), MAX_POOL);
        let mut severities = BTreeSet::new();
        let mut sizes = BTreeSet::new();
        for i in 0..pool.len() {
            let packet = pool.get(i);
            assert!(packet.body.ends_with(b"\n"));
            let lines: Vec<&[u8]> = packet.body.split(|b| *b == b'\n').collect();
            // The body ends in '\n', so the split yields one empty tail.
            assert_eq!(lines.last(), Some(&&b""[..]));
            let lines = &lines[..lines.len() - 1];
            assert_eq!(lines.len() as u64, packet.messages);
            assert!((3..=40).contains(&packet.messages));
            sizes.insert(packet.messages);
            for line in lines {
                severities.insert(check_message(line));
            }
        }
        assert!(sizes.len() > 10, "sizes vary over the range");
        let all: BTreeSet<String> = SEVERITIES
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        assert_eq!(severities, all);
    }

    #[test]
    fn message_bodies_are_single_objects() {
        let pool = PacketPool::generate(
            Endpoint::Message,
            Protocol::Ndjson,
            PacketSize::fixed(50),
            Encoding::Identity,
            2,
            false,
        )
        .expect("generated");
        let packet = pool.get(7);
        assert_eq!(packet.messages, 1);
        check_message(&packet.body);
    }

    #[test]
    fn compressed_bodies_decode() {
        let gz = PacketPool::generate(
            Endpoint::Packets,
            Protocol::Ndjson,
            PacketSize::fixed(5),
            Encoding::Gzip,
            3,
            false,
        )
        .expect("generated");
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&gz.get(0).body[..])
            .read_to_end(&mut text)
            .expect("gzip");
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 5);

        let zs = PacketPool::generate(
            Endpoint::Packets,
            Protocol::Ndjson,
            PacketSize::fixed(5),
            Encoding::Zstd,
            3,
            false,
        )
        .expect("generated");
        let text = zstd::decode_all(&zs.get(0).body[..]).expect("zstd");
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 5);
    }

    /// Parses an NDJSON body and returns each line's `msg_id`, checking every line.
    fn msg_ids(text: &[u8]) -> Vec<String> {
        assert!(text.ends_with(b"\n"));
        text[..text.len() - 1]
            .split(|b| *b == b'\n')
            .map(|line| {
                check_message(line);
                let value: serde_json::Value = serde_json::from_slice(line).expect("JSON");
                value["msg_id"]
                    .as_str()
                    .expect("a string msg_id")
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn stamped_packets_give_every_message_its_own_id() {
        let size = PacketSize { min: 1, max: 60 };
        let pool = PacketPool::generate(
            Endpoint::Packets,
            Protocol::Ndjson,
            size,
            Encoding::Gzip,
            4,
            true,
        )
        .expect("generated");
        for i in 0..50 {
            let packet = pool.get(i);
            let key = format!("run-2-{i}");
            let body = packet.stamped(&key, Encoding::Identity).expect("stamped");
            let ids = msg_ids(&body);
            assert_eq!(ids.len() as u64, packet.messages, "line count unchanged");
            let expected: Vec<String> =
                (0..packet.messages).map(|m| format!("{key}-{m}")).collect();
            assert_eq!(ids, expected);
            // Without ids, the same text as the unstamped pool body.
            let plain: Vec<&[u8]> = packet.body.split(|b| *b == b'\n').collect();
            assert_eq!(plain.len(), body.split(|b| *b == b'\n').count());
        }
        let ids: BTreeSet<String> = (0..pool.len())
            .flat_map(|i| {
                msg_ids(
                    &pool
                        .get(i)
                        .stamped(&format!("k-0-{i}"), Encoding::Identity)
                        .expect("stamped"),
                )
            })
            .collect();
        let total: u64 = (0..pool.len()).map(|i| pool.get(i).messages).sum();
        assert_eq!(ids.len() as u64, total, "ids are distinct over packets");
    }

    #[test]
    fn stamped_bodies_are_compressed_after_stamping() {
        let pool = PacketPool::generate(
            Endpoint::Packets,
            Protocol::Ndjson,
            PacketSize::fixed(7),
            Encoding::Zstd,
            5,
            true,
        )
        .expect("generated");
        let packet = pool.get(3);
        let plain = packet
            .stamped("p-1-3", Encoding::Identity)
            .expect("stamped");
        assert_eq!(msg_ids(&plain).len(), 7);

        let gz = packet.stamped("p-1-3", Encoding::Gzip).expect("gzip");
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut text)
            .expect("gzip");
        assert_eq!(text, plain);

        let zs = packet.stamped("p-1-3", Encoding::Zstd).expect("zstd");
        assert_eq!(zstd::decode_all(&zs[..]).expect("zstd"), plain);
    }

    #[test]
    fn stamped_single_messages_get_id_0() {
        let pool = PacketPool::generate(
            Endpoint::Message,
            Protocol::Ndjson,
            PacketSize::fixed(50),
            Encoding::Gzip,
            6,
            true,
        )
        .expect("generated");
        let packet = pool.get(1);
        assert_eq!(packet.messages, 1);
        let body = packet
            .stamped("m-0-9", Encoding::Identity)
            .expect("stamped");
        check_message(&body);
        let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(value["msg_id"], "m-0-9-0");
    }

    #[test]
    fn pools_without_ids_send_bodies_unchanged() {
        let pool = PacketPool::generate(
            Endpoint::Packets,
            Protocol::Ndjson,
            PacketSize::fixed(3),
            Encoding::Identity,
            7,
            false,
        )
        .expect("generated");
        let packet = pool.get(0);
        assert!(packet.id_slots.is_none());
        assert_eq!(
            packet.stamped("x-0-0", Encoding::Gzip).expect("as is"),
            packet.body
        );
    }

    #[test]
    fn pool_shrinks_for_big_packets() {
        assert_eq!(pool_len(Endpoint::Packets, PacketSize::fixed(1)), MAX_POOL);
        assert_eq!(
            pool_len(Endpoint::Packets, PacketSize::fixed(1_000_000)),
            MIN_POOL
        );
        let mid = pool_len(Endpoint::Packets, PacketSize::fixed(1000));
        assert!((MIN_POOL..MAX_POOL).contains(&mid));
    }
}
