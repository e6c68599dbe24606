//! Unique ids for `--trace` and `--idempotency-keys`: the run's [`IdPrefix`], the packet
//! key `{prefix}-{agent}-{seq}`, and the places in a body where each message's
//! `"msg_id":"{key}-{i}"` goes ([`IdSlots`]).
//!
//! A body is scanned once, when the pool is built; stamping a key into it per send is
//! then a copy with a few insertions and cannot fail. Keys need no JSON escaping: the
//! prefix is visible ASCII without `"` or `\`, and the rest are digits and dashes.

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

/// Longest accepted `--id-prefix`, in characters.
pub const MAX_ID_PREFIX_LEN: usize = 64;

/// The prefix of every packet key and message id of a run (`--id-prefix`): 1 to
/// [`MAX_ID_PREFIX_LEN`] visible ASCII characters, without `"` or `\`, so a key is a
/// valid header value and a JSON string as it is. Build one with `parse` or
/// [`IdPrefix::random`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPrefix(String);

/// Why an `--id-prefix` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdPrefixError {
    /// The prefix is empty.
    #[error("an id prefix must not be empty")]
    Empty,
    /// Longer than [`MAX_ID_PREFIX_LEN`].
    #[error("an id prefix must be at most {MAX_ID_PREFIX_LEN} characters, got {0}")]
    TooLong(usize),
    /// A space, a control or non-ASCII character, `"` or `\`.
    #[error("an id prefix may hold visible ASCII characters except '\"' and '\\', got {0:?}")]
    BadChar(char),
}

impl IdPrefix {
    /// A random run id of 8 hex digits, so two runs never share keys.
    pub fn random() -> Self {
        Self(format!("{:08x}", rand::random::<u32>()))
    }

    /// The prefix as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of packet number `seq` (from 0) of agent number `agent`.
    pub fn packet_key(&self, agent: usize, seq: u64) -> String {
        format!("{}-{agent}-{seq}", self.0)
    }
}

impl FromStr for IdPrefix {
    type Err = IdPrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(bad) = s
            .chars()
            .find(|c| !c.is_ascii_graphic() || *c == '"' || *c == '\\')
        {
            return Err(IdPrefixError::BadChar(bad));
        }
        // Only ASCII is left, so bytes are characters.
        match s.len() {
            0 => Err(IdPrefixError::Empty),
            n if n > MAX_ID_PREFIX_LEN => Err(IdPrefixError::TooLong(n)),
            _ => Ok(Self(s.to_owned())),
        }
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a body cannot carry message ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StampError {
    /// A non-blank line that does not look like a JSON object.
    #[error("line {0} is not a JSON object")]
    NotAnObject(usize),
}

/// Where the message ids go in one body: before the closing `}` of each message, one
/// message per non-blank line (NDJSON, or a single JSON object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdSlots {
    slots: Vec<Slot>,
}

/// One insertion point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Offset of the message's closing `}` in the body.
    close: usize,
    /// False for an empty object `{}`, where the id is the only field.
    comma: bool,
}

impl IdSlots {
    /// Finds the insertion points of `body`. Blank lines are kept and carry no id.
    pub fn find(body: &[u8]) -> Result<Self, StampError> {
        let mut slots = Vec::new();
        let mut line_start = 0;
        for (number, line) in body.split(|b| *b == b'\n').enumerate() {
            let start = line_start;
            line_start += line.len() + 1;
            let Some(last) = line.iter().rposition(|b| !b.is_ascii_whitespace()) else {
                continue;
            };
            let first = line.iter().position(|b| !b.is_ascii_whitespace());
            if first.map(|i| line[i]) != Some(b'{') || line[last] != b'}' {
                return Err(StampError::NotAnObject(number + 1));
            }
            // In valid JSON the last non-blank byte before the closing brace is the
            // opening brace only for an empty object.
            let inner = &line[..last];
            let comma = inner
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .is_some_and(|i| inner[i] != b'{');
            slots.push(Slot {
                close: start + last,
                comma,
            });
        }
        Ok(Self { slots })
    }

