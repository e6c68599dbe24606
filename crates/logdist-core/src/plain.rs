//! The fast path of message validation: recognizes the plain shape almost every log line
//! has, and says "valid" only when it is sure.
//!
//! A plain message is one JSON object on one line: strings without control characters or
//! `\u` escapes, numbers without exponents, `true`, `false`, `null`, and objects and arrays
//! of those nested at most [`MAX_DEPTH`] deep; the four required fields once each with
//! their types, `severity` and `source` non-empty. Anything else (a `\u` escape, a tab, an
//! exponent, a duplicate field, a mistake) is "not sure", and serde_json, the validator of
//! record, decides and words the error. So this
//! path can only make validation faster, never change its answer: a property test checks
//! that it accepts nothing serde_json's path refuses, and that it does take plain lines.
//!
//! Why not serde_json alone: it walks a message token by token through serde's visitor
//! calls, about 150 ns for a 160-byte line here; this is one walk that takes strings eight
//! bytes at a time (stopping at a quote, a backslash or a control character) and the four
//! required keys, as serializers write them, with a word compare each.
//!
//! An NDJSON body is taken whole where it can be ([`plain_ndjson_prefix`]): one walk from
//! message to message, with no split into lines; the line-by-line path takes over at the
//! first line that is not plain.
//!
//! The walk checks UTF-8 itself, so a body needs no separate pass for it (that pass was 5%
//! of the decode bench): outside strings it takes ASCII only, and inside one each run of
//! text that is not ASCII is checked where it is found.

/// Whether `line` is certainly a valid message, UTF-8 included (see the module
/// documentation); `false` means "not sure".
pub(crate) fn is_plain_valid(line: &[u8]) -> bool {
    let mut scanner = Scanner { line, at: 0 };
    scanner.message() && scanner.at == line.len()
}

/// The longest start of an NDJSON body made of plain messages (see the module
/// documentation), each on its own line ended by `\n`, up to `u32::MAX` of them: how many
/// messages, and where that start ends. The start is UTF-8; what follows is unchecked.
///
/// One walk over the body instead of one per line, with no line split: a message's line
/// ends where the message does, so the walk finds the ends of lines itself. A raw `\n`
/// inside a string, where a line split would see two broken lines, is a control character
/// and ends the start like any other (see [`Scanner::string`]).
pub(crate) fn plain_ndjson_prefix(body: &[u8]) -> (u32, usize) {
    let mut scanner = Scanner { line: body, at: 0 };
    let (mut messages, mut end) = (0u32, 0);
    while end < body.len() && messages < u32::MAX {
        if !(scanner.message() && scanner.eat(b'\n')) {
            break;
        }
        messages += 1;
        end = scanner.at;
    }
    (messages, end)
}

/// Bits of the required fields seen so far.
const TIMESTAMP: u8 = 1;
const SEVERITY: u8 = 2;
const SOURCE: u8 = 4;
const MESSAGE: u8 = 8;
const ALL: u8 = TIMESTAMP | SEVERITY | SOURCE | MESSAGE;

/// Integers of at most this many digits fit an `i64` whatever they are.
const MAX_INT_DIGITS: usize = 18;

/// Deepest nesting of an extra field's value taken here (serde_json allows 128).
pub(crate) const MAX_DEPTH: usize = 8;

