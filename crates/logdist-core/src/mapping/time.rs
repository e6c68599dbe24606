//! Time: epoch numbers of any unit and RFC 3339 text, read exactly into nanoseconds, and
//! written as an integer in the unit the distributor is configured with.
//!
//! Numbers are read from their decimal text, never through an `f64`: Fluent Bit's
//! `"date":1796552910.306` is 1796552910.305999994... as a double, which would come out a
//! millisecond early.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The unit of the integer written in a message's `timestamp` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampUnit {
    Seconds,
    /// Epoch milliseconds: what the original analyzer's examples use (the default).
    #[default]
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl TimestampUnit {
    fn nanos(self) -> i128 {
        match self {
            TimestampUnit::Seconds => 1_000_000_000,
            TimestampUnit::Milliseconds => 1_000_000,
            TimestampUnit::Microseconds => 1_000,
            TimestampUnit::Nanoseconds => 1,
        }
    }

    /// Epoch nanoseconds in this unit, rounded down; `None` when they do not fit an `i64`
    /// (nanoseconds after the year 2262).
    pub fn from_nanos(self, nanos: i128) -> Option<i64> {
        i64::try_from(nanos.div_euclid(self.nanos())).ok()
    }

    /// A time in this unit as epoch nanoseconds (what [`TimestampUnit::from_nanos`] gives
    /// back, for a time it wrote).
    pub fn to_nanos(self, time: i64) -> i128 {
        i128::from(time) * self.nanos()
    }

    /// A moment in this unit (the arrival time of a record without one).
    pub fn from_system_time(self, at: SystemTime) -> Option<i64> {
        let nanos = match at.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_nanos() as i128,
            Err(before) => -(before.duration().as_nanos() as i128),
        };
        self.from_nanos(nanos)
    }
}

impl FromStr for TimestampUnit {
    type Err = String;

    /// `s`, `ms`, `us` or `ns` (and their long names).
    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "s" | "seconds" => TimestampUnit::Seconds,
            "ms" | "milliseconds" => TimestampUnit::Milliseconds,
            "us" | "microseconds" => TimestampUnit::Microseconds,
            "ns" | "nanoseconds" => TimestampUnit::Nanoseconds,
            _ => return Err(format!("unknown timestamp unit `{text}` (s, ms, us or ns)")),
        })
    }
}

impl fmt::Display for TimestampUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimestampUnit::Seconds => "s",
            TimestampUnit::Milliseconds => "ms",
            TimestampUnit::Microseconds => "us",
            TimestampUnit::Nanoseconds => "ns",
        })
    }
}

/// A time as JSON text: a number (or a string of one), or an RFC 3339 string. Epoch
/// nanoseconds, or `None` when it is neither.
pub(crate) fn parse_json(raw: &str) -> Option<i128> {
    match raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        // A time has no escapes: a string with one is no time.
        Some(text) if text.contains('\\') => None,
        Some(text) => parse_text(text),
        None => parse_epoch(raw),
    }
}

/// A time as text: an epoch number, or RFC 3339.
pub(crate) fn parse_text(text: &str) -> Option<i128> {
    let text = text.trim();
    if text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'-')
        && text.len() >= 5
        && text.as_bytes()[4] == b'-'
    {
        return parse_rfc3339(text);
    }
    parse_epoch(text)
}

/// The largest integer part taken for each unit: epoch seconds below 10^11 (the year
/// 5138), milliseconds below 10^14, microseconds below 10^17, nanoseconds beyond.
const SECONDS_BELOW: u128 = 100_000_000_000;

