//! The stream's I/O: filling `inbuf` from the socket, sending `out`, and the `AsyncRead` /
//! `AsyncWrite` a connection's handler uses.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use super::{Ending, Intent, ServerStream, Step, IN_FIRST, IN_MAX, IN_RECORD, WRITE_CHUNK};
use crate::net::bufpool;

impl<S: AsyncRead + AsyncWrite + Unpin> ServerStream<S> {
    /// Reads from the socket into `inbuf`, growing it when full; `Ok(0)` at end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.inbuf.is_empty() {
            // Most messages fit in this first buffer, reused from the thread's list.
            self.inbuf = bufpool::take_small(IN_FIRST);
        } else if self.in_used == self.inbuf.len() {
            let next = match self.inbuf.len() {
                n if n < IN_RECORD => IN_RECORD,
                n if n < IN_MAX => IN_MAX,
                _ => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS message larger than 64 KiB",
                    )))
                }
            };
            self.inbuf.resize(next, 0);
        }
        match Pin::new(&mut self.io).poll_read(cx, &mut self.inbuf[self.in_used..]) {
            Poll::Ready(Ok(n)) => {
                self.in_used += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.trim();
                Poll::Pending
            }
        }
    }

    /// Sends what `out` holds; `Ready(Ok)` once all of it went.
    pub(super) fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.pending().is_empty() {
            let pending = self.out.pending();
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.pos += n;
        }
        // All sent: the space is reused by the next write and freed when the stream idles.
        (self.out.pos, self.out.end) = (0, 0);
        Poll::Ready(Ok(()))
    }

    /// Copies waiting plaintext into `buf`.
    fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.plain.len() - self.plain_pos);
        buf[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() {
            self.plain.clear();
            self.plain_pos = 0;
        }
        n
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ServerStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut got = 0;
        loop {
            got += this.take_plain(&mut buf[got..]);
            if got == buf.len() || this.read_done.is_some() {
                break;
            }
            let step = match this.step(Intent::Read) {
                Ok(step) => step,
                Err(e) => {
                    // The alert rustls queued tells the peer why, as far as the socket takes
                    // it now (the caller may drop the stream without closing it).
                    if this.step(Intent::Read).is_ok() {
                        let _ = this.poll_send(cx);
                    }
                    return Poll::Ready(Err(e));
                }
            };
            match step {
                Step::Progress => {
                    // Handshake messages after the handshake (key updates) and alerts go out
                    // as they come; a slow socket does not stop reading.
                    if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                        return Poll::Ready(Err(e));
                    }
                }
                // Only when both sides have closed (read_done is set).
                Step::Wrote(_) => {}
                Step::NeedInput => {
                    if got > 0 {
                        break;
                    }
                    match this.poll_fill(cx) {
                        Poll::Ready(Ok(0)) => {
                            this.read_done = Some(Ending::Eof);
                            // A record cut short stays (rustls may still point into it when
                            // the writer steps), but only its bytes: nothing more will come.
                            this.inbuf.truncate(this.in_used);
                            this.inbuf.shrink_to_fit();
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
        if got == 0 && this.read_done == Some(Ending::Eof) {
            // As rustls's own reader: a stream cut without close_notify may be truncated.
            this.trim();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed connection without sending TLS close_notify",
            )));
        }
        if got == 0 {
            this.trim();
        }
        Poll::Ready(Ok(got))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ServerStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let pending = this.out.pending().len();
        if pending > 0 && pending + data.len().min(WRITE_CHUNK) > this.send_limit {
            ready!(this.poll_send(cx))?;
        }
        loop {
            match this.step(Intent::Write(data))? {
                Step::Wrote(n) if n > 0 => {
                    // Start sending at once; what the socket does not take waits in `out`.
                    if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(n));
                }
                Step::Progress => {}
                // Closed by both sides.
                Step::Wrote(_) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Step::NeedInput => return Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            ready!(this.poll_send(cx))?;
            while let Step::Progress = this.step(Intent::Close)? {}
            this.closing = true;
        }
        ready!(this.poll_send(cx))?;
        this.trim();
        Pin::new(&mut this.io).poll_close(cx)
    }
}
