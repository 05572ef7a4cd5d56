//! A read-ahead buffer beneath TLS. rustls asks the socket for at most 4 KiB at a time, so a
//! full 16 KiB record costs four or five `recv` calls. Here a read that fills the caller's
//! buffer (data is flowing) makes the next reads go through a `SIZE` buffer filled in one
//! call. The buffer exists only while data flows: it is freed at EOF, on an error, and as
//! soon as it is drained and the socket has nothing more (`Pending`), so an idle connection
//! holds none.

use std::io::{self, IoSlice};
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

/// Bytes read from the socket at once while data flows: four full TLS records.
pub const SIZE: usize = super::bufpool::SIZE;

/// `S`, with its reads taken ahead while data flows (writes pass straight through).
pub struct ReadAhead<S> {
    inner: S,
    buf: Option<Box<[u8]>>,
    /// The unread part of `buf` is `pos..end`.
    pos: usize,
    end: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            buf: None,
            pos: 0,
            end: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether a buffer is held (for tests).
    #[cfg(test)]
    fn holds_buffer(&self) -> bool {
        self.buf.is_some()
    }

    fn free(&mut self) {
        if let Some(buf) = self.buf.take() {
            super::bufpool::give(buf);
        }
        self.pos = 0;
        self.end = 0;
    }
}

/// Lets callers use the socket's own methods (`peer_addr`, ...) through the wrapper.
impl<S> Deref for ReadAhead<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsFd> AsFd for ReadAhead<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let Some(buf) = this.buf.as_mut() else {
            // Idle or trickling: read straight into the caller's buffer; if that fills it,
            // more is likely waiting, so take the next reads ahead.
            let n = std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
            if n == out.len() && n < SIZE {
                this.buf = Some(super::bufpool::take());
            }
            return Poll::Ready(Ok(n));
        };
        if this.pos == this.end {
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => {
                    this.free();
                    return Poll::Ready(Ok(0));
                }
                Poll::Ready(Ok(n)) => {
                    this.pos = 0;
                    this.end = n;
                }
                Poll::Ready(Err(e)) => {
                    this.free();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    // Drained and nothing more: the flow paused, give the memory back.
                    this.free();
                    return Poll::Pending;
                }
            }
        }
        let buf = this.buf.as_ref().expect("checked above");
        let n = out.len().min(this.end - this.pos);
        out[..n].copy_from_slice(&buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
#[path = "readahead_tests.rs"]
mod tests;
