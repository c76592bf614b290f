//! Timer data structures side by side: ioman's `TimerQueue` and `Psq`, std's
//! `BinaryHeap` with lazy deletion, `BTreeMap` + `HashMap`, the `priority-queue` crate,
//! and tokio-util's `DelayQueue` on tokio's paused clock.
//!
//! Workloads, with n live timers at deadlines uniform in 1 s..30 s of virtual time:
//!
//! - `insert`: build n timers from empty (time per insert);
//! - `cancel`: cancel a random live timer (time per cancel; the cancelled timers are
//!   replaced, unmeasured, between batches so n stays constant);
//! - `move_later`: move a random live timer 1 ms..1 s later (time per move);
//! - `expire`: advance time in 1 ms steps until all n timers have fired (time per
//!   expired timer, including the 29,000 empty or near-empty steps);
//! - `server`: GHC's "server timeouts" workload: register n at 10 s, move each later
//!   three times, cancel 90%, let 10% fire (time per registered timer).
//!
//! Every reported time is per operation: the `iter_custom` closures divide each measured
//! batch by its number of operations, so criterion's "time" column reads as ns/op.
//! Building the n live timers (and refilling between `cancel` batches) is never
//! measured.
//!
//! Sizes: `IOMAN_BENCH_TIMERS_N="100000,1000000"` (the default).
//! Run: `cargo bench -p ioman-bench --bench timers -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ioman_timers::{Clock, Key, ManualClock, Psq, TimerKey, TimerQueue};

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// Operations per measured batch for `cancel` and `move_later`.
const BATCH: usize = 10_000;

/// xorshift64*: a fixed-seed generator, so every implementation sees the same deadlines.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..hi` (bias irrelevant here).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("IOMAN_BENCH_TIMERS_N")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![100_000, 1_000_000])
}

/// The operations every implementation offers, on virtual time in nanoseconds.
trait Timers {
    type H: Copy;
    const NAME: &'static str;
    fn new() -> Self;
    fn insert(&mut self, deadline: u64) -> Self::H;
    fn cancel(&mut self, h: Self::H);
    /// Moves a timer from `old` to the later deadline `new`; returns its handle after.
    fn move_later(&mut self, h: Self::H, old: u64, new: u64) -> Self::H;
    /// Advances time to `now` and removes every timer due; returns how many.
    fn expire(&mut self, now: u64) -> usize;
}

/// ioman's `TimerQueue` on a `ManualClock`.
struct Ioman {
    q: TimerQueue<u64, ManualClock>,
    t0: Instant,
    id: u64,
}

impl Timers for Ioman {
    type H = TimerKey;
    const NAME: &'static str = "ioman_TimerQueue";
    fn new() -> Self {
        let clock = ManualClock::new();
        let t0 = clock.now();
        Ioman {
            q: TimerQueue::with_clock(clock),
            t0,
            id: 0,
        }
    }
    fn insert(&mut self, deadline: u64) -> TimerKey {
        self.id += 1;
        self.q
            .register_at(self.t0 + Duration::from_nanos(deadline), self.id)
    }
    fn cancel(&mut self, h: TimerKey) {
        self.q.cancel(h);
    }
    fn move_later(&mut self, h: TimerKey, _old: u64, new: u64) -> TimerKey {
        self.q.update_at(h, self.t0 + Duration::from_nanos(new));
        h
    }
    fn expire(&mut self, now: u64) -> usize {
        self.q.clock().set(self.t0 + Duration::from_nanos(now));
        self.q.expire().count()
    }
}

/// ioman's bare `Psq` keyed by deadline (no tie-break, no lazy moves).
struct IomanPsq {
    q: Psq<u64, u64>,
    id: u64,
}

impl Timers for IomanPsq {
    type H = Key;
    const NAME: &'static str = "ioman_Psq";
    fn new() -> Self {
        IomanPsq {
            q: Psq::new(),
            id: 0,
        }
    }
    fn insert(&mut self, deadline: u64) -> Key {
        self.id += 1;
        self.q.insert(deadline, self.id)
    }
    fn cancel(&mut self, h: Key) {
        self.q.remove(h);
    }
    fn move_later(&mut self, h: Key, _old: u64, new: u64) -> Key {
        self.q.change_priority(h, new);
        h
    }
    fn expire(&mut self, now: u64) -> usize {
        self.q.pop_at_most(&now).count()
    }
}

