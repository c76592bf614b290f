//! Wakeup benchmarks: cross-thread ping-pong latency, wake storms, and coalesced wakes.
//!
//! * `ping_pong/*`: ns per round trip between two threads that each block until woken,
//!   then wake the other: ioman's eventfd and pipe `Wakeup`s, a raw eventfd (libc
//!   write/read), mio's `Waker` (each side blocked in a `mio::Poll`), and
//!   `std::thread::park`/`unpark` (the futex floor). The fd-based sides block in
//!   `epoll_wait` on a level-triggered epoll set holding their fd.
//! * `wake_storm/*`: two threads call `wake()` while a loop drains; ns per wake. Syscalls
//!   per wake (from `Wakeup::syscalls`) are printed once for 2 x 1,000,000 wakes, after
//!   each selected benchmark.
//! * `coalesced_wake/*`: one thread, a wake already pending: the cost of the atomic swap.
//!
//! A criterion bench; the names: `ping_pong/{ioman_eventfd, ioman_pipe, raw_eventfd,
//! mio_waker, park_unpark}`, `wake_storm/{ioman_eventfd, ioman_pipe}`,
//! `coalesced_wake/{ioman_eventfd, ioman_pipe, raw_eventfd_write}`. Criterion's filter (a
//! regex) selects them, the printed storm counts included. Reports, with plots:
//! `target/criterion/report/index.html`.
//!
//! ```text
//! cargo bench -p ioman-bench --bench wakeup -- --warm-up-time 1 --measurement-time 3
//! cargo bench -p ioman-bench --bench wakeup -- wake_storm/ioman_eventfd
//! ```
//!
//! Targets: ioman EventFd within 1.10x of raw eventfd; coalesced wake under 20 ns;
//! ping-pong within 1.5x of park/unpark.
#![allow(missing_docs)]

use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ioman_wakeup::Wakeup;

/// A one-way notification channel owned by the thread that waits on it.
trait Chan: Send + Sync + 'static {
    /// Any thread: make the owner's `wait` return.
    fn notify(&self);
    /// Owner: block until notified, consuming the notification.
    fn wait(&self);
}

/// A level-triggered epoll set holding one fd for read interest.
struct Epoll(OwnedFd);

impl Epoll {
    fn new(fd: BorrowedFd<'_>) -> Epoll {
        // SAFETY: epoll_create1 takes no pointers.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            ep >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `ep` was just created and is owned by nobody else.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        // SAFETY: both fds are open; `ev` is a valid epoll_event.
        let rc = unsafe {
            libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev)
        };
        assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        Epoll(ep)
    }

    fn wait(&self) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        loop {
            // SAFETY: `ev` is valid for one event; the epoll fd is open.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut ev, 1, -1) };
            if n == 1 {
                return;
            }
        }
    }
}

struct IomanChan {
    wakeup: Wakeup,
    epoll: Epoll,
}

impl IomanChan {
    fn new(wakeup: Wakeup) -> IomanChan {
        let epoll = Epoll::new(wakeup.as_fd());
        IomanChan { wakeup, epoll }
    }
}

impl Chan for IomanChan {
    fn notify(&self) {
        self.wakeup.wake().expect("wake");
    }
    fn wait(&self) {
        self.epoll.wait();
        self.wakeup.reset().expect("reset");
    }
}

struct RawEventFd {
    fd: OwnedFd,
    epoll: Epoll,
}

impl RawEventFd {
    fn new() -> RawEventFd {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let epoll = Epoll::new(fd.as_fd());
        RawEventFd { fd, epoll }
    }
}

impl Chan for RawEventFd {
    fn notify(&self) {
        let one = 1u64;
        // SAFETY: `one` is 8 readable bytes; the fd is open.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
    fn wait(&self) {
        self.epoll.wait();
        let mut buf = 0u64;
        // SAFETY: `buf` is 8 writable bytes; the fd is open.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
    }
}

struct MioChan {
    poll: Mutex<(mio::Poll, mio::Events)>,
    waker: mio::Waker,
}

impl MioChan {
    fn new() -> MioChan {
        let poll = mio::Poll::new().expect("mio poll");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("mio waker");
        MioChan {
            poll: Mutex::new((poll, mio::Events::with_capacity(4))),
            waker,
        }
    }
}

impl Chan for MioChan {
    fn notify(&self) {
        self.waker.wake().expect("mio wake");
    }
    fn wait(&self) {
        let mut guard = self.poll.lock().expect("mio lock");
        let (poll, events) = &mut *guard;
        loop {
            poll.poll(events, None).expect("mio poll");
            if !events.is_empty() {
                return;
            }
        }
    }
}

struct ParkChan {
    flag: AtomicBool,
    owner: OnceLock<Thread>,
}

impl ParkChan {
    fn new() -> ParkChan {
        ParkChan {
            flag: AtomicBool::new(false),
            owner: OnceLock::new(),
        }
    }
}

impl Chan for ParkChan {
    fn notify(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(t) = self.owner.get() {
            t.unpark();
        }
    }
    fn wait(&self) {
        self.owner.get_or_init(thread::current);
        while !self.flag.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }
}

/// A partner thread that answers every ping on `theirs` with a pong on `ours`.
struct Partner<C: Chan> {
    ours: Arc<C>,
    theirs: Arc<C>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl<C: Chan> Partner<C> {
    fn start(ours: C, theirs: C) -> Partner<C> {
        let (ours, theirs) = (Arc::new(ours), Arc::new(theirs));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, t, s) = (ours.clone(), theirs.clone(), stop.clone());
        let ready = Arc::new(std::sync::Barrier::new(2));
        let r = ready.clone();
        let handle = thread::spawn(move || {
            r.wait();
            loop {
                t.wait();
                if s.load(Ordering::Acquire) {
                    return;
                }
                o.notify();
            }
        });
        ready.wait();
        Partner {
            ours,
            theirs,
            stop,
            handle: Some(handle),
        }
    }