/// Walks a line, or an NDJSON body, token by token. Each token starts where the last one
/// ended, so the walk is one chain of dependent positions: the small readers are
/// `#[inline(always)]` so that the position stays in a register rather than going through
/// memory at every call (the decode bench: -26% for a packet of one message, -3.5% for a
/// hundred).
struct Scanner<'a> {
    line: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    /// One message object and the spaces before and after it; what follows is the
    /// caller's.
    fn message(&mut self) -> bool {
        self.spaces();
        if !self.eat(b'{') {
            return false;
        }
        let mut seen = 0u8;
        loop {
            self.spaces();
            let field = match self.required_key() {
                Some(field) => field,
                None => {
                    let Some(key) = self.string() else {
                        return false;
                    };
                    self.spaces();
                    if !self.eat(b':') {
                        return false;
                    }
                    match key {
                        b"timestamp" => TIMESTAMP,
                        b"severity" => SEVERITY,
                        b"source" => SOURCE,
                        b"message" => MESSAGE,
                        _ => 0,
                    }
                }
            };
            self.spaces();
            if seen & field != 0 {
                return false;
            }
            seen |= field;
            let value_ok = match field {
                TIMESTAMP => self.integer(),
                SEVERITY | SOURCE => self.string().is_some_and(|s| !s.is_empty()),
                MESSAGE => self.string().is_some(),
                _ => self.value(MAX_DEPTH),
            };
            if !value_ok {
                return false;
            }
            self.spaces();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => break,
                _ => return false,
            }
        }
        self.spaces();
        seen == ALL
    }

    /// A required field's key as serializers write it, `"name":` without spaces, taken
    /// with one word compare and a short constant one instead of a string scan (a call to
    /// memcmp here cost 14% of the decode bench); `None` (nothing taken) for any other key
    /// or spelling, which the caller reads the long way.
    #[inline(always)]
    fn required_key(&mut self) -> Option<u8> {
        const fn head(key: &[u8; 8]) -> u64 {
            u64::from_le_bytes(*key)
        }
        const TIMESTAMP_HEAD: u64 = head(b"\"timesta");
        const SEVERITY_HEAD: u64 = head(b"\"severit");
        const SOURCE_HEAD: u64 = head(b"\"source\"");
        const MESSAGE_HEAD: u64 = head(b"\"message");
        let rest = &self.line[self.at..];
        let (first, tail) = rest.split_first_chunk::<8>()?;
        let (field, len) = match u64::from_le_bytes(*first) {
            TIMESTAMP_HEAD if tail.starts_with(b"mp\":") => (TIMESTAMP, 12),
            SEVERITY_HEAD if tail.starts_with(b"y\":") => (SEVERITY, 11),
            SOURCE_HEAD if tail.starts_with(b":") => (SOURCE, 9),
            MESSAGE_HEAD if tail.starts_with(b"\":") => (MESSAGE, 10),
            _ => return None,
        };
        self.at += len;
        Some(field)
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let b = *self.line.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.line.get(self.at).copied()
    }

    #[inline(always)]
    fn eat(&mut self, want: u8) -> bool {
        let found = self.peek() == Some(want);
        self.at += usize::from(found);
        found
    }

    /// Spaces only: tabs and carriage returns are below 0x20 and never get here.
    #[inline(always)]
    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// A string whose escapes, if any, are the one-character ones (`\"`, `\n`...): its
    /// contents as written, escapes and all. `None` for a `\u` escape, for a control
    /// character (JSON forbids them unescaped, a raw `\n` included), and for bytes that are
    /// not UTF-8. Outside strings the walk takes no control character at all but the `\n`
    /// that ends a message, and no byte that is not ASCII, so no separate pass over the
    /// bytes is needed for them.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        loop {
            self.at += string_stop::<true>(&self.line[self.at..])?;
            match self.next()? {
                b'"' => return Some(&self.line[start..self.at - 1]),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    _ => return None,
                },
                0x80.. => self.utf8_run()?,
                _ => return None,
            }
        }
    }

    /// The rest of a run of string text that is not all ASCII (its first byte just taken):
    /// up to the next quote, backslash or control character, which must all be UTF-8.
    /// Those stops are ASCII, so a run that is UTF-8 ends on a whole character and the
    /// string stays UTF-8 around it.
    #[cold]
    fn utf8_run(&mut self) -> Option<()> {
        let run = &self.line[self.at - 1..];
        let len = string_stop::<false>(run).unwrap_or(run.len());
        std::str::from_utf8(&run[..len]).ok()?;
        self.at += len - 1;
        Some(())
    }

    /// A string, a number without exponent, `true`, `false`, `null`, or an object or array
    /// of those nested at most `depth` deep.
    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null"),
            Some(b'[') if depth > 0 => self.array(depth - 1),
            Some(b'{') if depth > 0 => self.object(depth - 1),
            _ => self.number(),
        }
    }

    /// `[` value (`,` value)* `]`, or `[]`; the opening bracket is next.
    fn array(&mut self, depth: usize) -> bool {
        self.items(b']', |s| s.value(depth))
    }

    /// `{` string `:` value (`,` ...)* `}`, or `{}`; the opening brace is next. Any keys,
    /// repeated or not: serde_json ignores what an extra field holds.
    fn object(&mut self, depth: usize) -> bool {
        self.items(b'}', |s| {
            let key = s.string().is_some();
            s.spaces();
            key && s.eat(b':') && {
                s.spaces();
                s.value(depth)
            }
        })
    }

    /// The opener (next), then `item`s separated by commas up to `close`, or none.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> bool) -> bool {
        self.at += 1;
        self.spaces();
        if self.eat(close) {
            return true;
        }
        loop {
            self.spaces();
            if !item(self) {
                return false;
            }
            self.spaces();
            match self.next() {
                Some(b',') => {}
                Some(b) => return b == close,
                None => return false,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, the integer part of at most [`MAX_INT_DIGITS`]
    /// digits: a number serde_json reads as one whatever it is.
    fn number(&mut self) -> bool {
        self.eat(b'-');
        let (zero_first, digits) = self.unsigned();
        (1..=MAX_INT_DIGITS).contains(&digits)
            && !(zero_first && digits > 1)
            && (!self.eat(b'.') || self.digits() > 0)
    }

    fn word(&mut self, word: &[u8]) -> bool {
        let found = self.line[self.at..].starts_with(word);
        self.at += if found { word.len() } else { 0 };
        found
    }

    /// `-?(0|[1-9][0-9]*)` with at most [`MAX_INT_DIGITS`] digits, but not `-0`, which
    /// serde_json reads as the float -0.0 (no `i64`).
    #[inline(always)]
    fn integer(&mut self) -> bool {
        let negative = self.eat(b'-');
        let (zero_first, digits) = self.unsigned();
        (1..=MAX_INT_DIGITS).contains(&digits) && !(zero_first && (digits > 1 || negative))
    }

    /// The digits of an unsigned integer: whether the first is `0`, and how many.
    #[inline(always)]
    fn unsigned(&mut self) -> (bool, usize) {
        let zero_first = self.peek() == Some(b'0');
        (zero_first, self.digits())
    }

    /// How many ASCII digits come next, taken eight at a time while eight bytes are left
    /// (a timestamp in milliseconds has 13).
    #[inline(always)]
    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(chunk) = self.line[self.at..].first_chunk::<8>() {
            let others = non_digits(u64::from_le_bytes(*chunk));
            if others != 0 {
                self.at += (others.trailing_zeros() / 8) as usize;
                return self.at - start;
            }
            self.at += 8;
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }
}

/// The index of the first byte that stops a string scan in `bytes`: `"`, `\\`, a control
/// character (below 0x20), and with `NON_ASCII` a byte above 0x7F; sixteen bytes at a time
/// with SSE2, which every x86-64 has.
///
/// Why `safe_arch`: the crate forbids `unsafe`, and the `std::arch` intrinsics are unsafe to
/// call outside a `#[target_feature]` function even where the feature is always on;
/// `safe_arch` wraps them behind `#[cfg(target_feature)]` instead.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn string_stop<const NON_ASCII: bool>(bytes: &[u8]) -> Option<usize> {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let quotes = set_splat_i8_m128i(b'"' as i8);
    let backslashes = set_splat_i8_m128i(b'\\' as i8);
    let controls = set_splat_i8_m128i(0x1f);
    let (chunks, _) = bytes.as_chunks::<16>();
    for (i, chunk) in chunks.iter().enumerate() {
        let v = load_unaligned_m128i(chunk);
        let stops = cmp_eq_mask_i8_m128i(v, quotes)
            | cmp_eq_mask_i8_m128i(v, backslashes)
            | cmp_eq_mask_i8_m128i(min_u8_m128i(v, controls), v);
        // The mask takes each byte's high bit: set in the stops, and in non-ASCII bytes.
        let found = move_mask_i8_m128i(if NON_ASCII { stops | v } else { stops });
        if found != 0 {
            return Some(i * 16 + found.trailing_zeros() as usize);
        }
    }
    let offset = chunks.len() * 16;
    string_stop_swar::<NON_ASCII>(&bytes[offset..]).map(|len| offset + len)
}

