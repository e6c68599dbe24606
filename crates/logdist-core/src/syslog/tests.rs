use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// 2026-12-06T10:00:00Z, the arrival time of every test.
const NOW_MS: i64 = 1_796_551_200_000;

fn options() -> SyslogOptions {
    SyslogOptions {
        unit: TimestampUnit::Milliseconds,
        now_ms: NOW_MS,
    }
}

fn decode(text: &[u8]) -> Result<Value, MessageError> {
    let mut out = Vec::new();
    decode_message(text, &options(), &mut out)?;
    assert_eq!(out.last(), Some(&b'\n'));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
    // What the native decoder takes as a message, as it is.
    let line = std::str::from_utf8(&out).unwrap();
    crate::message::validate(line.trim_end()).unwrap();
    Ok(serde_json::from_slice(&out).unwrap())
}

#[test]
fn rfc5424_every_field() {
    let got = decode(
        br#"<165>1 2026-12-06T09:59:58.123Z web-1 checkout 4711 ID47 [exampleSDID@32473 iut="3" eventSource="App\"li\]cation"][meta seq="1"] an order was placed"#,
    )
    .unwrap();
    assert_eq!(
        got,
        json!({
            "timestamp": 1_796_551_198_123_i64,
            "severity": "INFO",
            "source": "checkout",
            "message": "an order was placed",
            "severity_original": "notice",
            "facility": "local4",
            "hostname": "web-1",
            "procid": "4711",
            "msgid": "ID47",
            "sd": {"exampleSDID@32473": {"iut": "3", "eventSource": "App\"li]cation"}, "meta": {"seq": "1"}},
        })
    );
}

#[test]
fn rfc5424_nil_values_and_bom() {
    let got = decode("<11>1 - - - - - - \u{feff}disk full\n".as_bytes()).unwrap();
    assert_eq!(
        got,
        json!({
            "timestamp": NOW_MS,
            "severity": "ERROR",
            "source": "unknown",
            "message": "disk full",
            "severity_original": "err",
            "facility": "user",
        })
    );
    // No message at all; the hostname is the source when there is no APP-NAME.
    let got = decode(b"<0>1 2026-12-06T10:00:00+01:00 host - - - -").unwrap();
    assert_eq!(got["source"], "host");
    assert_eq!(got["message"], "");
    assert_eq!(got["severity"], "FATAL");
    assert_eq!(got["timestamp"], NOW_MS - 3_600_000);
}

#[test]
fn rfc5424_refusals_say_what() {
    for (text, says) in [
        (&b"<13>1 yesterday h a p m - x"[..], "TIMESTAMP `yesterday`"),
        (b"<13>1 - h a p", "ends before its PROCID"),
        (b"<13>1 - h a p m [x", "not closed"),
        (b"<13>1 - h a p m [x a=b]", "no `=\"value\"`"),
        (b"<13>1 - h a p m [x a=\"b]", "no closing quote"),
        (b"<13>1 - h a p m -x", "not followed by a space"),
        (b"<13>1 - h a p m x", "neither `-` nor"),
        (b"<13>1 - h a p m []", "SD-ID"),
        (b"<192>1 - - - - - -", "0 to 191"),
        (b"<1x>hello", "0 to 191"),
        (b"<>hello", "0 to 191"),
        (b"hello", "no `<PRI>`"),
        (b"<13>caf\xc3\xa9 \xff", "not UTF-8 at byte 10"),
    ] {
        let e = decode(text).unwrap_err();
        assert!(e.to_string().contains(says), "{text:?}: {e}");
    }
}

