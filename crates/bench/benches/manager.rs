//! Event-manager benchmarks: ioman's `EventManager` against a hand-written mio loop and tokio.
//!
//! * `round_trip/*`: a byte bounced between two socketpairs, ns per round trip. The byte
//!   arrives at `b1`, whose handler writes it into `a2`; it arrives at `b2`, whose handler
//!   writes it into `a1`; that is one round trip (two readiness events, two reads, two
//!   writes). Everything runs on the benchmark thread:
//!   - `ioman`: two `Lifetime::OneShot` READ callbacks, each reading the byte, writing it on
//!     and re-registering itself (a new one-shot registration, one `EPOLL_CTL_MOD`), driven
//!     by `EventManager::step(None)`. The callbacks read once, not until `WouldBlock`: a
//!     one-shot is re-armed level-triggered, so a byte left behind would fire again;
//!   - `mio`: a hand-written `mio::Poll` loop, edge-triggered, reading until `WouldBlock`
//!     (two `recv` per hop, where the ioman bouncers make one);
//!   - `mio_read_once`: the same loop stopping at a short read (one `recv` per hop, as
//!     tokio and the ioman bouncers): the reference on equal syscalls;
//!   - `tokio`: two tasks awaiting `AsyncFd::readable` on a current-thread runtime;
//!   - `ioman_multishot` (not a peer): ioman with `Lifetime::MultiShot` callbacks registered
//!     once, which isolates the cost of the one-shot re-arm;
//!   - `ioman_rearm`: ioman's zero-syscall re-arm: two `Lifetime::Rearmable` READ
//!     registrations made once, each callback reading the byte, writing it on and calling
//!     `EventManager::rearm` (a flag flip: the kernel keeps its level-triggered registration).
//!
//!   After them, `round_trip/interleaved` runs the six in turn for 21 rounds of 20,000
//!   round trips and prints each one's median ratio to mio, which is robust to a machine
//!   shared with other work (its criterion line is a 1 ns placeholder; read the summary).
//! * `rearm/*`: GHC's one-shot wait through the manager against raw epoll: one socketpair; per
//!   iteration write a byte, wait for it, read it, and be ready to wait again. ns per wait:
//!   - `raw_epoll_level` (the floor, 1.00): a hand-written `epoll_wait` loop on a
//!     level-triggered `EPOLLIN` registration made once: nothing to re-arm;
//!   - `raw_epoll_oneshot`: `EPOLLONESHOT`, one `EPOLL_CTL_MOD` per wait (the Mio paper's cost);
//!   - `ioman_rearmable`: a `Lifetime::Rearmable` registration whose callback reads and calls
//!     `rearm`, driven by `EventManager::step(None)`;
//!   - `ioman_oneshot`: a new `Lifetime::OneShot` registration per wait (GHC's
//!     `threadWaitRead`: one `EPOLL_CTL_MOD`), driven the same way.
//!
//!   `rearm/interleaved` runs the four in turn (21 rounds of 20,000 waits) and prints each
//!   one's median ratio to `raw_epoll_level`.
//! * `register_unregister/*`: two threads register and unregister a one-shot READ interest
//!   on their own fds (no readiness ever) while the loop runs on a third thread; ns per
//!   register + unregister pair (wall clock, both threads together). The wakeup syscalls the
//!   manager made meanwhile (`Stats::wakeups`) are printed: 0 on epoll, whose changes reach a
//!   blocked `epoll_wait` without a wake; poll(2) needs wakes. In the one-shot case the
//!   manager leaves an unregistered one-shot fd armed in the kernel, so after the first
//!   registration of each fd no pair makes a syscall at all; the `multishot_*` variants
//!   (level-triggered) pay an `EPOLL_CTL_ADD` and a `DEL` per pair and show the wakes poll(2)
//!   needs for changes that do reach the kernel.
//! * `timer_churn/*`: two threads register, move later, move earlier and cancel timeouts
//!   (none due: 10,000 background timeouts 10 to 20 s ahead stay earlier than every churned
//!   one, 30 to 51 s ahead) while the loop runs; ns per operation, wakeup syscalls per operation printed.
//!
//! Set `IOMAN_BENCH_CPU_TIME=1` to time the round trips in thread CPU time instead of wall
//! time (for a machine shared with other work; the environment only: criterion rejects
//! arguments it does not know).
//!
//! A criterion bench; the names: `round_trip/{ioman, ioman_multishot, ioman_rearm, mio,
//! mio_read_once, tokio, interleaved}`, `rearm/{raw_epoll_level, raw_epoll_oneshot,
//! ioman_rearmable, ioman_oneshot, interleaved}`, `register_unregister/{epoll, poll,
//! multishot_epoll, multishot_poll}`, `timer_churn/{ioman, pool_queue_per_thread}`.
//! Criterion's filter (a regex) selects them, the printed counters and the interleaved
//! summaries included (a summary runs only when its `interleaved` name is selected).
//! Reports, with plots: `target/criterion/report/index.html`.
//!
//! Targets (issue 13): round trip through the manager (`ioman_rearm`) within 1.05x of the mio
//! loop and faster than tokio; the one-shot wait through the manager (`rearm/ioman_rearmable`)
//! within 1.05x of `rearm/raw_epoll_level`; zero wakeup syscalls for registration on epoll.
//! The interleaved summaries are the figures to read on a shared machine:
//!
//! ```text
//! cargo bench -p ioman-bench --bench manager -- --warm-up-time 1 --measurement-time 3
//! IOMAN_BENCH_CPU_TIME=1 cargo bench -p ioman-bench --bench manager -- interleaved
//! ```
#![allow(missing_docs)]

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ioman::{Backend, EventManager, Interest, Lifetime};