#[cfg(not(target_arch = "x86_64"))]
fn string_stop<const NON_ASCII: bool>(bytes: &[u8]) -> Option<usize> {
    string_stop_swar::<NON_ASCII>(bytes)
}

/// [`string_stop`] eight bytes at a time (SWAR), on any target. Strings in log lines are
/// short, so this beats memchr's SIMD setup and a byte loop alike.
fn string_stop_swar<const NON_ASCII: bool>(bytes: &[u8]) -> Option<usize> {
    const QUOTES: u64 = u64::from_le_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_le_bytes([0x20; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let (chunks, rest) = bytes.as_chunks::<8>();
    for (i, chunk) in chunks.iter().enumerate() {
        let word = u64::from_le_bytes(*chunk);
        let found = zero_bytes(word ^ QUOTES)
            | zero_bytes(word ^ BACKSLASHES)
            | below(word, SPACES)
            | if NON_ASCII { word & HIGHS } else { 0 };
        if found != 0 {
            // Little-endian: the lowest marked byte is the first in memory.
            return Some(i * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let len = rest
        .iter()
        .position(|&b| stops_a_string(b) || (NON_ASCII && !b.is_ascii()))?;
    Some(chunks.len() * 8 + len)
}

/// Whether a string scan stops at `b` (not counting bytes that are not ASCII), byte by
/// byte: what [`string_stop`] finds in words.
fn stops_a_string(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// Marks (with some bit) every byte of `word` that is not an ASCII digit: a digit is 0x3_
/// and stays 0x3_ when 6 is added. Adding 6 can carry out of a byte of 0xFA or more, into
/// the byte above it, so only the lowest mark is exact (as with [`zero_bytes`]).
#[inline(always)]
fn non_digits(word: u64) -> u64 {
    const HIGH_NIBBLES: u64 = u64::from_le_bytes([0xF0; 8]);
    const THREES: u64 = u64::from_le_bytes([0x30; 8]);
    const SIXES: u64 = u64::from_le_bytes([0x06; 8]);
    ((word & HIGH_NIBBLES) ^ THREES) | ((word.wrapping_add(SIXES) & HIGH_NIBBLES) ^ THREES)
}

/// Marks (with its high bit) every zero byte of `word`. A byte above a zero byte may be
/// marked too (the borrow runs upward), never one below: the lowest mark is exact.
fn zero_bytes(word: u64) -> u64 {
    below(word, u64::from_le_bytes([0x01; 8]))
}

/// Marks (with its high bit) every byte of `word` below the byte repeated in `limits`
/// (at most 0x80), with the same borrow caveat as [`zero_bytes`]: the lowest mark is exact.
fn below(word: u64, limits: u64) -> u64 {
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    word.wrapping_sub(limits) & !word & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = r#"{"timestamp":1700000000037,"severity":"INFO","source":"db","message":"GET /v1/users/8919 200 in 32ms","host":"db-2"}"#;

    #[test]
    fn plain_lines_take_the_fast_path() {
        for line in [
            PLAIN,
            r#"{"timestamp":1,"severity":"W","source":"a","message":""}"#,
            r#" { "timestamp" : -5 , "severity" : "WARN" , "source" : "app" , "message" : "hi" } "#,
            r#"{"message":"x","extra":null,"ok":true,"bad":false,"n":-0.25,"z":0,"source":"s","severity":"E","timestamp":0}"#,
            r#"{"timestamp":123456789012345678,"severity":"é","source":"日本","message":"ünïcode"}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"say \"hi\" \\ \/ \n\t"}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","tags":["a", 1, null]}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","x":{},"y":[]}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","trace":{"id":"ab","span":{"n":[1.5,{"k":true}]}}}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","x":[[[[[[[[1]]]]]]]]}"#,
            r#"{"timestamp" :1,"severity": "I","source":"s","message" : "m"}"#,
            r#"{"t":0,"s":1,"sev":2,"sourcex":3,"m":4,"timestamp":1,"severity":"I","source":"s","message":"m"}"#,
            r#"{"severitx":"E","timestaxx":2,"messages":3,"timestamp":1,"severity":"I","source":"s","message":"m"}"#,
        ] {
            assert!(is_plain_valid(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn a_body_is_walked_up_to_its_first_line_that_is_not_plain() {
        let plain = format!("{PLAIN}\n");
        let n = plain.len();
        for (body, expected) in [
            (format!("{plain}{plain}{plain}"), (3, 3 * n)),
            (format!("{plain}{plain}{PLAIN}"), (2, 2 * n)),
            (format!("{plain}\n{plain}"), (1, n)),
            // Spaces around a message are the message's.
            (format!("  {PLAIN}  \n{plain}"), (2, 2 * n + 4)),
            (
                format!("{plain}{{\"message\":\"\\u0041\"}}\n{plain}"),
                (1, n),
            ),
            // A line end or a control character outside a string ends the start.
            (format!("{plain}{plain}\r\n"), (2, 2 * n)),
            (format!("{PLAIN}\r\n{plain}"), (0, 0)),
            (
                format!("{plain}{}\n{plain}", PLAIN.replace(",", ",\t")),
                (1, n),
            ),
            // A control character inside a string ends the start where its message begins.
            (
                format!("{plain}{}\n{plain}", PLAIN.replace("GET", "G\tET")),
                (1, n),
            ),
            // A raw newline inside a string: two broken lines, not one message.
            (
                format!("{plain}{}\n", PLAIN.replace("GET", "G\nET")),
                (1, n),
            ),
            (
                format!("{}\n{plain}", PLAIN.replace("GET", "G\nET")),
                (0, 0),
            ),
            (String::new(), (0, 0)),
        ] {
            assert_eq!(plain_ndjson_prefix(body.as_bytes()), expected, "{body:?}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for line in [
            "",
            "{}",
            r#"{"timestamp":1,"severity":"INFO","source":"db"}"#,
            r#"{"timestamp":1,"severitx":"INFO","source":"db","message":"m"}"#,
            r#"{"timestamp":1,"severity":"","source":"db","message":"m"}"#,
            r#"{"timestamp":1,"severity":"I","source":"","message":"m"}"#,
            r#"{"timestamp":1.5,"severity":"I","source":"s","message":"m"}"#,
            r#"{"timestamp":1e3,"severity":"I","source":"s","message":"m"}"#,
            r#"{"timestamp":"1","severity":"I","source":"s","message":"m"}"#,
            r#"{"timestamp":01,"severity":"I","source":"s","message":"m"}"#,
            r#"{"timestamp":-0,"severity":"I","source":"s","message":"m"}"#,
            r#"{"timestamp":1234567890123456789,"severity":"I","source":"s","message":"m"}"#,
            r#"{"timestamp":1,"timestamp":2,"severity":"I","source":"s","message":"m"}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","source" :"t"}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","message":"t"}"#,
            "{\"timestamp\":1,\"severity\":\"I\",\"source\":\"s\",\"message\":\"a\tb\"}",
            r#"{"timestamp":1,"severity":"I","source":"s","message":"\u0041"}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"\x"}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m\"}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","x":[[[[[[[[[1]]]]]]]]]}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","x":[1,]}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","x":{"a"}}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","x":{"a":1,}}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","x":[1 2]}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","x":1.}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m","x":tru}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m",}"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m"} x"#,
            r#"{"timestamp":1,"severity":"I","source":"s","message":"m""#,
            r#"["timestamp",1]"#,
        ] {
            assert!(!is_plain_valid(line.as_bytes()), "{line}");
        }
    }

    /// The walk checks the UTF-8 of strings itself: every way a byte sequence can fail to
    /// be UTF-8, at the start, middle and end of a string and of a chunk of the scan.
    #[test]
    fn strings_that_are_not_utf8_are_left_to_serde() {
        let good: [&[u8]; 5] = [
            b"\xc3\xa9",
            b"\xe6\x97\xa5",
            b"\xf0\x9f\x98\x80",
            b"\xf4\x8f\xbf\xbf",
            b"\xed\x9f\xbf",
        ];
        let bad: [&[u8]; 10] = [
            b"\x80",             // a lone continuation byte
            b"\xc3",             // cut short by the quote
            b"\xc3\x28",         // a lead byte without its continuation
            b"\xc0\xaf",         // overlong
            b"\xe0\x80\xaf",     // overlong
            b"\xed\xa0\x80",     // a UTF-16 surrogate
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"\xf5\x80\x80\x80", // no such lead byte
            b"\xff",
            b"\xe6\x97\\n", // cut short by an escape
        ];
        let line = |text: &[u8]| {
            let mut line = br#"{"timestamp":1,"severity":"I","source":"s","message":""#.to_vec();
            line.extend_from_slice(text);
            line.extend_from_slice(br#""}"#);
            line
        };
        for pad in ["", "a", "abcdefg", "abcdefghijklmno", "abcdefghijklmnop"] {
            for text in good {
                for text in [
                    [pad.as_bytes(), text].concat(),
                    [text, pad.as_bytes()].concat(),
                ] {
                    assert!(is_plain_valid(&line(&text)), "{text:?}");
                }
            }
            for text in bad {
                for text in [
                    [pad.as_bytes(), text].concat(),
                    [text, pad.as_bytes()].concat(),
                    [b"\xc3\xa9", pad.as_bytes(), text].concat(),
                ] {
                    let line = line(&text);
                    assert!(std::str::from_utf8(&line).is_err(), "{text:?}");
                    assert!(!is_plain_valid(&line), "{text:?}");
                }
            }
        }
        // Outside strings, only ASCII.
        assert!(!is_plain_valid(
            "{\"timestamp\":1,\"severity\":\"I\",\"source\":\"s\",\"message\":\"m\"}\u{a0}"
                .as_bytes()
        ));
    }
}

#[cfg(test)]
mod agrees_with_serde {
    //! The fast path may only ever say "valid" where serde_json's path does too.
    use proptest::prelude::*;

    use super::{
        is_plain_valid, plain_ndjson_prefix, stops_a_string, string_stop, string_stop_swar,
    };
    use crate::message::validate_with_serde;

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("timestamp"),
            Just("severity"),
            Just("source"),
            Just("message"),
            Just("host"),
            Just(""),
            Just("times\\u0074amp"),
            Just("Timestamp"),
            // Near misses of the required keys' one-compare path.
            Just("timestamps"),
            Just("sev"),
            Just("s"),
            Just("sourcex"),
            Just("m"),
            // The same length as a required key and its first eight bytes, another tail.
            Just("severitx"),
            Just("timestaxx"),
            Just("messages"),
        ]
        .prop_map(|k| format!("\"{k}\""))
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "-?[0-9]{0,20}(\\.[0-9]{0,3})?([eE][+-]?[0-9]{0,3})?",
            "\"[ -~é日]{0,12}\"",
            Just("\"\"".to_owned()),
            Just("\"a\\\"b\"".to_owned()),
            Just("\"a\\u0000\"".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            Just("tru".to_owned()),
            Just("{}".to_owned()),
            Just("[1]".to_owned()),
            Just("[]".to_owned()),
            Just("[1,]".to_owned()),
            Just("[,1]".to_owned()),
            Just("[1 2]".to_owned()),
            Just("{\"a\":[1,{\"b\":null}],\"a\":\"x\"}".to_owned()),
            Just("{\"a\"}".to_owned()),
            Just("{\"a\":}".to_owned()),
            Just("{1:2}".to_owned()),
            Just("[[[[[[[[1]]]]]]]]".to_owned()),
            Just("[[[[[[[[[1]]]]]]]]]".to_owned()),
            Just("\"\\n\\t\\/\"".to_owned()),
            Just("\"\\x\"".to_owned()),
            Just("\"\\\"".to_owned()),
            Just("-".to_owned()),
        ]
    }

    fn separator() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            8 => Just(","),
            1 => Just(" , "),
            1 => Just(""),
            1 => Just(",,"),
            1 => Just(";"),
        ]
    }

    /// Lines shaped like messages, often valid, often one detail wrong: the four fields
    /// (each usually of its type, sometimes anything, sometimes missing), a few others, in
    /// any order, with usually the right punctuation.
    fn message_like() -> impl Strategy<Value = String> {
        let required = [
            ("timestamp", "-?[0-9]{1,19}".boxed()),
            ("severity", "\"[A-Z]{0,4}\"".boxed()),
            ("source", "\"[a-z]{0,4}\"".boxed()),
            ("message", "\"[ -!#-\\[\\]-~]{0,20}\"".boxed()),
        ]
        .map(|(k, typed)| {
            prop_oneof![
                6 => typed.prop_map(move |v| Some(format!("\"{k}\":{v}"))),
                2 => value().prop_map(move |v| Some(format!("\"{k}\":{v}"))),
                1 => Just(None),
            ]
        });
        let extra = prop::collection::vec(
            (key(), value()).prop_map(|(k, v)| Some(format!("{k}:{v}"))),
            0..3,
        );
        (
            required,
            extra,
            prop::collection::vec(separator(), 8),
            prop_oneof![8 => Just("{"), 1 => Just(" {"), 1 => Just("["), 1 => Just("")],
            prop_oneof![8 => Just("}"), 1 => Just("} "), 1 => Just(""), 1 => Just("}}"), 1 => Just("} x")],
        )
            .prop_flat_map(|(required, extra, seps, open, close)| {
                let fields: Vec<String> = required.into_iter().chain(extra).flatten().collect();
                (Just(fields).prop_shuffle(), Just(seps), Just(open), Just(close))
            })
            .prop_map(|(fields, seps, open, close)| {
                let mut line = open.to_owned();
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        line.push_str(seps[i % seps.len()]);
                    }
                    line.push_str(field);
                }
                line.push_str(close);
                line
            })
    }

    /// A valid plain message with every required field, in a random order.
    fn plain_message() -> impl Strategy<Value = String> {
        (
            any::<i32>(),
            "[A-Z]{1,5}",
            "[a-z]{1,8}",
            "[ -!#-\\[\\]-~é日€😀]{0,40}",
            Just([0usize, 1, 2, 3]).prop_shuffle(),
        )
            .prop_map(|(ts, sev, src, msg, order)| {
                let fields = [
                    format!("\"timestamp\":{ts}"),
                    format!("\"severity\":\"{sev}\""),
                    format!("\"source\":\"{src}\""),
                    format!("\"message\":\"{msg}\""),
                ];
                let parts: Vec<&str> = order.iter().map(|&i| fields[i].as_str()).collect();
                format!("{{{}}}", parts.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16_384))]

        #[test]
        fn finds_the_first_string_stop_as_a_byte_loop_does(
            bytes in prop::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(b'!'), Just(b'#'), Just(0x5b_u8), Just(0xa2_u8), Just(b'\n'), Just(0x1f_u8), Just(0x20_u8), any::<u8>()],
                0..40,
            ),
            fill in 0..3usize,
        ) {
            // Mostly ordinary bytes in front, so the match lands in every lane of a word.
            let mut line = vec![b'a'; fill * 7];
            line.extend(bytes);
            let naive = line.iter().position(|&b| stops_a_string(b));
            prop_assert_eq!(string_stop::<false>(&line), naive);
            prop_assert_eq!(string_stop_swar::<false>(&line), naive);
            let naive = line.iter().position(|&b| stops_a_string(b) || !b.is_ascii());
            prop_assert_eq!(string_stop::<true>(&line), naive);
            prop_assert_eq!(string_stop_swar::<true>(&line), naive);
        }

        #[test]
        fn never_accepts_what_serde_refuses(line in message_like()) {
            if is_plain_valid(line.as_bytes()) {
                prop_assert!(validate_with_serde(&line).is_ok(), "fast path accepted {line}");
            }
        }

        /// The one walk over a body takes exactly the lines the line-by-line path would
        /// take as plain, up to the first it would not (or none, see below).
        #[test]
        fn plain_prefix_is_the_plain_lines_a_split_finds_first(
            lines in prop::collection::vec(
                prop_oneof![
                    3 => plain_message(),
                    1 => message_like(),
                    1 => plain_message().prop_map(|m| m.replacen("\":\"", "\":\"a\nb", 1)),
                    1 => plain_message().prop_map(|m| m.replacen("\":\"", "\":\"a\tb", 1)),
                    1 => plain_message().prop_map(|m| m.replacen(',', ",\r", 1)),
                    1 => Just(String::new()),
                ],
                0..6,
            ),
            final_newline in any::<bool>(),
        ) {
            let mut body = lines.join("\n");
            if final_newline {
                body.push('\n');
            }
            let bytes = body.as_bytes();
            let mut expected = (0u32, 0usize);
            for piece in bytes.split(|&b| b == b'\n') {
                let stop = expected.1 + piece.len();
                if stop == bytes.len() || !is_plain_valid(piece) {
                    break;
                }
                expected = (expected.0 + 1, stop + 1);
            }
            prop_assert_eq!(plain_ndjson_prefix(bytes), expected, "{:?}", body);
        }

        #[test]
        fn never_accepts_mutated_lines_serde_refuses(
            line in plain_message(),
            at in any::<prop::sample::Index>(),
            byte in prop_oneof![Just(b'"'), Just(b'\\'), Just(b'{'), Just(b'}'), Just(b','), Just(b':'), Just(b' '), Just(b'0'), Just(b'-'), Just(b'.'), Just(b'e'), Just(b'\t'), Just(0x80_u8), Just(0xa9_u8), Just(0xc3_u8), Just(0xe6_u8), Just(0xed_u8), Just(0xf0_u8), Just(0xff_u8)],
            delete in any::<bool>(),
        ) {
            let mut bytes = line.into_bytes();
            let i = at.index(bytes.len() + 1);
            if delete && i < bytes.len() {
                bytes.remove(i);
            } else {
                bytes.insert(i, byte);
            }
            if is_plain_valid(&bytes) {
                let line = std::str::from_utf8(&bytes);
                prop_assert!(line.is_ok_and(|line| validate_with_serde(line).is_ok()), "fast path accepted {:?}", bytes);
            }
        }

        #[test]
        fn takes_every_plain_message(line in plain_message()) {
            prop_assert!(validate_with_serde(&line).is_ok(), "not valid after all: {line}");
            prop_assert!(is_plain_valid(line.as_bytes()), "fast path missed {line}");
        }
    }

    /// The first property is only as good as its inputs: enough of them must take the fast
    /// path, and enough be refused by serde_json, for a fast path that accepts too much to
    /// be caught.
    #[test]
    fn message_like_lines_often_take_the_fast_path() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = message_like();
        let (mut fast, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let line = strategy.new_tree(&mut runner).unwrap().current();
            fast += usize::from(is_plain_valid(line.as_bytes()));
            refused += usize::from(validate_with_serde(&line).is_err());
        }
        assert!(fast >= 100, "only {fast} of 20,000 took the fast path");
        assert!(refused >= 1000, "only {refused} of 20,000 were refused");
    }
}
