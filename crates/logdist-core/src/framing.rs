//! The fast path of `--validate framing`: the start of an NDJSON body whose lines are
//! written the usual way, found in one pass over its bytes, sixty-four at a time.
//!
//! A usual line begins with `{` and ends with `}` and its `\n`. It passes the framing
//! check as it is (no spaces to trim, no `\r`, not blank), so only the byte at each end of
//! it is looked at. The pass marks the body's newlines and its bytes that are not ASCII,
//! a bit each, so a body of ASCII text (almost every log body) needs no UTF-8 check.
//!
//! Why not `memchr` from newline to newline, as before: log lines are short (100-200
//! bytes), and each call's setup cost as much as its search. On the paced mix that loop
//! and the UTF-8 check after it took a quarter of the distributor's user time with
//! framing (see the table of changes in `bench/HISTORY.md` for what this pass saves).

/// The longest start of an NDJSON body whose lines each begin with `{` and end with `}`
/// and `\n`, up to `u32::MAX` of them: how many lines, where that start ends, and whether
/// it is all ASCII (if not, it may not be UTF-8: the caller checks it).
pub(crate) fn framed_prefix(body: &[u8]) -> (u32, usize, bool) {
    let (mut lines, mut end) = (0u32, 0);
    // Where the first byte that is not ASCII is, once one is seen.
    let mut first_other: Option<usize> = None;
    let (blocks, tail) = body.as_chunks::<64>();
    // The last bytes padded with zeros, which are neither newlines nor above ASCII.
    let mut last = [0u8; 64];
    last[..tail.len()].copy_from_slice(tail);
    'blocks: for (i, block) in blocks.iter().chain([&last]).enumerate() {
        let base = i * 64;
        let (mut newlines, others) = marks(block);
        if first_other.is_none() && others != 0 {
            first_other = Some(base + others.trailing_zeros() as usize);
        }
        while newlines != 0 {
            let newline = base + newlines.trailing_zeros() as usize;
            newlines &= newlines - 1;
            let line = &body[end..newline];
            if lines == u32::MAX || line.first() != Some(&b'{') || line.last() != Some(&b'}') {
                break 'blocks;
            }
            lines += 1;
            end = newline + 1;
        }
    }
    (lines, end, first_other.is_none_or(|at| at >= end))
}

/// Marks the newlines and the bytes that are not ASCII among 64, one bit each (bit `i` for
/// byte `i`), sixteen bytes at a time with SSE2, which every x86-64 has. Through
/// `safe_arch` for the reason given at `plain::string_stop`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn marks(block: &[u8; 64]) -> (u64, u64) {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let newline = set_splat_i8_m128i(b'\n' as i8);
    let (quarters, _) = block.as_chunks::<16>();
    let v: [_; 4] = std::array::from_fn(|i| load_unaligned_m128i(&quarters[i]));
    // A byte's high bit, in a compare's result or in the byte itself (set in every byte
    // that is not ASCII), 16 bits a mask.
    let mask = |v| u64::from(move_mask_i8_m128i(v) as u16);
    let newlines = (0..4).fold(0, |bits, i| {
        bits | mask(cmp_eq_mask_i8_m128i(v[i], newline)) << (16 * i)
    });
    // Almost every block is ASCII: one mask says so for all 64 bytes.
    let others = if mask(v[0] | v[1] | v[2] | v[3]) == 0 {
        0
    } else {
        (0..4).fold(0, |bits, i| bits | mask(v[i]) << (16 * i))
    };
    (newlines, others)
}

#[cfg(not(target_arch = "x86_64"))]
fn marks(block: &[u8; 64]) -> (u64, u64) {
    marks_bytewise(block)
}

/// [`marks`] a byte at a time, on any target.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn marks_bytewise(block: &[u8; 64]) -> (u64, u64) {
    block
        .iter()
        .enumerate()
        .fold((0, 0), |(newlines, others), (i, &b)| {
            (
                newlines | u64::from(b == b'\n') << i,
                others | u64::from(!b.is_ascii()) << i,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What [`framed_prefix`] finds, from newline to newline with `memchr` (the code it
    /// replaced) and an ASCII check of the start.
    fn line_by_line(body: &[u8]) -> (u32, usize, bool) {
        let (mut lines, mut end) = (0u32, 0);
        for newline in memchr::memchr_iter(b'\n', body) {
            let line = &body[end..newline];
            if line.first() != Some(&b'{') || line.last() != Some(&b'}') {
                break;
            }
            lines += 1;
            end = newline + 1;
        }
        (lines, end, body[..end].is_ascii())
    }

    #[test]
    fn lines_written_the_usual_way_are_taken() {
        let line = r#"{"timestamp":1,"severity":"I","source":"s","message":"m"}"#;
        let n = line.len() + 1;
        for (body, expected) in [
            (format!("{line}\n{line}\n{line}\n"), (3, 3 * n, true)),
            (format!("{line}\n{line}\n{line}"), (2, 2 * n, true)),
            (format!("{line}\n\n{line}\n"), (1, n, true)),
            (format!("{line}\n {line}\n"), (1, n, true)),
            (format!("{line}\r\n{line}\n"), (0, 0, true)),
            ("{}\n{\n}\n".to_owned(), (1, 3, true)),
            ("{\"é\"}\n{}\n".to_owned(), (2, 10, false)),
            ("{}\n{\"é\"}\n".to_owned(), (2, 10, false)),
            ("{}\n{\"é\"\n".to_owned(), (1, 3, true)),
            ("{}\n{}\"é\"".to_owned(), (1, 3, true)),
            (String::new(), (0, 0, true)),
            ("\n".to_owned(), (0, 0, true)),
        ] {
            assert_eq!(framed_prefix(body.as_bytes()), expected, "{body:?}");
        }
        // Lines across the 64-byte blocks, and a body of exactly one block.
        let long = format!("{{{}}}\n", "x".repeat(150));
        let body = long.repeat(5);
        assert_eq!(framed_prefix(body.as_bytes()), (5, body.len(), true));
        let exact = format!("{{{}}}\n", "y".repeat(61));
        assert_eq!(framed_prefix(exact.as_bytes()), (1, 64, true));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn marks_as_a_byte_loop_does(
            block in prop::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'{'), Just(0x7f_u8), Just(0x80_u8), Just(0xff_u8), any::<u8>()],
                64,
            ),
        ) {
            let block: [u8; 64] = block.try_into().expect("64 bytes");
            prop_assert_eq!(marks(&block), marks_bytewise(&block));
        }

        /// Lines framed right or not, short and long (across blocks), ASCII or not.
        #[test]
        fn finds_the_start_the_line_by_line_loop_finds(
            parts in prop::collection::vec(
                prop_oneof![
                    4 => "\\{[a-z\"]{0,90}\\}",
                    1 => "\\{[a-zé日\\xff]{0,90}\\}",
                    1 => "[ {}\r\n]{0,3}",
                    1 => prop::collection::vec(any::<u8>(), 0..80)
                        .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                ],
                0..16,
            ),
            bad in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..2),
        ) {
            let mut body = parts.join("\n").into_bytes();
            for (at, byte) in bad {
                let at = at.index(body.len() + 1);
                body.insert(at, byte);
            }
            prop_assert_eq!(framed_prefix(&body), line_by_line(&body));
        }
    }
}
