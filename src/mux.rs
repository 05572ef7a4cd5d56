//! Stream multiplexing over one tunnel connection (yamux): a driver task owns the connection;
//! handles open outbound streams and receive inbound ones through channels. Dropping the
//! `Mux` (and so the driver task) closes the connection. yamux writes go through a
//! `Coalesce` buffer, so each frame (header and data) is one TLS record, and through a
//! `PingFilter` that lets only the first of yamux's round-trip pings out.
//!
//! The splices of the connection's streams run in the driver task too (`Opener::run`,
//! `Opener::detach`): a yamux stream hands every frame to its connection through a channel,
//! and with both in one task that hand-over wakes no other task.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Stream as _};
use smol::channel::{self, Receiver, Sender};
use smol::Timer;

pub use yamux::Stream;

/// Bytes `splice` reads at a time while little flows (an interactive session, an idle one).
const COPY_BUF_SMALL: usize = 8 * 1024;

/// Bytes `splice` reads at a time once a read fills the small buffer (a bulk transfer): fewer
/// reads, writes and frames per byte. Only streams moving data hold it.
const COPY_BUF_LARGE: usize = crate::net::bufpool::SIZE;

/// Largest yamux data frame body: with its 12-byte header a frame fills one TLS record (16 KiB
/// of plaintext) exactly, instead of a full record and a 12-byte one.
const FRAME_BODY: usize = crate::net::coalesce::BOUND - 12;

/// Streams one side may hold open on a tunnel.
const MAX_STREAMS: usize = 256;

type OpenReply = Sender<yamux::Result<Stream>>;

/// Work handed to the driver task and not yet taken in.
const GROUP_QUEUE: usize = 16;

/// A handle to the connection's driver task: opens streams, runs their splices.
#[derive(Clone)]
pub struct Opener {
    open: Sender<OpenReply>,
    beside: crate::rt::Spawner,
}

impl Opener {
    /// Runs `fut` (a splice of one of this connection's streams) in the driver task; its
    /// output, or `None` if the connection ended first. Dropping the returned future stops
    /// `fut`.
    pub async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        self.beside.run(fut).await
    }

    /// Starts `fut` in the driver task, to run until it ends or the connection does; false if
    /// the connection has ended.
    pub async fn detach(&self, fut: impl Future<Output = ()> + Send + 'static) -> bool {
        self.beside.detach(fut).await
    }

    pub async fn open(&self) -> std::io::Result<Stream> {
        let (tx, rx) = channel::bounded(1);
        self.open
            .send(tx)
            .await
            .map_err(|_| std::io::Error::other("tunnel closed"))?;
        rx.recv()
            .await
            .map_err(|_| std::io::Error::other("tunnel closed"))?
            .map_err(std::io::Error::other)
    }
}

/// A running multiplexed connection.
pub struct Mux {
    pub opener: Opener,
    pub inbound: Receiver<Stream>,
    pub driver: smol::Task<()>,
}

