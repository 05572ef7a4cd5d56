//! Standard input and output as raw byte pipes, for `tctl nodes dial` under ssh's
//! `ProxyCommand`. Rust's `Stdout` is line-buffered: binary data without a newline would sit in
//! its buffer while ssh waits for it. So the descriptors are duplicated into plain files (no
//! buffer) and every chunk is flushed as soon as it is written.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
    fn every_chunk_is_flushed_and_bytes_are_unchanged() {
        let input: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut probe = Probe::default();
        let n = smol::block_on(pump(&input[..], &mut probe)).unwrap();
        assert_eq!(n, input.len() as u64);
        assert_eq!(probe.data, input);
        assert!(probe.flushes >= input.len().div_ceil(CHUNK));
    }
}
