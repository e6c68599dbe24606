//! The body of a delivery: the NDJSON of the packets a lane sends together, one after the
//! other, as one request body. Pure, so the micro-benchmarks (`benches/delivery.rs`) can
//! measure it without a lane or a socket.

use bytes::{Bytes, BytesMut};

/// Joins the NDJSON of a batch of packets into one request body.
///
/// Every packet's NDJSON already ends in a newline, so the parts are simply concatenated.
/// A batch of one is returned as the same buffer, without a copy; an empty batch gives an
/// empty body. Takes an iterator (cloned once, to size the body) so that the lane can pass
/// its jobs' buffers without first collecting them into a `Vec`.
pub fn batch_body<'a, I>(parts: I) -> Bytes
where
    I: IntoIterator<Item = &'a Bytes>,
    I::IntoIter: Clone,
{
    let parts = parts.into_iter();
    let mut peek = parts.clone();
    match (peek.next(), peek.next()) {
        (None, _) => Bytes::new(),
        (Some(only), None) => only.clone(),
        (Some(_), Some(_)) => {
            let len = parts.clone().map(Bytes::len).sum();
            let mut body = BytesMut::with_capacity(len);
            for part in parts {
                body.extend_from_slice(part);
            }
            body.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_concatenated_in_order() {
        let parts = [
            Bytes::from_static(b"{\"a\":1}\n"),
            Bytes::from_static(b"{\"b\":2}\n{\"c\":3}\n"),
            Bytes::from_static(b"{\"d\":4}\n"),
        ];
        let body = batch_body(&parts);
        assert_eq!(body, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n");
        assert_eq!(body.len(), parts.iter().map(Bytes::len).sum::<usize>());
    }

    #[test]
    fn a_batch_of_one_is_not_copied() {
        let only = Bytes::from(b"{\"a\":1}\n".to_vec());
        let body = batch_body([&only]);
        assert_eq!(body.as_ptr(), only.as_ptr());
        assert_eq!(body, only);
    }

    #[test]
    fn an_empty_batch_is_an_empty_body() {
        assert!(batch_body(&[] as &[Bytes]).is_empty());
    }
}