/// `std::collections::BinaryHeap` with lazy deletion: each entry carries a generation,
/// checked against a dense per-timer table when it surfaces. Cancel bumps the
/// generation (O(1)); a move pushes a new entry and bumps the generation, leaving the
/// old entry as a tombstone until it surfaces.
struct LazyHeap {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    gens: Vec<u32>,
}

impl Timers for LazyHeap {
    type H = u32;
    const NAME: &'static str = "std_BinaryHeap_lazy";
    fn new() -> Self {
        LazyHeap {
            heap: BinaryHeap::new(),
            gens: Vec::new(),
        }
    }
    fn insert(&mut self, deadline: u64) -> u32 {
        let id = self.gens.len() as u32;
        self.gens.push(0);
        self.heap.push(Reverse((deadline, id, 0)));
        id
    }
    fn cancel(&mut self, h: u32) {
        self.gens[h as usize] += 1;
    }
    fn move_later(&mut self, h: u32, _old: u64, new: u64) -> u32 {
        let g = &mut self.gens[h as usize];
        *g += 1;
        self.heap.push(Reverse((new, h, *g)));
        h
    }
    fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some(&Reverse((d, id, g))) = self.heap.peek() {
            if d > now {
                break;
            }
            self.heap.pop();
            if self.gens[id as usize] == g {
                self.gens[id as usize] += 1;
                n += 1;
            }
        }
        n
    }
}

/// `BTreeMap<(deadline, id), value>` plus `HashMap<id, deadline>` to find a timer by id.
struct BTree {
    by_deadline: BTreeMap<(u64, u64), u64>,
    by_id: HashMap<u64, u64>,
    id: u64,
}

impl Timers for BTree {
    type H = u64;
    const NAME: &'static str = "std_BTreeMap+HashMap";
    fn new() -> Self {
        BTree {
            by_deadline: BTreeMap::new(),
            by_id: HashMap::new(),
            id: 0,
        }
    }
    fn insert(&mut self, deadline: u64) -> u64 {
        self.id += 1;
        self.by_deadline.insert((deadline, self.id), self.id);
        self.by_id.insert(self.id, deadline);
        self.id
    }
    fn cancel(&mut self, h: u64) {
        if let Some(d) = self.by_id.remove(&h) {
            self.by_deadline.remove(&(d, h));
        }
    }
    fn move_later(&mut self, h: u64, _old: u64, new: u64) -> u64 {
        if let Some(d) = self.by_id.get_mut(&h) {
            let v = self.by_deadline.remove(&(*d, h)).unwrap_or(h);
            *d = new;
            self.by_deadline.insert((new, h), v);
        }
        h
    }
    fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some(entry) = self.by_deadline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, id) = *entry.key();
            entry.remove();
            self.by_id.remove(&id);
            n += 1;
        }
        n
    }
}

/// The `priority-queue` crate: `PriorityQueue<id, Reverse<deadline>>` (default hasher).
struct PrioQ {
    q: priority_queue::PriorityQueue<u64, Reverse<u64>>,
    id: u64,
}

impl Timers for PrioQ {
    type H = u64;
    const NAME: &'static str = "priority_queue";
    fn new() -> Self {
        PrioQ {
            q: priority_queue::PriorityQueue::new(),
            id: 0,
        }
    }
    fn insert(&mut self, deadline: u64) -> u64 {
        self.id += 1;
        self.q.push(self.id, Reverse(deadline));
        self.id
    }
    fn cancel(&mut self, h: u64) {
        self.q.remove(&h);
    }
    fn move_later(&mut self, h: u64, _old: u64, new: u64) -> u64 {
        self.q.change_priority(&h, Reverse(new));
        h
    }
    fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some((_, &Reverse(d))) = self.q.peek() {
            if d > now {
                break;
            }
            self.q.pop();
            n += 1;
        }
        n
    }
}

/// A current-thread tokio runtime whose clock starts paused, shared by all DelayQueue
/// benchmarks. Every benchmark function enters it, so DelayQueue calls find the timer.
fn tokio_rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("tokio runtime")
    })
}

