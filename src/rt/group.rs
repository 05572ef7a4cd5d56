//! Futures run by one task, beside that task's own work: a tunnel's stream splices run in the
//! task that drives the tunnel's connection. A byte that crosses from a splice to the
//! connection (or back) then wakes nothing on another thread: the splice's write wakes the
//! connection, which this task polls before it sleeps again. Wakes that come while the task
//! polls only mark a member ready; the executor hears of the task only when it sleeps.
//!
//! Members are polled in turn, with a budget per poll so that a busy group yields to the other
//! tasks of the executor.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_lite::Stream as _;
use smol::channel::{self, Receiver, Sender};

type Member = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Rounds of ready members one poll goes through before it yields to the executor.
const BUDGET: usize = 64;

/// Slot of the task's own future, and of the queue of new members.
const MAIN: usize = 0;
const QUEUE: usize = 1;

/// Hands futures to the task that runs the group.
#[derive(Clone)]
pub struct Spawner(Sender<Member>);

/// The receiving end: `run` it with the task's own future.
pub struct Group(Receiver<Member>);

/// A group whose spawners may have `queue` futures waiting to be taken in.
pub fn group(queue: usize) -> (Spawner, Group) {
    let (tx, rx) = channel::bounded(queue);
    (Spawner(tx), Group(rx))
}

impl Spawner {
    /// Runs `fut` in the group's task; its output, or `None` if the group ended first.
    /// Dropping the returned future stops `fut` too.
    pub async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (done_tx, done_rx) = channel::bounded(1);
        let (_stop, stop_rx) = channel::bounded::<()>(1);
        let member = async move {
            let stopped = async {
                let _ = stop_rx.recv().await;
                None
            };
            if let Some(out) = futures_lite::future::or(async { Some(fut.await) }, stopped).await {
                let _ = done_tx.try_send(out);
            }
        };
        self.0.send(Box::pin(member)).await.ok()?;
        done_rx.recv().await.ok()
    }

    /// Starts `fut` in the group's task, to run until it ends or the group does; false if the
    /// group has ended.
    pub async fn detach(&self, fut: impl Future<Output = ()> + Send + 'static) -> bool {
        self.0.send(Box::pin(fut)).await.is_ok()
    }
}

impl Group {
    /// Runs `main` and the group's members until `main` ends; the members left are dropped.
    pub async fn run<F: Future>(self, main: F) -> F::Output {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ready: vec![MAIN, QUEUE],
                queued: vec![true, true],
                polling: false,
                parent: None,
            }),
        });
        Run {
            main: Box::pin(main),
            queue: Some(Box::pin(self.0)),
            members: Vec::new(),
            free: Vec::new(),
            wakers: vec![flag(&shared, MAIN), flag(&shared, QUEUE)],
            batch: Vec::new(),
            shared,
        }
        .await
    }
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    /// Slots to poll, each at most once (`queued`).
    ready: Vec<usize>,
    queued: Vec<bool>,
    /// Whether the task is polling the group now (then a wake need not reach the executor).
    polling: bool,
    /// The task's waker, while it sleeps.
    parent: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A member that panicked (tests unwind) leaves consistent state behind: every update
        // is complete before anything can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The waker of one slot.
struct Flag {
    slot: usize,
    shared: Arc<Shared>,
}

fn flag(shared: &Arc<Shared>, slot: usize) -> Waker {
    Waker::from(Arc::new(Flag {
        slot,
        shared: shared.clone(),
    }))
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let parent = {
            let mut s = self.shared.lock();
            if s.queued[self.slot] {
                return;
            }
            s.queued[self.slot] = true;
            s.ready.push(self.slot);
            if s.polling {
                None
            } else {
                s.parent.take()
            }
        };
        if let Some(w) = parent {
            w.wake();
        }
    }
}

struct Run<F: Future> {
    main: Pin<Box<F>>,
    /// New members; `None` once every spawner is gone.
    queue: Option<Pin<Box<Receiver<Member>>>>,
    /// Member `i` lives in slot `i + 2`.
    members: Vec<Option<Member>>,
    free: Vec<usize>,
    wakers: Vec<Waker>,
    /// The slots of one round (kept to reuse its allocation).
    batch: Vec<usize>,
    shared: Arc<Shared>,
}

impl<F: Future> Run<F> {
    /// Takes a new member into a free slot (or a new one) and marks it ready.
    fn admit(&mut self, m: Member) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.members[slot - 2] = Some(m);
                slot
            }
            None => {
                self.members.push(Some(m));
                let slot = self.members.len() + 1;
                self.wakers.push(flag(&self.shared, slot));
                slot
            }
        };
        let mut s = self.shared.lock();
        if s.queued.len() <= slot {
            s.queued.resize(slot + 1, false);
        }
        if !s.queued[slot] {
            s.queued[slot] = true;
            s.ready.push(slot);
        }
    }
}

impl<F: Future> Future for Run<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Only boxed parts are pinned, so `Run` is `Unpin`.
        let this = self.get_mut();
        this.shared.lock().polling = true;
        for _ in 0..BUDGET {
            let mut batch = std::mem::take(&mut this.batch);
            {
                let mut s = this.shared.lock();
                if s.ready.is_empty() {
                    s.polling = false;
                    s.parent = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                std::mem::swap(&mut batch, &mut s.ready);
                for &slot in &batch {
                    s.queued[slot] = false;
                }
            }
            for &slot in &batch {
                let waker = this.wakers[slot].clone();
                let mut mcx = Context::from_waker(&waker);
                match slot {
                    MAIN => {
                        if let Poll::Ready(out) = this.main.as_mut().poll(&mut mcx) {
                            this.shared.lock().polling = false;
                            return Poll::Ready(out);
                        }
                    }
                    QUEUE => {
                        while let Some(q) = this.queue.as_mut() {
                            match q.as_mut().poll_next(&mut mcx) {
                                Poll::Ready(Some(m)) => this.admit(m),
                                Poll::Ready(None) => this.queue = None,
                                Poll::Pending => break,
                            }
                        }
                    }
                    _ => {
                        let Some(m) = this.members[slot - 2].as_mut() else {
                            continue; // a stale wake of a finished member
                        };
                        if m.as_mut().poll(&mut mcx).is_ready() {
                            this.members[slot - 2] = None;
                            this.free.push(slot);
                        }
                    }
                }
            }
            batch.clear();
            this.batch = batch;
        }
        // Work is left but the budget is spent: let the executor run other tasks first.
        this.shared.lock().polling = false;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