#[test]
fn rfc5424_repeated_names_keep_the_last() {
    let got = decode(br#"<13>1 - h a - - [x a="1" a="2"][y b="3"][x c="4"] m"#).unwrap();
    assert_eq!(got["sd"], json!({"y": {"b": "3"}, "x": {"c": "4"}}));
    let got = decode(br#"<13>1 - h a - - [x a="1" a="2"] m"#).unwrap();
    assert_eq!(got["sd"], json!({"x": {"a": "2"}}));
}

#[test]
fn rfc3164_as_its_senders_write_it() {
    // util-linux logger --rfc3164, syslog-ng's network(), a local tag without a host,
    // rsyslog's RFC 3339 forwarding, and a bare message.
    let got = decode(b"<13>Dec  6 09:30:00 web-1 checkout[4711]: an order").unwrap();
    assert_eq!(
        got,
        json!({
            "timestamp": 1_796_549_400_000_i64,
            "severity": "INFO",
            "source": "checkout",
            "message": "an order",
            "severity_original": "notice",
            "facility": "user",
            "hostname": "web-1",
            "procid": "4711",
        })
    );
    let got = decode(b"<28>Dec 06 09:30:00 sshd: failed password").unwrap();
    assert_eq!(
        (&got["source"], &got["message"], &got["severity"]),
        (&json!("sshd"), &json!("failed password"), &json!("WARN"))
    );
    assert!(got.get("hostname").is_none());
    let got = decode(b"<134>2026-12-06T09:00:00.5+00:00 db-2 postgres[7]: slow query").unwrap();
    assert_eq!(got["timestamp"], 1_796_547_600_500_i64);
    assert_eq!(got["hostname"], "db-2");
    assert_eq!(got["facility"], "local0");
    let got = decode(b"<15>just some text: here").unwrap();
    assert_eq!(got["message"], "just some text: here");
    assert_eq!(got["source"], "unknown");
    assert_eq!(got["timestamp"], NOW_MS);
    assert_eq!(got["severity"], "DEBUG");
    // A host and no tag.
    let got = decode(b"<13>Dec  6 09:30:00 web-1 no tag here").unwrap();
    assert_eq!(got["source"], "web-1");
    assert_eq!(got["message"], "no tag here");
}

#[test]
fn rfc3164_times_are_last_year_when_this_years_would_be_ahead() {
    // Read on 2027-01-01T00:00:30Z: December 31 is last year's, January 1 this year's.
    let new_year = 1_798_761_630_000;
    let options = SyslogOptions {
        unit: TimestampUnit::Seconds,
        now_ms: new_year,
    };
    let mut out = Vec::new();
    decode_message(b"<13>Dec 31 23:59:59 h a: m", &options, &mut out).unwrap();
    decode_message(b"<13>Jan  1 00:00:10 h a: m", &options, &mut out).unwrap();
    let lines: Vec<Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines[0]["timestamp"], 1_798_761_599_i64);
    assert_eq!(lines[1]["timestamp"], 1_798_761_610_i64);
    // February 29 of a year that has none is no time: the words are the message.
    let got = decode(b"<13>Feb 29 10:00:00 h a: m").unwrap();
    assert_eq!(got["timestamp"], NOW_MS);
}

#[test]
fn every_severity_and_facility_has_its_name() {
    let words = [
        "FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG",
    ];
    for (severity, word) in words.iter().enumerate() {
        let got = decode(format!("<{}>1 - - - - - - x", 184 + severity).as_bytes()).unwrap();
        assert_eq!(got["severity"], *word);
        assert_eq!(got["severity_original"], SEVERITIES[severity]);
        assert_eq!(got["facility"], "local7");
    }
    assert_eq!(facility_name(4), "auth");
}

#[test]
fn frames_of_both_framings_in_one_stream() {
    let framer = Framer { max_len: 64 };
    let stream = b"\n20 <13>1 - - - - - - ab<13>hello\r\n\n4 <1>x<14>tail";
    let mut at = 0;
    let mut frames = Vec::new();
    while let Some(frame) = framer.next(&stream[at..]).unwrap() {
        frames.push((
            String::from_utf8_lossy(&stream[at + frame.start..at + frame.end]).into_owned(),
            frame.framing,
        ));
        at += frame.consumed;
    }
    let last = framer.last(&stream[at..]).unwrap().unwrap();
    frames.push((
        String::from_utf8_lossy(&stream[at + last.start..at + last.end]).into_owned(),
        last.framing,
    ));
    assert_eq!(
        frames,
        [
            ("<13>1 - - - - - - ab".to_owned(), Framing::OctetCounted),
            ("<13>hello".to_owned(), Framing::Newline),
            ("<1>x".to_owned(), Framing::OctetCounted),
            ("<14>tail".to_owned(), Framing::Newline),
        ]
    );
}

#[test]
fn hostile_frames_are_refused_by_what_they_are() {
    let framer = Framer { max_len: 16 };
    for (stream, reason) in [
        (&b"17 <13>1 - - - - - - ab"[..], "oversize"),
        (b"<13>a message longer than sixteen", "oversize"),
        (b"12345678901 x", "framing"),
        (b"12x <13>a", "framing"),
        (b"\x00\x01binary", "framing"),
        (b"{\"json\":1}\n", "framing"),
        (b" <13>a\n", "framing"),
    ] {
        let e = framer.next(stream).unwrap_err();
        assert_eq!(e.reason(), reason, "{stream:?}: {e}");
    }
    // A count that promises more than comes: more is awaited, and at the end it is a
    // truncated frame.
    assert_eq!(framer.next(b"9 <13>a").unwrap(), None);
    let e = framer.last(b"9 <13>a").unwrap_err();
    assert_eq!(
        e,
        FrameError::Truncated {
            expected: 9,
            got: 5
        }
    );
    assert_eq!(framer.last(b"12").unwrap_err().reason(), "framing");
    // A count that promises less than the message: the next frame starts inside it.
    let lying = b"3 <13>hello\n";
    let first = framer.next(lying).unwrap().unwrap();
    assert_eq!(&lying[first.start..first.end], b"<13");
    assert!(framer.next(&lying[first.consumed..]).is_err());
    // A start of a line within the limit waits for the rest.
    assert_eq!(framer.next(b"<13>short").unwrap(), None);
    assert_eq!(framer.next(b"").unwrap(), None);
    assert_eq!(framer.last(b"\r\n").unwrap(), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever the bytes, the framer and the decoder answer without panicking, and a
    /// frame is within the buffer and the limit, and moves forward.
    #[test]
    fn nothing_panics(bytes in prop::collection::vec(
        prop_oneof![Just(b'<'), Just(b'>'), Just(b' '), Just(b'\n'), Just(b'1'), Just(b'['),
            Just(b']'), Just(b'"'), Just(b'='), Just(b'-'), any::<u8>()], 0..200),
        max_len in 1usize..64,
    ) {
        let framer = Framer { max_len };
        let mut at = 0;
        loop {
            match framer.next(&bytes[at..]) {
                Ok(Some(frame)) => {
                    prop_assert!(frame.start <= frame.end && frame.end <= frame.consumed);
                    prop_assert!(frame.consumed > 0 && at + frame.consumed <= bytes.len());
                    prop_assert!(frame.end - frame.start <= max_len);
                    let mut out = Vec::new();
                    if decode_message(&bytes[at + frame.start..at + frame.end], &options(), &mut out).is_ok() {
                        let line = std::str::from_utf8(&out).unwrap();
                        prop_assert!(crate::message::validate(line.trim_end()).is_ok());
                    } else {
                        prop_assert!(out.is_empty());
                    }
                    at += frame.consumed;
                }
                Ok(None) => {
                    let _ = framer.last(&bytes[at..]);
                    break;
                }
                Err(_) => break,
            }
        }
        let mut out = Vec::new();
        let _ = decode_message(&bytes, &options(), &mut out);
    }

    /// Messages written octet-counted, back to back, are cut back into the same messages,
    /// however the stream is split into reads.
    #[test]
    fn octet_counted_frames_round_trip(
        messages in prop::collection::vec("<[0-9]{1,3}>[ -~\n\u{e9}]{0,40}", 1..8),
        split in any::<prop::sample::Index>(),
    ) {
        let mut stream = Vec::new();
        for m in &messages {
            stream.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
        }
        let framer = Framer { max_len: 1024 };
        let cut = split.index(stream.len() + 1);
        // Only the first `cut` bytes have come: the frames found are whole ones.
        let mut at = 0;
        let mut got = Vec::new();
        while let Some(frame) = framer.next(&stream[at..cut]).unwrap() {
            got.push(stream[at + frame.start..at + frame.end].to_vec());
            at += frame.consumed;
        }
        while let Some(frame) = framer.next(&stream[at..]).unwrap() {
            got.push(stream[at + frame.start..at + frame.end].to_vec());
            at += frame.consumed;
        }
        prop_assert_eq!(at, stream.len());
        let want: Vec<Vec<u8>> = messages.iter().map(|m| m.as_bytes().to_vec()).collect();
        prop_assert_eq!(got, want);
    }
}