// ---------------------------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------------------------

/// A stopwatch for the single-threaded round trips: wall-clock time by default; the calling
/// thread's CPU time (user + system, `CLOCK_THREAD_CPUTIME_ID`) when the environment variable
/// `IOMAN_BENCH_CPU_TIME` is set, which keeps ratios meaningful on a machine loaded by other
/// work (every syscall of a round trip runs on the benchmark thread, so nothing is missed).
struct Stopwatch {
    wall: Option<Instant>,
    cpu: Duration,
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime: {}", std::io::Error::last_os_error());
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Stopwatch {
    fn start() -> Stopwatch {
        if std::env::var_os("IOMAN_BENCH_CPU_TIME").is_some() {
            Stopwatch {
                wall: None,
                cpu: thread_cpu_time(),
            }
        } else {
            Stopwatch {
                wall: Some(Instant::now()),
                cpu: Duration::ZERO,
            }
        }
    }

    fn elapsed(&self) -> Duration {
        match self.wall {
            Some(t) => t.elapsed(),
            None => thread_cpu_time().saturating_sub(self.cpu),
        }
    }
}

/// Two socketpairs: `a1 -> b1` and `a2 -> b2`.
struct Pairs {
    a1: UnixStream,
    b1: UnixStream,
    a2: UnixStream,
    b2: UnixStream,
}

impl Pairs {
    fn new() -> Pairs {
        let (a1, b1) = UnixStream::pair().expect("socketpair");
        let (a2, b2) = UnixStream::pair().expect("socketpair");
        for s in [&a1, &b1, &a2, &b2] {
            s.set_nonblocking(true).expect("nonblocking");
        }
        Pairs { a1, b1, a2, b2 }
    }
}

/// Reads one byte if there is one; panics on anything unexpected.
fn read_byte(mut s: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(1) => true,
        Ok(_) => panic!("unexpected EOF"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("read: {e}"),
    }
}

fn write_byte(mut s: &UnixStream) {
    assert_eq!(s.write(&[1]).expect("write"), 1);
}

/// Shared by the two ioman callbacks.
struct RoundTrip {
    pairs: Pairs,
    /// Round trips completed (bytes received at `b1`).
    done: AtomicU64,
    /// Stop forwarding at `b1` once `done` reaches this.
    target: AtomicU64,
}

/// `b1`'s one-shot callback: count a round trip, forward to `a2` unless done, re-register.
fn arm_b1<B: Backend + 'static>(mgr: &EventManager<B>, rt: Arc<RoundTrip>) {
    let fd = rt.pairs.b1.as_raw_fd();
    mgr.register_fd(fd, Interest::READ, Lifetime::OneShot, move |mgr, _, _| {
        if read_byte(&rt.pairs.b1) {
            let done = rt.done.fetch_add(1, Ordering::Relaxed) + 1;
            if done < rt.target.load(Ordering::Relaxed) {
                write_byte(&rt.pairs.a2);
            }
        }
        arm_b1(mgr, rt.clone());
    })
    .expect("register b1");
}

/// `b2`'s one-shot callback: forward to `a1`, re-register.
fn arm_b2<B: Backend + 'static>(mgr: &EventManager<B>, rt: Arc<RoundTrip>) {
    let fd = rt.pairs.b2.as_raw_fd();
    mgr.register_fd(fd, Interest::READ, Lifetime::OneShot, move |mgr, _, _| {
        if read_byte(&rt.pairs.b2) {
            write_byte(&rt.pairs.a1);
        }
        arm_b2(mgr, rt.clone());
    })
    .expect("register b2");
}

/// One round-trip implementation: `run(n)` bounces the byte `n` times and returns the time.
trait Bouncer {
    fn run(&mut self, iters: u64) -> Duration;
}

