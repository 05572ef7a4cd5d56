//! The fuzz loop: runs one target on mutants of its seeds for its share of the time budget,
//! catches every panic per input (`catch_unwind`), keeps inputs that reach a new outcome as new
//! seeds (a cheap stand-in for coverage feedback on stable Rust), minimises each distinct panic
//! and reports it as hex with the seed and iteration that replay it. A watchdog aborts the run
//! with the input in hand if one input hangs.
//!
//! Environment:
//! - `FUZZ_SECS`: total seconds over all targets (default 60), split by the targets' weights;
//! - `FUZZ_SEED`: the run's seed (default `DEFAULT_SEED`), printed at the start of each target;
//! - `FUZZ_ITERS`: stop each target after this many mutants (replays a seed exactly);
//! - `FUZZ_REPLAY`: hex of one input: run only that input, with the panic shown as usual.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crate::mutate::{fnv, hex, unhex, Mutator, Rng};

pub const DEFAULT_SEED: u64 = 0x7e1e_9047_f022_2024;
pub const DEFAULT_SECS: f64 = 60.0;
/// An input running longer than this is reported as a hang and the run stops.
const HANG: Duration = Duration::from_secs(30);
/// Corpus entries kept per target (seeds plus inputs with a new outcome).
const MAX_CORPUS: usize = 1024;

thread_local! {
    static IN_TARGET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside a target are recorded (location and message) instead of printed; panics
/// anywhere else go to the default hook.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(Cell::get) {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let at = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{at}: {msg}")));
            } else {
                default(info);
            }
        }));
    });
}

/// Runs the target on one input; `Err(location: message)` if it panicked.
fn run_one<F: Fn(&[u8]) -> String>(f: &F, input: &[u8]) -> Result<String, String> {
    IN_TARGET.with(|t| t.set(true));
    let r = panic::catch_unwind(AssertUnwindSafe(|| f(input)));
    IN_TARGET.with(|t| t.set(false));
    r.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "unknown location".into())
    })
}

fn location(report: &str) -> &str {
    report.split(": ").next().unwrap_or(report)
}

/// Shrinks a panicking input by deleting chunks while it still panics at the same place.
fn minimise<F: Fn(&[u8]) -> String>(f: &F, input: &[u8], at: &str) -> Vec<u8> {
    let start = Instant::now();
    let mut best = input.to_vec();
    let mut chunk = best.len().max(1).next_power_of_two();
    while chunk >= 1 && start.elapsed() < Duration::from_secs(10) {
        let mut i = 0;
        let mut shrunk = false;
        while i < best.len() && start.elapsed() < Duration::from_secs(10) {
            let mut cand = best.clone();
            let end = (i + chunk).min(cand.len());
            cand.drain(i..end);
            match run_one(f, &cand) {
                Err(r) if location(&r) == at => {
                    best = cand;
                    shrunk = true;
                }
                _ => i += chunk,
            }
        }
        if !shrunk {
            chunk /= 2;
        }
    }
    best
}

/// Environment knobs.
pub struct Knobs {
    pub seed: u64,
    pub total_secs: f64,
    pub iters: Option<u64>,
    pub replay: Option<Vec<u8>>,
}

pub fn knobs() -> Knobs {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let seed = var("FUZZ_SEED")
        .map(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            }
            .expect("FUZZ_SEED must be a number (decimal or 0x hex)")
        })
        .unwrap_or(DEFAULT_SEED);
    let total_secs = var("FUZZ_SECS")
        .map(|s| s.parse().expect("FUZZ_SECS must be a number of seconds"))
        .unwrap_or(DEFAULT_SECS);
    let iters = var("FUZZ_ITERS").map(|s| s.parse().expect("FUZZ_ITERS must be a count"));
    let replay = var("FUZZ_REPLAY").map(|h| unhex(&h).expect("FUZZ_REPLAY must be hex"));
    Knobs {
        seed,
        total_secs,
        iters,
        replay,
    }
}

/// A target: name, share of the budget, seeds, dictionary, size cap and the function.
pub struct Target<F> {
    pub name: &'static str,
    pub weight: f64,
    pub seeds: Vec<Vec<u8>>,
    pub dict: &'static [&'static str],
    pub max_len: usize,
    pub run: F,
}

/// Sum of the weights of every target in `tests/fuzz/main.rs` (each test takes its share).
pub const TOTAL_WEIGHT: f64 = crate::TOTAL_WEIGHT;

struct Failure {
    report: String,
    iteration: u64,
    input: Vec<u8>,
    minimal: Vec<u8>,
}

