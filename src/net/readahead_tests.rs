use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Wake;

use super::*;

/// What the source answers to its next reads, in order; once empty, `Pending`.
enum Step {
    Data(Vec<u8>),
    Eof,
    Fail,
}

/// A reader that answers from a script and counts the reads it took.
#[derive(Default)]
struct Script {
    steps: VecDeque<Step>,
    reads: usize,
}

impl Script {
    fn new(steps: Vec<Step>) -> Self {
        Script {
            steps: steps.into(),
            reads: 0,
        }
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.reads += 1;
        match self.steps.pop_front() {
            None => Poll::Pending,
            Some(Step::Eof) => Poll::Ready(Ok(0)),
            Some(Step::Fail) => Poll::Ready(Err(io::Error::other("reset"))),
            Some(Step::Data(mut d)) => {
                let n = d.len().min(out.len());
                out[..n].copy_from_slice(&d[..n]);
                if n < d.len() {
                    self.steps.push_front(Step::Data(d.split_off(n)));
                }
                Poll::Ready(Ok(n))
            }
        }
    }
}

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn read(r: &mut ReadAhead<Script>, n: usize) -> Poll<io::Result<Vec<u8>>> {
    let waker = Arc::new(Noop).into();
    let mut cx = Context::from_waker(&waker);
    let mut out = vec![0u8; n];
    Pin::new(r)
        .poll_read(&mut cx, &mut out)
        .map_ok(|got| out[..got].to_vec())
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_short_read_passes_through_without_a_buffer() {
    let mut r = ReadAhead::new(Script::new(vec![Step::Data(b"hello".to_vec())]));
    let Poll::Ready(Ok(got)) = read(&mut r, 4096) else {
        panic!("expected data")
    };
    assert_eq!(got, b"hello");
    assert!(!r.holds_buffer());
    assert!(read(&mut r, 4096).is_pending());
    assert!(!r.holds_buffer());
}

#[test]
fn a_full_read_makes_the_next_reads_one_socket_read_in_small_pieces() {
    let data = bytes(4096 + 40_000);
    let mut r = ReadAhead::new(Script::new(vec![Step::Data(data.clone())]));
    let mut got = Vec::new();
    while let Poll::Ready(Ok(piece)) = read(&mut r, 4096) {
        assert!(!piece.is_empty());
        got.extend(piece);
    }
    assert_eq!(got, data, "bytes arrive whole and in order");
    // One read filled the caller's 4 KiB, one took the remaining 40,000 ahead, one found Pending.
    assert_eq!(r.get_ref().reads, 3);
}

#[test]
fn the_buffer_is_freed_once_drained_and_the_socket_is_pending() {
    let mut r = ReadAhead::new(Script::new(vec![Step::Data(bytes(4096 + 100))]));
    assert!(matches!(read(&mut r, 4096), Poll::Ready(Ok(_))));
    assert!(r.holds_buffer(), "data is flowing");
    let Poll::Ready(Ok(rest)) = read(&mut r, 4096) else {
        panic!("expected the rest")
    };
    assert_eq!(rest.len(), 100);
    assert!(read(&mut r, 4096).is_pending());
    assert!(!r.holds_buffer(), "an idle stream holds no buffer");
}

#[test]
fn eof_after_buffered_data_delivers_the_data_then_eof_and_frees() {
    let data = bytes(4096 + 10);
    let mut r = ReadAhead::new(Script::new(vec![Step::Data(data.clone()), Step::Eof]));
    let mut got = Vec::new();
    loop {
        match read(&mut r, 4096) {
            Poll::Ready(Ok(p)) if p.is_empty() => break,
            Poll::Ready(Ok(p)) => got.extend(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, data);
    assert!(!r.holds_buffer());
}

#[test]
fn an_error_is_passed_on_after_buffered_data_and_frees() {
    let mut r = ReadAhead::new(Script::new(vec![
        Step::Data(bytes(4096)),
        Step::Data(bytes(50)),
        Step::Fail,
    ]));
    assert!(matches!(read(&mut r, 4096), Poll::Ready(Ok(p)) if p.len() == 4096));
    assert!(matches!(read(&mut r, 4096), Poll::Ready(Ok(p)) if p.len() == 50));
    let Poll::Ready(Err(e)) = read(&mut r, 4096) else {
        panic!("expected the error")
    };
    assert_eq!(e.to_string(), "reset");
    assert!(!r.holds_buffer());
}

#[test]
fn an_empty_caller_buffer_reads_nothing() {
    let mut r = ReadAhead::new(Script::new(vec![Step::Data(b"x".to_vec())]));
    assert!(matches!(read(&mut r, 0), Poll::Ready(Ok(p)) if p.is_empty()));
    assert_eq!(r.get_ref().reads, 0);
}
