//! Readiness backends side by side: raw libc epoll (the floor), ioman `Epoll`, ioman
//! `PosixPoll` (poll(2)), mio and polling, on the same workloads in the same run.
//!
//! - `poll_round/M`: M socket pairs registered for read; each round writes 1 byte to K = 64
//!   pseudo-random pairs (fixed-seed xorshift), waits once with a zero timeout and reads each
//!   reported pair. Level-triggered everywhere except mio (edge-triggered only). Every
//!   implementation drains a pair with one 128-byte read: at most 64 bytes are pending, so a
//!   short read means drained, which is what "read until `WouldBlock`" would find with one
//!   more syscall. M from `IOMAN_BENCH_POLL_M` (default "100,9000").
//! - `oneshot_rearm`: one pair; per iteration write 1 byte, wait (no timeout), read, re-arm
//!   (`EPOLL_CTL_MOD` for raw epoll, `modify` for ioman and polling; mio is edge-triggered and
//!   needs no re-arm, but `reregister`s to do the same work).
//!
//! # Names
//!
//! A criterion bench: `poll_round/IMPL/M` with IMPL `raw_epoll`, `ioman_epoll`,
//! `ioman_posix_poll`, `mio`, `polling`; `oneshot_rearm/IMPL` with IMPL `raw_epoll`,
//! `ioman_epoll`, `ioman_posix_poll`, `mio_reregister`, `polling`. Criterion's filter (a
//! regex) selects them, and a skipped benchmark builds none of its pairs:
//!
//! ```text
//! cargo bench -p ioman-bench --bench poll -- --warm-up-time 1 --measurement-time 3
//! cargo bench -p ioman-bench --bench poll -- 'poll_round/.*/9000'
//! IOMAN_BENCH_POLL_M=1000 cargo bench -p ioman-bench --bench poll -- poll_round/ioman
//! ```
//!
//! M comes from the environment only (criterion rejects arguments it does not know); 3 s of
//! measurement unless `--measurement-time` says otherwise. Reports, with plots:
//! `target/criterion/report/index.html`.
//!
//! # Instruction counts
//!
//! Timings of a poll round are dominated by the 64 writes and reads; what the poller itself
//! costs per event is better counted. With `IOMAN_POLL_COUNT=<implementation>:<k>` the
//! binary runs, without criterion, 2,000 rounds on 1,024 level-triggered socket pairs: each
//! round writes one byte to `k` distinct pairs (outside the count), then, inside a function
//! named `measured`, waits once with a zero timeout and walks the events reading each one's
//! key (token), fd where the API has it, and readability; then drains the pairs (outside the
//! count). It prints the number of events; callgrind counts only the `measured` regions:
//!
//! ```text
//! cargo bench -p ioman-bench --bench poll --no-run
//! BIN=$(ls -t target/release/deps/poll-* | grep -v '\.d$' | head -1)
//! IOMAN_POLL_COUNT=ioman_epoll:64 valgrind --tool=callgrind \
//!     --toggle-collect='*measured*' --callgrind-out-file=cg.out $BIN
//! callgrind_annotate cg.out | grep 'PROGRAM TOTALS'   # divide by the printed events
//! ```
//!
//! Implementations: `raw_epoll`, `ioman_epoll`, `ioman_posix_poll`, `mio`, `polling`. Callgrind
//! counts user-space instructions only, so the kernel's share of `epoll_wait` is not in the
//! figures. The cost per event is the slope between `k = 1` and `k = 64` (what one more event
//! costs); the cost per wait is the `k = 1` figure. Counts are deterministic: a rerun gives
//! the same numbers to the instruction.
//!
//! Measured on x86_64 Linux (valgrind 3.19, Rust 1.95, mio 1.2.5, polling 3.11.0), user-space
//! instructions in `measured`:
//!
//! | implementation | per wait, k = 1 | per event, all in, k = 64 | per event, slope |
//! |---|---|---|---|
//! | raw epoll: `epoll_wait`, then a loop over the kernel's buffer | 53 | 5.5 | 4.7 |
//! | ioman `Epoll`: the kernel's buffer read in place | 123 | 8.5 | **6.7** |
//! | ioman `Epoll` before (7867ddc: copied and converted into `Events` per event) | 206 | 42.2 | 39.6 |
//! | ioman `PosixPoll` (scans all 1,024 `pollfd`s each wait) | 4,019 | 299 | 240 |
//! | mio (edge-triggered) | 78 | 7.7 | 6.6 |
//! | polling | 449 | 22.7 | 15.9 |
//!
//! What is left of ioman `Epoll`'s cost per event over raw epoll's is reading three fields
//! instead of two: `fd()` and `key()` split the 64-bit data, `readiness()` is four shifts and
//! masks of the kernel's bits. What is left per wait over raw epoll's is the timeout
//! (`Deadline`), the `epoll_pwait2` probe flag, `reserve`, and the growth check.
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion};
use ioman_poll::{Backend, Epoll, Events, Interest, Mode, PosixPoll};

