//! The body of a delivery: the NDJSON of the packets a lane sends together, one after the
//! other, as one request body. Large packets are sent as the buffers they arrived in (hyper
//! writes the parts with one `writev`); only small ones are copied together. Pure apart
//! from the `http_body::Body` glue, so the micro-benchmarks (`benches/delivery.rs`) can
//! measure it without a lane or a socket.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};

/// Packets at least this large go into the body by reference, as one more slice of the
/// socket write; smaller ones are copied together, where a copy costs less than a slice.
pub const SHARED_PART_BYTES: usize = 4 * 1024;

/// The body of one delivery: the NDJSON of a batch of packets, as few buffers as it takes,
/// with an exact length (a `Content-Length`, not chunks).
#[derive(Debug, Default)]
pub struct Batch {
    parts: VecDeque<Bytes>,
    len: u64,
}

impl Batch {
    /// Joins the NDJSON of a batch of packets. Every packet's NDJSON already ends in a
    /// newline, so the parts simply follow each other. A run of small packets is copied
    /// into one buffer; a large packet, or a small one alone between large ones, is not
    /// copied at all.
    pub fn new<'a>(packets: impl IntoIterator<Item = &'a Bytes>) -> Self {
        let mut batch = Self::default();
        let mut run: Vec<&Bytes> = Vec::new();
        for packet in packets {
            if packet.len() >= SHARED_PART_BYTES {
                batch.push_run(&mut run);
                batch.push(packet.clone());
            } else if !packet.is_empty() {
                run.push(packet);
            }
        }
        batch.push_run(&mut run);
        batch
    }

    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffers the body is sent as, in order.
    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.iter()
    }

    fn push(&mut self, part: Bytes) {
        self.len += part.len() as u64;
        self.parts.push_back(part);
    }

    /// Adds the small packets gathered so far as one part, and empties `run`.
    fn push_run(&mut self, run: &mut Vec<&Bytes>) {
        match run.as_slice() {
            [] => {}
            [only] => self.push((*only).clone()),
            many => {
                let mut joined = BytesMut::with_capacity(many.iter().map(|p| p.len()).sum());
                for part in many {
                    joined.extend_from_slice(part);
                }
                self.push(joined.freeze());
            }
        }
        run.clear();
    }
}

impl Body for Batch {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let part = self.parts.pop_front();
        if let Some(part) = &part {
            self.len -= part.len() as u64;
        }
        Poll::Ready(part.map(|part| Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.len == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// One NDJSON line of exactly `n` bytes, newline included (`n` at least 9).
    fn line(n: usize) -> Bytes {
        let text = format!("{{\"n\":\"{}\"}}\n", "x".repeat(n - 9));
        assert_eq!(text.len(), n);
        Bytes::from(text)
    }

    async fn collect(batch: Batch) -> Bytes {
        batch.collect().await.expect("infallible").to_bytes()
    }

    #[tokio::test]
    async fn parts_are_concatenated_in_order() {
        let packets = [
            Bytes::from_static(b"{\"a\":1}\n"),
            Bytes::from_static(b"{\"b\":2}\n{\"c\":3}\n"),
            Bytes::from_static(b"{\"d\":4}\n"),
        ];
        let batch = Batch::new(&packets);
        assert_eq!(batch.len(), 32);
        assert_eq!(batch.size_hint().exact(), Some(32));
        // Small packets are copied into one buffer.
        assert_eq!(batch.parts().count(), 1);
        assert_eq!(
            collect(batch).await,
            "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n"
        );
    }

    #[tokio::test]
    async fn large_packets_are_sent_without_a_copy() {
        let packets = [
            line(SHARED_PART_BYTES),
            line(100),
            line(200),
            line(SHARED_PART_BYTES * 3),
            line(100),
            line(SHARED_PART_BYTES + 1),
        ];
        let batch = Batch::new(&packets);
        let parts: Vec<&Bytes> = batch.parts().collect();
        assert_eq!(
            parts.len(),
            5,
            "large, two small joined, large, small, large"
        );
        for (part, packet) in [(0, 0), (2, 3), (3, 4), (4, 5)] {
            assert_eq!(
                parts[part].as_ptr(),
                packets[packet].as_ptr(),
                "part {part}"
            );
        }
        let whole: Vec<u8> = packets.concat();
        assert_eq!(batch.len(), whole.len() as u64);
        assert_eq!(collect(batch).await, whole);
    }

    #[test]
    fn a_batch_of_one_is_not_copied() {
        let only = line(100);
        let batch = Batch::new([&only]);
        let parts: Vec<&Bytes> = batch.parts().collect();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].as_ptr(), only.as_ptr());
    }

    #[tokio::test]
    async fn an_empty_batch_is_an_empty_body() {
        let batch = Batch::new(&[] as &[Bytes]);
        assert!(batch.is_empty() && batch.is_end_stream());
        assert!(collect(batch).await.is_empty());
    }
}