/// ioman, driven by `step(None)` on the calling thread.
struct IomanBouncer {
    mgr: EventManager,
    rt: Arc<RoundTrip>,
}

impl IomanBouncer {
    fn new_oneshot() -> IomanBouncer {
        let mgr = EventManager::new().expect("manager");
        let rt = Arc::new(RoundTrip {
            pairs: Pairs::new(),
            done: AtomicU64::new(0),
            target: AtomicU64::new(0),
        });
        arm_b1(&mgr, Arc::clone(&rt));
        arm_b2(&mgr, Arc::clone(&rt));
        IomanBouncer { mgr, rt }
    }

    /// The same bounce with `Lifetime::MultiShot` (level-triggered) callbacks registered once:
    /// no re-registration, so no `EPOLL_CTL_MOD` per event. Not a peer: it isolates what the
    /// one-shot re-arm costs.
    fn new_multishot() -> IomanBouncer {
        let mgr = EventManager::new().expect("manager");
        let rt = Arc::new(RoundTrip {
            pairs: Pairs::new(),
            done: AtomicU64::new(0),
            target: AtomicU64::new(0),
        });
        let r = Arc::clone(&rt);
        mgr.register_fd(
            rt.pairs.b1.as_raw_fd(),
            Interest::READ,
            Lifetime::MultiShot,
            move |_, _, _| {
                if read_byte(&r.pairs.b1) {
                    let done = r.done.fetch_add(1, Ordering::Relaxed) + 1;
                    if done < r.target.load(Ordering::Relaxed) {
                        write_byte(&r.pairs.a2);
                    }
                }
            },
        )
        .expect("register b1");
        let r = Arc::clone(&rt);
        mgr.register_fd(
            rt.pairs.b2.as_raw_fd(),
            Interest::READ,
            Lifetime::MultiShot,
            move |_, _, _| {
                if read_byte(&r.pairs.b2) {
                    write_byte(&r.pairs.a1);
                }
            },
        )
        .expect("register b2");
        IomanBouncer { mgr, rt }
    }
}

impl IomanBouncer {
    /// The bounce with `Lifetime::Rearmable` callbacks registered once, each re-armed by its
    /// callback with `rearm`: GHC's one-shot meaning at no syscall per re-arm (the kernel
    /// keeps a level-triggered registration). The callbacks read once: a byte left behind
    /// would fire again at once after the re-arm, as with a one-shot.
    fn new_rearm() -> IomanBouncer {
        let mgr = EventManager::new().expect("manager");
        let rt = Arc::new(RoundTrip {
            pairs: Pairs::new(),
            done: AtomicU64::new(0),
            target: AtomicU64::new(0),
        });
        let r = Arc::clone(&rt);
        mgr.register_fd(
            rt.pairs.b1.as_raw_fd(),
            Interest::READ,
            Lifetime::Rearmable,
            move |mgr, key, _| {
                if read_byte(&r.pairs.b1) {
                    let done = r.done.fetch_add(1, Ordering::Relaxed) + 1;
                    if done < r.target.load(Ordering::Relaxed) {
                        write_byte(&r.pairs.a2);
                    }
                }
                assert!(mgr.rearm(key, Interest::READ).expect("rearm b1"));
            },
        )
        .expect("register b1");
        let r = Arc::clone(&rt);
        mgr.register_fd(
            rt.pairs.b2.as_raw_fd(),
            Interest::READ,
            Lifetime::Rearmable,
            move |mgr, key, _| {
                if read_byte(&r.pairs.b2) {
                    write_byte(&r.pairs.a1);
                }
                assert!(mgr.rearm(key, Interest::READ).expect("rearm b2"));
            },
        )
        .expect("register b2");
        IomanBouncer { mgr, rt }
    }
}

impl Bouncer for IomanBouncer {
    fn run(&mut self, iters: u64) -> Duration {
        let rt = &self.rt;
        rt.done.store(0, Ordering::Relaxed);
        rt.target.store(iters, Ordering::Relaxed);
        let start = Stopwatch::start();
        write_byte(&rt.pairs.a2);
        while rt.done.load(Ordering::Relaxed) < iters {
            self.mgr.step(None).expect("step");
        }
        start.elapsed()
    }
}

/// A hand-written mio loop: edge-triggered, read until `WouldBlock`.
struct MioBouncer {
    poll: mio::Poll,
    events: mio::Events,
    b1: mio::net::UnixStream,
    b2: mio::net::UnixStream,
    a1: UnixStream,
    a2: UnixStream,
    /// Stop at a read shorter than the buffer instead of reading on to `WouldBlock`.
    read_once: bool,
}

impl MioBouncer {
    /// Reads until `WouldBlock` (two `recv` per hop), the usual edge-triggered loop.
    fn new() -> MioBouncer {
        MioBouncer::with(false)
    }