const K: usize = 64;
const CAPACITY: usize = 1024;

struct Pairs {
    writers: Vec<UnixStream>,
    readers: Vec<UnixStream>,
    rng: u64,
}

impl Pairs {
    fn new(m: usize) -> Pairs {
        let (mut writers, mut readers) = (Vec::with_capacity(m), Vec::with_capacity(m));
        for _ in 0..m {
            let (a, b) = UnixStream::pair().expect("socketpair");
            a.set_nonblocking(true).expect("nonblocking");
            b.set_nonblocking(true).expect("nonblocking");
            writers.push(a);
            readers.push(b);
        }
        Pairs {
            writers,
            readers,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Writes one byte to K pseudo-random pairs (xorshift64, fixed seed).
    fn poke(&mut self) {
        let m = self.writers.len() as u64;
        for _ in 0..K {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let i = (self.rng % m) as usize;
            (&self.writers[i]).write_all(&[1]).expect("write");
        }
    }

    /// Drains reader `i` with one read (at most 64 bytes are pending).
    #[inline]
    fn drain(&self, i: usize) {
        let mut buf = [0u8; 128];
        let _ = black_box((&self.readers[i]).read(&mut buf));
    }
}

/// A `polling` poller with every reader of `pairs` added level-triggered (key: its index),
/// and room for `CAPACITY` events. The caller drops the poller before the pairs.
fn polling_level(pairs: &Pairs) -> (polling::Poller, polling::Events) {
    let poller = polling::Poller::new().expect("polling");
    for (i, r) in pairs.readers.iter().enumerate() {
        // SAFETY: the fd stays open until the poller is dropped: every caller drops the
        // poller before `pairs`.
        unsafe {
            poller.add_with_mode(
                r.as_raw_fd(),
                polling::Event::readable(i),
                polling::PollMode::Level,
            )
        }
        .expect("polling add");
    }
    let events =
        polling::Events::with_capacity(std::num::NonZeroUsize::new(CAPACITY).expect("nonzero"));
    (poller, events)
}

fn ms() -> Vec<usize> {
    std::env::var("IOMAN_BENCH_POLL_M")
        .unwrap_or_else(|_| "100,9000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Raw libc epoll: the floor.
struct RawEpoll {
    epfd: RawFd,
    buf: Vec<libc::epoll_event>,
}

impl RawEpoll {
    fn new() -> RawEpoll {
        // SAFETY: epoll_create1 takes flags only.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epfd >= 0, "epoll_create1");
        RawEpoll {
            epfd,
            buf: Vec::with_capacity(CAPACITY),
        }
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: libc::c_int, data: u64) {
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: data,
        };
        // SAFETY: `self.epfd` is open and `ev` is a valid event the kernel reads.
        let r = unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut ev) };
        assert_eq!(r, 0, "epoll_ctl");
    }

    fn wait(&mut self, timeout: libc::c_int) -> usize {
        // SAFETY: the buffer has room for CAPACITY events.
        let n =
            unsafe { libc::epoll_wait(self.epfd, self.buf.as_mut_ptr(), CAPACITY as i32, timeout) };
        assert!(n >= 0, "epoll_wait");
        // SAFETY: the kernel initialised the first `n <= CAPACITY` entries.
        unsafe { self.buf.set_len(n as usize) };
        n as usize
    }
}

impl Drop for RawEpoll {
    fn drop(&mut self) {
        // SAFETY: `epfd` is owned by this value.
        unsafe { libc::close(self.epfd) };
    }
}

fn poll_round(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll_round");
    // Each benchmark builds its M pairs and registrations when criterion first calls it,
    // so a filter that skips it costs no setup (9,000 pairs take a while), and drops them
    // when it is done.
    for m in ms() {
        {
            let mut state = None;
            group.bench_function(BenchmarkId::new("raw_epoll", m), |b| {
                let (raw, pairs) = state.get_or_insert_with(|| {
                    let pairs = Pairs::new(m);
                    let raw = RawEpoll::new();
                    for (i, r) in pairs.readers.iter().enumerate() {
                        raw.ctl(
                            libc::EPOLL_CTL_ADD,
                            r.as_raw_fd(),
                            libc::EPOLLIN | libc::EPOLLRDHUP,
                            i as u64,
                        );
                    }
                    (raw, pairs)
                });
                b.iter(|| {
                    pairs.poke();
                    let n = raw.wait(0);
                    for ev in &raw.buf[..n] {
                        pairs.drain(ev.u64 as usize);
                    }
                })
            });
        }
        ioman_round(&mut group, "ioman_epoll", m, || {
            Epoll::new().expect("epoll")
        });
        ioman_round(&mut group, "ioman_posix_poll", m, || {
            PosixPoll::new().expect("poll")
        });
        {
            let mut state = None;
            group.bench_function(BenchmarkId::new("mio", m), |b| {
                let (poll, pairs, events) = state.get_or_insert_with(|| {
                    let pairs = Pairs::new(m);
                    let poll = mio::Poll::new().expect("mio");
                    for (i, r) in pairs.readers.iter().enumerate() {
                        poll.registry()
                            .register(
                                &mut mio::unix::SourceFd(&r.as_raw_fd()),
                                mio::Token(i),
                                mio::Interest::READABLE,
                            )
                            .expect("mio register");
                    }
                    (poll, pairs, mio::Events::with_capacity(CAPACITY))
                });
                b.iter(|| {
                    pairs.poke();
                    poll.poll(events, Some(Duration::ZERO)).expect("mio poll");
                    for ev in events.iter() {
                        pairs.drain(ev.token().0);
                    }
                })
            });
        }
        {
            // The poller comes first in the tuple, so it is dropped before the pairs.
            let mut state = None;
            group.bench_function(BenchmarkId::new("polling", m), |b| {
                let (poller, pairs, events) = state.get_or_insert_with(|| {
                    let pairs = Pairs::new(m);
                    // The poller is dropped first: it comes before the pairs in `state`.
                    let (poller, events) = polling_level(&pairs);
                    (poller, pairs, events)
                });
                b.iter(|| {
                    pairs.poke();
                    events.clear();
                    poller
                        .wait(events, Some(Duration::ZERO))
                        .expect("polling wait");
                    for ev in events.iter() {
                        pairs.drain(ev.key);
                    }
                })
            });
        }
    }
    group.finish();
}

fn ioman_round<B: Backend>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    m: usize,
    backend: impl FnOnce() -> B,
) {
    let mut backend = Some(backend);
    let mut state = None;
    group.bench_function(BenchmarkId::new(name, m), |b| {
        let (backend, pairs, events) = state.get_or_insert_with(|| {
            let backend = backend.take().expect("set up once")();
            let pairs = Pairs::new(m);
            for (i, r) in pairs.readers.iter().enumerate() {
                backend
                    .register(r, i as u32, Interest::READ, Mode::Level)
                    .expect("register");
            }
            (backend, pairs, Events::with_capacity(CAPACITY))
        });
        b.iter(|| {
            pairs.poke();
            backend.wait(events, Some(Duration::ZERO)).expect("wait");
            for ev in &*events {
                pairs.drain(ev.key() as usize);
            }
        })
    });
}