struct NoopWake;
impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// tokio-util's `DelayQueue` (a hierarchical timing wheel, 1 ms resolution) driven by
/// tokio's paused clock: `expire` advances the clock with `tokio::time::advance` inside
/// `block_on` (so the runtime's timer fires the queue's `Sleep`) and then polls
/// `poll_expired` with a no-op waker until it is pending. The advance costs a
/// `block_on` per step, which is part of driving a DelayQueue.
struct Delay {
    q: tokio_util::time::DelayQueue<u64>,
    t0: tokio::time::Instant,
    waker: Waker,
    id: u64,
}

impl Timers for Delay {
    type H = tokio_util::time::delay_queue::Key;
    const NAME: &'static str = "tokio_util_DelayQueue";
    fn new() -> Self {
        let _g = tokio_rt().enter();
        Delay {
            q: tokio_util::time::DelayQueue::new(),
            t0: tokio::time::Instant::now(),
            waker: Waker::from(Arc::new(NoopWake)),
            id: 0,
        }
    }
    fn insert(&mut self, deadline: u64) -> Self::H {
        self.id += 1;
        self.q
            .insert_at(self.id, self.t0 + Duration::from_nanos(deadline))
    }
    fn cancel(&mut self, h: Self::H) {
        self.q.try_remove(&h);
    }
    fn move_later(&mut self, h: Self::H, _old: u64, new: u64) -> Self::H {
        self.q.reset_at(&h, self.t0 + Duration::from_nanos(new));
        h
    }
    fn expire(&mut self, now: u64) -> usize {
        let target = self.t0 + Duration::from_nanos(now);
        let ahead = target.saturating_duration_since(tokio::time::Instant::now());
        if !ahead.is_zero() {
            tokio_rt().block_on(tokio::time::advance(ahead));
        }
        let mut cx = Context::from_waker(&self.waker);
        let mut n = 0;
        while let Poll::Ready(Some(_)) = self.q.poll_expired(&mut cx) {
            n += 1;
        }
        n
    }
}

/// n live timers at deadlines uniform in 1 s..30 s, with their handles and deadlines.
fn build<T: Timers>(n: usize, rng: &mut Rng) -> (T, Vec<T::H>, Vec<u64>) {
    let mut t = T::new();
    let mut handles = Vec::with_capacity(n);
    let mut deadlines = Vec::with_capacity(n);
    for _ in 0..n {
        let d = rng.range(SEC, 30 * SEC);
        handles.push(t.insert(d));
        deadlines.push(d);
    }
    (t, handles, deadlines)
}

/// The time of one measured batch per operation: summed over `iters` batches and then
/// divided by `iters` by criterion, it makes the "time" column read as ns/op.
fn per_op(total: Duration, ops: usize) -> Duration {
    total / ops.max(1) as u32
}

fn bench_insert<T: Timers>(c: &mut Criterion, n: usize) {
    c.benchmark_group(format!("timers/insert/{n}"))
        .bench_function(BenchmarkId::from_parameter(T::NAME), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let mut rng = Rng::new(7 + i);
                    let deadlines: Vec<u64> = (0..n).map(|_| rng.range(SEC, 30 * SEC)).collect();
                    let mut t = T::new();
                    let start = Instant::now();
                    for &d in &deadlines {
                        std::hint::black_box(t.insert(d));
                    }
                    total += start.elapsed();
                    drop(t);
                }
                per_op(total, n)
            })
        });
}

fn bench_cancel<T: Timers>(c: &mut Criterion, n: usize) {
    c.benchmark_group(format!("timers/cancel/{n}"))
        .bench_function(BenchmarkId::from_parameter(T::NAME), |b| {
            b.iter_custom(|iters| {
                let mut rng = Rng::new(11);
                let (mut t, mut handles, mut deadlines) = build::<T>(n, &mut rng);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let victims: Vec<T::H> = (0..BATCH)
                        .map(|_| {
                            let i = rng.next() as usize % handles.len();
                            deadlines.swap_remove(i);
                            handles.swap_remove(i)
                        })
                        .collect();
                    let start = Instant::now();
                    for h in victims {
                        t.cancel(h);
                    }
                    total += start.elapsed();
                    for _ in 0..BATCH {
                        let d = rng.range(SEC, 30 * SEC);
                        handles.push(t.insert(d));
                        deadlines.push(d);
                    }
                }
                per_op(total, BATCH)
            })
        });
}

