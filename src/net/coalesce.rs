//! A write buffer between the stream multiplexer and a TLS stream. yamux writes each frame as
//! two writes (its 12-byte header, then the data); straight onto TLS that is two records, two
//! encryptions and two syscalls per frame, the first a tiny segment. Here small writes gather
//! until `poll_flush` (yamux flushes after every frame) or until `BOUND` bytes wait, then go
//! down in one write; a large write (a frame's data) goes down at once, together with what
//! waits (its header), in one vectored write: one record per frame, and the data is not copied
//! (TLS encrypts the pieces as one record). The buffer exists only while bytes wait: once
//! drained it is freed, so an idle tunnel holds no buffer.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

/// The most bytes held before they are written down: one full TLS record of plaintext.
pub const BOUND: usize = 16 * 1024;

/// Writes this large skip the buffer (copying them would cost more than a second record).
const DIRECT: usize = 1024;

/// `T`, with its writes gathered (reads pass straight through).
pub struct Coalesce<T> {
    inner: T,
    buf: Vec<u8>,
    /// How much of `buf` the inner stream has taken.
    sent: usize,
}

impl<T> Coalesce<T> {
    pub fn new(inner: T) -> Self {
        Coalesce {
            inner,
            buf: Vec::new(),
            sent: 0,
        }
    }

    /// Bytes waiting to be written down (and the buffer's capacity), for tests.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.buf.len() - self.sent, self.buf.capacity())
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Writes everything waiting down to `inner`; frees the buffer once it is empty.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.clear();
        Poll::Ready(Ok(()))
    }

    fn clear(&mut self) {
        self.buf = Vec::new();
        self.sent = 0;
    }

    /// Tries to write what waits and then `data` in one vectored write; `Some(n)` when `n > 0`
    /// bytes of `data` went down, `None` when the caller should buffer `data` instead.
    fn poll_direct(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Option<io::Result<usize>> {
        let waiting = self.buf.len() - self.sent;
        let bufs = [IoSlice::new(&self.buf[self.sent..]), IoSlice::new(data)];
        let r = match waiting {
            0 => Pin::new(&mut self.inner).poll_write(cx, data),
            _ => Pin::new(&mut self.inner).poll_write_vectored(cx, &bufs),
        };
        match r {
            Poll::Ready(Ok(0)) => Some(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) if n > waiting => {
                self.clear();
                Some(Ok(n - waiting))
            }
            Poll::Ready(Ok(n)) => {
                self.sent += n;
                if self.sent == self.buf.len() {
                    self.clear();
                }
                None
            }
            Poll::Ready(Err(e)) => Some(Err(e)),
            // Buffered below if there is room; otherwise the caller waits on `inner`.
            Poll::Pending => None,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if data.len() >= DIRECT {
            if let Some(r) = this.poll_direct(cx, data) {
                return Poll::Ready(r);
            }
        }
        if this.buf.len() >= BOUND {
            match this.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map_ok(|()| 0),
            }
        }
        let room = BOUND - this.buf.len();
        let n = data.len().min(room);
        if this.buf.capacity() < this.buf.len() + n {
            // Doubling, but never past `BOUND`.
            let want = (this.buf.len() + n).max(2 * this.buf.capacity()).min(BOUND);
            this.buf.reserve_exact(want - this.buf.len());
        }
        this.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