/// Fuzzes `t` and fails the test with a report of every distinct panic.
pub fn fuzz<F: Fn(&[u8]) -> String>(t: Target<F>) {
    install_hook();
    let k = knobs();
    if let Some(input) = &k.replay {
        println!("[fuzz] {}: replaying {} bytes", t.name, input.len());
        // Outside the hook's recording: the panic prints with its location as usual.
        let out = (t.run)(input);
        println!("[fuzz] {}: no panic; outcome {out:?}", t.name);
        return;
    }
    let budget = Duration::from_secs_f64(k.total_secs * t.weight / TOTAL_WEIGHT);
    let seed = k.seed ^ fnv(t.name.as_bytes());
    println!(
        "[fuzz] {}: seed {:#x} (FUZZ_SEED={:#x}), budget {:.1}s, {} seeds",
        t.name,
        seed,
        k.seed,
        budget.as_secs_f64(),
        t.seeds.len()
    );
    let mut rng = Rng::new(seed);
    let mut m = Mutator::new(t.seeds, t.dict, t.max_len);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut failures: Vec<Failure> = Vec::new();
    let mut found_at: HashSet<String> = HashSet::new();

    // Watchdog: the current input and a progress counter.
    let current = Arc::new(Mutex::new(Vec::<u8>::new()));
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let dog = {
        let (current, progress, done) = (current.clone(), progress.clone(), done.clone());
        let name = t.name;
        std::thread::spawn(move || {
            let mut last = (u64::MAX, Instant::now());
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let p = progress.load(Ordering::Relaxed);
                if p != last.0 {
                    last = (p, Instant::now());
                } else if last.1.elapsed() > HANG {
                    let input = current.lock().map(|c| c.clone()).unwrap_or_default();
                    eprintln!(
                        "[fuzz] {name}: HANG: one input ran for more than {HANG:?}; replay with \
                         FUZZ_REPLAY={} cargo test --test fuzz -- {name}",
                        hex(&input)
                    );
                    std::process::exit(101);
                }
            }
        })
    };

    let start = Instant::now();
    let mut execs: u64 = 0;
    let mut slowest = (Duration::ZERO, 0usize);
    let seeds = m.corpus.clone();
    let mut iteration: u64 = 0;
    let mut pending = seeds.into_iter();
    loop {
        // Every seed runs first, then mutants until the budget (or FUZZ_ITERS) is spent.
        let (input, is_seed) = match pending.next() {
            Some(s) => (s, true),
            None => {
                if k.iters.is_some_and(|n| iteration >= n)
                    || (k.iters.is_none() && start.elapsed() >= budget)
                {
                    break;
                }
                iteration += 1;
                (m.mutate(&mut rng), false)
            }
        };
        if let Ok(mut c) = current.lock() {
            c.clear();
            c.extend_from_slice(&input);
        }
        let t0 = Instant::now();
        let result = run_one(&t.run, &input);
        let dt = t0.elapsed();
        execs += 1;
        progress.store(execs, Ordering::Relaxed);
        if dt > slowest.0 {
            slowest = (dt, input.len());
        }
        match result {
            Ok(outcome) => {
                let n = seen.entry(outcome).or_default();
                *n += 1;
                if *n == 1 && !is_seed && m.corpus.len() < MAX_CORPUS {
                    m.corpus.push(input);
                }
            }
            Err(report) => {
                let at = location(&report).to_string();
                if found_at.insert(at.clone()) {
                    let minimal = minimise(&t.run, &input, &at);
                    failures.push(Failure {
                        report,
                        iteration,
                        input,
                        minimal,
                    });
                }
            }
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = dog.join();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "[fuzz] {}: {execs} inputs in {secs:.1}s ({:.0}/s), {} outcomes, corpus {}, slowest \
         input {:?} ({} bytes), {} distinct panics",
        t.name,
        execs as f64 / secs.max(1e-9),
        seen.len(),
        m.corpus.len(),
        slowest.0,
        slowest.1,
        failures.len()
    );
    let mut common: Vec<(&String, &u64)> = seen.iter().collect();
    common.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = common
        .iter()
        .take(4)
        .map(|(o, n)| format!("{:.1}% {o:?}", **n as f64 * 100.0 / execs.max(1) as f64))
        .collect();
    println!(
        "[fuzz] {}: most frequent outcomes: {}",
        t.name,
        top.join(", ")
    );
    if std::env::var_os("FUZZ_SHOW_OUTCOMES").is_some() {
        for (o, n) in &common {
            println!("[fuzz] {}: {n:>8} {o:?}", t.name);
        }
    }
    if failures.is_empty() {
        return;
    }
    let mut msg = format!("{}: {} distinct panic(s)\n", t.name, failures.len());
    for f in &failures {
        msg.push_str(&format!(
            "- panicked at {}\n  minimal input ({} bytes): {}\n  {:?}\n  found at iteration {} \
             (replay the run: FUZZ_SEED={:#x} FUZZ_ITERS={} cargo test --test fuzz -- {})\n  \
             original input ({} bytes): {}\n  replay one input: FUZZ_REPLAY={} cargo test --test \
             fuzz -- {}\n",
            f.report,
            f.minimal.len(),
            hex(&f.minimal),
            String::from_utf8_lossy(&f.minimal),
            f.iteration,
            k.seed,
            f.iteration,
            t.name,
            f.input.len(),
            if f.input.len() <= 4096 {
                hex(&f.input)
            } else {
                format!("{}...", hex(&f.input[..4096]))
            },
            hex(&f.minimal),
            t.name,
        ));
    }
    panic!("{msg}");
}