/// Client side opens odd stream IDs, server side even ones.
pub fn start<T>(io: T, client: bool) -> Mux
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut cfg = yamux::Config::default();
    cfg.set_max_num_streams(MAX_STREAMS);
    cfg.set_split_send_size(FRAME_BODY);
    let io = crate::net::ping_filter::PingFilter::new(crate::net::coalesce::Coalesce::new(io));
    let mode = if client {
        yamux::Mode::Client
    } else {
        yamux::Mode::Server
    };
    let mut conn = yamux::Connection::new(io, cfg, mode);
    let (open_tx, open_rx) = channel::bounded::<OpenReply>(16);
    let (in_tx, in_rx) = channel::bounded::<Stream>(16);
    let (beside, group) = crate::rt::group(GROUP_QUEUE);
    let driver = crate::rt::spawn(group.run(async move {
        let mut open_rx = Box::pin(open_rx);
        let mut pending: Option<OpenReply> = None;
        let result = poll_fn(|cx| {
            loop {
                if pending.is_none() {
                    match open_rx.as_mut().poll_next(cx) {
                        Poll::Ready(Some(reply)) => pending = Some(reply),
                        Poll::Ready(None) | Poll::Pending => break,
                    }
                }
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(r) => {
                        if let Some(reply) = pending.take() {
                            let _ = reply.try_send(r);
                        }
                    }
                    Poll::Pending => break,
                }
            }
            loop {
                match conn.poll_next_inbound(cx) {
                    Poll::Ready(Some(Ok(stream))) => {
                        // A peer that floods us with streams loses the extra ones.
                        let _ = in_tx.try_send(stream);
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        if let Err(e) = result {
            log::debug!("tunnel connection ended: {e}");
        }
    }));
    Mux {
        opener: Opener {
            open: open_tx,
            beside,
        },
        inbound: in_rx,
        driver,
    }
}

/// After one side ends cleanly (a half-close: `tctl nodes dial` when its input ends), how long
/// the other direction may stay silent before the pair is torn down.
pub const HALF_CLOSED_IDLE: Duration = Duration::from_secs(300);

/// Copies both directions between two byte streams. A clean end of one side is passed on as a
/// half-close, and the other direction goes on (bounded by `HALF_CLOSED_IDLE` of silence); an
/// error on either side (a client that vanished without closing, a reset stream) tears both
/// down at once, so a dropped connection never holds its peer, a descriptor or a dial slot.
pub async fn splice<A, B>(a: A, b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    splice_with(a, b, HALF_CLOSED_IDLE).await
}

/// `splice` with the half-closed idle limit given (tests use a short one).
pub async fn splice_with<A, B>(a: A, b: B, half_closed_idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, mut aw) = futures_lite::io::split(a);
    let (br, mut bw) = futures_lite::io::split(b);
    let moved = AtomicU64::new(0);
    let mut one = pin!(pump(ar, &mut bw, &moved));
    let mut two = pin!(pump(br, &mut aw, &moved));
    let (mut one_done, mut two_done) = (false, false);
    // Set once one side has ended: the silence allowed to the other, reset by progress.
    let mut idle: Option<(Timer, u64)> = None;
    poll_fn(|cx| {
        for (done, side) in [
            (
                &mut one_done,
                one.as_mut() as Pin<&mut dyn Future<Output = io::Result<()>>>,
            ),
            (&mut two_done, two.as_mut()),
        ] {
            if !*done {
                match side.poll(cx) {
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => *done = true,
                    Poll::Pending => {}
                }
            }
        }
        if one_done && two_done {
            return Poll::Ready(());
        }
        if one_done || two_done {
            let now = moved.load(Ordering::Relaxed);
            match &mut idle {
                Some((_, seen)) if *seen != now => idle = None,
                _ => {}
            }
            let (timer, _) = idle.get_or_insert_with(|| (Timer::after(half_closed_idle), now));
            if Pin::new(timer).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Copies `r` into `w` until `r` ends cleanly (then closes `w`: a half-close) or either fails.
/// The buffer grows to `COPY_BUF_LARGE` when a read fills it and shrinks back when a read
/// comes back short, so a quiet stream holds only the small one.
async fn pump<R, W>(mut r: R, w: &mut W, moved: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUF_SMALL];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.close().await;
        }
        w.write_all(&buf[..n]).await?;
        moved.fetch_add(n as u64, Ordering::Relaxed);
        buf = resized(buf, n);
    }
}

/// The buffer for the next read, after one that returned `n` bytes into `buf`.
fn resized(buf: Vec<u8>, n: usize) -> Vec<u8> {
    if n == buf.len() && buf.len() < COPY_BUF_LARGE {
        crate::net::bufpool::take().into_vec()
    } else if n < COPY_BUF_SMALL && buf.len() > COPY_BUF_SMALL {
        crate::net::bufpool::give(buf.into_boxed_slice());
        vec![0u8; COPY_BUF_SMALL]
    } else {
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::net::unix::UnixStream;
    use std::time::Instant;

    /// A stream whose reads fail, as a TLS stream does when its peer vanished without
    /// closing; writes are swallowed.
    struct Broken;

    impl AsyncRead for Broken {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
        }
    }

    impl AsyncWrite for Broken {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn the_copy_buffer_grows_for_bulk_and_shrinks_when_quiet() {
        let small = vec![0u8; COPY_BUF_SMALL];
        let big = resized(small, COPY_BUF_SMALL);
        assert_eq!(big.len(), COPY_BUF_LARGE, "a full read grows it");
        let big = resized(big, COPY_BUF_SMALL * 2);
        assert_eq!(big.len(), COPY_BUF_LARGE, "a good-sized read keeps it");
        let small = resized(big, 64);
        assert_eq!(small.len(), COPY_BUF_SMALL, "a short read shrinks it");
        assert_eq!(resized(small, 64).len(), COPY_BUF_SMALL);
    }

    #[test]
    fn a_side_that_fails_tears_down_a_silent_peer_at_once() {
        smol::block_on(async {
            let (service, _held_by_a_silent_service) = UnixStream::pair().unwrap();
            let t = Instant::now();
            splice_with(Broken, service, Duration::from_secs(60)).await;
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        });
    }

    #[test]
    fn a_half_close_is_passed_on_and_the_answer_still_flows_back() {
        smol::block_on(async {
            let (client, mut client_end) = UnixStream::pair().unwrap();
            let (service, mut service_end) = UnixStream::pair().unwrap();
            let task = smol::spawn(splice_with(client, service, Duration::from_secs(60)));
            client_end.write_all(b"question").await.unwrap();
            client_end.shutdown(std::net::Shutdown::Write).unwrap();
            let mut asked = Vec::new();
            service_end.read_to_end(&mut asked).await.unwrap();
            assert_eq!(asked, b"question");
            service_end.write_all(b"answer").await.unwrap();
            drop(service_end);
            let mut answer = Vec::new();
            client_end.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, b"answer");
            task.await;
        });
    }

    #[test]
    fn after_a_half_close_silence_ends_the_pair_but_progress_does_not() {
        smol::block_on(async {
            let idle = Duration::from_millis(300);
            let (client, client_end) = UnixStream::pair().unwrap();
            let (service, mut service_end) = UnixStream::pair().unwrap();
            let task = smol::spawn(splice_with(client, service, idle));
            client_end.shutdown(std::net::Shutdown::Write).unwrap();
            // The service keeps talking for longer than `idle`: the pair stays up.
            let t = Instant::now();
            while t.elapsed() < idle * 3 {
                service_end.write_all(b"tick").await.unwrap();
                Timer::after(idle / 4).await;
                assert!(!task.is_finished(), "closed while data still flowed");
            }
            // Then silence: the pair is torn down within about `idle`.
            let quiet = Instant::now();
            task.await;
            assert!(quiet.elapsed() < idle * 4, "{:?}", quiet.elapsed());
            drop(client_end);
        });
    }
}