    /// Stops at a short read (one `recv` per hop, as the ioman bouncers make): with
    /// edge-triggered epoll a byte that arrives later makes a new edge, so a read shorter
    /// than the buffer has drained the socket (tokio relies on the same).
    fn read_once() -> MioBouncer {
        MioBouncer::with(true)
    }

    fn with(read_once: bool) -> MioBouncer {
        use mio::{Interest as MioInterest, Token};
        let p = Pairs::new();
        let poll = mio::Poll::new().expect("mio poll");
        let mut b1 = mio::net::UnixStream::from_std(p.b1);
        let mut b2 = mio::net::UnixStream::from_std(p.b2);
        poll.registry()
            .register(&mut b1, Token(1), MioInterest::READABLE)
            .expect("register");
        poll.registry()
            .register(&mut b2, Token(2), MioInterest::READABLE)
            .expect("register");
        MioBouncer {
            poll,
            events: mio::Events::with_capacity(64),
            b1,
            b2,
            a1: p.a1,
            a2: p.a2,
            read_once,
        }
    }
}

impl Bouncer for MioBouncer {
    fn run(&mut self, iters: u64) -> Duration {
        let mut buf = [0u8; 64];
        let mut done = 0u64;
        let start = Stopwatch::start();
        write_byte(&self.a2);
        while done < iters {
            self.poll.poll(&mut self.events, None).expect("poll");
            for ev in self.events.iter() {
                let (src, dst, is_b1) = match ev.token() {
                    mio::Token(1) => (&self.b1, &self.a2, true),
                    _ => (&self.b2, &self.a1, false),
                };
                loop {
                    match (&*src).read(&mut buf) {
                        Ok(0) => panic!("EOF"),
                        Ok(n) => {
                            for _ in 0..n {
                                if is_b1 {
                                    done += 1;
                                    if done < iters {
                                        write_byte(dst);
                                    }
                                } else {
                                    write_byte(dst);
                                }
                            }
                            if self.read_once && n < buf.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }
        }
        start.elapsed()
    }
}

/// tokio: two tasks awaiting `AsyncFd::readable` on a current-thread runtime.
struct TokioBouncer {
    rt: tokio::runtime::Runtime,
    b1: Arc<tokio::io::unix::AsyncFd<UnixStream>>,
    b2: Arc<tokio::io::unix::AsyncFd<UnixStream>>,
    a1: Arc<UnixStream>,
    a2: Arc<UnixStream>,
}

impl TokioBouncer {
    fn new() -> TokioBouncer {
        use tokio::io::unix::AsyncFd;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let p = Pairs::new();
        let register = |s: UnixStream| {
            // SAFETY: the `UnixStream` owns its fd, which stays open and unchanged until the
            // `AsyncFd` (which owns the stream) is dropped.
            let fd = unsafe { AsyncFd::register_with_interest(s, tokio::io::Interest::READABLE) };
            Arc::new(fd.expect("asyncfd"))
        };
        let (b1, b2) = rt.block_on(async { (register(p.b1), register(p.b2)) });
        TokioBouncer {
            rt,
            b1,
            b2,
            a1: Arc::new(p.a1),
            a2: Arc::new(p.a2),
        }
    }
}

impl Bouncer for TokioBouncer {
    fn run(&mut self, iters: u64) -> Duration {
        let (b1, b2, a1, a2) = (&self.b1, &self.b2, &self.a1, &self.a2);
        self.rt.block_on(async {
            let start = Stopwatch::start();
            // b1: count round trips, forward to a2 until done.
            let t1 = {
                let (b1, a2) = (Arc::clone(b1), Arc::clone(a2));
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while done < iters {
                        let mut guard = b1.readable().await.expect("readable");
                        while let Ok(got) = guard.try_io(|fd| {
                            let mut byte = [0u8; 1];
                            fd.get_ref().read(&mut byte)
                        }) {
                            assert_eq!(got.expect("read"), 1);
                            done += 1;
                            if done < iters {
                                write_byte(&a2);
                            }
                        }
                    }
                })
            };
            // b2: forward to a1, `iters` times.
            let t2 = {
                let (b2, a1) = (Arc::clone(b2), Arc::clone(a1));
                tokio::spawn(async move {
                    let mut fwd = 0u64;
                    while fwd < iters {
                        let mut guard = b2.readable().await.expect("readable");
                        while let Ok(got) = guard.try_io(|fd| {
                            let mut byte = [0u8; 1];
                            fd.get_ref().read(&mut byte)
                        }) {
                            assert_eq!(got.expect("read"), 1);
                            fwd += 1;
                            write_byte(&a1);
                        }
                    }
                })
            };
            write_byte(a2);
            t1.await.expect("task");
            t2.await.expect("task");
            start.elapsed()
        })
    }
}

fn bench_bouncer(c: &mut Criterion, name: &str, mut b: impl Bouncer) {
    c.bench_function(name, |bench| bench.iter_custom(|iters| b.run(iters)));
}

fn round_trip_ioman(c: &mut Criterion) {
    let mut b = IomanBouncer::new_oneshot();
    c.bench_function("round_trip/ioman", |bench| {
        bench.iter_custom(|iters| b.run(iters))
    });
    let s = b.mgr.stats();
    if s.iterations == 0 {
        return; // filtered out
    }
    println!(
        "round_trip/ioman: {} loop iterations, {} fd callbacks, {} wakeup syscalls",
        s.iterations, s.fd_callbacks, s.wakeups
    );
}

fn round_trip_ioman_rearm(c: &mut Criterion) {
    let mut b = IomanBouncer::new_rearm();
    let before = b.mgr.stats();
    c.bench_function("round_trip/ioman_rearm", |bench| {
        bench.iter_custom(|iters| b.run(iters))
    });
    let s = b.mgr.stats();
    if s.iterations == before.iterations {
        return; // filtered out
    }
    println!(
        "round_trip/ioman_rearm: {} fd callbacks, {} polls, {} epoll_ctl (register {}, modify \
         {}, deregister {}), {} wakeup syscalls",
        s.fd_callbacks,
        s.polls,
        s.backend_registers + s.backend_modifies + s.backend_deregisters,
        s.backend_registers,
        s.backend_modifies,
        s.backend_deregisters,
        s.wakeups
    );
}

fn round_trip_ioman_multishot(c: &mut Criterion) {
    bench_bouncer(
        c,
        "round_trip/ioman_multishot",
        IomanBouncer::new_multishot(),
    );
}

fn round_trip_mio(c: &mut Criterion) {
    bench_bouncer(c, "round_trip/mio", MioBouncer::new());
}

fn round_trip_mio_read_once(c: &mut Criterion) {
    bench_bouncer(c, "round_trip/mio_read_once", MioBouncer::read_once());
}

fn round_trip_tokio(c: &mut Criterion) {
    bench_bouncer(c, "round_trip/tokio", TokioBouncer::new());
}

/// Rounds and round trips per round of the interleaved comparison.
const ROUNDS: usize = 21;
const PER_ROUND: u64 = 20_000;

/// Not a criterion measurement: the round trips run in turn, `ROUNDS` times, and the median
/// of each one's per-round ratio to mio is printed. Interleaving cancels the drift of a
/// machine shared with other work, which separate criterion runs minutes apart do not.
fn round_trip_interleaved(c: &mut Criterion) {
    interleaved(c, "round_trip/interleaved", "round trip", || {
        vec![
            ("mio", Box::new(MioBouncer::new()) as Box<dyn Bouncer>),
            ("mio_read_once", Box::new(MioBouncer::read_once())),
            ("ioman", Box::new(IomanBouncer::new_oneshot())),
            ("ioman_multishot", Box::new(IomanBouncer::new_multishot())),
            ("ioman_rearm", Box::new(IomanBouncer::new_rearm())),
            ("tokio", Box::new(TokioBouncer::new())),
        ]
    });
}

/// Runs `make()`'s bouncers in turn, `ROUNDS` times `PER_ROUND` iterations, and prints each
/// one's median time and median per-round ratio to the first.
fn interleaved(
    c: &mut Criterion,
    name: &str,
    unit: &str,
    make: impl FnOnce() -> Vec<(&'static str, Box<dyn Bouncer>)>,
) {
    // Runs only when criterion's filter selects `name`: criterion calls this closure only
    // then. Its own criterion line measures nothing (a constant 1 ns, in no wall time); the
    // summary printed below is the result.
    let mut selected = false;
    c.bench_function(name, |b| {
        selected = true;
        b.iter_custom(Duration::from_nanos)
    });
    if !selected {
        return;
    }
    let mut bouncers = make();
    for (_, b) in bouncers.iter_mut() {
        b.run(PER_ROUND); // warm up
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); bouncers.len()];
    let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); bouncers.len()];
    for _ in 0..ROUNDS {
        let times: Vec<f64> = bouncers
            .iter_mut()
            .map(|(_, b)| b.run(PER_ROUND).as_nanos() as f64 / PER_ROUND as f64)
            .collect();
        for (i, t) in times.iter().enumerate() {
            ns[i].push(*t);
            ratio[i].push(t / times[0]);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = bouncers[0].0;
    println!(
        "{name} ({ROUNDS} rounds x {PER_ROUND}, medians; {}; load average {}):",
        if std::env::var_os("IOMAN_BENCH_CPU_TIME").is_some() {
            "thread CPU time"
        } else {
            "wall time"
        },
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    for (i, (label, _)) in bouncers.iter().enumerate() {
        println!(
            "  {label:<18} {:>8.0} ns/{unit}   {:.3}x {base}",
            median(&mut ns[i]),
            median(&mut ratio[i])
        );
    }
}

// ---------------------------------------------------------------------------------------------
// One-shot wait and re-arm, one socketpair
// ---------------------------------------------------------------------------------------------

/// A raw libc epoll instance watching one fd.
struct RawEpoll {
    epfd: RawFd,
    events: [libc::epoll_event; 8],
}

impl RawEpoll {
    fn new() -> RawEpoll {
        // SAFETY: epoll_create1 takes flags only.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            epfd >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        RawEpoll {
            epfd,
            events: [libc::epoll_event { events: 0, u64: 0 }; 8],
        }
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: libc::c_int) {
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: fd as u64,
        };
        // SAFETY: `self.epfd` is open and `ev` is a valid event the kernel reads.
        let r = unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) };
        assert_eq!(r, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    }

    /// Blocks until an event; returns how many.
    fn wait(&mut self) -> usize {
        // SAFETY: `events` has room for its length in events, which the kernel writes.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                -1,
            )
        };
        assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
        n as usize
    }
}

