//! Fuzzes the Fluent forward decoder with arbitrary bytes: the framer as a connection
//! feeds it (whole, and cut anywhere), and `decode_forward` on what it frames; also the
//! bytes as the gzipped entries of a CompressedPackedForward frame, so that the stream
//! reader behind the decompression gets arbitrary bytes too. None may panic, the framer's
//! answers must be consistent, and each decoded frame must hold up (`common::check`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use logdist_core::DecodeOptions;
use logdist_core::forward::decode::{Frame, decode_forward, frame};

/// The frame and decompressed size allowed: small, so that the bound is crossed too.
const MAX_LEN: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let options = DecodeOptions {
        max_len: MAX_LEN,
        now_ms: 1_796_553_000_000,
        ..DecodeOptions::default()
    };
    match frame(data, MAX_LEN) {
        Ok(Frame::Complete(n)) => {
            assert!(n <= data.len());
            // Every shorter prefix is partial, asking for more than it has.
            let cut = n / 2;
            match frame(&data[..cut], MAX_LEN) {
                Ok(Frame::Partial { at_least }) => assert!(at_least > cut && at_least <= n),
                other => panic!("prefix of {cut} of a frame of {n}: {other:?}"),
            }
            check(decode_forward(&data[..n], &options));
        }
        Ok(Frame::Partial { at_least }) => assert!(at_least > data.len()),
        Err(e) => assert!(!e.reason.is_empty()),
    }
    // The bytes as PackedForward entries, plain and gzipped.
    for compressed in [false, true] {
        let entries = if compressed {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, data).expect("gzip to memory");
            gz.finish().expect("gzip to memory")
        } else {
            data.to_vec()
        };
        let mut bytes = Vec::with_capacity(entries.len() + 32);
        rmp::encode::write_array_len(&mut bytes, 3).expect("to memory");
        rmp::encode::write_str(&mut bytes, "fuzz").expect("to memory");
        rmp::encode::write_bin(&mut bytes, &entries).expect("to memory");
        rmp::encode::write_map_len(&mut bytes, 1).expect("to memory");
        rmp::encode::write_str(&mut bytes, "compressed").expect("to memory");
        rmp::encode::write_str(&mut bytes, if compressed { "gzip" } else { "text" })
            .expect("to memory");
        check(decode_forward(&bytes, &options));
    }
});

fn check(result: Result<logdist_core::forward::decode::Events, logdist_core::PacketError>) {
    match result {
        Ok(events) => {
            assert_eq!(
                events.entries,
                events.decoded.packet.messages as usize + events.decoded.rejected.len()
            );
            common::check_decoded(&events.decoded);
        }
        Err(e) => common::check_error(&e),
    }
}
