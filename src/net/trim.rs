//! Giving memory back after many connections closed. musl returns freed pages by itself; glibc
//! keeps them in its arenas, so a proxy that held 10,000 tunnels kept their memory after they
//! closed. When the connections a service holds fall to half of their peak (and by at least
//! `MIN_DROP`), glibc is asked to trim, off the executor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Fewer closes than this are not worth a trim.
const MIN_DROP: usize = 64;

/// When to trim, from the number of connections held: pure, so it is tested without a heap.
#[derive(Debug, Default)]
pub struct Trimmer {
    /// Connections held at most since the last trim.
    peak: usize,
}

impl Trimmer {
    pub fn opened(&mut self, live: usize) {
        self.peak = self.peak.max(live);
    }

    /// Whether to trim now; the peak then restarts from what is held.
    pub fn closed(&mut self, live: usize) -> bool {
        if live * 2 > self.peak || self.peak - live < MIN_DROP {
            return false;
        }
        self.peak = live;
        true
    }
}

static TRIMMER: Mutex<Trimmer> = Mutex::new(Trimmer { peak: 0 });

fn trimmer() -> std::sync::MutexGuard<'static, Trimmer> {
    TRIMMER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Long-lived connections (tunnels, node streams) this process holds.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// One long-lived connection, counted while it lives; a trim may follow its end.
pub struct Held(());

impl Held {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Held {
        let live = HELD.fetch_add(1, Ordering::Relaxed) + 1;
        trimmer().opened(live);
        Held(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let live = HELD.fetch_sub(1, Ordering::Relaxed) - 1;
        if trimmer().closed(live) {
            crate::rt::spawn(smol::unblock(trim)).detach();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim takes no pointers and may be called from any thread.
    unsafe { nix::libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_half_the_peak_is_gone_and_not_for_a_few_closes() {
        let mut t = Trimmer::default();
        t.opened(1000);
        assert!(!t.closed(999), "one close is no reason");
        assert!(!t.closed(501));
        assert!(t.closed(500), "half gone");
        assert!(!t.closed(480), "fewer than MIN_DROP since the trim");
        assert!(t.closed(0));
        // A small service never trims.
        let mut small = Trimmer::default();
        small.opened(100);
        assert!(!small.closed(40));
    }
}
