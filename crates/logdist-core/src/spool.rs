//! The spool's on-disk format: what `--spool` writes and reads back, with no I/O.
//!
//! A spool is a directory of *segments*. Each segment is an append-only file of packets;
//! beside it, a *release* file lists the packets of the segment that were delivered.
//!
//! **Segment:** the 8 bytes [`SEGMENT_MAGIC`], then records, each:
//!
//! ```text
//! magic "\0LDR" | payload length u32 | messages u32 | crc32 u32 | payload (the packet's NDJSON)
//! ```
//!
//! All integers are little-endian. The CRC-32 (IEEE) covers the length, the message count
//! and the payload. A record is known by its *offset* in its segment. The magic starts
//! with a NUL byte, which JSON text never holds: after a damaged record, the reader finds
//! the next one by its magic ([`Records`]), so one flipped byte costs one record, and a
//! torn tail costs only what was being written.
//!
//! **Release file:** 12-byte entries, each the offset of a delivered record (u64) and the
//! CRC-32 of those 8 bytes. A torn or damaged entry is skipped: the record it released is
//! then delivered again after a restart, which duplicates it and loses nothing.

use std::collections::HashSet;

/// The first bytes of every segment: the format and its version.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LDSPOOL1";

/// The first bytes of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"\0LDR";

/// A record's bytes before its payload.
pub const RECORD_HEADER: usize = 16;

/// The bytes of one release entry.
pub const RELEASE_ENTRY: usize = 12;

/// The bytes of a record of `payload` bytes.
pub fn record_len(payload: usize) -> usize {
    RECORD_HEADER + payload
}

/// Appends the record of a packet of `messages` messages whose NDJSON is `payload` to
/// `out`. Payloads over 4 GiB cannot be written (packets are bounded by `--max-body`,
/// far below); the caller checks with [`fits`].
pub fn encode_record(messages: u32, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(record_len(payload.len()));
    out.extend_from_slice(&record_header(messages, payload));
    out.extend_from_slice(payload);
}

/// The header of the record of `payload`, for a writer that writes the payload from where
/// it already is.
pub fn record_header(messages: u32, payload: &[u8]) -> [u8; RECORD_HEADER] {
    let len = u32::try_from(payload.len()).expect("a payload the caller checked with fits()");
    let mut header = [0; RECORD_HEADER];
    header[..4].copy_from_slice(&RECORD_MAGIC);
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..12].copy_from_slice(&messages.to_le_bytes());
    header[12..].copy_from_slice(&checksum(len, messages, payload).to_le_bytes());
    header
}

/// Whether a payload of `len` bytes can be written as one record.
pub fn fits(len: usize) -> bool {
    u32::try_from(len).is_ok()
}

/// The release entry of the record at `offset`.
pub fn encode_release(offset: u64) -> [u8; RELEASE_ENTRY] {
    let mut entry = [0; RELEASE_ENTRY];
    entry[..8].copy_from_slice(&offset.to_le_bytes());
    entry[8..].copy_from_slice(&crc32fast::hash(&offset.to_le_bytes()).to_le_bytes());
    entry
}

/// The CRC-32 of a record's length, message count and payload.
fn checksum(len: u32, messages: u32, payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(&messages.to_le_bytes());
    crc.update(payload);
    crc.finalize()
}

/// One readable record of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Where it starts in its segment: its name in release entries.
    pub offset: u64,
    /// Its messages.
    pub messages: u32,
    /// The packet's NDJSON.
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Its bytes in the segment, header included.
    pub fn len(&self) -> usize {
        record_len(self.payload.len())
    }

    /// Whether its payload is empty (a spool never writes such a record).
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

/// What reading a segment found next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A record whose checksum holds.
    Record(Record<'a>),
    /// Bytes that are no record: damaged, torn at the tail, or not a segment at all.
    Corrupt {
        /// Where they start.
        offset: u64,
        /// How many there are.
        len: u64,
    },
}

/// The records of a segment's bytes, in order, with the damaged stretches between them.
/// Never panics, whatever the bytes.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    /// Where the next item starts.
    at: usize,
    /// Whether the segment header was read.
    started: bool,
}

impl<'a> Records<'a> {
    /// The records of `segment`, the whole file's bytes.
    pub fn new(segment: &'a [u8]) -> Self {
        Self {
            bytes: segment,
            at: 0,
            started: false,
        }
    }

    /// The record whose bytes start at `at`, if one whose checksum holds starts there.
    fn record_at(&self, at: usize) -> Option<Record<'a>> {
        let header = self.bytes.get(at..at.checked_add(RECORD_HEADER)?)?;
        if header[..4] != RECORD_MAGIC {
            return None;
        }
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let (len, messages, crc) = (word(4), word(8), word(12));
        let start = at + RECORD_HEADER;
        let payload = self.bytes.get(start..start.checked_add(len as usize)?)?;
        (checksum(len, messages, payload) == crc).then_some(Record {
            offset: at as u64,
            messages,
            payload,
        })
    }

    /// Where the first record magic at or after `from` starts, or the end.
    fn magic_from(&self, from: usize) -> usize {
        let from = from.min(self.bytes.len());
        memchr::memmem::find(&self.bytes[from..], &RECORD_MAGIC)
            .map_or(self.bytes.len(), |i| from + i)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if !self.started {
            self.started = true;
            if self.bytes.starts_with(&SEGMENT_MAGIC) {
                self.at = SEGMENT_MAGIC.len();
            } else {
                // No segment header: what follows is searched for records all the same.
                self.at = self.magic_from(0);
                if self.at > 0 {
                    return Some(Item::Corrupt {
                        offset: 0,
                        len: self.at as u64,
                    });
                }
            }
        }
        if self.at >= self.bytes.len() {
            return None;
        }
        if let Some(record) = self.record_at(self.at) {
            self.at += record.len();
            return Some(Item::Record(record));
        }
        let from = self.at;
        self.at = self.magic_from(from + 1);
        Some(Item::Corrupt {
            offset: from as u64,
            len: (self.at - from) as u64,
        })
    }
}

/// Reads the record a spool wrote, given exactly its bytes as read back from its segment:
/// its messages and payload, or `None` when they are damaged.
pub fn read_record(frame: &[u8]) -> Option<(u32, &[u8])> {
    let record = Records::new(frame).record_at(0)?;
    (record.len() == frame.len()).then_some((record.messages, record.payload))
}

/// What a release file says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Released {
    /// The offsets of the delivered records.
    pub offsets: HashSet<u64>,
    /// Entries whose checksum failed, or a torn last entry: their records will be
    /// delivered again.
    pub damaged: u64,
}

/// Reads a release file's bytes. Never panics.
pub fn read_releases(bytes: &[u8]) -> Released {
    let mut released = Released::default();
    let mut entries = bytes.chunks_exact(RELEASE_ENTRY);
    for entry in &mut entries {
        let offset: [u8; 8] = entry[..8].try_into().expect("8 bytes");
        let crc = u32::from_le_bytes(entry[8..].try_into().expect("4 bytes"));
        if crc32fast::hash(&offset) == crc {
            released.offsets.insert(u64::from_le_bytes(offset));
        } else {
            released.damaged += 1;
        }
    }
    if !entries.remainder().is_empty() {
        released.damaged += 1;
    }
    released
}

#[cfg(test)]
mod tests;
