//! Keeps yamux's periodic pings off idle tunnels. yamux (0.13) sends a ping whenever its
//! connection is polled and ten seconds have passed since the last pong, only to measure the
//! round-trip time that sizes stream receive windows. A tunnel woken by every heartbeat thus
//! pings every ten seconds from each side: four TLS records per ten seconds, more bytes than
//! the heartbeats themselves. Here, on the write side, the first ping of a connection goes
//! out (its pong gives yamux the round-trip time it keeps for window sizing) and every later
//! one is dropped: yamux then waits for a pong that never comes and sends no more pings,
//! which it tolerates (it has no ping timeout; liveness is the heartbeats' and TCP
//! keepalive's job). Pongs, answers to the peer's pings, always pass.
//!
//! `Frames` follows frame boundaries in the bytes yamux writes (a 12-byte header, then, for a
//! data frame, `length` body bytes); it is pure logic over the stream, so any split of the
//! writes gives the same result.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

const HEADER: usize = 12;
const TYPE_DATA: u8 = 0;
const TYPE_PING: u8 = 2;
const FLAG_SYN: u16 = 1;

/// What to do with bytes handed to `Frames::take`.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write the first `n` bytes of the input through.
    Pass(usize),
    /// The first `n` bytes of the input completed a header held back: write `header`, then
    /// count the `n` bytes as taken.
    Header { n: usize, header: [u8; HEADER] },
    /// The first `n` bytes were taken: held as part of a header, or a dropped ping's end.
    Held(usize),
}

/// Frame boundaries in yamux's outgoing byte stream.
#[derive(Debug, Default)]
pub struct Frames {
    header: [u8; HEADER],
    have: usize,
    body_left: u32,
    pings: u32,
}

impl Frames {
    /// Decides what happens to the front of `data` (non-empty).
    pub fn take(&mut self, data: &[u8]) -> Step {
        if self.body_left > 0 {
            let n = data.len().min(self.body_left as usize);
            return Step::Pass(n);
        }
        let n = data.len().min(HEADER - self.have);
        self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
        self.have += n;
        if self.have < HEADER {
            return Step::Held(n);
        }
        self.have = 0;
        let h = self.header;
        let kind = h[1];
        let flags = u16::from_be_bytes([h[2], h[3]]);
        if kind == TYPE_PING && flags & FLAG_SYN != 0 {
            self.pings += 1;
            if self.pings > 1 {
                return Step::Held(n);
            }
        }
        if kind == TYPE_DATA {
            // Acknowledged by `passed` as the body goes down.
            self.body_left = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        }
        Step::Header { n, header: h }
    }

    /// `n` body bytes went down.
    pub fn passed(&mut self, n: usize) {
        self.body_left -= n as u32;
    }

    /// Pings dropped so far.
    pub fn dropped(&self) -> u32 {
        self.pings.saturating_sub(1)
    }
}

/// `T`, with yamux's later pings kept off it (reads pass straight through).
pub struct PingFilter<T> {
    inner: T,
    frames: Frames,
    /// A complete header not yet (fully) written down, and how much of it went.
    out: Option<([u8; HEADER], usize)>,
}

impl<T> PingFilter<T> {
    pub fn new(inner: T) -> Self {
        PingFilter {
            inner,
            frames: Frames::default(),
            out: None,
        }
    }
}

impl<T: AsyncWrite + Unpin> PingFilter<T> {
    /// Writes a held header down before anything else.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((h, sent)) = &mut self.out {
            match Pin::new(&mut self.inner).poll_write(cx, &h[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *sent += n;
                    if *sent == HEADER {
                        self.out = None;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PingFilter<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        futures_lite::ready!(this.poll_out(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match this.frames.take(data) {
            Step::Pass(n) => {
                let r = Pin::new(&mut this.inner).poll_write(cx, &data[..n]);
                if let Poll::Ready(Ok(w)) = r {
                    this.frames.passed(w);
                }
                r
            }
            Step::Header { n, header } => {
                this.out = Some((header, 0));
                // Taken either way: a `Pending` here leaves the header for the next call.
                let _ = this.poll_out(cx)?;
                Poll::Ready(Ok(n))
            }
            Step::Held(n) => Poll::Ready(Ok(n)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::ready!(self.poll_out(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        futures_lite::ready!(self.poll_out(cx))?;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PingFilter<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
#[path = "ping_filter_tests.rs"]
mod tests;