impl Drop for RawEpoll {
    fn drop(&mut self) {
        // SAFETY: `epfd` is owned by this value and closed once.
        unsafe { libc::close(self.epfd) };
    }
}

/// Raw epoll on one socketpair: level-triggered (`oneshot == false`, registered once) or
/// `EPOLLONESHOT` re-armed with `EPOLL_CTL_MOD` after every wait.
struct RawWaiter {
    ep: RawEpoll,
    a: UnixStream,
    b: UnixStream,
    oneshot: bool,
}

impl RawWaiter {
    fn new(oneshot: bool) -> RawWaiter {
        let (a, b) = UnixStream::pair().expect("socketpair");
        b.set_nonblocking(true).expect("nonblocking");
        let ep = RawEpoll::new();
        let flags = if oneshot {
            libc::EPOLLIN | libc::EPOLLONESHOT
        } else {
            libc::EPOLLIN
        };
        ep.ctl(libc::EPOLL_CTL_ADD, b.as_raw_fd(), flags);
        RawWaiter { ep, a, b, oneshot }
    }
}

impl Bouncer for RawWaiter {
    fn run(&mut self, iters: u64) -> Duration {
        let fd = self.b.as_raw_fd();
        let start = Stopwatch::start();
        for _ in 0..iters {
            write_byte(&self.a);
            assert_eq!(self.ep.wait(), 1);
            assert!(read_byte(&self.b));
            if self.oneshot {
                self.ep
                    .ctl(libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN | libc::EPOLLONESHOT);
            }
        }
        start.elapsed()
    }
}

