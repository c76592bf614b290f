//! Timer lateness end to end: how long after its deadline a timeout's callback runs.
//!
//! One thread registers `N` timers (2,000 by default) with delays uniform in 1–20 ms, one
//! every 200 µs, so about a hundred are in flight at any time and the loop keeps
//! re-arming its blocking wait for the earliest; each callback records how late it ran
//! (now − (registration time + delay), so the registration call itself counts against
//! ioman). Side by side:
//!
//! - `ioman`: [`ioman::EventManager::register_timeout`] from the registering thread, the
//!   loop on its own thread ([`run`](ioman::EventManager::run));
//! - `tokio`: `tokio::time::sleep_until(deadline)` in a task per timer on a
//!   current-thread runtime on its own thread (tokio's timer wheel, 1 ms ticks: deadlines
//!   are rounded up to the next millisecond);
//! - `thread::sleep`: one thread sleeping through each delay in turn: the kernel's own
//!   lateness, the floor for any user-space timer.
//!
//! Each runs twice: with the kernel's default timer slack for the waiting thread (50 µs on
//! Linux: the kernel may fire a timer up to that much late to batch wakeups), and with
//! the slack set to 1 ns on that thread (Linux only: `ioman::Builder::timer_slack` for
//! ioman's loop thread, `ioman_poll::set_timer_slack` for the others).
//! Nothing here is a criterion benchmark: it prints a table of p50, p99 and max lateness.
//!
//! Lateness depends on the machine's load: run it on a quiet machine.
//!
//! # Names, arguments
//!
//! Benchmarks are named `lateness/CONTENDER/SLACK`, CONTENDER one of `ioman`, `tokio`,
//! `thread_sleep`, SLACK `slack_default` or `slack_1ns`; a filter runs only the names that
//! contain it (the command line is read as criterion reads its own: see
//! `ioman_bench::args`, `-- --help`, `-- --list`):
//!
//! ```text
//! cargo bench -p ioman-bench --bench lateness                      # all six
//! cargo bench -p ioman-bench --bench lateness -- ioman             # ioman, both slacks
//! cargo bench -p ioman-bench --bench lateness -- slack_1ns --timers 5000
//! ```
//!
//! | argument | environment | default |
//! |---|---|---|
//! | `--timers N` | `IOMAN_BENCH_LATENESS_N` | 2,000 (`thread::sleep` takes the first 200) |
//!
//! An argument wins over its variable. Without `--bench` (`cargo test --benches`) each
//! selected benchmark runs with 20 timers, to show that it works.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ioman::EventManager;
use ioman_bench::args::{Args, Mode, Opt};

/// Gap between registrations.
const GAP: Duration = Duration::from_micros(200);

/// xorshift64*: the same delays for every contender.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn delays(n: usize) -> Vec<Duration> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    (0..n)
        .map(|_| Duration::from_micros(1_000 + rng.next() % 19_000))
        .collect()
}

/// Sets the calling thread's timer slack to `ns` nanoseconds (Linux; elsewhere nothing).
fn set_timer_slack(ns: u64) {
    let _ = ioman_poll::set_timer_slack(Duration::from_nanos(ns));
}

/// Lateness samples in nanoseconds, one per timer.
#[derive(Default)]
struct Samples {
    late: Mutex<Vec<i64>>,
    done: AtomicUsize,
}

impl Samples {
    fn record(&self, deadline: Instant) {
        let now = Instant::now();
        let late = match now.checked_duration_since(deadline) {
            Some(d) => d.as_nanos() as i64,
            None => -(deadline.duration_since(now).as_nanos() as i64),
        };
        self.late.lock().expect("samples").push(late);
        self.done.fetch_add(1, Ordering::SeqCst);
    }

