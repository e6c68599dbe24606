//! The pool of pre-built request bodies the agents send.
//!
//! Formatting JSON per request would make the load generator the bottleneck on a small
//! machine, so every body is generated (and compressed) once at start; sending is then a
//! cheap `Bytes` clone. The pool is sized to a memory budget, so huge packets get fewer
//! distinct bodies rather than exhausting memory.

use std::io::Write;

use bytes::Bytes;

use super::args::{Encoding, Endpoint, PacketSize};
use super::messages::MessageGen;

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
    /// The body exactly as sent (NDJSON, a single JSON object, or compressed NDJSON).
    pub body: Bytes,
    /// Messages in the body: what an ack counts for.
    pub messages: u64,
}

/// The bodies the agents cycle through, built once at start.
pub(crate) struct PacketPool {
    packets: Vec<Packet>,
}

impl PacketPool {
    /// Generates the pool. CPU-bound: call it from a blocking thread.
    pub fn generate(
        endpoint: Endpoint,
        size: PacketSize,
        encoding: Encoding,
        seed: u64,
    ) -> std::io::Result<Self> {
        let mut generator = MessageGen::new(seed);
        let count = pool_len(endpoint, size);
        let mut packets = Vec::with_capacity(count);
        for _ in 0..count {
            let packet = match endpoint {
                Endpoint::Message => Packet {
                    body: generator.single().into(),
                    messages: 1,
                },
                Endpoint::Packets => {
                    let n = generator.packet_size(size);
                    let body = encode(generator.packet(n), encoding)?;
                    Packet {
                        body: body.into(),
                        messages: u64::from(n),
                    }
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
        let pool = PacketPool::generate(Endpoint::Packets, size, Encoding::Identity, 1)
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
            PacketSize::fixed(50),
            Encoding::Identity,
            2,
        )
        .expect("generated");
        let packet = pool.get(7);
        assert_eq!(packet.messages, 1);
        check_message(&packet.body);
    }

    #[test]
    fn compressed_bodies_decode() {
        let gz = PacketPool::generate(Endpoint::Packets, PacketSize::fixed(5), Encoding::Gzip, 3)
            .expect("generated");
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&gz.get(0).body[..])
            .read_to_end(&mut text)
            .expect("gzip");
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 5);

        let zs = PacketPool::generate(Endpoint::Packets, PacketSize::fixed(5), Encoding::Zstd, 3)
            .expect("generated");
        let text = zstd::decode_all(&zs.get(0).body[..]).expect("zstd");
        assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 5);
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
