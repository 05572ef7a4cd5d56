//! A small logger: one line per record to stderr, stdout or a file, as text or JSON. Records
//! from dependencies are shown from WARN up only, unless the level is TRACE.
//!
//! Lines go through a bounded queue to one writer thread, so a slow stderr pipe never blocks
//! the executor: when the queue is full a line is dropped and counted, and the writer reports
//! the count in a line of its own once it catches up. `log::logger().flush()` (also run at
//! process exit) waits until every queued line is written.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::clock;
use crate::config::{LogOutput, LogSettings};
use crate::error::{Error, Result};

/// Lines waiting for the writer; beyond this they are dropped. The queue fills only when the
/// output stalls, and allocates only what it holds (at most a few hundred KiB).
const QUEUE_LINES: usize = 1024;
/// The writer only copies finished lines to the output.
const WRITER_STACK: usize = 64 * 1024;
/// Longest a flush (and so the process exit) waits for a stalled output.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Queue {
    lines: VecDeque<String>,
    dropped: u64,
    /// The writer holds a batch it has not finished writing.
    busy: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a line is queued.
    queued: Condvar,
    /// Signalled when the writer has written everything it took.
    written: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Logger {
    level: LevelFilter,
    json: bool,
    cap: usize,
    shared: Arc<Shared>,
}

fn component(target: &str) -> &str {
    match target.strip_prefix("teleport_lite::") {
        Some(rest) => rest.split("::").next().unwrap_or(rest),
        None => target.split("::").next().unwrap_or(target),
    }
}

fn format_line(json: bool, level: Level, component: &str, message: &str) -> String {
    let ts = clock::rfc3339(clock::now_unix());
    let level = match level {
        Level::Warn => "WARN",
        l => l.as_str(),
    };
    if json {
        serde_json::json!({
            "timestamp": ts,
            "level": level.to_ascii_lowercase(),
            "component": component,
            "message": message,
        })
        .to_string()
    } else {
        format!("{ts} {level:<5} [{component}] {message}")
    }
}

impl Logger {
    /// A logger writing to `out` from its own thread, queueing at most `cap` lines.
    fn new(level: LevelFilter, json: bool, out: Box<dyn Write + Send>, cap: usize) -> Logger {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        // Without the thread nothing is written; logging must not stop the process.
        let _ = std::thread::Builder::new()
            .name("log-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || write_loop(&s, out, json));
        Logger {
            level,
            json,
            cap,
            shared,
        }
    }
}

fn write_loop(shared: &Shared, out: Box<dyn Write + Send>, json: bool) {
    let mut out = std::io::BufWriter::new(out);
    let mut batch = VecDeque::new();
    loop {
        let dropped = {
            let mut q = shared.lock();
            while q.lines.is_empty() && q.dropped == 0 {
                q = shared.queued.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            q.busy = true;
            std::mem::swap(&mut q.lines, &mut batch);
            std::mem::take(&mut q.dropped)
        };
        for line in batch.drain(..) {
            let _ = writeln!(out, "{line}");
        }
        if dropped > 0 {
            let msg = format!(
                "dropped {dropped} log lines: the log output could not keep up (a slow or \
                 stalled reader of stderr/stdout, or a slow disk)"
            );
            let _ = writeln!(out, "{}", format_line(json, Level::Warn, "logging", &msg));
        }
        let _ = out.flush();
        shared.lock().busy = false;
        shared.written.notify_all();
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        let own = m.target().starts_with("teleport_lite");
        let limit = if own || self.level >= LevelFilter::Trace {
            self.level
        } else {
            self.level.min(LevelFilter::Warn)
        };
        m.level() <= limit
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format_line(
            self.json,
            r.level(),
            component(r.target()),
            &r.args().to_string(),
        );
        let mut q = self.shared.lock();
        if q.lines.len() >= self.cap {
            q.dropped += 1;
            crate::metrics::METRICS
                .log_lines_dropped
                .fetch_add(1, Relaxed);
            return;
        }
        q.lines.push_back(line);
        drop(q);
        self.shared.queued.notify_one();
    }

    /// Waits (at most `FLUSH_WAIT`) until every line queued so far is written.
    fn flush(&self) {
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut q = self.shared.lock();
        while !q.lines.is_empty() || q.dropped > 0 || q.busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = match self.shared.written.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Flushes the logger when the process exits (`std::process::exit` or the end of `main`).
#[allow(unsafe_code)]
fn flush_at_exit() {
    extern "C" fn flush() {
        log::logger().flush();
    }
    // SAFETY: registers a plain function without arguments; it only waits on the log queue.
    unsafe {
        nix::libc::atexit(flush);
    }
}

/// Installs the process logger.
pub fn init(settings: &LogSettings, debug: bool) -> Result<()> {
    let out: Box<dyn Write + Send> = match &settings.output {
        LogOutput::Stderr => Box::new(std::io::stderr()),
        LogOutput::Stdout => Box::new(std::io::stdout()),
        LogOutput::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Error::io("open log file", p, e))?,
        ),
    };
    let level = if debug {
        LevelFilter::Debug.max(settings.level)
    } else {
        settings.level
    };
    // A second init (tests in one process, a reload) keeps the first logger.
    if log::logger().enabled(&Metadata::builder().level(Level::Error).build()) {
        return Ok(());
    }
    let logger = Logger::new(level, settings.json, out, QUEUE_LINES);
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level.max(LevelFilter::Warn));
        flush_at_exit();
    }
    Ok(())
}

