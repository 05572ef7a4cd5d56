//! Standard input and output as raw byte pipes, for `tctl nodes dial` under ssh's
//! `ProxyCommand`. Rust's `Stdout` is line-buffered: binary data without a newline would sit in
//! its buffer while ssh waits for it. So the descriptors are duplicated into plain files (no
//! buffer) and every chunk is flushed as soon as it is written.
//!
//! When a descriptor is a pipe or a socket (as under ssh), it is read and written on the
//! executor through readiness, like any socket: no helper thread and no channel per chunk. A
//! terminal or a regular file cannot be polled that way and keeps a blocking helper thread.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use smol::{Async, Unblock};

use crate::net::quiet::Quiet;

/// Bytes read at a time; also the most that can be in flight in one direction per pump.
const CHUNK: usize = 64 * 1024;

/// Descriptor 0 as an unbuffered file (a duplicate: closing it leaves fd 0 alone).
pub fn raw_stdin() -> io::Result<File> {
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}

/// Descriptor 1 as an unbuffered file, bypassing `Stdout`'s line buffer.
pub fn raw_stdout() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// A standard descriptor for the executor: polled directly when it is a pipe or a socket, or
/// through a blocking helper thread otherwise.
pub enum Stdio {
    Direct(Direct),
    Thread(Unblock<File>),
}

/// A pipe or socket in non-blocking mode; its file status flags are put back when dropped, as
/// the descriptor's other holders (the shell, ssh) expect them.
pub struct Direct {
    io: Quiet<File>,
    flags: OFlag,
}

impl Drop for Direct {
    fn drop(&mut self) {
        let _ = fcntl(self.io.as_raw_fd(), FcntlArg::F_SETFL(self.flags));
    }
}

impl Stdio {
    /// `file` polled directly if it is a pipe or socket that accepts it, else on a thread.
    pub fn new(file: File) -> Stdio {
        let pollable = file
            .metadata()
            .is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_socket());
        if pollable {
            if let Ok(flags) = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL) {
                let flags = OFlag::from_bits_truncate(flags);
                match file.try_clone().and_then(Async::new) {
                    Ok(io) => {
                        let io = Quiet::new(io.into());
                        return Stdio::Direct(Direct { io, flags });
                    }
                    Err(_) => {
                        let _ = fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags));
                    }
                }
            }
        }
        Stdio::Thread(Unblock::new(file))
    }

    /// Whether this descriptor is polled on the executor (no helper thread).
    pub fn is_direct(&self) -> bool {
        matches!(self, Stdio::Direct(_))
    }
}

impl AsyncRead for Stdio {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stdio::Direct(d) => Pin::new(&mut d.io).poll_read(cx, buf),
            Stdio::Thread(t) => Pin::new(t).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stdio {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stdio::Direct(d) => Pin::new(&mut d.io).poll_write(cx, buf),
            Stdio::Thread(t) => Pin::new(t).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stdio::Direct(d) => Pin::new(&mut d.io).poll_flush(cx),
            Stdio::Thread(t) => Pin::new(t).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stdio::Direct(d) => Pin::new(&mut d.io).poll_close(cx),
            Stdio::Thread(t) => Pin::new(t).poll_close(cx),
        }
    }
}

/// Copies `from` to `to` until `from` ends, flushing after every chunk so nothing waits in a
/// buffer for more data. Returns the bytes copied.
pub async fn pump<R, W>(mut from: R, mut to: W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records what reached it and how many flushes came.
    #[derive(Default)]
    struct Probe {
        data: Vec<u8>,
        flushes: usize,
    }

    impl AsyncWrite for Probe {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.data.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            self.flushes += 1;
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn pipes_are_polled_directly_and_get_their_flags_back() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (r, w) = (File::from(r), File::from(w));
        let before = fcntl(r.as_raw_fd(), FcntlArg::F_GETFL).unwrap();
        let (rd, wr) = (Stdio::new(r.try_clone().unwrap()), Stdio::new(w));
        assert!(rd.is_direct() && wr.is_direct());
        let got = smol::block_on(async {
            let (mut rd, mut wr) = (rd, wr);
            wr.write_all(b"through the executor").await.unwrap();
            drop(wr);
            let mut got = Vec::new();
            rd.read_to_end(&mut got).await.unwrap();
            got
        });
        assert_eq!(got, b"through the executor");
        assert_eq!(fcntl(r.as_raw_fd(), FcntlArg::F_GETFL).unwrap(), before);
        let file = tempfile::tempfile().unwrap();
        assert!(
            !Stdio::new(file).is_direct(),
            "a regular file takes the thread"
        );
    }

    #[test]
    fn every_chunk_is_flushed_and_bytes_are_unchanged() {
        let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut probe = Probe::default();
        let n = smol::block_on(pump(&input[..], &mut probe)).unwrap();
        assert_eq!(n, input.len() as u64);
        assert_eq!(probe.data, input);
        assert!(probe.flushes >= input.len().div_ceil(CHUNK));
    }
}
