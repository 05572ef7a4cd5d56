//! Byte counting for data-plane streams: a wrapper that adds every chunk read to a counter as
//! it passes (so a long session shows up while it runs, not only when it ends), and the splice
//! used by the node and the proxy.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use crate::metrics::{Bytes, Live};

/// `S`, with every byte read from it added to `counter`.
pub struct Counted<S> {
    inner: S,
    counter: &'static AtomicU64,
}

impl<S> Counted<S> {
    pub fn new(inner: S, counter: &'static AtomicU64) -> Self {
        Counted { inner, counter }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let counter = self.counter;
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            counter.fetch_add(*n as u64, Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Splices `client` (the side the dial came from) with `service` (the side towards the node's
/// local service), counting bytes each way in `bytes` and the stream in `active` while it runs.
pub async fn splice<A, B>(client: A, service: B, bytes: &'static Bytes, active: &'static AtomicI64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _live = Live::new(active);
    crate::mux::splice(
        Counted::new(client, &bytes.to_service),
        Counted::new(service, &bytes.from_service),
    )
    .await;
}