/// Plain stderr logging at WARN for short-lived commands such as tctl.
pub fn init_cli() {
    let _ = init(
        &LogSettings {
            output: LogOutput::Stderr,
            level: LevelFilter::Warn,
            json: false,
        },
        false,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An output that blocks until released, then records what it gets.
    struct Stalled {
        release: Option<mpsc::Receiver<()>>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Some(rx) = self.release.take() {
                let _ = rx.recv();
            }
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.write(&[]).map(|_| ())
        }
    }

    fn record(logger: &Logger, msg: &str) {
        logger.log(
            &Record::builder()
                .level(Level::Info)
                .target("teleport_lite::net::accept")
                .args(format_args!("{msg}"))
                .build(),
        );
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_instead_of_blocking() {
        let (tx, rx) = mpsc::channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let out = Stalled {
            release: Some(rx),
            got: got.clone(),
        };
        let logger = Logger::new(LevelFilter::Info, false, Box::new(out), 8);
        let start = Instant::now();
        for i in 0..100 {
            record(&logger, &format!("line {i}"));
        }
        assert!(start.elapsed() < Duration::from_secs(1), "logging blocked");
        tx.send(()).unwrap();
        logger.flush();
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        let written = text.lines().filter(|l| l.contains("] line ")).count();
        // Drops are reported as they are noticed: possibly in more than one line.
        let reports: Vec<usize> = text
            .lines()
            .filter_map(|l| l.split("] dropped ").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse().ok())
            .collect();
        assert!(!reports.is_empty(), "a line reports the drops: {text}");
        let dropped: usize = reports.iter().sum();
        assert_eq!(written + dropped, 100, "{text}");
        // At most one batch taken before the stall plus a full queue.
        assert!(written <= 16 && dropped >= 84, "{text}");
        assert!(text.contains("WARN  [logging] dropped"), "{text}");
        assert!(text.contains("INFO  [net] line 0"), "{text}");
    }

    #[test]
    fn flush_sees_every_line_in_normal_operation() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let out = Stalled {
            release: None,
            got: got.clone(),
        };
        let logger = Logger::new(LevelFilter::Info, true, Box::new(out), QUEUE_LINES);
        for i in 0..500 {
            record(&logger, &format!("line {i}"));
        }
        logger.flush();
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 500);
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["message"], "line 499");
        assert_eq!(last["component"], "net");
        assert_eq!(last["level"], "info");
    }
}
