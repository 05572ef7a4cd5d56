//! A descriptor on the reactor whose reads skip the `recv` that would only say "nothing yet".
//!
//! async-io's reader always tries the syscall first and waits for readiness only after it
//! failed with `WouldBlock`. On a connection of small messages (keystrokes, RPC answers, a
//! round trip through the tunnel) that is one wasted syscall per message on every hop. A short
//! read of a message's size (under `QUIET_BELOW`) has almost surely emptied the kernel's
//! buffer, so the next read here first asks the reactor whether the descriptor became readable
//! since, which costs no syscall when it has not. Nothing is missed: the interest registered
//! then is level-triggered, so bytes that came in between are reported by the reactor's next
//! wait.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use smol::Async;

/// A short read of this many bytes or more is a flow (a bulk transfer), not a message: more
/// has usually come in by the time the reader is back, and going to the reactor first would
/// cost a wait (and its syscalls) per read instead of a `recv` that finds data.
const QUIET_BELOW: usize = 4096;

/// `T` on the reactor, read as described above (writes go straight through).
pub struct Quiet<T> {
    io: Arc<Async<T>>,
    /// The last read returned less than asked for: wait for readiness before reading again.
    drained: bool,
}

/// What closing the writing side means for a descriptor.
pub trait CloseWrite {
    fn close_write(&self) -> io::Result<()>;
}

impl CloseWrite for TcpStream {
    /// The peer reads its end of input; our reading side stays open.
    fn close_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl CloseWrite for File {
    /// A pipe's other end sees its end once every holder dropped it; nothing to do here.
    fn close_write(&self) -> io::Result<()> {
        Ok(())
    }
}

impl<T> Quiet<T> {
    pub fn new(io: Arc<Async<T>>) -> Self {
        Quiet { io, drained: false }
    }
}

impl Quiet<TcpStream> {
    /// The reactor registration of smol's stream, taken over (no second registration).
    pub fn tcp(stream: smol::net::TcpStream) -> Self {
        Quiet::new(stream.into())
    }
}

impl<T> Deref for Quiet<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.io.get_ref()
    }
}

impl<T: AsFd> AsFd for Quiet<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.get_ref().as_fd()
    }
}

impl<T> AsyncRead for Quiet<T>
where
    for<'a> &'a T: Read,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.drained {
                // Registers interest (as a failed read would) without the syscall; once the
                // reactor reported readiness, this takes that report, so none is left over to
                // make a later wait return at once.
                ready!(this.io.poll_readable(cx))?;
            }
            match (&mut this.io.get_ref()).read(buf) {
                Ok(n) => {
                    this.drained = n > 0 && n < buf.len() && n < QUIET_BELOW;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => this.drained = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<T: CloseWrite> AsyncWrite for Quiet<T>
where
    for<'a> &'a T: Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut &*self.io).poll_flush(cx))?;
        Poll::Ready(self.io.get_ref().close_write())
    }
}

#[cfg(test)]
#[path = "quiet_tests.rs"]
mod tests;