fn oneshot_rearm(c: &mut Criterion) {
    let mut group = c.benchmark_group("oneshot_rearm");
    {
        let pairs = Pairs::new(1);
        let (w, r) = (&pairs.writers[0], &pairs.readers[0]);
        let fd = r.as_raw_fd();
        let mut raw = RawEpoll::new();
        let flags = libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT;
        raw.ctl(libc::EPOLL_CTL_ADD, fd, flags, 0);
        group.bench_function("raw_epoll", |b| {
            b.iter(|| {
                (&*w).write_all(&[1]).expect("write");
                assert_eq!(raw.wait(-1), 1);
                pairs.drain(0);
                raw.ctl(libc::EPOLL_CTL_MOD, fd, flags, 0);
            })
        });
    }
    ioman_rearm(&mut group, "ioman_epoll", Epoll::new().expect("epoll"));
    ioman_rearm(
        &mut group,
        "ioman_posix_poll",
        PosixPoll::new().expect("poll"),
    );
    {
        let pairs = Pairs::new(1);
        let (w, r) = (&pairs.writers[0], &pairs.readers[0]);
        let fd = r.as_raw_fd();
        let mut poll = mio::Poll::new().expect("mio");
        poll.registry()
            .register(
                &mut mio::unix::SourceFd(&fd),
                mio::Token(0),
                mio::Interest::READABLE,
            )
            .expect("mio register");
        let mut events = mio::Events::with_capacity(CAPACITY);
        group.bench_function("mio_reregister", |b| {
            b.iter(|| {
                (&*w).write_all(&[1]).expect("write");
                poll.poll(&mut events, None).expect("mio poll");
                pairs.drain(0);
                poll.registry()
                    .reregister(
                        &mut mio::unix::SourceFd(&fd),
                        mio::Token(0),
                        mio::Interest::READABLE,
                    )
                    .expect("mio reregister");
            })
        });
    }
    {
        let pairs = Pairs::new(1);
        let (w, r) = (&pairs.writers[0], &pairs.readers[0]);
        let poller = polling::Poller::new().expect("polling");
        // SAFETY: the fd outlives the poller (dropped at the end of this block).
        unsafe { poller.add(r.as_raw_fd(), polling::Event::readable(0)) }.expect("polling add");
        let mut events =
            polling::Events::with_capacity(std::num::NonZeroUsize::new(CAPACITY).expect("nonzero"));
        group.bench_function("polling", |b| {
            b.iter(|| {
                (&*w).write_all(&[1]).expect("write");
                events.clear();
                poller.wait(&mut events, None).expect("polling wait");
                pairs.drain(0);
                poller
                    .modify(r, polling::Event::readable(0))
                    .expect("polling modify");
            })
        });
        drop(poller);
    }
    group.finish();
}

