//! Thousands of timeouts registered, moved and cancelled through an [`EventManager`] while its
//! loop runs on its own thread.
//!
//! What it shows:
//!
//! - [`register_timeout`](EventManager::register_timeout) from two threads at once (10,000
//!   timeouts, 150 to 450 ms ahead);
//! - [`update_timeout`](EventManager::update_timeout) moving a quarter of them later and a
//!   quarter earlier (never earlier than 100 ms ahead, so no update races its own firing);
//! - [`unregister_timeout`](EventManager::unregister_timeout) cancelling a tenth of them;
//! - that exactly the timeouts that were not cancelled fire, each once and never before its
//!   deadline, and how late they fire (p50, p99, max of firing time minus deadline);
//! - how many wakeup syscalls the manager needed ([`Stats::wakeups`](ioman::Stats)): only a
//!   timeout earlier than every other wakes the loop.
//!
//! It exits 0 when every check passed. Lateness depends on the machine's load; on an idle
//! Linux machine p50 is about 55 µs and p99 well under a millisecond. Most of the median is
//! the kernel's timer slack, 50 µs by default for every thread (`prctl(PR_SET_TIMERSLACK)`),
//! by which the kernel may defer the loop's `epoll_pwait2` timeout; ioman asks for the exact
//! deadline.
//!
//! Run it with (release, for realistic lateness):
//!
//! ```text
//! cargo run --release -p ioman --example timers
//! ```

use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ioman::{EventManager, TimeoutKey};

/// Timeouts in all.
const TIMEOUTS: usize = 10_000;
/// Threads registering, updating and cancelling (each owns a contiguous range of ids).
const THREADS: usize = 2;

/// What happened to timeout `id`.
const PENDING: u8 = 0;
const FIRED: u8 = 1;
const CANCELLED: u8 = 2;
const FIRED_TWICE: u8 = 3;
const CANCELLED_BUT_FIRED: u8 = 4;

/// Shared between the threads and the callbacks.
struct Book {
    /// When the program started; deadlines and firing times are nanoseconds since then.
    base: Instant,
    /// The deadline of each timeout as last set (taken just *before* the manager call, so it is
    /// never later than the manager's own deadline: firing before it means firing early).
    deadline_ns: Vec<AtomicU64>,
    /// The firing time of each timeout.
    fired_ns: Vec<AtomicU64>,
    state: Vec<AtomicU8>,
    fired: AtomicU64,
}

impl Book {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// A tiny deterministic generator (xorshift), so the example needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(lo * 1000 + self.next() % ((hi - lo) * 1000))
    }
}

/// What one worker thread did.
#[derive(Default, Debug)]
struct Done {
    registered: u64,
    moved_later: u64,
    moved_earlier: u64,
    cancelled: u64,
    /// Updates or cancels that found the timeout gone (must stay 0: none is due yet).
    raced: u64,
    ops_time: Duration,
}

