//! `ioman_async::Timer` against tokio's `sleep` and `async_io::Timer`: one cycle is create,
//! poll once (which registers it), reset to a later deadline, drop; 30 s deadlines, so none
//! fires. A criterion bench (`async_timer/CONTENDER`, an HTML report at
//! `target/criterion/report/index.html`):
//!
//! ```text
//! cargo bench -p ioman-bench --bench async_timer
//! cargo bench -p ioman-bench --bench async_timer -- ioman_async
//! ```
//!
//! With `IOMAN_TIMER_LOOP=kind,n` (kind `ioman-async` or `tokio`) the binary runs `n` cycles
//! of one kind in a function of its own instead, for an instruction count that does not
//! vary between runs: `valgrind --tool=callgrind --toggle-collect='*timer_loop*'` on the
//! bench binary (then the total over `n`).
//!
//! # Results
//!
//! One shared 2-core x86_64 Linux VM (Rust 1.95, tokio 1, async-io 2): ioman-async `Timer`
//! 127 ns and 1,189 instructions per cycle, tokio `sleep` 155 ns and 917, async-io `Timer`
//! 542 ns: faster than tokio's `sleep` in time, not in instructions.
#![allow(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use criterion::Criterion;
use ioman::EventManager;

fn timers(c: &mut Criterion) {
    let mut g = c.benchmark_group("async_timer");
    let mut cx = Context::from_waker(Waker::noop());
    if let Ok(m) = EventManager::new() {
        let m = Arc::new(m);
        g.bench_function("ioman_async", |b| {
            b.iter(|| {
                let mut t = ioman_async::Timer::after_with(&m, Duration::from_secs(30));
                let _ = Pin::new(&mut t).poll(&mut cx);
                t.set_after(Duration::from_secs(31));
                drop(t);
            })
        });
    }
    g.bench_function("async_io", |b| {
        b.iter(|| {
            let mut t = async_io::Timer::after(Duration::from_secs(30));
            let _ = Pin::new(&mut t).poll(&mut cx);
            t.set_after(Duration::from_secs(31));
            drop(t);
        })
    });
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        let _guard = rt.enter();
        g.bench_function("tokio_sleep", |b| {
            b.iter(|| {
                let t = tokio::time::sleep(Duration::from_secs(30));
                let mut t = std::pin::pin!(t);
                let _ = t.as_mut().poll(&mut cx);
                t.as_mut()
                    .reset(tokio::time::Instant::now() + Duration::from_secs(31));
            })
        });
    }
    g.finish();
}

/// `IOMAN_TIMER_LOOP=kind,n`: `n` create+poll+reset+drop cycles of one timer kind, in a
/// function of its own, for an instruction count that does not vary between runs:
/// `valgrind --tool=callgrind --toggle-collect='*timer_loop*'` (then `totals / n`).
#[inline(never)]
fn timer_loop(kind: &str, n: u64) {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    match kind {
        "ioman-async" => {
            let Ok(m) = EventManager::new() else { return };
            let m = Arc::new(m);
            for _ in 0..n {
                let mut t = ioman_async::Timer::after_with(&m, Duration::from_secs(30));
                let _ = Pin::new(&mut t).poll(&mut cx);
                t.set_after(Duration::from_secs(31));
                drop(std::hint::black_box(t));
            }
        }
        "tokio" => {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            else {
                return;
            };
            let _guard = rt.enter();
            for _ in 0..n {
                let t = tokio::time::sleep(Duration::from_secs(30));
                let mut t = std::pin::pin!(t);
                let _ = t.as_mut().poll(&mut cx);
                t.as_mut()
                    .reset(tokio::time::Instant::now() + Duration::from_secs(31));
            }
        }
        _ => {}
    }
}

fn main() {
    if let Ok(spec) = std::env::var("IOMAN_TIMER_LOOP") {
        let (kind, n) = spec.split_once(',').unwrap_or((spec.as_str(), "100000"));
        timer_loop(kind, n.parse().unwrap_or(100_000));
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    timers(&mut c);
    c.final_summary();
}
