//! The Flask analyzer that behaves exactly like the original project's
//! (`tests/python/original_analyzer.py`), started as the original is started, for the tests
//! that need it beside logdist's own (`original_analyzer.rs`, `chaos.rs`).

use std::path::Path;
use std::process::{Command, Stdio};

use super::Proc;

/// The Flask analyzer's script.
pub const ORIGINAL_ANALYZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/original_analyzer.py"
);

/// Starts the Flask analyzer as the original is started (`ANALYZER_ID`, `ANALYZER_WEIGHT`,
/// `DISTRIBUTOR_URL`): it registers as `analyzer_{id}` before it listens, and nothing tells
/// the distributor its protocol. `PORT` (a free port instead of 3000 + id) and
/// `RECEIVED_FILE` (where it appends each message it receives, for counting) are the
/// tests' only additions. Its output goes to `dir/{name}.log`.
pub fn start_original(
    dir: &Path,
    name: &str,
    id: u32,
    weight: f64,
    distributor: &str,
    port: u16,
    received: &Path,
) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("python3")
        .arg(ORIGINAL_ANALYZER)
        .env("ANALYZER_ID", id.to_string())
        .env("ANALYZER_WEIGHT", weight.to_string())
        .env("DISTRIBUTOR_URL", distributor)
        .env("PORT", port.to_string())
        .env("RECEIVED_FILE", received)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run python3 ({e}): install Python 3 and Flask"));
    Proc {
        child,
        name: name.to_owned(),
        log,
    }
}
