//! Stream multiplexing over one tunnel connection (yamux): a driver task owns the connection;
//! handles open outbound streams and receive inbound ones through channels. Dropping the
//! `Mux` (and so the driver task) closes the connection.

use std::future::poll_fn;
use std::task::Poll;

use futures_lite::{AsyncRead, AsyncWrite, Stream as _};
use smol::channel::{self, Receiver, Sender};

pub use yamux::Stream;

/// Streams one side may hold open on a tunnel.
const MAX_STREAMS: usize = 256;

type OpenReply = Sender<yamux::Result<Stream>>;

/// A handle to open streams on the connection.
#[derive(Clone)]
pub struct Opener(Sender<OpenReply>);

impl Opener {
    pub async fn open(&self) -> std::io::Result<Stream> {
        let (tx, rx) = channel::bounded(1);
        self.0
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
    let mode = if client {
        yamux::Mode::Client
    } else {
        yamux::Mode::Server
    };
    let mut conn = yamux::Connection::new(io, cfg, mode);
    let (open_tx, open_rx) = channel::bounded::<OpenReply>(16);
    let (in_tx, in_rx) = channel::bounded::<Stream>(16);
    let driver = crate::rt::spawn(async move {
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
    });
    Mux {
        opener: Opener(open_tx),
        inbound: in_rx,
        driver,
    }
}

/// Copies both directions between two byte streams until both are done.
pub async fn splice<A, B>(a: A, b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, mut aw) = futures_lite::io::split(a);
    let (br, mut bw) = futures_lite::io::split(b);
    let one = async {
        let _ = futures_lite::io::copy(ar, &mut bw).await;
        let _ = futures_lite::AsyncWriteExt::close(&mut bw).await;
    };
    let two = async {
        let _ = futures_lite::io::copy(br, &mut aw).await;
        let _ = futures_lite::AsyncWriteExt::close(&mut aw).await;
    };
    futures_lite::future::zip(one, two).await;
}
