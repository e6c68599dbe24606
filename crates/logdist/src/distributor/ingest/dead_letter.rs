//! The dead-letter file (`--dead-letter FILE`): the bad records ingest did not deliver,
//! one NDJSON line each, with what was wrong and where, so that an operator can read why
//! and send them again once fixed.
//!
//! ```json
//! {"received_ms":1796552910306,"format":"packets","at":"line 3","reason":"no message: ...","record":"{\"lvl\":\"info\"}"}
//! ```
//!
//! `record` is the record as sent (as text; bytes that are not UTF-8 are replaced), up to
//! 16 KiB with `"truncated":true` beyond; records of binary protocols (OTLP protobuf, Loki)
//! have no text of their own and are written without it. The file is bounded: a line that
//! would take it past `--dead-letter-max` first renames it `FILE.1` (replacing the one
//! before) and starts a new one, as logrotate's `copytruncate`-free rotation does.
//!
//! Lines are written before the good records of the body are routed, and a body whose
//! dead letters cannot be written is answered 503: nothing the agent is told is taken is
//! lost, and a failed write costs a resend, not a record.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use logdist_core::RecordError;
use logdist_core::message::Location;

/// The dead-letter file, shared by every request.
pub struct DeadLetter {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Open>,
}

/// The file being appended to, and its size.
struct Open {
    file: File,
    len: u64,
}

impl DeadLetter {
    /// Opens (or creates) `path` for appending, rotated beyond `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let open = Open::at(path)?;
        Ok(Self {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            file: Mutex::new(open),
        })
    }

    /// Appends one line per record, received at `received_ms` in a body of `format`.
    pub fn write(&self, format: &str, received_ms: i64, records: &[RecordError]) -> io::Result<()> {
        let mut lines = Vec::with_capacity(records.len() * 256);
        for record in records {
            line(&mut lines, format, received_ms, record);
        }
        let mut open = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if open.len > 0 && open.len + lines.len() as u64 > self.max_bytes {
            open.file.flush()?;
            std::fs::rename(&self.path, rotated(&self.path))?;
            *open = Open::at(&self.path)?;
        }
        open.file.write_all(&lines)?;
        open.len += lines.len() as u64;
        Ok(())
    }
}

impl Open {
    fn at(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

/// `FILE.1`.
fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Where a record was, in the words of the native decoder's errors.
fn at(location: Location) -> String {
    match location {
        Location::Body => "body".to_owned(),
        Location::Line(n) => format!("line {n}"),
        Location::Index(i) => format!("index {i}"),
    }
}

/// One record's line, `\n` included.
fn line(out: &mut Vec<u8>, format: &str, received_ms: i64, record: &RecordError) {
    let mut entry = serde_json::json!({
        "received_ms": received_ms,
        "format": format,
        "at": at(record.location),
        "reason": record.reason,
    });
    if !record.record.is_empty() {
        entry["record"] = String::from_utf8_lossy(&record.record).into();
        if record.truncated() {
            entry["truncated"] = true.into();
            entry["record_len"] = record.record_len.into();
        }
    }
    // A `Value` always serializes.
    let _ = serde_json::to_writer(&mut *out, &entry);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logdist_core::{DecodeOptions, Decoder, decoder::Native};

    fn bad_records(body: &'static str) -> Vec<RecordError> {
        Native
            .decode(
                Bytes::from_static(body.as_bytes()),
                None,
                &DecodeOptions::default(),
            )
            .unwrap()
            .rejected
    }

    #[test]
    fn writes_a_line_per_record_and_rotates_beyond_its_size() {
        let dir = std::env::temp_dir().join(format!("logdist-dead-letter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dead.ndjson");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(rotated(&path));
        let records = bad_records("{\"message\":\"ok\"}\n42\n{\"lvl\":\"info\"}\n");
        assert_eq!(records.len(), 2);
        let letters = DeadLetter::open(&path, 600).unwrap();
        letters.write("packets", 7, &records).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["at"], "line 2");
        assert_eq!(lines[0]["record"], "42");
        assert_eq!(lines[0]["format"], "packets");
        assert_eq!(lines[0]["received_ms"], 7);
        assert_eq!(lines[1]["at"], "line 3");
        assert!(
            lines[1]["reason"]
                .as_str()
                .unwrap()
                .starts_with("no message"),
            "{}",
            lines[1]
        );
        // The next write would pass 600 bytes: the file is rotated first.
        let before = text.len();
        letters.write("packets", 8, &records).unwrap();
        letters.write("packets", 9, &records).unwrap();
        let old = std::fs::read_to_string(rotated(&path)).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.len() >= before && old.len() <= 600, "{}", old.len());
        assert!(new.contains("\"received_ms\":9"), "{new}");
        // Reopened, it appends to what is there.
        drop(letters);
        let again = DeadLetter::open(&path, 1 << 20).unwrap();
        again.write("message", 10, &records[..1]).unwrap();
        let grown = std::fs::read_to_string(&path).unwrap();
        assert!(grown.starts_with(&new) && grown.len() > new.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