    fn round_trips(&self, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            self.theirs.notify();
            self.ours.wait();
        }
        start.elapsed()
    }
}

impl<C: Chan> Drop for Partner<C> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.theirs.notify();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong");
    g.bench_function("ioman_eventfd", |b| {
        let p = Partner::start(
            IomanChan::new(Wakeup::eventfd().expect("eventfd")),
            IomanChan::new(Wakeup::eventfd().expect("eventfd")),
        );
        b.iter_custom(|iters| p.round_trips(iters));
    });
    g.bench_function("ioman_pipe", |b| {
        let p = Partner::start(
            IomanChan::new(Wakeup::pipe().expect("pipe")),
            IomanChan::new(Wakeup::pipe().expect("pipe")),
        );
        b.iter_custom(|iters| p.round_trips(iters));
    });
    g.bench_function("raw_eventfd", |b| {
        let p = Partner::start(RawEventFd::new(), RawEventFd::new());
        b.iter_custom(|iters| p.round_trips(iters));
    });
    g.bench_function("mio_waker", |b| {
        let p = Partner::start(MioChan::new(), MioChan::new());
        b.iter_custom(|iters| p.round_trips(iters));
    });
    g.bench_function("park_unpark", |b| {
        let p = Partner::start(ParkChan::new(), ParkChan::new());
        b.iter_custom(|iters| p.round_trips(iters));
    });
    g.finish();
}

/// Two threads each call `wake()` `per_thread` times while this thread drains; returns
/// the elapsed time and the number of write syscalls.
fn storm(wakeup: &Arc<Wakeup>, per_thread: u64) -> (Duration, u64) {
    let before = wakeup.syscalls();
    let epoll = Epoll::new(wakeup.as_fd());
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let wakers: Vec<_> = (0..2)
        .map(|_| {
            let w = wakeup.clone();
            thread::spawn(move || {
                for _ in 0..per_thread {
                    w.wake().expect("wake");
                }
            })
        })
        .collect();
    let d = done.clone();
    let finisher = thread::spawn(move || {
        for t in wakers {
            t.join().expect("waker");
        }
        d.store(true, Ordering::Release);
    });
    while !done.load(Ordering::Acquire) {
        // Drain whatever is pending, then block briefly (the finisher does not wake us).
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `ev` is valid for one event; the epoll fd is open.
        unsafe { libc::epoll_wait(epoll.0.as_raw_fd(), &mut ev, 1, 1) };
        wakeup.reset().expect("reset");
    }
    let elapsed = start.elapsed();
    finisher.join().expect("finisher");
    wakeup.reset().expect("reset");
    (elapsed, wakeup.syscalls() - before)
}

fn wake_storm(c: &mut Criterion) {
    const PER_THREAD: u64 = 1_000_000;
    let mut g = c.benchmark_group("wake_storm");
    for (name, make) in [
        (
            "ioman_eventfd",
            Wakeup::eventfd as fn() -> std::io::Result<Wakeup>,
        ),
        ("ioman_pipe", Wakeup::pipe),
    ] {
        // Criterion calls the closure only when its filter selects the benchmark; the fixed
        // count below runs only then too.
        let mut selected = false;
        g.bench_function(name, |b| {
            selected = true;
            let w = Arc::new(make().expect("wakeup"));
            b.iter_custom(|iters| storm(&w, iters.div_ceil(2)).0);
        });
        if !selected {
            continue;
        }
        let w = Arc::new(make().expect("wakeup"));
        let (elapsed, syscalls) = storm(&w, PER_THREAD);
        let wakes = 2 * PER_THREAD;
        eprintln!(
            "wake_storm/{name}: {wakes} wakes from 2 threads, {syscalls} syscalls \
             ({:.6} syscalls/wake), {:.2} ns/wake",
            syscalls as f64 / wakes as f64,
            elapsed.as_nanos() as f64 / wakes as f64
        );
    }
    g.finish();
}

fn coalesced_wake(c: &mut Criterion) {
    let mut g = c.benchmark_group("coalesced_wake");
    for (name, w) in [
        ("ioman_eventfd", Wakeup::eventfd().expect("eventfd")),
        ("ioman_pipe", Wakeup::pipe().expect("pipe")),
    ] {
        w.wake().expect("first wake");
        g.bench_function(name, |b| b.iter(|| black_box(&w).wake()));
        assert_eq!(w.syscalls(), 1, "wakes were not coalesced");
    }
    let raw = RawEventFd::new();
    g.bench_function("raw_eventfd_write", |b| b.iter(|| black_box(&raw).notify()));
    g.finish();
}

criterion_group!(benches, ping_pong, wake_storm, coalesced_wake);
criterion_main!(benches);
