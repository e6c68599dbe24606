use proptest::prelude::*;

use super::*;

/// A segment of `packets` (messages, payload), and the offset of each record.
fn segment(packets: &[(u32, Vec<u8>)]) -> (Vec<u8>, Vec<u64>) {
    let mut out = SEGMENT_MAGIC.to_vec();
    let mut offsets = Vec::new();
    for (messages, payload) in packets {
        offsets.push(out.len() as u64);
        encode_record(*messages, payload, &mut out);
    }
    (out, offsets)
}

/// The records read back, as (offset, messages, payload), and the damaged bytes.
fn read(bytes: &[u8]) -> (Vec<(u64, u32, Vec<u8>)>, u64) {
    let mut records = Vec::new();
    let mut damaged = 0;
    for item in Records::new(bytes) {
        match item {
            Item::Record(r) => records.push((r.offset, r.messages, r.payload.to_vec())),
            Item::Corrupt { len, .. } => damaged += len,
        }
    }
    (records, damaged)
}

/// Packets as a spool holds them: NDJSON, which holds no NUL byte.
fn packets() -> impl Strategy<Value = Vec<(u32, Vec<u8>)>> {
    prop::collection::vec((1u32..500, prop::collection::vec(1u8..=255, 1..200)), 0..12)
}

#[test]
fn a_record_is_its_header_then_its_payload() {
    let mut out = Vec::new();
    encode_record(2, b"{\"a\":1}\n{\"a\":2}\n", &mut out);
    assert_eq!(&out[..4], b"\0LDR");
    assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), 16);
    assert_eq!(u32::from_le_bytes(out[8..12].try_into().unwrap()), 2);
    // The CRC-32 of the length, the count and the payload, as Python computes it:
    // zlib.crc32(struct.pack("<II", 16, 2) + b'{"a":1}\n{"a":2}\n')
    assert_eq!(
        u32::from_le_bytes(out[12..16].try_into().unwrap()),
        0xE385_48A2
    );
    assert_eq!(out.len(), record_len(16));
    assert_eq!(read_record(&out), Some((2, &b"{\"a\":1}\n{\"a\":2}\n"[..])));
}

#[test]
fn a_torn_tail_costs_only_the_record_being_written() {
    let packets = vec![(1, b"{}\n".to_vec()), (3, b"[1,2,3]\n".to_vec())];
    let (bytes, offsets) = segment(&packets);
    let torn = &bytes[..bytes.len() - 3];
    let (records, damaged) = read(torn);
    assert_eq!(records, vec![(offsets[0], 1, b"{}\n".to_vec())]);
    assert_eq!(damaged, (torn.len() as u64) - offsets[1]);
}

#[test]
fn a_file_that_is_no_segment_is_all_damage() {
    assert_eq!(read(b"hello, world"), (vec![], 12));
    assert_eq!(read(b""), (vec![], 0));
    assert_eq!(read(b"LDSPOOL1"), (vec![], 0));
}

#[test]
fn release_entries_round_trip_and_damaged_ones_are_counted() {
    let mut bytes = Vec::new();
    for offset in [8, 40, 1 << 40] {
        bytes.extend_from_slice(&encode_release(offset));
    }
    bytes[RELEASE_ENTRY + 3] ^= 0x10;
    bytes.extend_from_slice(&encode_release(99)[..5]);
    let released = read_releases(&bytes);
    assert_eq!(released.offsets, HashSet::from([8, 1 << 40]));
    assert_eq!(released.damaged, 2);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_readers(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut covered = 0u64;
        let mut at = 0u64;
        for item in Records::new(&bytes) {
            let (offset, len) = match item {
                Item::Record(r) => (r.offset, r.len() as u64),
                Item::Corrupt { offset, len } => (offset, len),
            };
            // Items tile the file after its header, in order, without overlap.
            prop_assert!(offset >= at);
            prop_assert!(len > 0);
            at = offset + len;
            covered += len;
        }
        prop_assert!(covered <= bytes.len() as u64);
        let _ = read_record(&bytes);
        let _ = read_releases(&bytes);
    }

    #[test]
    fn what_is_written_is_read_back(packets in packets()) {
        let (bytes, offsets) = segment(&packets);
        let (records, damaged) = read(&bytes);
        prop_assert_eq!(damaged, 0);
        let expected: Vec<_> = packets
            .iter()
            .zip(&offsets)
            .map(|((m, p), o)| (*o, *m, p.clone()))
            .collect();
        prop_assert_eq!(records, expected);
    }

    #[test]
    fn a_truncated_segment_gives_back_every_whole_record(packets in packets(), cut in any::<prop::sample::Index>()) {
        let (bytes, offsets) = segment(&packets);
        let cut = cut.index(bytes.len() + 1);
        let (records, _) = read(&bytes[..cut]);
        let whole = offsets
            .iter()
            .zip(&packets)
            .filter(|(o, (_, p))| **o as usize + record_len(p.len()) <= cut)
            .count();
        prop_assert_eq!(records.len(), whole);
    }

    #[test]
    fn one_flipped_byte_costs_at_most_one_record(
        packets in packets(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        prop_assume!(!packets.is_empty());
        let (mut bytes, _) = segment(&packets);
        let at = SEGMENT_MAGIC.len() + at.index(bytes.len() - SEGMENT_MAGIC.len());
        bytes[at] ^= flip;
        let (records, damaged) = read(&bytes);
        prop_assert!(records.len() + 1 >= packets.len(), "{} of {}", records.len(), packets.len());
        prop_assert!(damaged > 0 || records.len() == packets.len());
        // Whatever is read back was written.
        for (_, messages, payload) in records {
            prop_assert!(packets.contains(&(messages, payload)));
        }
    }
}
