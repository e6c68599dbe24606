//! Severity: the many ways loggers say how bad a record is, read into six words.
//!
//! The vocabulary, the words and numbers each takes, and why, are in the table of the
//! [`mapping`](super) module documentation.

use std::fmt;

/// The severity of a message, in the one vocabulary every ingest path writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Severity {
    /// The word written in a message's `severity` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Trace => "TRACE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }

    /// A severity word of any logger, case-insensitive; OpenTelemetry's numbered words
    /// (`INFO2`, `WARN4`) and numbers written as text (journald's `PRIORITY` is `"6"`)
    /// included. `None` for a word that is not in the table.
    pub fn from_text(text: &str) -> Option<Severity> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().ok().and_then(Severity::from_number);
        }
        // The words are short: anything longer than the longest is not one of them.
        let mut lower = [0u8; 16];
        let bytes = text.as_bytes();
        if bytes.len() > lower.len() {
            return None;
        }
        lower[..bytes.len()].copy_from_slice(bytes);
        lower[..bytes.len()].make_ascii_lowercase();
        let word = &lower[..bytes.len()];
        Severity::from_word(word).or_else(|| {
            // OpenTelemetry's severity texts number the steps within a level: INFO2..INFO4.
            let (last, stem) = word.split_last()?;
            matches!(last, b'2'..=b'4').then_some(())?;
            Severity::from_word(stem)
        })
    }

    fn from_word(word: &[u8]) -> Option<Severity> {
        Some(match word {
            b"trace" | b"verbose" | b"finest" | b"finer" | b"t" => Severity::Trace,
            b"debug" | b"dbg" | b"fine" | b"config" | b"d" => Severity::Debug,
            b"info" | b"information" | b"informational" | b"notice" | b"i" => Severity::Info,
            b"warn" | b"warning" | b"w" => Severity::Warn,
            b"error" | b"err" | b"severe" | b"e" => Severity::Error,
            b"fatal" | b"critical" | b"crit" | b"alert" | b"emerg" | b"emergency" | b"panic"
            | b"dpanic" | b"f" => Severity::Fatal,
            _ => return None,
        })
    }

    /// A severity number under a generic name (`level`, `severity`...): syslog's 0-7
    /// (0 is the worst), or pino's and bunyan's 10-60 (60 is the worst).
    pub fn from_number(number: i64) -> Option<Severity> {
        Some(match number {
            0..=2 => Severity::Fatal,
            3 => Severity::Error,
            4 => Severity::Warn,
            5 | 6 => Severity::Info,
            7 => Severity::Debug,
            10 => Severity::Trace,
            20 => Severity::Debug,
            30 => Severity::Info,
            40 => Severity::Warn,
            50 => Severity::Error,
            60 => Severity::Fatal,
            _ => return None,
        })
    }

    /// An OpenTelemetry `SeverityNumber`: 1-4 TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN,
    /// 17-20 ERROR, 21-24 FATAL; 0 is "unspecified".
    pub fn from_otlp_number(number: i64) -> Option<Severity> {
        Some(match number {
            1..=4 => Severity::Trace,
            5..=8 => Severity::Debug,
            9..=12 => Severity::Info,
            13..=16 => Severity::Warn,
            17..=20 => Severity::Error,
            21..=24 => Severity::Fatal,
            _ => return None,
        })
    }

    /// The OpenTelemetry `SeverityNumber` of the word: the first of its four steps (`INFO`
    /// is 9), which [`Severity::from_otlp_number`] reads back as the word.
    pub fn otlp_number(self) -> i32 {
        match self {
            Severity::Trace => 1,
            Severity::Debug => 5,
            Severity::Info => 9,
            Severity::Warn => 13,
            Severity::Error => 17,
            Severity::Fatal => 21,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_of_every_logger() {
        for (text, want) in [
            ("warning", Some(Severity::Warn)),
            ("WARNING", Some(Severity::Warn)),
            (" Warn ", Some(Severity::Warn)),
            ("err", Some(Severity::Error)),
            ("crit", Some(Severity::Fatal)),
            ("CRITICAL", Some(Severity::Fatal)),
            ("Information", Some(Severity::Info)),
            ("notice", Some(Severity::Info)),
            ("Verbose", Some(Severity::Trace)),
            ("SEVERE", Some(Severity::Error)),
            ("INFO2", Some(Severity::Info)),
            ("FATAL4", Some(Severity::Fatal)),
            ("6", Some(Severity::Info)),
            ("30", Some(Severity::Info)),
            ("INFO5", None),
            ("chatty", None),
            ("", None),
            ("a much longer text than any word", None),
        ] {
            assert_eq!(Severity::from_text(text), want, "{text:?}");
        }
    }

    #[test]
    fn numbers_by_their_scheme() {
        assert_eq!(Severity::from_number(3), Some(Severity::Error));
        assert_eq!(Severity::from_number(50), Some(Severity::Error));
        assert_eq!(Severity::from_number(11), None);
        assert_eq!(Severity::from_otlp_number(9), Some(Severity::Info));
        assert_eq!(Severity::from_otlp_number(17), Some(Severity::Error));
        assert_eq!(Severity::from_otlp_number(0), None);
        for severity in [
            Severity::Trace,
            Severity::Debug,
            Severity::Info,
            Severity::Warn,
            Severity::Error,
            Severity::Fatal,
        ] {
            let number = i64::from(severity.otlp_number());
            assert_eq!(Severity::from_otlp_number(number), Some(severity));
        }
    }
}
