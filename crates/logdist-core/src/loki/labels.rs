//! A stream's labels as the protobuf push writes them: the selector syntax of Prometheus
//! and LogQL, `{name="value", ...}`, values quoted as Go quotes strings (Loki's clients
//! write them with `strconv.Quote`).

/// The labels of `{name="value", ...}`, in their order; the error says what is wrong.
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut p = Parser {
        text: text.as_bytes(),
        at: 0,
    };
    p.spaces();
    p.expect(b'{')?;
    let mut labels = Vec::new();
    p.spaces();
    if p.eat(b'}') {
        return p.end(labels);
    }
    loop {
        p.spaces();
        let name = p.name()?;
        p.spaces();
        p.expect(b'=')?;
        p.spaces();
        let value = p.quoted()?;
        labels.push((name, value));
        p.spaces();
        match p.next() {
            Some(b',') => {
                p.spaces();
                // A trailing comma, as Prometheus allows.
                if p.eat(b'}') {
                    return p.end(labels);
                }
            }
            Some(b'}') => return p.end(labels),
            _ => return Err(p.error("expected `,` or `}`")),
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("labels: {what} at byte {}", self.at)
    }

    fn next(&mut self) -> Option<u8> {
        let b = *self.text.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> bool {
        let found = self.text.get(self.at) == Some(&want);
        self.at += usize::from(found);
        found
    }

    fn expect(&mut self, want: u8) -> Result<(), String> {
        if self.eat(want) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", want as char)))
        }
    }

    fn spaces(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn end(mut self, labels: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
        self.spaces();
        if self.at == self.text.len() {
            Ok(labels)
        } else {
            Err(self.error("unexpected text after `}`"))
        }
    }

    /// `[a-zA-Z_][a-zA-Z0-9_]*`
    fn name(&mut self) -> Result<String, String> {
        let start = self.at;
        while self.text.get(self.at).is_some_and(|&b| {
            b == b'_' || b.is_ascii_alphabetic() || (self.at > start && b.is_ascii_digit())
        }) {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.error("expected a label name"));
        }
        Ok(String::from_utf8(self.text[start..self.at].to_vec()).expect("ASCII"))
    }

    /// A Go string literal in double quotes, unquoted.
    fn quoted(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.next() {
                None => return Err(self.error("unterminated label value")),
                Some(b'"') => break,
                Some(b'\\') => self.escape(&mut out)?,
                Some(b'\n') => return Err(self.error("a line break in a label value")),
                Some(b) => out.push(b),
            }
        }
        // The text is a `&str`, and escapes write whole characters: this is UTF-8, unless
        // a `\x` escape wrote a lone byte.
        String::from_utf8(out).map_err(|_| self.error("a label value that is not UTF-8"))
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let simple = match self.next() {
            Some(b'a') => 0x07,
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'v') => 0x0b,
            Some(b'\\') => b'\\',
            Some(b'"') => b'"',
            Some(b'\'') => b'\'',
            Some(b'x') => {
                out.push(self.hex(2)? as u8);
                return Ok(());
            }
            Some(kind @ (b'u' | b'U')) => {
                let code = self.hex(if kind == b'u' { 4 } else { 8 })?;
                let c = char::from_u32(code)
                    .ok_or_else(|| self.error("an escape that is no character"))?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                return Ok(());
            }
            _ => return Err(self.error("an unknown escape")),
        };
        out.push(simple);
        Ok(())
    }

    fn hex(&mut self, digits: usize) -> Result<u32, String> {
        let mut n = 0u32;
        for _ in 0..digits {
            let d = self
                .next()
                .and_then(|b| (b as char).to_digit(16))
                .ok_or_else(|| self.error("expected a hex digit"))?;
            n = n << 4 | d;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_as_clients_write_them() {
        assert_eq!(
            parse(r#"{job="api", level="info"}"#).unwrap(),
            pairs(&[("job", "api"), ("level", "info")])
        );
        assert_eq!(parse("{}").unwrap(), pairs(&[]));
        assert_eq!(parse(" { a = \"1\" , } ").unwrap(), pairs(&[("a", "1")]));
        assert_eq!(
            parse(r#"{path="C:\\logs\"x\"", nl="a\nb", u="\u00e9\U0001F600", x="\x41"}"#).unwrap(),
            pairs(&[
                ("path", "C:\\logs\"x\""),
                ("nl", "a\nb"),
                ("u", "é😀"),
                ("x", "A")
            ])
        );
        for bad in [
            "",
            "job=\"a\"",
            "{job=a}",
            "{1a=\"x\"}",
            "{a=\"x\"",
            "{a=\"x\"} y",
            "{a=\"\\q\"}",
            "{a=\"\\xff\"}",
            "{a=\"x\" b=\"y\"}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Labels quoted as Go's `strconv.Quote` does (Rust's `{:?}` escapes alike for
        /// these characters) read back as they were.
        #[test]
        fn quoted_labels_read_back(labels in prop::collection::vec(("[a-z_][a-z0-9_]{0,6}", "\\PC{0,10}"), 0..5)) {
            let text = format!(
                "{{{}}}",
                labels.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join(", ")
            );
            prop_assert_eq!(parse(&text), Ok(labels));
        }

        #[test]
        fn no_text_panics(text in "\\PC{0,40}") {
            let _ = parse(&text);
        }
    }

    /// Go's `strconv.Quote` for printable text: `\"` and `\\` escaped, the rest as it is.
    fn go_quote(text: &str) -> String {
        let mut out = String::from("\"");
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}
