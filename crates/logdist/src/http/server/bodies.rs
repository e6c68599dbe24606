//! Buffers for bodies too big for a connection's read buffer, kept for the next such body.
//!
//! A body that outgrows the express lane's read buffer gets a buffer of its own, which
//! lives until the packet is delivered. A fresh one from the allocator each time costs a
//! large `malloc` and `free`, and the kernel then copies the body into memory that is cold
//! in the cache. So these buffers come back here when the last reference to their body is
//! dropped, and the next body of their size class takes the one given back last, whose
//! lines are likely still in the cache.
//!
//! The classes are multiples of [`STEP`] up to [`LARGEST`], so a body's buffer is less
//! than a step larger than the body: about what a small packet pins of the read buffer it
//! arrived in. A class keeps at most [`KEPT_BYTES`]; a body above the largest class gets a
//! buffer of its own size, which goes back to the allocator.

use std::sync::Mutex;

use bytes::Bytes;

/// The size classes' step, and the smallest class.
const STEP: usize = 16 * 1024;
/// The largest class.
const LARGEST: usize = 256 * 1024;
const CLASSES: usize = LARGEST / STEP;
/// The most a class keeps, in bytes.
const KEPT_BYTES: usize = 512 * 1024;

/// The buffers kept, by class, the last given back on top.
static KEPT: [Mutex<Vec<Vec<u8>>>; CLASSES] = [const { Mutex::new(Vec::new()) }; CLASSES];

/// An empty buffer with room for at least `len` bytes.
pub fn take(len: usize) -> Vec<u8> {
    let Some(class) = class_for(len) else {
        return Vec::with_capacity(len);
    };
    let kept = KEPT[class].lock().ok().and_then(|mut kept| kept.pop());
    kept.unwrap_or_else(|| Vec::with_capacity(capacity(class)))
}

/// `buf`'s bytes, which give the buffer back when the last reference to them is dropped.
pub fn freeze(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Kept(buf))
}

/// The smallest class that holds `len` bytes, if one does.
fn class_for(len: usize) -> Option<usize> {
    (len <= LARGEST).then(|| len.div_ceil(STEP).max(1) - 1)
}

/// The size of a class's buffers.
fn capacity(class: usize) -> usize {
    (class + 1) * STEP
}

/// A body's buffer, given back to its class when dropped.
struct Kept(Vec<u8>);

impl AsRef<[u8]> for Kept {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        // Only a buffer of exactly a class's size goes back: one made for a body above
        // the largest class does not.
        let Some(class) = class_for(buf.capacity()).filter(|&c| capacity(c) == buf.capacity())
        else {
            return;
        };
        buf.clear();
        if let Ok(mut kept) = KEPT[class].lock()
            && (kept.len() + 1) * buf.capacity() <= KEPT_BYTES
        {
            kept.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_gets_the_smallest_class_that_holds_it() {
        for (len, class) in [
            (0, Some(0)),
            (1, Some(0)),
            (STEP, Some(0)),
            (STEP + 1, Some(1)),
            (100_000, Some(6)),
            (LARGEST, Some(CLASSES - 1)),
            (LARGEST + 1, None),
        ] {
            assert_eq!(class_for(len), class, "{len}");
            if let Some(class) = class {
                assert!(
                    capacity(class) >= len && capacity(class) <= len + STEP,
                    "{len}"
                );
            }
        }
        assert_eq!(take(LARGEST + 1).capacity(), LARGEST + 1);
    }

    /// The class of 240 KiB, which no other test uses (the classes are the process's).
    #[test]
    fn buffers_come_back_when_their_body_is_dropped_and_the_last_back_goes_out_first() {
        let len = 230 * 1024;
        let mut buf = take(len);
        buf.extend_from_slice(b"a body");
        let at = buf.as_ptr();
        let body = freeze(buf);
        let part = body.slice(2..);
        drop(body);
        assert_eq!(&part[..], b"body");
        // Still referenced: a new buffer.
        let other = take(len);
        assert_ne!(other.as_ptr(), at);
        drop(part);
        let again = take(len);
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
    }

    /// The largest class keeps two buffers; a buffer above it is not kept.
    #[test]
    fn a_class_keeps_at_most_its_share_of_bytes() {
        let bodies: Vec<Bytes> = (0..5).map(|_| freeze(take(LARGEST))).collect();
        drop(bodies);
        assert_eq!(
            KEPT[CLASSES - 1].lock().unwrap().len(),
            KEPT_BYTES / LARGEST
        );
        drop(freeze(take(LARGEST + 1)));
        assert_eq!(
            KEPT[CLASSES - 1].lock().unwrap().len(),
            KEPT_BYTES / LARGEST
        );
    }
}