/// The same wait through the manager, driven by `step(None)`: a `Rearmable` registration
/// made once and re-armed by its callback, or a new `OneShot` registration per wait.
struct IomanWaiter {
    mgr: EventManager,
    a: UnixStream,
    b: Arc<UnixStream>,
    got: Arc<AtomicU64>,
    rearmable: bool,
}

impl IomanWaiter {
    fn new(rearmable: bool) -> IomanWaiter {
        let (a, b) = UnixStream::pair().expect("socketpair");
        b.set_nonblocking(true).expect("nonblocking");
        let w = IomanWaiter {
            mgr: EventManager::new().expect("manager"),
            a,
            b: Arc::new(b),
            got: Arc::new(AtomicU64::new(0)),
            rearmable,
        };
        if rearmable {
            let (b, got) = (Arc::clone(&w.b), Arc::clone(&w.got));
            w.mgr
                .register_fd(
                    w.b.as_raw_fd(),
                    Interest::READ,
                    Lifetime::Rearmable,
                    move |mgr, key, _| {
                        if read_byte(&b) {
                            got.fetch_add(1, Ordering::Relaxed);
                        }
                        assert!(mgr.rearm(key, Interest::READ).expect("rearm"));
                    },
                )
                .expect("register");
        }
        w
    }

    fn arm_oneshot(&self) {
        let (b, got) = (Arc::clone(&self.b), Arc::clone(&self.got));
        self.mgr
            .register_fd(
                self.b.as_raw_fd(),
                Interest::READ,
                Lifetime::OneShot,
                move |_, _, _| {
                    if read_byte(&b) {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                },
            )
            .expect("register");
    }
}

impl Bouncer for IomanWaiter {
    fn run(&mut self, iters: u64) -> Duration {
        let before = self.got.load(Ordering::Relaxed);
        let start = Stopwatch::start();
        for _ in 0..iters {
            if !self.rearmable {
                self.arm_oneshot();
            }
            write_byte(&self.a);
            self.mgr.step(None).expect("step");
        }
        let elapsed = start.elapsed();
        assert_eq!(self.got.load(Ordering::Relaxed) - before, iters);
        elapsed
    }
}

fn rearm_raw_level(c: &mut Criterion) {
    bench_bouncer(c, "rearm/raw_epoll_level", RawWaiter::new(false));
}

fn rearm_raw_oneshot(c: &mut Criterion) {
    bench_bouncer(c, "rearm/raw_epoll_oneshot", RawWaiter::new(true));
}

fn rearm_ioman_rearmable(c: &mut Criterion) {
    let mut w = IomanWaiter::new(true);
    c.bench_function("rearm/ioman_rearmable", |b| {
        b.iter_custom(|iters| w.run(iters))
    });
    let s = w.mgr.stats();
    if s.polls == 0 {
        return; // filtered out
    }
    println!(
        "rearm/ioman_rearmable: {} waits, {} polls, {} epoll_ctl",
        s.fd_callbacks,
        s.polls,
        s.backend_registers + s.backend_modifies + s.backend_deregisters
    );
}

fn rearm_ioman_oneshot(c: &mut Criterion) {
    bench_bouncer(c, "rearm/ioman_oneshot", IomanWaiter::new(false));
}

fn rearm_interleaved(c: &mut Criterion) {
    interleaved(c, "rearm/interleaved", "wait", || {
        vec![
            (
                "raw_epoll_level",
                Box::new(RawWaiter::new(false)) as Box<dyn Bouncer>,
            ),
            ("raw_epoll_oneshot", Box::new(RawWaiter::new(true))),
            ("ioman_rearmable", Box::new(IomanWaiter::new(true))),
            ("ioman_oneshot", Box::new(IomanWaiter::new(false))),
        ]
    });
}

// ---------------------------------------------------------------------------------------------
// Registration throughput
// ---------------------------------------------------------------------------------------------

/// Socketpairs per registering thread (cycled through, so the table has several live fds).
const FDS_PER_THREAD: usize = 8;
/// Registering threads.
const THREADS: usize = 2;

/// Runs `work(thread_index, n)` on `THREADS` scoped threads, `iters` in all, and returns the
/// wall-clock time between a start barrier and an end barrier (thread spawns not included).
fn timed_threads(iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    let per_thread = iters.div_ceil(THREADS as u64);
    let start = Barrier::new(THREADS + 1);
    let end = Barrier::new(THREADS + 1);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (start, end, work) = (&start, &end, &work);
            s.spawn(move || {
                start.wait();
                work(t, per_thread);
                end.wait();
            });
        }
        start.wait();
        let t0 = Instant::now();
        end.wait();
        t0.elapsed()
    })
}

