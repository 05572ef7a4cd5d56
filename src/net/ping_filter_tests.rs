use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_lite::{future, AsyncRead, AsyncWrite, AsyncWriteExt};

use super::*;

fn frame(kind: u8, flags: u16, stream: u32, length: u32, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0, kind];
    f.extend_from_slice(&flags.to_be_bytes());
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(&length.to_be_bytes());
    f.extend_from_slice(body);
    f
}

fn ping(nonce: u32) -> Vec<u8> {
    frame(TYPE_PING, FLAG_SYN, 0, nonce, &[])
}

fn pong(nonce: u32) -> Vec<u8> {
    frame(TYPE_PING, 2, 0, nonce, &[])
}

/// A writer that takes at most `chunk` bytes per call and, if `stall`, is `Pending` every
/// other call.
#[derive(Default)]
struct Trickle {
    got: Arc<Mutex<Vec<u8>>>,
    chunk: usize,
    stall: bool,
    calls: usize,
}

impl AsyncWrite for Trickle {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        d: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.calls += 1;
        if self.stall && self.calls % 2 == 0 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = d.len().min(self.chunk);
        self.got.lock().unwrap().extend_from_slice(&d[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Writes `writes` (each as yamux would: in one or more calls) through a filter onto a
/// writer taking `chunk` bytes at a time; returns what reached it.
fn through(writes: &[Vec<u8>], chunk: usize) -> Vec<u8> {
    let out = Trickle {
        chunk,
        stall: true,
        ..Trickle::default()
    };
    let got = out.got.clone();
    let mut f = PingFilter::new(out);
    future::block_on(async {
        for w in writes {
            f.write_all(w).await.unwrap();
        }
        f.flush().await.unwrap();
    });
    let got = got.lock().unwrap().clone();
    got
}

#[test]
fn the_first_ping_passes_later_ones_are_dropped_and_everything_else_is_untouched() {
    // A body that looks like a ping header must pass as data.
    let tricky = ping(9);
    let writes = vec![
        ping(1),
        frame(TYPE_DATA, 0, 3, 12, &[]),
        tricky.clone(),
        frame(1, 0, 3, 4096, &[]),
        ping(2),
        pong(77),
        frame(TYPE_DATA, FLAG_SYN, 5, 3, b"abc"),
        ping(3),
        frame(3, 0, 0, 0, &[]),
    ];
    let mut want = Vec::new();
    for w in [
        &writes[0], &writes[1], &writes[2], &writes[3], &writes[5], &writes[6], &writes[8],
    ] {
        want.extend_from_slice(w);
    }
    for chunk in [1, 5, 12, 13, 64, 4096] {
        assert_eq!(through(&writes, chunk), want, "writer taking {chunk} bytes");
    }
    // The same bytes split across calls differently (a header over two writes).
    let all: Vec<u8> = writes.concat();
    let split: Vec<Vec<u8>> = all.chunks(7).map(<[u8]>::to_vec).collect();
    assert_eq!(through(&split, 3), want);
}

#[test]
fn a_data_body_is_never_mistaken_for_a_header() {
    let mut f = Frames::default();
    let h = frame(TYPE_DATA, 0, 1, 24, &[]);
    assert_eq!(
        f.take(&h),
        Step::Header {
            n: 12,
            header: h.clone().try_into().unwrap()
        }
    );
    let body = [ping(5), ping(6)].concat();
    assert_eq!(f.take(&body), Step::Pass(24));
    f.passed(24);
    assert_eq!(
        f.take(&ping(7)),
        Step::Header {
            n: 12,
            header: ping(7).try_into().unwrap()
        }
    );
    assert_eq!(f.take(&ping(8)), Step::Held(12));
    assert_eq!(f.dropped(), 1);
}

#[test]
fn real_yamux_sends_its_first_ping_through_the_filter_in_the_format_we_expect() {
    // A yamux connection pings as soon as it is first polled; what reaches the wire must be
    // exactly one ping header that the filter recognised (as its first ping).
    let out = Trickle {
        chunk: 4096,
        ..Trickle::default()
    };
    let got = out.got.clone();
    let io = Both(PingFilter::new(out));
    let mut conn = yamux::Connection::new(io, yamux::Config::default(), yamux::Mode::Client);
    let polled = future::block_on(future::poll_once(future::poll_fn(|cx| {
        conn.poll_next_inbound(cx)
    })));
    assert!(polled.is_none(), "an idle connection stays pending");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), HEADER, "one frame header, no body: {got:?}");
    assert_eq!(got[1], TYPE_PING);
    assert_eq!(u16::from_be_bytes([got[2], got[3]]), FLAG_SYN);
}

/// A write-only `PingFilter` made readable (reads end at once), for yamux.
struct Both(PingFilter<Trickle>);

impl AsyncRead for Both {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Pending
    }
}

impl AsyncWrite for Both {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        d: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, d)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
