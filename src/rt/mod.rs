//! Process runtime: the shutdown signal shared by all tasks, OS signal handling (also as PID 1,
//! where the kernel drops signals that have no handler), and systemd's readiness protocol.
//! A leaf: it imports nothing above it.

mod group;
mod notify;

pub use group::{group, Group, Spawner};
pub use notify::notify;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use event_listener::Event;
use smol::{Executor, Task};

/// Worker threads the executor starts with; set before the first `spawn`.
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Sets how many worker threads run tasks beside the thread in `block_on`. `teleport start`
/// takes none for every role: tasks run only on the thread in `block_on` (which then also
/// waits on the sockets itself), so a wakeup never crosses threads; blocking work goes to
/// `smol::unblock`. Takes effect only before the first task is spawned.
pub fn set_threads(n: usize) {
    THREADS.store(n, Ordering::Relaxed);
}

fn executor() -> &'static Executor<'static> {
    static EXECUTOR: OnceLock<Executor<'static>> = OnceLock::new();
    static WORKERS: Once = Once::new();
    let ex = EXECUTOR.get_or_init(Executor::new);
    WORKERS.call_once(|| {
        for i in 0..THREADS.load(Ordering::Relaxed) {
            let spawned = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || loop {
                    // A task that panics (tests unwind; release aborts) must not take the
                    // worker with it.
                    let run = || smol::block_on(ex.run(std::future::pending::<()>()));
                    let _ = std::panic::catch_unwind(run);
                });
            if let Err(e) = spawned {
                log::error!("cannot start executor thread {i}: {e}");
            }
        }
    });
    ex
}

/// Spawns a task on the process's executor. Blocking work (signing, SQLite, files, DNS) does
/// not belong here: use `smol::unblock`.
pub fn spawn<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> Task<T> {
    executor().spawn(fut)
}

/// Runs `fut` on this thread while the executor's workers run the spawned tasks.
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    let ex = executor();
    smol::block_on(ex.run(fut))
}

/// Fires once, for every holder, when the process should stop (also the kill switch of
/// every node stream: thousands of them, so it is a flag and an event, about 100 bytes while
/// waited on, where a channel took nearly 700).
#[derive(Clone)]
pub struct Shutdown(Arc<Switch>);

/// Triggers the shutdown when `fire`d or dropped.
pub struct Trigger(Arc<Switch>);

struct Switch {
    fired: AtomicBool,
    event: Event,
}

pub fn shutdown_pair() -> (Trigger, Shutdown) {
    let switch = Arc::new(Switch {
        fired: AtomicBool::new(false),
        event: Event::new(),
    });
    (Trigger(switch.clone()), Shutdown(switch))
}

impl Trigger {
    pub fn fire(&self) {
        if !self.0.fired.swap(true, Ordering::AcqRel) {
            self.0.event.notify(usize::MAX);
        }
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.fire();
    }
}

impl Shutdown {
    /// Resolves once the shutdown fired.
    pub async fn wait(&self) {
        loop {
            if self.is_fired() {
                return;
            }
            // Listening before the second look: a fire in between still wakes us.
            let listener = self.0.event.listen();
            if self.is_fired() {
                return;
            }
            listener.await;
        }
    }

    pub fn is_fired(&self) -> bool {
        self.0.fired.load(Ordering::Acquire)
    }

    /// Sleeps for `d`; returns false if the shutdown fired first (or had fired already, so a
    /// zero-length sleep in a loop cannot keep running past a shutdown).
    pub async fn sleep(&self, d: Duration) -> bool {
        if self.is_fired() {
            return false;
        }
        futures_lite::future::or(
            async {
                smol::Timer::after(d).await;
                true
            },
            async {
                self.wait().await;
                false
            },
        )
        .await
    }
}

#[allow(unsafe_code)]
mod signals {
    //! SIGTERM, SIGINT and SIGHUP are turned into bytes on a pipe by an async-signal-safe
    //! handler; a thread reads them and fires the shutdown.

    use std::os::fd::{AsRawFd, OwnedFd};
    use std::sync::atomic::{AtomicI32, Ordering};

    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    static PIPE_WR: AtomicI32 = AtomicI32::new(-1);
    /// Set by SIGHUP: stop gracefully, then start again in place (same PID).
    pub static RELOAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    extern "C" fn on_signal(sig: nix::libc::c_int) {
        let fd = PIPE_WR.load(Ordering::Relaxed);
        if fd >= 0 {
            let b = [sig as u8];
            // SAFETY: write(2) is async-signal-safe; the fd stays open for the process's life.
            unsafe {
                nix::libc::write(fd, b.as_ptr().cast(), 1);
            }
        }
    }

    pub fn install(trigger: super::Trigger) -> std::io::Result<()> {
        let (rd, wr): (OwnedFd, OwnedFd) = nix::unistd::pipe()?;
        PIPE_WR.store(wr.as_raw_fd(), Ordering::Relaxed);
        std::mem::forget(wr);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            // SAFETY: the handler only calls write(2) on a pipe.
            unsafe { sigaction(sig, &action) }?;
        }
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut file = std::fs::File::from(rd);
                let mut buf = [0u8; 1];
                let mut count = 0;
                while std::io::Read::read(&mut file, &mut buf).unwrap_or(0) == 1 {
                    count += 1;
                    if count == 1 && i32::from(buf[0]) == Signal::SIGHUP as i32 {
                        log::info!("received SIGHUP: reloading (graceful stop, then restart)");
                        RELOAD.store(true, Ordering::Relaxed);
                        super::notify("RELOADING=1");
                        trigger.fire();
                    } else if count == 1 {
                        log::info!("received signal {}, shutting down", buf[0]);
                        super::notify("STOPPING=1");
                        trigger.fire();
                    } else {
                        log::warn!("second signal: exiting now");
                        std::process::exit(1);
                    }
                }
            })?;
        Ok(())
    }
}

pub use signals::install as install_signal_handlers;

/// Whether the stop was a SIGHUP reload.
pub fn reload_requested() -> bool {
    signals::RELOAD.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sleeps_end_after_shutdown() {
        let (trigger, shutdown) = shutdown_pair();
        assert!(smol::block_on(shutdown.sleep(Duration::ZERO)));
        trigger.fire();
        assert!(!smol::block_on(shutdown.sleep(Duration::ZERO)));
    }

    #[test]
    fn shutdown_wakes_sleepers() {
        let (trigger, shutdown) = shutdown_pair();
        trigger.fire();
        assert!(!smol::block_on(shutdown.sleep(Duration::from_secs(60))));
        assert!(shutdown.is_fired());
    }
}
