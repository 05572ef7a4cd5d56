use std::task::Waker;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream as SmolTcp};

use super::*;

async fn pair() -> (Quiet<TcpStream>, SmolTcp) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (ours, theirs) = futures_lite::future::zip(SmolTcp::connect(addr), async {
        l.accept().await.unwrap().0
    })
    .await;
    (Quiet::tcp(ours.unwrap()), theirs)
}

fn poll_once(q: &mut Quiet<TcpStream>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
    Pin::new(q).poll_read(&mut Context::from_waker(Waker::noop()), buf)
}

#[test]
fn after_a_short_read_the_next_read_waits_for_the_reactor_and_loses_nothing() {
    smol::block_on(async {
        let (mut q, mut peer) = pair().await;
        peer.write_all(b"first").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(q.read(&mut buf).await.unwrap(), 5, "a short read");
        peer.write_all(b"second").await.unwrap();
        // Wait until the bytes are in our socket's buffer: a plain read would return them now.
        let mut peek = [0u8; 16];
        while q.peek(&mut peek).unwrap_or(0) < 6 {
            smol::Timer::after(std::time::Duration::from_millis(1)).await;
        }
        assert!(
            poll_once(&mut q, &mut buf).is_pending(),
            "the read after a short one asks the reactor first instead of calling recv"
        );
        // The reactor reports the waiting bytes (level-triggered): nothing is lost.
        let n = q.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"second");
    });
}

#[test]
fn a_read_that_filled_the_buffer_reads_again_at_once() {
    smol::block_on(async {
        let (mut q, mut peer) = pair().await;
        peer.write_all(b"0123456789").await.unwrap();
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        while got.len() < 4 {
            let n = q.read(&mut buf[..4 - got.len()]).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        // The buffer was filled, so more may wait: the next read goes to the socket directly.
        match poll_once(&mut q, &mut buf) {
            Poll::Ready(Ok(4)) => assert_eq!(&buf, b"4567"),
            other => panic!("expected the next 4 bytes at once, got {other:?}"),
        }
    });
}

#[test]
fn closing_ends_the_peers_input_and_keeps_ours_open() {
    smol::block_on(async {
        let (mut q, mut peer) = pair().await;
        q.write_all(b"bye").await.unwrap();
        q.close().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, b"bye",
            "the peer read everything, then its end of input"
        );
        peer.write_all(b"still here").await.unwrap();
        drop(peer);
        let mut back = Vec::new();
        q.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"still here");
    });
}

#[test]
fn after_a_large_short_read_a_flow_reads_again_at_once() {
    smol::block_on(async {
        let (mut q, mut peer) = pair().await;
        let flow = vec![7u8; 8000];
        peer.write_all(&flow).await.unwrap();
        let mut peek = vec![0u8; flow.len()];
        while q.peek(&mut peek).unwrap_or(0) < flow.len() {
            smol::Timer::after(std::time::Duration::from_millis(1)).await;
        }
        let mut buf = vec![0u8; 64 * 1024];
        assert_eq!(q.read(&mut buf).await.unwrap(), flow.len(), "a short read");
        // More of the flow came in while the reader was away (as in any bulk transfer).
        peer.write_all(&flow).await.unwrap();
        while q.peek(&mut peek).unwrap_or(0) < flow.len() {
            smol::Timer::after(std::time::Duration::from_millis(1)).await;
        }
        match poll_once(&mut q, &mut buf) {
            Poll::Ready(Ok(n)) => assert_eq!(n, flow.len()),
            other => panic!(
                "a read of {} bytes is a flow, not a message: the bytes waiting should be \
                 read at once, not after a trip through the reactor; got {other:?}",
                flow.len()
            ),
        }
    });
}
