//! Syslog over TCP: cutting a byte stream into messages, as RFC 6587 describes the two
//! framings in use, told apart frame by frame by their first byte.
//!
//! - **Octet counting** (RFC 6587 3.4.1, and RFC 5425): `MSG-LEN SP SYSLOG-MSG`, the
//!   length in decimal, starting with a digit 1-9. What rsyslog's `omfwd` with
//!   `TCP_Framing="octet-counted"`, syslog-ng's `syslog()` driver and
//!   `logger --octet-count` send.
//! - **Non-transparent framing** (RFC 6587 3.4.2): the message, then a line feed (a
//!   `\r` before it is dropped). A message starts with its `<PRI>`, so a frame starting
//!   with `<` is one of these. What `network()`, `omfwd`'s default and
//!   `logger --tcp` without `--octet-count` send. At the end of the stream the bytes
//!   after the last line feed are a last message: many senders do not end the last one.
//!
//! Empty lines between frames are skipped. Anything else at the start of a frame is not
//! syslog, and the stream cannot be read further: a lying count, binary, another
//! protocol. The framer is a pure function of the bytes read so far, so the connection
//! reader owns the buffer and the framer never copies.

use std::fmt;

/// The most digits a length may have: ten is over a gigabyte, beyond any limit.
const MAX_COUNT_DIGITS: usize = 10;

/// How a frame was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `MSG-LEN SP SYSLOG-MSG`.
    OctetCounted,
    /// `SYSLOG-MSG LF`.
    Newline,
}

/// One frame found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Where the message is in the buffer (without its length or its line feed).
    pub start: usize,
    /// Where it ends.
    pub end: usize,
    /// How many bytes of the buffer the frame took, separators before it included: what
    /// the reader drops before looking for the next one.
    pub consumed: usize,
    /// How it was cut.
    pub framing: Framing,
}

/// Why a stream cannot be cut further. The connection is closed: after a bad frame there
/// is no telling where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A frame longer than the limit (`--syslog-max-message`).
    Oversize {
        /// Its length, or the bytes read so far without its end.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An octet count that is not `DIGITS SP`.
    BadCount(String),
    /// A frame that starts with neither a digit nor `<`.
    NotSyslog {
        /// The first byte.
        byte: u8,
    },
    /// The stream ended inside an octet-counted frame.
    Truncated {
        /// The length its count announced.
        expected: usize,
        /// What came of it.
        got: usize,
    },
}

impl FrameError {
    /// A short name for metrics and logs (`logdist_rejected_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::Oversize { .. } => "oversize",
            FrameError::BadCount(_) | FrameError::NotSyslog { .. } => "framing",
            FrameError::Truncated { .. } => "truncated",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversize { len, max } => write!(
                f,
                "a syslog frame of {len} bytes or more, over the limit of {max}"
            ),
            FrameError::BadCount(count) => {
                write!(f, "an octet count `{count}` is not digits and a space")
            }
            FrameError::NotSyslog { byte } => write!(
                f,
                "a frame starts with byte 0x{byte:02x}: neither an octet count nor `<PRI>`"
            ),
            FrameError::Truncated { expected, got } => write!(
                f,
                "the stream ended inside a frame: its count said {expected} bytes, {got} came"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Cuts frames of at most `max_len` bytes.
#[derive(Debug, Clone, Copy)]
pub struct Framer {
    /// The longest message taken, in bytes.
    pub max_len: usize,
}

impl Framer {
    /// The first whole frame of `buf`; `None` when more bytes are needed (`buf` then holds
    /// at most the start of one frame, within the limit).
    pub fn next(&self, buf: &[u8]) -> Result<Option<Frame>, FrameError> {
        self.cut(buf, false)
    }

    /// The last frame, once the stream has ended with `buf` unread: a message without
    /// its line feed is taken; a count whose bytes did not all come is an error.
    pub fn last(&self, buf: &[u8]) -> Result<Option<Frame>, FrameError> {
        self.cut(buf, true)
    }

    fn cut(&self, buf: &[u8], ended: bool) -> Result<Option<Frame>, FrameError> {
        let skip = buf
            .iter()
            .position(|&b| b != b'\n' && b != b'\r')
            .unwrap_or(buf.len());
        let rest = &buf[skip..];
        match rest.first() {
            None => Ok(None),
            Some(b'1'..=b'9') => self.counted(rest, skip, ended),
            Some(b'<') => Ok(self.line(rest, skip, ended)?),
            Some(&byte) => Err(FrameError::NotSyslog { byte }),
        }
    }

    fn counted(&self, rest: &[u8], skip: usize, ended: bool) -> Result<Option<Frame>, FrameError> {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let bad = || {
            let shown = &rest[..rest.len().min(MAX_COUNT_DIGITS + 2)];
            FrameError::BadCount(String::from_utf8_lossy(shown).into_owned())
        };
        if digits > MAX_COUNT_DIGITS {
            return Err(bad());
        }
        match rest.get(digits) {
            // The stream ended inside the count.
            None if ended => return Err(bad()),
            None => return Ok(None),
            Some(b' ') => {}
            Some(_) => return Err(bad()),
        }
        let count: usize = std::str::from_utf8(&rest[..digits])
            .expect("digits are ASCII")
            .parse()
            .map_err(|_| bad())?;
        if count > self.max_len {
            return Err(FrameError::Oversize {
                len: count,
                max: self.max_len,
            });
        }
        let start = skip + digits + 1;
        let available = rest.len() - digits - 1;
        if available < count {
            if ended {
                return Err(FrameError::Truncated {
                    expected: count,
                    got: available,
                });
            }
            return Ok(None);
        }
        Ok(Some(Frame {
            start,
            end: start + count,
            consumed: start + count,
            framing: Framing::OctetCounted,
        }))
    }

    fn line(&self, rest: &[u8], skip: usize, ended: bool) -> Result<Option<Frame>, FrameError> {
        let (len, consumed) = match memchr::memchr(b'\n', rest) {
            Some(newline) => (newline, newline + 1),
            None if ended => (rest.len(), rest.len()),
            None if rest.len() > self.max_len => {
                return Err(FrameError::Oversize {
                    len: rest.len(),
                    max: self.max_len,
                });
            }
            None => return Ok(None),
        };
        let end = if len > 0 && rest[len - 1] == b'\r' {
            len - 1
        } else {
            len
        };
        if end > self.max_len {
            return Err(FrameError::Oversize {
                len: end,
                max: self.max_len,
            });
        }
        Ok(Some(Frame {
            start: skip,
            end: skip + end,
            consumed: skip + consumed,
            framing: Framing::Newline,
        }))
    }
}