/// Wakeup syscalls and operations seen by one benchmark, printed after it.
#[derive(Default)]
struct Tally {
    ops: AtomicU64,
}

fn register_unregister<B: Backend + 'static>(
    c: &mut Criterion,
    name: &str,
    lifetime: Lifetime,
    mgr: EventManager<B>,
) {
    let mgr = Arc::new(mgr);
    let handle = mgr.spawn().expect("spawn");
    // Each thread its own socketpairs; nothing is ever written, so no readiness.
    let sockets: Vec<Vec<(UnixStream, UnixStream)>> = (0..THREADS)
        .map(|_| {
            (0..FDS_PER_THREAD)
                .map(|_| UnixStream::pair().expect("socketpair"))
                .collect()
        })
        .collect();
    let tally = Tally::default();
    let before = mgr.stats();
    c.bench_function(&format!("register_unregister/{name}"), |b| {
        b.iter_custom(|iters| {
            let elapsed = timed_threads(iters, |t, n| {
                let socks = &sockets[t];
                for i in 0..n {
                    let fd = socks[i as usize % FDS_PER_THREAD].1.as_raw_fd();
                    let key = mgr
                        .register_fd(fd, Interest::READ, lifetime, |_, _, _| {})
                        .expect("register");
                    assert!(mgr.unregister_fd(key).expect("unregister"));
                }
            });
            tally.ops.fetch_add(
                iters.div_ceil(THREADS as u64) * THREADS as u64,
                Ordering::Relaxed,
            );
            elapsed
        })
    });
    let after = mgr.stats();
    let ops = tally.ops.load(Ordering::Relaxed);
    mgr.shutdown();
    handle.join().expect("loop");
    if ops == 0 {
        return; // filtered out
    }
    println!(
        "register_unregister/{name}: {} wakeup syscalls for {ops} register+unregister pairs \
         ({:.4} per pair), {} loop iterations",
        after.wakeups - before.wakeups,
        (after.wakeups - before.wakeups) as f64 / ops.max(1) as f64,
        after.iterations - before.iterations,
    );
}