fn bench_move_later<T: Timers>(c: &mut Criterion, n: usize) {
    c.benchmark_group(format!("timers/move_later/{n}"))
        .bench_function(BenchmarkId::from_parameter(T::NAME), |b| {
            b.iter_custom(|iters| {
                let mut rng = Rng::new(13);
                let (mut t, mut handles, mut deadlines) = build::<T>(n, &mut rng);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let moves: Vec<(usize, u64)> = (0..BATCH)
                        .map(|_| (rng.next() as usize % n, rng.range(MS, SEC)))
                        .collect();
                    let start = Instant::now();
                    for &(i, by) in &moves {
                        let old = deadlines[i];
                        deadlines[i] = old + by;
                        handles[i] = t.move_later(handles[i], old, old + by);
                    }
                    total += start.elapsed();
                }
                per_op(total, BATCH)
            })
        });
}

fn bench_expire<T: Timers>(c: &mut Criterion, n: usize) {
    c.benchmark_group(format!("timers/expire/{n}"))
        .bench_function(BenchmarkId::from_parameter(T::NAME), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let mut rng = Rng::new(17 + i);
                    let (mut t, _, _) = build::<T>(n, &mut rng);
                    let start = Instant::now();
                    let mut fired = 0;
                    let mut now = 0;
                    while now <= 30 * SEC {
                        now += MS;
                        fired += t.expire(now);
                    }
                    total += start.elapsed();
                    assert_eq!(fired, n, "{} expired {fired} of {n}", T::NAME);
                }
                per_op(total, n)
            })
        });
}

/// GHC's "server timeouts" workload, per registered timer.
fn bench_server<T: Timers>(c: &mut Criterion, n: usize) {
    c.benchmark_group(format!("timers/server/{n}"))
        .bench_function(BenchmarkId::from_parameter(T::NAME), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut t = T::new();
                    let start = Instant::now();
                    // One registration per microsecond of virtual time, each for 10 s.
                    let mut handles: Vec<(T::H, u64)> = (0..n as u64)
                        .map(|i| {
                            let d = 10 * SEC + i * 1_000;
                            (t.insert(d), d)
                        })
                        .collect();
                    for _round in 0..3 {
                        for (h, d) in handles.iter_mut() {
                            *h = t.move_later(*h, *d, *d + SEC);
                            *d += SEC;
                        }
                    }
                    for (i, &(h, _)) in handles.iter().enumerate() {
                        if i % 10 != 0 {
                            t.cancel(h);
                        }
                    }
                    let fired = t.expire(14 * SEC + n as u64 * 1_000);
                    total += start.elapsed();
                    assert_eq!(fired, n.div_ceil(10), "{}", T::NAME);
                    drop(t);
                }
                per_op(total, n)
            })
        });
}

fn all<T: Timers>(c: &mut Criterion, n: usize) {
    bench_insert::<T>(c, n);
    bench_cancel::<T>(c, n);
    bench_move_later::<T>(c, n);
    bench_expire::<T>(c, n);
    bench_server::<T>(c, n);
}

/// `push` alone into a `BinaryHeap`: the floor an insert is compared against.
fn bench_binary_heap_push(c: &mut Criterion, n: usize) {
    c.benchmark_group(format!("timers/insert/{n}"))
        .bench_function(BenchmarkId::from_parameter("std_BinaryHeap_push"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let mut rng = Rng::new(7 + i);
                    let deadlines: Vec<u64> = (0..n).map(|_| rng.range(SEC, 30 * SEC)).collect();
                    let mut heap = BinaryHeap::new();
                    let start = Instant::now();
                    for (id, &d) in deadlines.iter().enumerate() {
                        heap.push(Reverse((d, id as u64)));
                    }
                    total += start.elapsed();
                    std::hint::black_box(&heap);
                }
                per_op(total, n)
            })
        });
}

fn timers(c: &mut Criterion) {
    let _tokio = tokio_rt().enter();
    for n in sizes() {
        bench_binary_heap_push(c, n);
        all::<Ioman>(c, n);
        all::<IomanPsq>(c, n);
        all::<LazyHeap>(c, n);
        all::<BTree>(c, n);
        all::<PrioQ>(c, n);
        all::<Delay>(c, n);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = timers
}
criterion_main!(benches);