/// An epoch number of any unit, the unit guessed from its magnitude (see
/// [`SECONDS_BELOW`]): `-?digits(.digits)?`, exactly; with an exponent, through an `f64`.
pub(crate) fn parse_epoch(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || int.len() > 30
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (digits.contains('.') && frac.is_empty())
    {
        return parse_exponent(text);
    }
    let whole: u128 = int.parse().ok()?;
    let unit: u128 = if whole < SECONDS_BELOW {
        1_000_000_000
    } else if whole < SECONDS_BELOW * 1000 {
        1_000_000
    } else if whole < SECONDS_BELOW * 1_000_000 {
        1000
    } else {
        1
    };
    // The fraction of one unit, in nanoseconds: its first digits, as many as the unit has.
    let places = unit.ilog10() as usize;
    let mut fraction: u128 = 0;
    for i in 0..places {
        let digit = frac.as_bytes().get(i).map_or(0, |b| b - b'0');
        fraction = fraction * 10 + u128::from(digit);
    }
    let nanos = i128::try_from(whole.checked_mul(unit)?.checked_add(fraction)?).ok()?;
    Some(if negative { -nanos } else { nanos })
}

/// An epoch number written with an exponent (`1.796552910306e9`): rare, so read as an
/// `f64` and then as the plain decimal it stands for.
fn parse_exponent(text: &str) -> Option<i128> {
    if !text.contains(['e', 'E']) {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() || value.abs() >= 1e30 {
        return None;
    }
    // Its shortest decimal, which is what the sender wrote (`{}` never uses an exponent).
    parse_epoch(&format!("{value}"))
}

/// RFC 3339: `YYYY-MM-DDTHH:MM:SS`, an optional fraction, then `Z` or an offset
/// (`+01:00`, or `+0100` as some ISO 8601 writers have it). A space may stand for the `T`
/// (RFC 3339 allows it), and a time without an offset is taken as UTC.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let number = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
    let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut nanos: i128 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 9 {
                nanos = nanos * 10 + i128::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        for _ in (at - start)..9 {
            nanos *= 10;
        }
    }
    let offset_minutes = match b.get(at) {
        None => 0,
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let (hours, minutes) = match b.len() - at {
                6 if b[at + 3] == b':' => (number(at + 1, 2)?, number(at + 4, 2)?),
                5 => (number(at + 1, 2)?, number(at + 3, 2)?),
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let minutes = hours * 60 + minutes;
            if sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01: `(year, month, day)` of the proleptic
/// Gregorian calendar, the inverse of [`days_from_civil`] (Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Epoch nanoseconds as RFC 3339 in UTC (`2026-12-06T10:28:30.306Z`), with the fraction
/// of `unit`: none for seconds, 3 digits for milliseconds, 6 and 9 for the others (rounded
/// down to `unit`). Years before 0 or after 9999 are written as they come, which no RFC
/// 3339 reader takes.
pub(crate) fn format_rfc3339(nanos: i128, unit: TimestampUnit, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    let days = i64::try_from(seconds.div_euclid(86_400)).unwrap_or(i64::MAX / 2);
    let rest = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // Writing to a `Vec` does not fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    );
    let _ = match unit {
        TimestampUnit::Seconds => Ok(()),
        TimestampUnit::Milliseconds => write!(out, ".{:03}", fraction / 1_000_000),
        TimestampUnit::Microseconds => write!(out, ".{:06}", fraction / 1_000),
        TimestampUnit::Nanoseconds => write!(out, ".{fraction:09}"),
    };
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: TimestampUnit = TimestampUnit::Milliseconds;

    fn ms(raw: &str) -> Option<i64> {
        parse_json(raw).and_then(|n| MS.from_nanos(n))
    }

    #[test]
    fn epoch_numbers_of_every_unit() {
        for raw in [
            "1796552910",
            "1796552910.306",
            "\"1796552910.306\"",
            "1796552910306",
            "1796552910306000",
            "\"1796552910306000000\"",
            "1796552910306999999",
            "1.796552910306e9",
        ] {
            let want = if raw == "1796552910" {
                1_796_552_910_000
            } else {
                1_796_552_910_306
            };
            assert_eq!(ms(raw), Some(want), "{raw}");
        }
        assert_eq!(ms("0"), Some(0));
        assert_eq!(ms("-1.5"), Some(-1500));
        for bad in [
            "", "1.", ".5", "1.2.3", "1e999", "\"x\"", "true", "{}", "0x10",
        ] {
            assert_eq!(ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_with_offsets_and_fractions() {
        let at = 1_796_552_910_306;
        for raw in [
            "\"2026-12-06T10:28:30.306Z\"",
            "\"2026-12-06T10:28:30.306000Z\"",
            "\"2026-12-06T10:28:30.306999999999Z\"",
            "\"2026-12-06t10:28:30.306z\"",
            "\"2026-12-06 10:28:30.306\"",
            "\"2026-12-06T11:28:30.306+01:00\"",
            "\"2026-12-06T11:28:30.306+0100\"",
            "\"2026-12-06T05:58:30.306-04:30\"",
        ] {
            assert_eq!(ms(raw), Some(at), "{raw}");
        }
        assert_eq!(ms("\"1970-01-01T00:00:00Z\""), Some(0));
        assert_eq!(ms("\"1969-12-31T23:59:59Z\""), Some(-1000));
        assert_eq!(ms("\"2024-02-29T00:00:00Z\""), Some(1_709_164_800_000));
        for bad in [
            "\"2026-02-29T00:00:00Z\"",
            "\"2026-13-01T00:00:00Z\"",
            "\"2026-12-06T24:00:00Z\"",
            "\"2026-12-06T10:28:30.Z\"",
            "\"2026-12-06T10:28:30Zjunk\"",
            "\"2026-12-06T10:28\"",
            "\"2026-12-06\"",
            "\"06/Dec/2026:10:28:30 +0000\"",
        ] {
            assert_eq!(ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn units_round_down() {
        let nanos = 1_796_552_910_306_999_999;
        assert_eq!(
            TimestampUnit::Seconds.from_nanos(nanos),
            Some(1_796_552_910)
        );
        assert_eq!(
            TimestampUnit::Microseconds.from_nanos(nanos),
            Some(1_796_552_910_306_999)
        );
        assert_eq!(
            TimestampUnit::Nanoseconds.from_nanos(nanos),
            Some(nanos as i64)
        );
        assert_eq!(TimestampUnit::Seconds.from_nanos(-1), Some(-1));
        assert_eq!(TimestampUnit::Nanoseconds.from_nanos(i128::MAX), None);
        assert_eq!("us".parse(), Ok(TimestampUnit::Microseconds));
        assert!("hours".parse::<TimestampUnit>().is_err());
    }

    proptest! {
        /// Any moment of years 0-9999, written as RFC 3339 by hand from its parts, reads
        /// back as the same epoch nanoseconds as the civil-date arithmetic of the standard
        /// library's `SystemTime` gives for moments after 1970.
        #[test]
        fn rfc3339_agrees_with_epoch_arithmetic(secs in 0i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let days = secs.div_euclid(86_400);
            let (y, m, d) = civil_from_days(days);
            let rest = secs.rem_euclid(86_400);
            let text = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
                rest / 3600, rest / 60 % 60, rest % 60
            );
            prop_assert_eq!(parse_rfc3339(&text), Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos)));
        }

        /// What [`format_rfc3339`] writes reads back as the moment it was given, rounded
        /// down to its unit.
        #[test]
        fn formatted_times_read_back(nanos in -62_135_596_800_000_000_000i128..253_402_300_799_999_999_999) {
            for unit in [TimestampUnit::Seconds, MS, TimestampUnit::Microseconds, TimestampUnit::Nanoseconds] {
                let mut text = Vec::new();
                format_rfc3339(nanos, unit, &mut text);
                let text = String::from_utf8(text).unwrap();
                let step = unit.to_nanos(1);
                prop_assert_eq!(parse_rfc3339(&text), Some(nanos.div_euclid(step) * step), "{}", text);
            }
        }

        #[test]
        fn no_text_panics(text in "\\PC{0,40}") {
            let _ = parse_text(&text);
            let _ = parse_json(&text);
        }
    }
}