fn poll_manager() -> EventManager<ioman_poll::PosixPoll> {
    EventManager::builder()
        .backend(ioman_poll::PosixPoll::new().expect("poll backend"))
        .build()
        .expect("manager")
}

fn register_unregister_epoll(c: &mut Criterion) {
    let mgr = EventManager::new().expect("manager");
    register_unregister(c, "epoll", Lifetime::OneShot, mgr);
}

fn register_unregister_poll(c: &mut Criterion) {
    register_unregister(c, "poll", Lifetime::OneShot, poll_manager());
}

fn register_unregister_multishot_epoll(c: &mut Criterion) {
    let mgr = EventManager::new().expect("manager");
    register_unregister(c, "multishot_epoll", Lifetime::MultiShot, mgr);
}

fn register_unregister_multishot_poll(c: &mut Criterion) {
    register_unregister(c, "multishot_poll", Lifetime::MultiShot, poll_manager());
}

// ---------------------------------------------------------------------------------------------
// Timer churn
// ---------------------------------------------------------------------------------------------

/// Background timeouts, all earlier than every churned one, so the churn never changes the
/// earliest deadline (as in a server where many connections have idle timeouts).
const BACKGROUND_TIMEOUTS: u64 = 10_000;

fn timer_churn(c: &mut Criterion) {
    // One queue shared by both threads (one manager), against one queue per thread (a Pool
    // of 2, each thread on its own manager, as a Pool's callbacks are): the measurement
    // behind the Pool's one-timer-queue-per-manager design.
    let shared = Arc::new(EventManager::new().expect("manager"));
    let handle = shared.spawn().expect("spawn");
    churn(c, "timer_churn/ioman", &|_| &*shared);
    shared.shutdown();
    handle.join().expect("loop");

    let pool = ioman::Pool::new(THREADS).expect("pool");
    churn(c, "timer_churn/pool_queue_per_thread", &|t| {
        &*pool.managers()[t]
    });
}

/// Register / move later / move earlier / cancel cycles from `THREADS` threads, thread `t`
/// on manager `pick(t)`.
fn churn<'m>(c: &mut Criterion, name: &str, pick: &(dyn Fn(usize) -> &'m EventManager + Sync)) {
    let managers: Vec<&'m EventManager> = (0..THREADS).map(pick).collect();
    for (k, mgr) in managers.iter().enumerate() {
        if k > 0 && std::ptr::eq(*mgr, managers[0]) {
            continue;
        }
        for i in 0..BACKGROUND_TIMEOUTS {
            let after = Duration::from_secs(10) + Duration::from_micros(i * 1000);
            mgr.register_timeout(after, |_| {}).expect("register");
        }
    }
    let tally = Tally::default();
    let wakeups = || managers.iter().map(|m| m.stats().wakeups).sum::<u64>();
    let before = wakeups();
    // One iteration is one operation; a cycle is register, move later, move earlier, cancel.
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let elapsed = timed_threads(iters, |t, n| {
                let mgr = pick(t);
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t as u64;
                let mut jitter = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    Duration::from_nanos(x % 1_000_000_000)
                };
                let cycles = n.div_ceil(4);
                for _ in 0..cycles {
                    let key = mgr
                        .register_timeout(Duration::from_secs(40) + jitter(), |_| {})
                        .expect("register");
                    assert!(mgr.update_timeout(key, Duration::from_secs(50) + jitter()));
                    assert!(mgr.update_timeout(key, Duration::from_secs(30) + jitter()));
                    assert!(mgr.unregister_timeout(key));
                }
            });
            tally.ops.fetch_add(
                iters.div_ceil(THREADS as u64).div_ceil(4) * 4 * THREADS as u64,
                Ordering::Relaxed,
            );
            elapsed
        })
    });
    let ops = tally.ops.load(Ordering::Relaxed);
    if ops == 0 {
        return; // filtered out
    }
    let woke = wakeups() - before;
    println!(
        "{name}: {woke} wakeup syscalls for {ops} timer operations ({:.4} per op)",
        woke as f64 / ops.max(1) as f64,
    );
}

criterion_group!(
    benches,
    round_trip_ioman,
    round_trip_ioman_multishot,
    round_trip_ioman_rearm,
    round_trip_mio,
    round_trip_mio_read_once,
    round_trip_tokio,
    round_trip_interleaved,
    rearm_raw_level,
    rearm_raw_oneshot,
    rearm_ioman_rearmable,
    rearm_ioman_oneshot,
    rearm_interleaved,
    register_unregister_epoll,
    register_unregister_poll,
    register_unregister_multishot_epoll,
    register_unregister_multishot_poll,
    timer_churn
);
criterion_main!(benches);