    fn wait_for(&self, n: usize) {
        let give_up = Instant::now() + Duration::from_secs(30);
        while self.done.load(Ordering::SeqCst) < n && Instant::now() < give_up {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// p50, p99, max, and how many fired early, in microseconds.
fn summary(samples: &Samples) -> (f64, f64, f64, usize, usize) {
    let mut v = samples.late.lock().expect("samples").clone();
    v.sort_unstable();
    let us = |ns: i64| ns as f64 / 1_000.0;
    let at = |q: f64| us(v[((v.len() - 1) as f64 * q) as usize]);
    let early = v.iter().filter(|&&l| l < 0).count();
    (
        at(0.5),
        at(0.99),
        us(*v.last().unwrap_or(&0)),
        early,
        v.len(),
    )
}

fn ioman(delays: &[Duration], slack: Option<u64>) -> Samples {
    let mut builder = EventManager::builder();
    if let Some(ns) = slack {
        builder = builder.timer_slack(Duration::from_nanos(ns));
    }
    let mgr = Arc::new(builder.build().expect("manager"));
    let samples = Arc::new(Samples::default());
    let looper = {
        let mgr = Arc::clone(&mgr);
        thread::spawn(move || mgr.run())
    };
    // Let the loop block once before the first registration.
    thread::sleep(Duration::from_millis(5));
    for &after in delays {
        let s = Arc::clone(&samples);
        let deadline = Instant::now() + after;
        mgr.register_timeout(after, move |_| s.record(deadline))
            .expect("register");
        thread::sleep(GAP);
    }
    samples.wait_for(delays.len());
    mgr.shutdown();
    looper.join().expect("loop thread").expect("loop");
    Arc::try_unwrap(samples).unwrap_or_default()
}

fn tokio(delays: &[Duration], slack: Option<u64>) -> Samples {
    let samples = Arc::new(Samples::default());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let runner = {
        let samples = Arc::clone(&samples);
        thread::spawn(move || {
            if let Some(ns) = slack {
                set_timer_slack(ns);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                while let Some(deadline) = rx.recv().await {
                    let s = Arc::clone(&samples);
                    tokio::spawn(async move {
                        tokio::time::sleep_until(deadline.into()).await;
                        s.record(deadline);
                    });
                }
                // Sender gone: let the last sleeps finish.
                tokio::time::sleep(Duration::from_millis(40)).await;
            });
        })
    };
    thread::sleep(Duration::from_millis(5));
    for &after in delays {
        tx.send(Instant::now() + after).expect("send");
        thread::sleep(GAP);
    }
    samples.wait_for(delays.len());
    drop(tx);
    runner.join().expect("runtime thread");
    Arc::try_unwrap(samples).unwrap_or_default()
}

fn sleeper(delays: &[Duration], slack: Option<u64>) -> Samples {
    let samples = Arc::new(Samples::default());
    let s = Arc::clone(&samples);
    // Sleeping through every delay takes ~20 ms a timer: a sample of 200 is enough.
    let delays: Vec<Duration> = delays.iter().copied().take(200).collect();
    thread::spawn(move || {
        if let Some(ns) = slack {
            set_timer_slack(ns);
        }
        for after in delays {
            let deadline = Instant::now() + after;
            thread::sleep(after);
            s.record(deadline);
        }
    })
    .join()
    .expect("sleeper");
    Arc::try_unwrap(samples).unwrap_or_default()
}

const OPTS: &[Opt] = &[Opt::value(
    "timers",
    "IOMAN_BENCH_LATENESS_N",
    "timers per contender (default 2000)",
)];

fn main() {
    let args = Args::parse("lateness", OPTS);
    let n = match args.mode() {
        Mode::Test => 20,
        _ => args.num("timers", 2_000usize).max(1),
    };
    type Run = fn(&[Duration], Option<u64>) -> Samples;
    let contenders: [(&str, &str, Run); 3] = [
        ("ioman", "ioman", ioman),
        ("tokio", "tokio", tokio),
        ("thread::sleep", "thread_sleep", sleeper),
    ];
    let slacks = [
        ("default", "slack_default", None),
        ("1 ns", "slack_1ns", Some(1)),
    ];
    let names = contenders.iter().flat_map(|(_, c, _)| {
        slacks
            .iter()
            .map(move |(_, s, _)| format!("lateness/{c}/{s}"))
    });
    let Some(chosen) = args.select(names) else {
        return;
    };
    let delays = delays(n);
    let default_slack = ioman_poll::timer_slack().map_or(0, |d| d.as_nanos() as u64);
    println!(
        "timer lateness, µs ({n} timers, 1–20 ms, one registered every {} µs; default timer slack {} µs)",
        GAP.as_micros(),
        default_slack as f64 / 1_000.0
    );
    println!("| contender | slack | p50 | p99 | max | early | timers |");
    println!("|---|---|---|---|---|---|---|");
    for (name, id, run) in contenders {
        for (label, slack_id, slack) in slacks {
            if !chosen.contains(&format!("lateness/{id}/{slack_id}")) {
                continue;
            }
            let (p50, p99, max, early, len) = summary(&run(&delays, slack));
            println!("| {name} | {label} | {p50:.1} | {p99:.1} | {max:.1} | {early} | {len} |");
        }
    }
}
