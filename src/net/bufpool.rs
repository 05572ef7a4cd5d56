//! A few large I/O buffers kept per thread for reuse. Read-ahead and copy buffers of 64 KiB
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

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
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
}
