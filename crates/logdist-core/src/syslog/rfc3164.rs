//! RFC 3164 (BSD syslog), after `<PRI>`: `TIMESTAMP SP HOSTNAME SP TAG: MSG`, as loosely
//! as its senders write it. RFC 3164 itself describes what was seen in the wild, and says
//! a relay takes a message without a valid header as all message: so nothing after the
//! PRI is an error here. The parts found are:
//!
//! - a time: `Mmm dd hh:mm:ss` (the day may be padded with a space or a zero), or an
//!   RFC 3339 time as rsyslog's forwarding templates write it; else the arrival time;
//! - a HOSTNAME: the next word, unless it is a TAG (local senders leave the host out);
//! - a TAG: a word ending in `:`, as `app:` or `app[pid]:`; its name is the APP-NAME and
//!   the `pid` the PROCID;
//! - the rest, the message.
//!
//! `Mmm dd` has no year and no zone: the time is taken as UTC, in the year that puts it
//! closest before the arrival time (a December message read in January is last year's),
//! tolerating a day of clock skew ahead.

use super::{Parsed, message_text};
use crate::mapping::parse_rfc3339;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const NANOS_PER_DAY: i128 = 86_400 * 1_000_000_000;

/// Reads what follows `<PRI>`; `now_ms` gives the year of a time written without one.
pub(crate) fn parse(text: &str, now_ms: i64) -> Parsed<'_> {
    let (time, rest) = match bsd_time(text, now_ms) {
        Some((time, rest)) => (Some(time), rest),
        None => match rfc3339_time(text) {
            Some((time, rest)) => (Some(time), rest),
            None => (None, text),
        },
    };
    let mut parsed = Parsed {
        time,
        ..Parsed::default()
    };
    let mut rest = rest;
    // Without a time there is no header: only a TAG is looked for.
    if time.is_some()
        && let Some((word, after)) = rest.split_once(' ')
        && tag(word).is_none()
        && !word.is_empty()
        && word.bytes().all(|b| b.is_ascii_graphic())
    {
        parsed.hostname = Some(word);
        rest = after;
    }
    let word = rest.split_once(' ').map_or(rest, |(word, _)| word);
    if let Some((appname, procid)) = tag(word) {
        parsed.appname = Some(appname);
        parsed.procid = procid;
        rest = &rest[word.len()..];
        rest = rest.strip_prefix(' ').unwrap_or(rest);
    }
    parsed.message = message_text(rest);
    parsed
}

/// A TAG: `name:` or `name[pid]:`, the name visible ASCII without `[`, `]` or `:`.
fn tag(word: &str) -> Option<(&str, Option<&str>)> {
    let word = word.strip_suffix(':')?;
    let (name, procid) = match word.strip_suffix(']') {
        Some(open) => {
            let (name, pid) = open.split_once('[')?;
            (name, Some(pid).filter(|pid| !pid.is_empty()))
        }
        None => (word, None),
    };
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'[' | b']' | b':'))
    };
    (!name.is_empty() && plain(name) && procid.is_none_or(plain)).then_some((name, procid))
}

/// `Mmm dd hh:mm:ss ` at the start: its time and what follows it.
fn bsd_time(text: &str, now_ms: i64) -> Option<(i128, &str)> {
    let b = text.as_bytes();
    if b.len() < 16 || b[3] != b' ' || b[6] != b' ' || b[15] != b' ' {
        return None;
    }
    let month = MONTHS.iter().position(|m| m.as_bytes() == &b[..3])? + 1;
    let day = match (b[4], b[5]) {
        (b' ' | b'0', d @ b'1'..=b'9') => d - b'0',
        (t @ b'1'..=b'3', d) if d.is_ascii_digit() => (t - b'0') * 10 + (d - b'0'),
        _ => return None,
    };
    let clock = text.get(7..15)?;
    let now = i128::from(now_ms) * 1_000_000;
    let year = year_of(now);
    // This year's, or last year's when this year's would be more than a day ahead.
    let at = |year: i64| parse_rfc3339(&format!("{year:04}-{month:02}-{day:02}T{clock}Z"));
    let time = match at(year) {
        Some(time) if time <= now + NANOS_PER_DAY => time,
        _ => at(year - 1)?,
    };
    Some((time, &text[16..]))
}

/// An RFC 3339 time and a space at the start: its time and what follows.
fn rfc3339_time(text: &str) -> Option<(i128, &str)> {
    let (word, rest) = text.split_once(' ')?;
    if !word.as_bytes().first()?.is_ascii_digit() {
        return None;
    }
    Some((parse_rfc3339(word)?, rest))
}

/// The civil year of epoch nanoseconds (Howard Hinnant's `civil_from_days`).
fn year_of(nanos: i128) -> i64 {
    let days = i64::try_from(nanos.div_euclid(NANOS_PER_DAY)).unwrap_or(0) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let year = year_of_era + era * 400;
    if month_from_march >= 10 {
        year + 1
    } else {
        year
    }
}