fn main() -> io::Result<()> {
    let manager = Arc::new(EventManager::new()?);
    let loop_handle = manager.spawn()?;
    let book = Arc::new(Book {
        base: Instant::now(),
        deadline_ns: (0..TIMEOUTS).map(|_| AtomicU64::new(0)).collect(),
        fired_ns: (0..TIMEOUTS).map(|_| AtomicU64::new(0)).collect(),
        state: (0..TIMEOUTS).map(|_| AtomicU8::new(PENDING)).collect(),
        fired: AtomicU64::new(0),
    });

    let per_thread = TIMEOUTS / THREADS;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (manager, book) = (Arc::clone(&manager), Arc::clone(&book));
            let ids = t * per_thread..(t + 1) * per_thread;
            thread::spawn(move || worker(&manager, &book, ids, t as u64 + 1))
        })
        .collect();
    let mut total = Done::default();
    for w in workers {
        let d = w
            .join()
            .map_err(|_| io::Error::other("worker panicked"))??;
        total.registered += d.registered;
        total.moved_later += d.moved_later;
        total.moved_earlier += d.moved_earlier;
        total.cancelled += d.cancelled;
        total.raced += d.raced;
        total.ops_time = total.ops_time.max(d.ops_time);
    }
    let ops = total.registered + total.moved_later + total.moved_earlier + total.cancelled;
    println!(
        "{THREADS} threads: {} registered, {} moved later, {} moved earlier, {} cancelled \
         ({ops} operations in {:.1?}, {:.0} ns/op per thread)",
        total.registered,
        total.moved_later,
        total.moved_earlier,
        total.cancelled,
        total.ops_time,
        total.ops_time.as_nanos() as f64 / (ops as f64 / THREADS as f64),
    );

    // Wait for every live timeout (the latest deadline is under a second away), then a
    // little longer so that a cancelled one firing late would be seen.
    let expected = total.registered - total.cancelled;
    let give_up = Instant::now() + Duration::from_secs(5);
    while book.fired.load(Ordering::SeqCst) < expected && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(50));
    let stats = manager.stats();
    manager.shutdown();
    loop_handle.join()?;

    // Check every timeout's fate and collect the lateness of those that fired.
    let mut late_ns = Vec::with_capacity(TIMEOUTS);
    let (mut early, mut missing, mut cancelled_fired, mut twice) = (0, 0, 0, 0);
    for id in 0..TIMEOUTS {
        match book.state[id].load(Ordering::SeqCst) {
            FIRED => {
                let fired = book.fired_ns[id].load(Ordering::SeqCst);
                let deadline = book.deadline_ns[id].load(Ordering::SeqCst);
                if fired < deadline {
                    early += 1;
                } else {
                    late_ns.push(fired - deadline);
                }
            }
            PENDING => missing += 1,
            CANCELLED => {}
            FIRED_TWICE => twice += 1,
            _ => cancelled_fired += 1,
        }
    }
    late_ns.sort_unstable();
    let pct = |p: f64| -> Duration {
        if late_ns.is_empty() {
            return Duration::ZERO;
        }
        let i = ((late_ns.len() - 1) as f64 * p).round() as usize;
        Duration::from_nanos(late_ns[i])
    };
    let fired = book.fired.load(Ordering::SeqCst);
    println!(
        "fired {fired} of {expected} expected; missing {missing}, early {early}, \
         cancelled-but-fired {cancelled_fired}, fired twice {twice}, updates that raced {}",
        total.raced
    );
    println!(
        "lateness (firing - deadline): p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, max {:.1?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "manager: {} loop iterations, {} timeout callbacks, {} wakeup syscalls for {ops} \
         timer operations",
        stats.iterations, stats.timeout_callbacks, stats.wakeups
    );

    if fired != expected || missing + early + cancelled_fired + twice + total.raced != 0 {
        return Err(io::Error::other("some timeout did not behave"));
    }
    println!("ok: every live timeout fired once, none early, no cancelled one fired");
    Ok(())
}

/// Registers the timeouts `ids`, then moves some later, some earlier, and cancels some.
fn worker(
    manager: &EventManager,
    book: &Arc<Book>,
    ids: std::ops::Range<usize>,
    seed: u64,
) -> io::Result<Done> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    let mut done = Done::default();
    let start = Instant::now();
    let mut keys: Vec<(usize, TimeoutKey)> = Vec::with_capacity(ids.len());
    for id in ids {
        let after = rng.millis(150, 450);
        book.deadline_ns[id].store(book.now_ns() + after.as_nanos() as u64, Ordering::SeqCst);
        let b = Arc::clone(book);
        let key = manager.register_timeout(after, move |_mgr| {
            b.fired_ns[id].store(b.now_ns(), Ordering::SeqCst);
            let prev = b.state[id].swap(FIRED, Ordering::SeqCst);
            if prev != PENDING {
                // Record a second firing or the firing of a cancelled timeout.
                b.state[id].store(
                    if prev == FIRED {
                        FIRED_TWICE
                    } else {
                        CANCELLED_BUT_FIRED
                    },
                    Ordering::SeqCst,
                );
            }
            b.fired.fetch_add(1, Ordering::SeqCst);
        })?;
        done.registered += 1;
        keys.push((id, key));
    }
    for (i, &(id, key)) in keys.iter().enumerate() {
        match i % 20 {
            // A quarter later (out to 450 + 300 ms)...
            0..=4 => {
                let after = rng.millis(300, 750);
                book.deadline_ns[id]
                    .store(book.now_ns() + after.as_nanos() as u64, Ordering::SeqCst);
                if manager.update_timeout(key, after) {
                    done.moved_later += 1;
                } else {
                    done.raced += 1;
                }
            }
            // ...a quarter earlier (but still at least 100 ms ahead)...
            5..=9 => {
                let after = rng.millis(100, 150);
                book.deadline_ns[id]
                    .store(book.now_ns() + after.as_nanos() as u64, Ordering::SeqCst);
                if manager.update_timeout(key, after) {
                    done.moved_earlier += 1;
                } else {
                    done.raced += 1;
                }
            }
            // ...and a tenth cancelled.
            10 | 11 => {
                // Marked first, so that firing after a successful cancel is caught.
                let prev = book.state[id].swap(CANCELLED, Ordering::SeqCst);
                if prev == PENDING && manager.unregister_timeout(key) {
                    done.cancelled += 1;
                } else {
                    book.state[id].store(prev, Ordering::SeqCst);
                    done.raced += 1;
                }
            }
            _ => {}
        }
    }
    done.ops_time = start.elapsed();
    Ok(done)
}