    /// Messages found, one id each.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Appends `body` (the body these slots were found in) to `out`, with
    /// `"msg_id":"{key}-{i}"` added to message `i` (from 0).
    pub fn stamp(&self, body: &[u8], key: &str, out: &mut Vec<u8>) {
        out.reserve(body.len() + self.slots.len() * (key.len() + 20));
        let mut copied = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            // `get` keeps a mismatched body from panicking; it then loses its ids.
            let Some(before) = body.get(copied..slot.close) else {
                break;
            };
            out.extend_from_slice(before);
            if slot.comma {
                out.push(b',');
            }
            // Writing into a Vec cannot fail.
            let _ = write!(out, "\"msg_id\":\"{key}-{i}\"");
            copied = slot.close;
        }
        out.extend_from_slice(body.get(copied..).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn stamped(body: &[u8], key: &str) -> String {
        let slots = IdSlots::find(body).expect("objects");
        let mut out = Vec::new();
        slots.stamp(body, key, &mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn prefixes_are_validated() {
        for good in [
            "a",
            "run-7",
            "A_b.c:d/e~!#$%&'()*+,;<=>?@[]^`{|}",
            &"x".repeat(64),
        ] {
            let prefix: IdPrefix = good.parse().expect(good);
            assert_eq!(prefix.as_str(), good);
        }
        assert_eq!("".parse::<IdPrefix>(), Err(IdPrefixError::Empty));
        assert_eq!(
            "x".repeat(65).parse::<IdPrefix>(),
            Err(IdPrefixError::TooLong(65))
        );
        for (bad, c) in [
            ("a b", ' '),
            ("a\"b", '"'),
            ("a\\b", '\\'),
            ("é", 'é'),
            ("a\nb", '\n'),
            ("\t", '\t'),
            ("a\u{7f}", '\u{7f}'),
        ] {
            assert_eq!(bad.parse::<IdPrefix>(), Err(IdPrefixError::BadChar(c)));
        }
    }

    #[test]
    fn random_prefixes_are_8_hex_digits_and_differ() {
        let prefixes: BTreeSet<String> = (0..20).map(|_| IdPrefix::random().0).collect();
        assert!(prefixes.len() > 1);
        for prefix in &prefixes {
            assert_eq!(prefix.len(), 8);
            assert!(prefix.chars().all(|c| c.is_ascii_hexdigit()), "{prefix}");
            assert!(prefix.parse::<IdPrefix>().is_ok());
        }
    }

    #[test]
    fn packet_keys_name_prefix_agent_and_seq() {
        let prefix: IdPrefix = "run".parse().expect("valid");
        assert_eq!(prefix.packet_key(3, 0), "run-3-0");
        assert_eq!(prefix.packet_key(0, 17), "run-0-17");
    }

    #[test]
    fn every_line_gets_its_own_id() {
        let body = b"{\"a\":1}\n{\"b\":\"}\"}\n{}\n";
        let text = stamped(body, "k-0-5");
        assert_eq!(
            text,
            "{\"a\":1,\"msg_id\":\"k-0-5-0\"}\n{\"b\":\"}\",\"msg_id\":\"k-0-5-1\"}\n\
             {\"msg_id\":\"k-0-5-2\"}\n"
        );
    }

    #[test]
    fn single_objects_blank_lines_and_spaces() {
        assert_eq!(stamped(b"{\"a\":1}", "k"), "{\"a\":1,\"msg_id\":\"k-0\"}");
        assert_eq!(
            stamped(b" { \"a\" : 1 } \r\n\n{ }\n", "k"),
            " { \"a\" : 1 ,\"msg_id\":\"k-0\"} \r\n\n{ \"msg_id\":\"k-1\"}\n"
        );
        assert_eq!(stamped(b"", "k"), "");
        assert_eq!(IdSlots::find(b"\n \n").map(|s| s.len()), Ok(0));
    }

    #[test]
    fn non_objects_are_refused() {
        assert_eq!(
            IdSlots::find(b"{\"a\":1}\n[1]\n"),
            Err(StampError::NotAnObject(2))
        );
        assert_eq!(IdSlots::find(b"{\"a\":1"), Err(StampError::NotAnObject(1)));
        assert_eq!(IdSlots::find(b"}"), Err(StampError::NotAnObject(1)));
    }

    #[test]
    fn a_mismatched_body_does_not_panic() {
        let slots = IdSlots::find(b"{\"a\":1}\n{\"b\":2}\n").expect("objects");
        let mut out = Vec::new();
        slots.stamp(b"{}", "k", &mut out);
        assert!(!out.is_empty());
    }
}
