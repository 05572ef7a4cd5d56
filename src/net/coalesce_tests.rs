use std::io::IoSlice;
use std::sync::Arc;
use std::task::Wake;

use futures_lite::AsyncWriteExt;

use super::*;

/// A writer that records every write it takes (a record, for TLS), taking at most `max` bytes
/// a call, answering `Pending` to the next `stalls` calls and failing once `fail` is set.
#[derive(Default)]
struct Probe {
    writes: Vec<Vec<u8>>,
    max: Option<usize>,
    stalls: usize,
    fail: bool,
    flushes: usize,
}

impl Probe {
    fn bytes(&self) -> Vec<u8> {
        self.writes.concat()
    }
}

impl AsyncWrite for Probe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.fail {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if self.stalls > 0 {
            self.stalls -= 1;
            return Poll::Pending;
        }
        let n = data.len().min(self.max.unwrap_or(usize::MAX));
        self.writes.push(data[..n].to_vec());
        Poll::Ready(Ok(n))
    }
    /// As TLS does: the pieces become one record.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.poll_write(cx, &all)
    }
    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flushes += 1;
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn poll<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
    let waker = Arc::new(Noop).into();
    f(&mut Context::from_waker(&waker))
}

/// A yamux data frame as yamux writes it: the 12-byte header, then the body.
fn frame(w: &mut Coalesce<Probe>, body: &[u8]) {
    smol::block_on(async {
        w.write_all(&[7u8; 12]).await.unwrap();
        w.write_all(body).await.unwrap();
        w.flush().await.unwrap();
    })
}

#[test]
fn small_frames_wait_for_the_flush_and_each_frame_is_one_write() {
    let mut w = Coalesce::new(Probe::default());
    smol::block_on(async {
        w.write_all(&[7u8; 12]).await.unwrap();
        w.write_all(b"a heartbeat").await.unwrap();
        w.write_all(&[7u8; 12]).await.unwrap();
    });
    assert!(
        w.inner.writes.is_empty(),
        "nothing small is written before a flush"
    );
    smol::block_on(w.flush()).unwrap();
    assert_eq!(
        w.inner.writes,
        vec![[&[7u8; 12][..], b"a heartbeat", &[7u8; 12]].concat()]
    );
    assert_eq!(w.inner.flushes, 1, "the flush is passed on");
    // Data frames, small to full size (as `mux` sizes them): header and data in one write.
    for len in [DIRECT - 1, DIRECT, 8000, BOUND - 12] {
        frame(&mut w, &vec![2u8; len]);
    }
    assert_eq!(w.inner.writes.len(), 5);
    let sizes: Vec<usize> = w.inner.writes[1..].iter().map(Vec::len).collect();
    assert_eq!(sizes, [DIRECT + 11, DIRECT + 12, 8012, BOUND]);
    assert_eq!(w.held(), (0, 0), "an idle writer holds no buffer");
}

#[test]
fn memory_is_bounded_while_writing_and_freed_once_flushed() {
    let mut w = Coalesce::new(Probe::default());
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut at = 0;
    while at < data.len() {
        // Small writes (control frames), which are the ones buffered.
        let piece = &data[at..(at + DIRECT - 1).min(data.len())];
        match poll(|cx| Pin::new(&mut w).poll_write(cx, piece)) {
            Poll::Ready(Ok(n)) => at += n,
            other => panic!("{other:?}"),
        }
        let (held, cap) = w.held();
        assert!(held <= BOUND && cap <= BOUND, "{held} bytes in {cap}");
    }
    smol::block_on(w.flush()).unwrap();
    assert_eq!(w.held(), (0, 0), "an idle writer holds no buffer");
    assert_eq!(w.inner.bytes(), data);
    assert!(w.inner.writes.iter().all(|r| r.len() <= BOUND));
}

#[test]
fn partial_and_stalled_writes_below_lose_and_reorder_nothing() {
    let mut w = Coalesce::new(Probe {
        max: Some(1000),
        stalls: 3,
        ..Probe::default()
    });
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let mut at = 0;
    let mut pending = 0;
    while at < data.len() {
        match poll(|cx| Pin::new(&mut w).poll_write(cx, &data[at..])) {
            Poll::Ready(Ok(n)) => at += n,
            Poll::Pending => pending += 1,
            Poll::Ready(Err(e)) => panic!("{e}"),
        }
    }
    // A full buffer whose drain stalls makes the writer wait: no unbounded growth.
    assert!(pending > 0);
    loop {
        match poll(|cx| Pin::new(&mut w).poll_flush(cx)) {
            Poll::Ready(r) => break r.unwrap(),
            Poll::Pending => {}
        }
    }
    assert_eq!(w.inner.bytes(), data);
    assert!(w.inner.writes.iter().all(|r| r.len() <= 1000));
}

#[test]
fn an_error_below_reaches_the_writer_at_flush_close_or_when_full() {
    let mut w = Coalesce::new(Probe::default());
    smol::block_on(w.write_all(b"header")).unwrap();
    w.inner.fail = true;
    let e = smol::block_on(w.flush()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(
        smol::block_on(w.close()).unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
    let big = vec![0u8; 3 * BOUND];
    assert_eq!(
        smol::block_on(w.write_all(&big)).unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
}
