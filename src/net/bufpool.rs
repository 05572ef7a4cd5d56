//! A few I/O buffers kept per thread for reuse. Read-ahead and copy buffers of 64 KiB
//! exist only while data flows and are given back at every pause; allocating a fresh one each
//! time costs a zeroed allocation, and with it page faults and page clearing in the kernel,
//! many times a second in a bulk transfer. Here a given-back buffer waits on its thread's
//! short list for the next flow instead. The list holds at most `KEEP` buffers per thread, so
//! what waits is bounded (`KEEP` × 64 KiB per executor thread) and idle connections still hold
//! none.

use std::cell::RefCell;

/// Size of every pooled buffer.
pub const SIZE: usize = 64 * 1024;

/// Buffers kept per thread.
const KEEP: usize = 4;

/// Small buffers (a TLS stream's receive and send space) kept per thread.
const KEEP_SMALL: usize = 8;
/// Largest small buffer kept: one full TLS record and its overhead.
const SMALL_MAX: usize = 20 * 1024;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static SMALL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of at least `len` initialized bytes (more if a kept one was longer; its contents
/// are whatever was last in it). A TLS stream takes one per message and gives it back when
/// the stream pauses: a fresh one would be allocated and zeroed every time.
pub fn take_small(len: usize) -> Vec<u8> {
    let mut buf = SMALL.with(|f| f.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0);
    }
    buf
}

/// Gives a small buffer back for reuse on this thread (dropped if the list is full or it is
/// larger than `SMALL_MAX`).
pub fn give_small(buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > SMALL_MAX {
        return;
    }
    SMALL.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP_SMALL {
            f.push(buf);
        }
    });
}

/// A buffer of `SIZE` bytes (its contents are whatever was last in it).
pub fn take() -> Box<[u8]> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; SIZE].into_boxed_slice())
}

/// Gives a buffer back for reuse on this thread (dropped if the list is full or the size is
/// not `SIZE`).
pub fn give(buf: Box<[u8]>) {
    if buf.len() != SIZE {
        return;
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_reused_and_the_list_stays_bounded() {
        let mut a = take();
        a[0] = 7;
        let p = a.as_ptr();
        give(a);
        let b = take();
        assert_eq!(b.as_ptr(), p, "the same allocation comes back");
        for _ in 0..10 {
            give(vec![0u8; SIZE].into_boxed_slice());
        }
        give(b);
        assert_eq!(FREE.with(|f| f.borrow().len()), KEEP);
        give(vec![0u8; 10].into_boxed_slice());
        assert_eq!(
            FREE.with(|f| f.borrow().len()),
            KEEP,
            "odd sizes are not kept"
        );
    }

    #[test]
    fn small_buffers_are_reused_at_their_length_and_large_ones_dropped() {
        let mut a = take_small(4096);
        assert!(a.len() >= 4096);
        a.resize(6000, 1);
        let p = a.as_ptr();
        give_small(a);
        let b = take_small(4096);
        assert_eq!(b.as_ptr(), p, "the same allocation comes back");
        assert_eq!(
            b.len(),
            6000,
            "with its initialized length, not zeroed again"
        );
        give_small(vec![0u8; SMALL_MAX + 1]);
        give_small(Vec::new());
        for _ in 0..KEEP_SMALL + 3 {
            give_small(vec![0u8; 100]);
        }
        let kept = SMALL.with(|f| f.borrow().iter().map(Vec::capacity).collect::<Vec<_>>());
        assert_eq!(kept.len(), KEEP_SMALL, "the list stays bounded");
        assert!(kept.iter().all(|&c| c > 0 && c <= SMALL_MAX));
    }
}