fn ioman_rearm<B: Backend>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    backend: B,
) {
    let pairs = Pairs::new(1);
    let (w, r) = (&pairs.writers[0], &pairs.readers[0]);
    backend
        .register(r, 0, Interest::READ, Mode::OneShot)
        .expect("register");
    let mut events = Events::with_capacity(CAPACITY);
    group.bench_function(name, |b| {
        b.iter(|| {
            (&*w).write_all(&[1]).expect("write");
            assert_eq!(backend.wait(&mut events, None).expect("wait"), 1);
            pairs.drain(0);
            backend
                .modify(r, 0, Interest::READ, Mode::OneShot)
                .expect("modify");
        })
    });
}

/// Pairs and rounds of the instruction-count mode.
const COUNT_PAIRS: usize = 1024;
const COUNT_ROUNDS: usize = 2000;

/// The counted region: everything `f` does (and calls) is what callgrind's
/// `--toggle-collect='*measured*'` sees.
#[inline(never)]
fn measured<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `IOMAN_POLL_COUNT=<implementation>:<k>`: `COUNT_ROUNDS` rounds of `k` events each, the
/// wait and the walk over the events inside `measured` (see the crate docs above).
fn count(spec: &str) {
    let (name, k) = spec
        .split_once(':')
        .and_then(|(n, k)| Some((n, k.parse::<usize>().ok()?)))
        .unwrap_or_else(|| panic!("IOMAN_POLL_COUNT={spec}: want <implementation>:<k>"));
    assert!((1..=COUNT_PAIRS).contains(&k), "k in 1..={COUNT_PAIRS}");
    let pairs = Pairs::new(COUNT_PAIRS);
    // Writes one byte to the k pairs of round `round`, all distinct.
    let poke = |round: usize| {
        for j in 0..k {
            let i = (round * k + j) % COUNT_PAIRS;
            (&pairs.writers[i]).write_all(&[1]).expect("write");
        }
    };
    let mut total = 0usize;
    let mut sink = 0u64;
    match name {
        "raw_epoll" => {
            let mut raw = RawEpoll::new();
            for (i, r) in pairs.readers.iter().enumerate() {
                let flags = libc::EPOLLIN | libc::EPOLLRDHUP;
                raw.ctl(libc::EPOLL_CTL_ADD, r.as_raw_fd(), flags, i as u64);
            }
            for round in 0..COUNT_ROUNDS {
                poke(round);
                let (n, s) = measured(|| {
                    let n = raw.wait(0);
                    let mut s = 0u64;
                    for ev in &raw.buf[..n] {
                        let (data, bits) = (ev.u64, ev.events);
                        s = s.wrapping_add(data ^ u64::from(bits & libc::EPOLLIN as u32));
                    }
                    (n, s)
                });
                sink ^= s;
                total += n;
                for ev in &raw.buf[..n] {
                    pairs.drain(ev.u64 as usize);
                }
            }
        }
        "ioman_epoll" => {
            total = count_ioman(Epoll::new().expect("epoll"), &pairs, &poke, &mut sink)
        }
        "ioman_posix_poll" => {
            total = count_ioman(PosixPoll::new().expect("poll"), &pairs, &poke, &mut sink)
        }
        "mio" => {
            let mut poll = mio::Poll::new().expect("mio");
            for (i, r) in pairs.readers.iter().enumerate() {
                poll.registry()
                    .register(
                        &mut mio::unix::SourceFd(&r.as_raw_fd()),
                        mio::Token(i),
                        mio::Interest::READABLE,
                    )
                    .expect("mio register");
            }
            let mut events = mio::Events::with_capacity(CAPACITY);
            for round in 0..COUNT_ROUNDS {
                poke(round);
                let s = measured(|| {
                    poll.poll(&mut events, Some(Duration::ZERO))
                        .expect("mio poll");
                    let mut s = 0u64;
                    for ev in events.iter() {
                        s = s.wrapping_add(ev.token().0 as u64 ^ u64::from(ev.is_readable()));
                    }
                    s
                });
                sink ^= s;
                for ev in events.iter() {
                    total += 1;
                    pairs.drain(ev.token().0);
                }
            }
        }
        "polling" => {
            // The poller is dropped before the pairs (below).
            let (poller, mut events) = polling_level(&pairs);
            for round in 0..COUNT_ROUNDS {
                poke(round);
                let s = measured(|| {
                    events.clear();
                    poller
                        .wait(&mut events, Some(Duration::ZERO))
                        .expect("polling wait");
                    let mut s = 0u64;
                    for ev in events.iter() {
                        s = s.wrapping_add(ev.key as u64 ^ u64::from(ev.readable));
                    }
                    s
                });
                sink ^= s;
                for ev in events.iter() {
                    total += 1;
                    pairs.drain(ev.key);
                }
            }
            drop(poller);
        }
        other => panic!("IOMAN_POLL_COUNT: unknown implementation {other}"),
    }
    black_box(sink);
    assert_eq!(total, k * COUNT_ROUNDS, "every write reported once");
    println!("{name} k={k}: {total} events in {COUNT_ROUNDS} rounds");
}

fn count_ioman<B: Backend>(
    backend: B,
    pairs: &Pairs,
    poke: &dyn Fn(usize),
    sink: &mut u64,
) -> usize {
    for (i, r) in pairs.readers.iter().enumerate() {
        backend
            .register(r, i as u32, Interest::READ, Mode::Level)
            .expect("register");
    }
    let mut events = Events::with_capacity(CAPACITY);
    let mut total = 0;
    for round in 0..COUNT_ROUNDS {
        poke(round);
        let s = measured(|| {
            backend
                .wait(&mut events, Some(Duration::ZERO))
                .expect("wait");
            let mut s = 0u64;
            for ev in &events {
                let x = (ev.fd() as u64) << 32 | u64::from(ev.key());
                s = s.wrapping_add(x ^ u64::from(ev.readiness().is_readable()));
            }
            s
        });
        *sink ^= s;
        for ev in &events {
            total += 1;
            pairs.drain(ev.key() as usize);
        }
    }
    total
}

// 3 s of measurement by default; `--measurement-time` on the command line wins (a group's own
// setting would override it).
criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = poll_round, oneshot_rearm
}

fn main() {
    if let Ok(spec) = std::env::var("IOMAN_POLL_COUNT") {
        count(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
