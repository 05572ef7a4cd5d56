//! A small logger: one line per record to stderr, stdout or a file, as text or JSON. Records
//! from dependencies are shown from WARN up only, unless the level is TRACE.

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::clock;
use crate::config::{LogOutput, LogSettings};
use crate::error::{Error, Result};

struct Logger {
    level: LevelFilter,
    json: bool,
    out: Mutex<Box<dyn Write + Send>>,
}

fn component(target: &str) -> &str {
    match target.strip_prefix("teleport_lite::") {
        Some(rest) => rest.split("::").next().unwrap_or(rest),
        None => target.split("::").next().unwrap_or(target),
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
        let ts = clock::rfc3339(clock::now_unix());
        let level = match r.level() {
            Level::Warn => "WARN",
            l => l.as_str(),
        };
        let line = if self.json {
            serde_json::json!({
                "timestamp": ts,
                "level": level.to_ascii_lowercase(),
                "component": component(r.target()),
                "message": r.args().to_string(),
            })
            .to_string()
        } else {
            format!("{ts} {level:<5} [{}] {}", component(r.target()), r.args())
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    fn flush(&self) {
        let _ = self.out.lock().unwrap_or_else(|p| p.into_inner()).flush();
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
    let logger = Logger {
        level,
        json: settings.json,
        out: Mutex::new(out),
    };
    // A second init (tests in one process) keeps the first logger.
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level.max(LevelFilter::Warn));
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
