//! A future with a deadline, as a plain struct. The `async fn` it replaces held the wrapped
//! future up to three times over (the argument, the captured copy, the awaited copy), and a
//! connection's whole handler runs inside one: every idle node stream and tunnel paid that.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use smol::Timer;

pin_project_lite::pin_project! {
    /// `fut`'s output, or `None` once `limit` has passed. The clock starts at the first poll.
    #[must_use = "futures do nothing unless awaited"]
    pub struct Deadline<F> {
        #[pin]
        fut: F,
        limit: Duration,
        timer: Option<Timer>,
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let limit = *this.limit;
        let timer = this.timer.get_or_insert_with(|| Timer::after(limit));
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs `fut` for at most `d`; `None` on timeout.
pub fn with_timeout<F: Future>(d: Duration, fut: F) -> Deadline<F> {
    Deadline {
        fut,
        limit: d,
        timer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_before_the_deadline_else_none() {
        smol::block_on(async {
            assert_eq!(
                with_timeout(Duration::from_secs(5), async { 7 }).await,
                Some(7)
            );
            let never = futures_lite::future::pending::<()>();
            assert_eq!(with_timeout(Duration::from_millis(10), never).await, None);
        });
    }

    #[test]
    fn holds_the_future_once() {
        let big = async {
            let buf = [0u8; 4096];
            futures_lite::future::yield_now().await;
            buf[0]
        };
        let inner = std::mem::size_of_val(&big);
        let wrapped = with_timeout(Duration::from_secs(1), big);
        assert!(std::mem::size_of_val(&wrapped) < inner + 128);
    }
}
