//! Loopback TCP echo (issue 13): server CPU per round trip, one server thread, side by side.
//!
//! The workload: C connections to `127.0.0.1`, one outstanding 64-byte message per
//! connection (the client sends the next one when the echo is back), a 30 s idle timeout per
//! connection on the server, pushed back on every message. The servers, each started afresh
//! for every measurement:
//!
//! | name | server |
//! |---|---|
//! | `mio` (the reference, 1.00) | a hand-written `mio` loop, edge-triggered, read until `WouldBlock`; idle timeouts in a `BinaryHeap` with lazy deletion (a message only stores the connection's new deadline; an entry that comes due early is pushed again with it); the clock read once per loop iteration |
//! | `tokio_current_thread` | one task per connection on a current-thread runtime: `select!` of `read` against a pinned `Sleep` that is `reset` on every message, then `write_all` |
//! | `tokio_multi_thread_2` | the same tasks on a multi-thread runtime with 2 workers |
//! | `ioman` | one `EventManager` loop: a `Lifetime::Rearmable` READ registration per connection whose callback reads until `WouldBlock`, writes, `update_timeout`s and `rearm`s |
//! | `ioman_pool_2` | the same connections on a `Pool` of 2 managers (fd `% 2`), each connection's timeout on its fd's manager |
//!
//! The client (load generator) runs in other threads of the same process (an edge-triggered
//! mio loop per client thread). What is measured, over a window after a warm-up: the server
//! threads' CPU time (user + system, each thread's `CLOCK_THREAD_CPUTIME_ID` clock read from
//! outside) per round trip, as a ratio to the mio loop of the same round (paired ratios, so
//! the drift of a machine shared with other work cancels), and round trips per second. A
//! round runs every server once, in a rotating order; the table shows medians over rounds.
//! For ioman servers the manager's own counters (`Stats`) per round trip are printed too:
//! polls and `epoll_ctl` calls (register, modify, deregister).
//!
//! A harness-less bench that prints tables (criterion's sampling does not fit a
//! multi-threaded server whose cost is CPU time on other threads).
//!
//! # Names, arguments
//!
//! Benchmarks are named `echo/SERVER/C`, SERVER a name of the table above and C a
//! connection count (`echo/ioman_pool_2/1000`). A filter runs the names that contain it; the
//! command line is read as criterion reads its own (`ioman_bench::args`: `-- --list` prints
//! the names, `-- --help` the options, criterion's own options are ignored). The reference,
//! `mio`, runs beside any selected server of the same C (each ratio needs it; its row then
//! says `(reference)`); a C where nothing is selected prints no table.
//!
//! ```text
//! cargo bench -p ioman-bench --bench echo                      # every server, C = 100 and 1,000
//! cargo bench -p ioman-bench --bench echo -- ioman             # ioman and ioman_pool_2 (and mio)
//! cargo bench -p ioman-bench --bench echo -- 'ioman/1000$'     # one server at C = 1,000
//! cargo bench -p ioman-bench --bench echo -- --conns 1,50,100 --rounds 3
//! ```
//!
//! | argument | environment | default |
//! |---|---|---|
//! | `--conns LIST` | `IOMAN_ECHO_CONNS` | `100,1000` (the process holds 2 fds per connection) |
//! | `--rounds N` | `IOMAN_ECHO_ROUNDS` | 5 |
//! | `--seconds S` | `IOMAN_ECHO_SECONDS` | 2 (the measured window per server, fractions allowed) |
//! | `--warmup-ms MS` | `IOMAN_ECHO_WARMUP_MS` | 500 |
//! | `--client-threads N` | `IOMAN_ECHO_CLIENT_THREADS` | 1 |
//! | `--short-read` | `IOMAN_ECHO_SHORT_READ=1` | off: the mio and ioman servers stop reading at a read shorter than their 1 KiB buffer instead of reading on to `WouldBlock`, as tokio does by itself (tokio clears its readiness on a short read) |
//! | `--split` | `IOMAN_ECHO_SPLIT=1` | off: each server in a child process (below) |
//!
//! An argument wins over its variable. Without `--bench` (`cargo test --benches`) each
//! selected table runs one round of 0.1 s windows, to show that it works.
//!
//! **Counting** (syscalls, instructions) needs the server in a process of its own, so that
//! the client's work is not counted: with `IOMAN_ECHO_SPLIT=1` every server runs in a child
//! process (this binary with `IOMAN_ECHO_ROLE=server`), optionally under the command
//! `IOMAN_ECHO_WRAP` (split on spaces; `{variant}` and `{conns}` are replaced), and the shell
//! commands `IOMAN_ECHO_HOOK_START` / `IOMAN_ECHO_HOOK_STOP` run just before and just after
//! the measured window, with `IOMAN_ECHO_PID` set to the child's pid. Syscalls per round trip
//! by perf tracepoints, counted only between the hooks (name a few tracepoints: with all 361
//! `syscalls:sys_enter_*` perf switches every one of them at each context switch and slows
//! the server several times over, which changes how many messages each wakeup finds):
//!
//! ```text
//! mkfifo /tmp/echo.ctl /tmp/echo.ack
//! EV=raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait2,\
//! syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto
//! IOMAN_ECHO_SPLIT=1 IOMAN_ECHO_ROUNDS=1 \
//! IOMAN_ECHO_WRAP="perf stat -D -1 --control fifo:/tmp/echo.ctl,/tmp/echo.ack -x, -o /tmp/echo-{variant}-{conns}.csv -e $EV" \
//! IOMAN_ECHO_HOOK_START='echo enable >/tmp/echo.ctl; head -c4 /tmp/echo.ack >/dev/null' \
//! IOMAN_ECHO_HOOK_STOP='echo disable >/tmp/echo.ctl; head -c4 /tmp/echo.ack >/dev/null' \
//! cargo bench -p ioman-bench --bench echo -- --conns=1,50,100
//! ```
//!
//! `raw_syscalls:sys_enter` is every syscall; every server makes exactly one `sendto` per
//! message here (64 bytes always fit), so the `sendto` count is the round trips of the perf
//! window itself (the client's count, printed as `window:`, agrees within the hooks' few
//! milliseconds).
//!
//! User-space instructions per round trip by callgrind (the server slowed down, the client
//! not): `IOMAN_ECHO_WRAP='valgrind --tool=callgrind --callgrind-out-file=/tmp/cg-{variant}-{conns}.%p'`,
//! `IOMAN_ECHO_HOOK_START='callgrind_control -z $IOMAN_ECHO_PID'`,
//! `IOMAN_ECHO_HOOK_STOP='callgrind_control -d $IOMAN_ECHO_PID'`, `IOMAN_ECHO_WARMUP_MS=3000`;
//! the dump (`*.1`) holds the window only; divide its total by its calls of `send`. Use
//! `IOMAN_ECHO_SHORT_READ=1` there: a server slowed down by valgrind that reads to
//! `WouldBlock` finds the client's next message already queued and serves several per
//! wakeup, which a native run does not (natively about 1.1 messages per wakeup at C = 50).
#![allow(missing_docs)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ioman::{EventManager, FdKey, Interest, Lifetime, Pool, Readiness, Stats, TimeoutKey};
use ioman_bench::args::{Args, Mode, Opt};

/// Bytes per message.
const MSG: usize = 64;
/// Every server's read buffer (and the client's).
const BUF: usize = 1024;
/// The per-connection idle timeout, pushed back on every message.
const IDLE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Configuration

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Mio,
    TokioCurrent,
    TokioMulti,
    Ioman,
    IomanPool,
}

const KINDS: [Kind; 5] = [
    Kind::Mio,
    Kind::TokioCurrent,
    Kind::TokioMulti,
    Kind::Ioman,
    Kind::IomanPool,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mio => "mio",
            Kind::TokioCurrent => "tokio_current_thread",
            Kind::TokioMulti => "tokio_multi_thread_2",
            Kind::Ioman => "ioman",
            Kind::IomanPool => "ioman_pool_2",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| k.name() == s)
    }
}

#[derive(Clone)]
struct Opts {
    conns: Vec<usize>,
    rounds: usize,
    window: Duration,
    warmup: Duration,
    client_threads: usize,
    short_read: bool,
    split: bool,
    /// The selected benchmarks, `echo/SERVER/C`.
    chosen: Vec<String>,
}

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_num(name: &str, default: u64) -> u64 {
    env_str(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

const OPTS: &[Opt] = &[
    Opt::value(
        "conns",
        "IOMAN_ECHO_CONNS",
        "connection counts, one table each (default 100,1000)",
    ),
    Opt::value(
        "rounds",
        "IOMAN_ECHO_ROUNDS",
        "rounds per table (default 5)",
    ),
    Opt::value(
        "seconds",
        "IOMAN_ECHO_SECONDS",
        "measured window per server, s (default 2)",
    ),
    Opt::value(
        "warmup-ms",
        "IOMAN_ECHO_WARMUP_MS",
        "warm-up before each window, ms (default 500)",
    ),
    Opt::value(
        "client-threads",
        "IOMAN_ECHO_CLIENT_THREADS",
        "load generator threads (default 1)",
    ),
    Opt::flag(
        "short-read",
        "IOMAN_ECHO_SHORT_READ",
        "mio and ioman servers stop at a short read",
    ),
    Opt::flag(
        "split",
        "IOMAN_ECHO_SPLIT",
        "each server in a child process (counting)",
    ),
];

fn name(kind: Kind, conns: usize) -> String {
    format!("echo/{}/{conns}", kind.name())
}

impl Opts {
    /// `None` when nothing is to run (`--list`, or a filter that selects nothing).
    fn from_args() -> Option<Opts> {
        let args = Args::parse("echo", OPTS);
        let conns = args.list("conns", &[100, 1000]);
        let names = conns
            .iter()
            .flat_map(|&c| KINDS.into_iter().map(move |k| name(k, c)));
        let chosen = args.select(names)?;
        let test = args.mode() == Mode::Test;
        Some(Opts {
            conns,
            rounds: if test {
                1
            } else {
                args.num("rounds", 5usize).max(1)
            },
            window: Duration::from_secs_f64(if test {
                0.1
            } else {
                args.num("seconds", 2.0f64).max(0.001)
            }),
            warmup: Duration::from_millis(if test { 20 } else { args.num("warmup-ms", 500) }),
            client_threads: args.num("client-threads", 1usize).max(1),
            short_read: args.flag("short-read"),
            split: args.flag("split") || env_str("IOMAN_ECHO_WRAP").is_some(),
            chosen,
        })
    }

    /// The servers of the table for C = `conns`: the selected ones, and the reference
    /// (first) beside them, since every ratio needs it; none when none is selected.
    fn servers(&self, conns: usize) -> Vec<Kind> {
        let picked = |k: Kind| self.chosen.contains(&name(k, conns));
        if !KINDS.into_iter().any(picked) {
            return Vec::new();
        }
        KINDS
            .into_iter()
            .filter(|&k| k == Kind::Mio || picked(k))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Thread CPU time

fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// CPU time (user + system) of thread `tid` of this process: the kernel's per-thread clock
/// `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)` (what `pthread_getcpuclockid` returns), readable
/// from any thread of the process. `None` once the thread has exited.
fn thread_cpu(tid: libc::pid_t) -> Option<Duration> {
    let clock = ((!(tid as u32)) << 3 | 6) as libc::clockid_t;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; an unknown clock id fails with EINVAL.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The threads a server runs on, recorded by each of them as it starts.
#[derive(Clone, Default)]
struct Tids(Arc<Mutex<Vec<libc::pid_t>>>);

impl Tids {
    fn record(&self) {
        self.0.lock().expect("tids").push(gettid());
    }

    fn cpu(&self) -> Duration {
        let tids = self.0.lock().expect("tids").clone();
        tids.into_iter().filter_map(thread_cpu).sum()
    }

    fn count(&self) -> usize {
        self.0.lock().expect("tids").len()
    }
}

// ---------------------------------------------------------------------------------------
// Shared by the servers

/// A listening socket on an ephemeral loopback port, non-blocking, with a deep backlog: std
/// listens with 128, and 1,000 clients connecting at once would overflow it (a dropped SYN
/// costs a 1 s retransmit).
fn listen() -> io::Result<TcpListener> {
    let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    // SAFETY: the fd is `l`'s listening socket, open for this call; listen(2) on a listening
    // socket only changes its backlog.
    if unsafe { libc::listen(l.as_raw_fd(), 4096) } != 0 {
        return Err(io::Error::last_os_error());
    }
    l.set_nonblocking(true)?;
    Ok(l)
}

/// What a connection waits for after [`echo`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Next {
    Read,
    /// The send buffer is full and `out` holds the rest (never on loopback with 64 bytes,
    /// but a server must handle it).
    Write,
    Close,
}

/// Writes `data`, stashing in `out` what the socket does not take now.
fn send<S: Write>(s: &mut S, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        match s.write(&data[done..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                out.extend_from_slice(&data[done..]);
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The echo step of the mio and ioman servers after a readiness event: flush what is
/// pending, then read and write back until `WouldBlock` (or, with `short_read`, until a read
/// shorter than the buffer). Returns whether a message was read, and what to wait for.
fn echo<S: Read + Write>(
    s: &mut S,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    short_read: bool,
) -> (bool, Next) {
    if !out.is_empty() {
        let pending = std::mem::take(out);
        if send(s, &pending, out).is_err() {
            return (false, Next::Close);
        }
        if !out.is_empty() {
            return (false, Next::Write);
        }
    }
    let mut got = false;
    loop {
        match s.read(buf) {
            Ok(0) => return (got, Next::Close),
            Ok(n) => {
                got = true;
                if send(s, &buf[..n], out).is_err() {
                    return (got, Next::Close);
                }
                if !out.is_empty() {
                    return (got, Next::Write);
                }
                if short_read && n < buf.len() {
                    return (got, Next::Read);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (got, Next::Read),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (got, Next::Close),
        }
    }
}

/// A running server.
struct Server {
    addr: SocketAddr,
    tids: Tids,
    stats: Box<dyn Fn() -> Option<Stats> + Send>,
    stop: Box<dyn FnOnce() + Send>,
}

impl Server {
    fn stop(self) {
        (self.stop)();
    }
}

fn start(kind: Kind, short_read: bool) -> io::Result<Server> {
    let server = match kind {
        Kind::Mio => start_mio(short_read)?,
        Kind::TokioCurrent => start_tokio(0)?,
        Kind::TokioMulti => start_tokio(2)?,
        Kind::Ioman => start_ioman(short_read)?,
        Kind::IomanPool => start_pool(2, short_read)?,
    };
    // Every server thread has recorded itself before the first connection is measured.
    let expect = match kind {
        Kind::Mio | Kind::TokioCurrent | Kind::Ioman => 1,
        Kind::TokioMulti => 3, // two workers and the thread that owns the runtime
        Kind::IomanPool => 2,
    };
    let t0 = Instant::now();
    while server.tids.count() < expect && t0.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(1));
    }
    Ok(server)
}

// ---------------------------------------------------------------------------------------
// The reference: a hand-written mio loop with a BinaryHeap of timeouts

struct MioConn {
    s: mio::net::TcpStream,
    /// Tells a reused slot from the connection a heap entry was pushed for.
    gen: u32,
    deadline: Instant,
    out: Vec<u8>,
}

fn start_mio(short_read: bool) -> io::Result<Server> {
    use mio::{Events, Interest as MioInterest, Poll, Token, Waker};
    const LISTENER: Token = Token(usize::MAX - 1);
    const WAKE: Token = Token(usize::MAX - 2);
    let std_listener = listen()?;
    let addr = std_listener.local_addr()?;
    let mut listener = mio::net::TcpListener::from_std(std_listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, MioInterest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let registry = poll.registry().try_clone()?;
    let stop = Arc::new(AtomicBool::new(false));
    let tids = Tids::default();
    let (stop2, tids2) = (Arc::clone(&stop), tids.clone());
    let keep_waker = Arc::clone(&waker);
    let thread = thread::Builder::new()
        .name("echo-mio".into())
        .spawn(move || {
            tids2.record();
            // The loop keeps the waker's fd open: closing it would drop a queued wake.
            let _keep_waker = keep_waker;
            let mut events = Events::with_capacity(1024);
            let mut conns: Vec<Option<MioConn>> = Vec::new();
            let mut free: Vec<usize> = Vec::new();
            let mut heap: BinaryHeap<Reverse<(Instant, usize, u32)>> = BinaryHeap::new();
            let mut next_gen = 0u32;
            let mut scratch = [0u8; BUF];
            let mut now = Instant::now();
            let close = |conns: &mut Vec<Option<MioConn>>, free: &mut Vec<usize>, i: usize| {
                if let Some(mut c) = conns[i].take() {
                    let _ = registry.deregister(&mut c.s);
                }
                free.push(i);
            };
            while !stop2.load(Ordering::Relaxed) {
                let timeout = heap
                    .peek()
                    .map(|Reverse((d, _, _))| d.saturating_duration_since(now));
                if let Err(e) = poll.poll(&mut events, timeout) {
                    if e.kind() == ErrorKind::Interrupted {
                        continue;
                    }
                    eprintln!("echo/mio: poll: {e}");
                    break;
                }
                now = Instant::now();
                for ev in events.iter() {
                    match ev.token() {
                        WAKE => {}
                        LISTENER => loop {
                            match listener.accept() {
                                Ok((mut s, _)) => {
                                    let _ = s.set_nodelay(true);
                                    let i = free.pop().unwrap_or_else(|| {
                                        conns.push(None);
                                        conns.len() - 1
                                    });
                                    let interest = MioInterest::READABLE | MioInterest::WRITABLE;
                                    if poll
                                        .registry()
                                        .register(&mut s, Token(i), interest)
                                        .is_err()
                                    {
                                        free.push(i);
                                        continue;
                                    }
                                    next_gen = next_gen.wrapping_add(1);
                                    let deadline = now + IDLE;
                                    conns[i] = Some(MioConn {
                                        s,
                                        gen: next_gen,
                                        deadline,
                                        out: Vec::new(),
                                    });
                                    heap.push(Reverse((deadline, i, next_gen)));
                                }
                                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                                Err(_) => break,
                            }
                        },
                        Token(i) => {
                            let next = match conns.get_mut(i).and_then(Option::as_mut) {
                                Some(c) => {
                                    let (got, next) =
                                        echo(&mut c.s, &mut scratch, &mut c.out, short_read);
                                    if got {
                                        // Lazy deletion: the heap entry stays; only the
                                        // connection learns its new deadline.
                                        c.deadline = now + IDLE;
                                    }
                                    next
                                }
                                None => Next::Read,
                            };
                            // Edge-triggered for both directions: nothing to re-arm.
                            if next == Next::Close {
                                close(&mut conns, &mut free, i);
                            }
                        }
                    }
                }
                // Expire: an entry that comes due is either the connection's real deadline
                // (idle: close it) or an old one (push the real one), or a closed
                // connection's (drop it).
                while let Some(&Reverse((d, i, gen))) = heap.peek() {
                    if d > now {
                        break;
                    }
                    heap.pop();
                    let live = conns.get(i).and_then(Option::as_ref);
                    match live {
                        Some(c) if c.gen == gen && c.deadline <= now => {
                            close(&mut conns, &mut free, i)
                        }
                        Some(c) if c.gen == gen => heap.push(Reverse((c.deadline, i, gen))),
                        _ => {}
                    }
                }
            }
        })?;
    let stop3 = Arc::clone(&stop);
    Ok(Server {
        addr,
        tids,
        stats: Box::new(|| None),
        stop: Box::new(move || {
            stop3.store(true, Ordering::SeqCst);
            let _ = waker.wake();
            let _ = thread.join();
        }),
    })
}

// ---------------------------------------------------------------------------------------
// tokio

/// One connection: `read` against the idle timer, `write_all`, push the timer back.
async fn tokio_conn(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; BUF];
    let idle = tokio::time::sleep(IDLE);
    tokio::pin!(idle);
    loop {
        let n = tokio::select! {
            biased;
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = &mut idle => return,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
        // Moving a registered deadline later is a store in tokio (no wheel work).
        idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
    }
}

async fn tokio_accept(listener: tokio::net::TcpListener) {
    loop {
        if let Ok((s, _)) = listener.accept().await {
            tokio::spawn(tokio_conn(s));
        }
    }
}

/// `workers == 0`: the current-thread runtime (on one thread of its own); else a multi-thread
/// runtime with that many workers, the accept loop a task on them.
fn start_tokio(workers: usize) -> io::Result<Server> {
    let std_listener = listen()?;
    let addr = std_listener.local_addr()?;
    let tids = Tids::default();
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        let t = tids.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("echo-tokio-worker")
            .on_thread_start(move || t.record())
            .enable_all()
            .build()?
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let t = tids.clone();
    let thread = thread::Builder::new()
        .name("echo-tokio".into())
        .spawn(move || {
            t.record();
            if workers == 0 {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        () = tokio_accept(listener) => {}
                        _ = rx => {}
                    }
                });
            } else {
                let accept = rt.spawn(async move {
                    if let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) {
                        tokio_accept(listener).await;
                    }
                });
                let _ = rt.block_on(rx);
                accept.abort();
            }
            // Dropping the runtime drops every connection task (and closes its stream).
            drop(rt);
        })?;
    Ok(Server {
        addr,
        tids,
        stats: Box::new(|| None),
        stop: Box::new(move || {
            let _ = tx.send(());
            let _ = thread.join();
        }),
    })
}

// ---------------------------------------------------------------------------------------
// ioman

/// One connection's state, owned by its `Rearmable` callback.
struct IomanConn {
    /// `None` once handed to `close_fd`.
    stream: Option<TcpStream>,
    buf: Box<[u8]>,
    out: Vec<u8>,
    timeout: TimeoutKey,
    short_read: bool,
}

impl IomanConn {
    fn on_event(&mut self, mgr: &EventManager, key: FdKey, readiness: Readiness) {
        if readiness.is_closed() {
            return; // `close_fd` (ours, or the manager's shutdown): nothing left to do
        }
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        let (got, next) = echo(s, &mut self.buf, &mut self.out, self.short_read);
        let interest = match next {
            Next::Read => Interest::READ,
            Next::Write => Interest::WRITE,
            Next::Close => return self.close(mgr),
        };
        if got {
            mgr.update_timeout(self.timeout, IDLE);
        }
        if !matches!(mgr.rearm(key, interest), Ok(true)) {
            self.close(mgr);
        }
    }

    fn close(&mut self, mgr: &EventManager) {
        mgr.unregister_timeout(self.timeout);
        if let Some(s) = self.stream.take() {
            // Unregisters this (running) registration, closes, and tells it `CLOSED` once
            // it returns.
            let _ = mgr.close_fd(s);
        }
    }
}

/// Serves `stream` on `mgr`: its idle timeout first (so the callback knows its key), then
/// the `Rearmable` registration (whose key the timeout learns through a cell).
fn ioman_serve(mgr: &EventManager, stream: TcpStream, short_read: bool) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    let fd = stream.as_raw_fd();
    let cell: Arc<OnceLock<FdKey>> = Arc::new(OnceLock::new());
    let cell2 = Arc::clone(&cell);
    let timeout = mgr.register_timeout(IDLE, move |mgr| {
        // Idle: dropping the callback closes the stream (the registration has ended).
        if let Some(&key) = cell2.get() {
            let _ = mgr.unregister_fd(key);
        }
    })?;
    let mut conn = IomanConn {
        stream: Some(stream),
        buf: vec![0u8; BUF].into_boxed_slice(),
        out: Vec::new(),
        timeout,
        short_read,
    };
    match mgr.register_fd(fd, Interest::READ, Lifetime::Rearmable, move |m, k, r| {
        conn.on_event(m, k, r)
    }) {
        Ok(key) => {
            let _ = cell.set(key);
            Ok(())
        }
        Err(e) => {
            mgr.unregister_timeout(timeout);
            Err(e)
        }
    }
}

/// Registers `listener` (multi-shot) on `mgr`; each accepted connection is served on the
/// manager `owner(fd)` gives.
fn ioman_listen(
    mgr: &EventManager,
    listener: TcpListener,
    owner: impl Fn(&EventManager, i32) -> Option<Arc<EventManager>> + Send + 'static,
    short_read: bool,
) -> io::Result<()> {
    let fd = listener.as_raw_fd();
    mgr.register_fd(fd, Interest::READ, Lifetime::MultiShot, move |m, _, r| {
        if r.is_closed() {
            return;
        }
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    let result = match owner(m, s.as_raw_fd()) {
                        Some(other) => ioman_serve(&other, s, short_read),
                        None => ioman_serve(m, s, short_read),
                    };
                    if let Err(e) = result {
                        eprintln!("echo/ioman: could not serve a connection: {e}");
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })?;
    Ok(())
}

fn start_ioman(short_read: bool) -> io::Result<Server> {
    let listener = listen()?;
    let addr = listener.local_addr()?;
    let mgr = Arc::new(EventManager::new()?);
    ioman_listen(&mgr, listener, |_, _| None, short_read)?;
    let tids = Tids::default();
    let (m, t) = (Arc::clone(&mgr), tids.clone());
    let thread = thread::Builder::new()
        .name("echo-ioman".into())
        .spawn(move || {
            t.record();
            if let Err(e) = m.run() {
                eprintln!("echo/ioman: loop: {e}");
            }
        })?;
    let m = Arc::clone(&mgr);
    Ok(Server {
        addr,
        tids,
        stats: Box::new(move || Some(m.stats())),
        stop: Box::new(move || {
            mgr.shutdown();
            let _ = thread.join();
        }),
    })
}

fn start_pool(threads: usize, short_read: bool) -> io::Result<Server> {
    let listener = listen()?;
    let addr = listener.local_addr()?;
    let tids = Tids::default();
    let t = tids.clone();
    let pool = Pool::builder()
        .threads(threads)
        .on_loop_start(move |_| t.record())
        .build()?;
    let owners = pool.clone();
    let home = Arc::clone(pool.manager_for(listener.as_raw_fd()));
    ioman_listen(
        &home,
        listener,
        move |_, fd| Some(Arc::clone(owners.manager_for(fd))),
        short_read,
    )?;
    let p = pool.clone();
    Ok(Server {
        addr,
        tids,
        stats: Box::new(move || Some(p.stats())),
        stop: Box::new(move || {
            pool.shutdown();
            let _ = pool.join();
        }),
    })
}

// ---------------------------------------------------------------------------------------
// The load generator

/// Closed-loop clients: each connection sends 64 bytes, waits for all 64 to come back, sends
/// again. Each client thread runs an edge-triggered mio loop over its share of the
/// connections.
struct Load {
    stop: Arc<AtomicBool>,
    counts: Vec<Arc<AtomicU64>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Load {
    fn start(addr: SocketAddr, conns: usize, threads: usize) -> io::Result<Load> {
        let threads = threads.clamp(1, conns.max(1));
        let mut shares: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
        for i in 0..conns {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            shares[i % threads].push(s);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut counts = Vec::new();
        let mut handles = Vec::new();
        for (t, share) in shares.into_iter().enumerate() {
            let count = Arc::new(AtomicU64::new(0));
            counts.push(Arc::clone(&count));
            let stop = Arc::clone(&stop);
            handles.push(
                thread::Builder::new()
                    .name(format!("echo-client-{t}"))
                    .spawn(move || client_loop(share, &stop, &count))?,
            );
        }
        Ok(Load {
            stop,
            counts,
            threads: handles,
        })
    }

    fn round_trips(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Stops the clients (their connections close) and returns the first error one met.
    fn stop(self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let mut result = Ok(());
        for t in self.threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("client panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

fn client_send(s: &mut mio::net::TcpStream, msg: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < msg.len() {
        match s.write(&msg[done..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            // The echo of the previous message is back, so the send buffer is empty: this
            // does not happen with 64-byte messages.
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn client_loop(share: Vec<TcpStream>, stop: &AtomicBool, count: &AtomicU64) -> io::Result<()> {
    let mut poll = mio::Poll::new()?;
    let mut events = mio::Events::with_capacity(1024);
    let msg = [0x5au8; MSG];
    let mut conns: Vec<(mio::net::TcpStream, usize)> = Vec::with_capacity(share.len());
    for (i, s) in share.into_iter().enumerate() {
        let mut s = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(&mut s, mio::Token(i), mio::Interest::READABLE)?;
        conns.push((s, 0));
    }
    for (s, _) in conns.iter_mut() {
        client_send(s, &msg)?;
    }
    let mut done = 0u64;
    let mut buf = [0u8; BUF];
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(Duration::from_millis(100))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let (s, got) = &mut conns[ev.token().0];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Err(io::Error::other("the server closed a connection")),
                    Ok(n) => {
                        *got += n;
                        if *got > MSG {
                            return Err(io::Error::other("the server sent more than it got"));
                        }
                        if *got == MSG {
                            // The whole echo is back and the server has nothing more to send
                            // until the next message: no read to `WouldBlock` needed (any
                            // later byte makes a new edge).
                            *got = 0;
                            done += 1;
                            client_send(s, &msg)?;
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        count.store(done, Ordering::Relaxed);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Measurement

/// The server's counters at one moment.
#[derive(Clone, Copy, Default)]
struct Mark {
    cpu: Duration,
    stats: Option<Stats>,
}

/// A server under measurement: in this process, or a child process (split mode).
enum Under {
    Here(Server),
    Child {
        child: Child,
        stdin: ChildStdin,
        stdout: BufReader<ChildStdout>,
    },
}

impl Under {
    fn start(kind: Kind, conns: usize, opts: &Opts) -> io::Result<(Under, SocketAddr)> {
        if !opts.split {
            let s = start(kind, opts.short_read)?;
            let addr = s.addr;
            return Ok((Under::Here(s), addr));
        }
        let exe = std::env::current_exe()?;
        let mut cmd = match env_str("IOMAN_ECHO_WRAP") {
            Some(w) => {
                let w = w
                    .replace("{variant}", kind.name())
                    .replace("{conns}", &conns.to_string());
                let mut parts = w.split_whitespace();
                let mut cmd = Command::new(parts.next().expect("a wrapper command"));
                cmd.args(parts).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        let mut child = cmd
            .env("IOMAN_ECHO_ROLE", "server")
            .env("IOMAN_ECHO_SERVER", kind.name())
            .env(
                "IOMAN_ECHO_SHORT_READ",
                if opts.short_read { "1" } else { "0" },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("addr ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| io::Error::other(format!("the server said {line:?}")))?;
        Ok((
            Under::Child {
                child,
                stdin,
                stdout,
            },
            addr,
        ))
    }

    fn pid(&self) -> u32 {
        match self {
            Under::Here(_) => std::process::id(),
            Under::Child { child, .. } => child.id(),
        }
    }

    fn mark(&mut self) -> io::Result<Mark> {
        match self {
            Under::Here(s) => Ok(Mark {
                cpu: s.tids.cpu(),
                stats: (s.stats)(),
            }),
            Under::Child { stdin, stdout, .. } => {
                writeln!(stdin, "mark")?;
                stdin.flush()?;
                let mut line = String::new();
                stdout.read_line(&mut line)?;
                parse_mark(&line).ok_or_else(|| io::Error::other(format!("mark: {line:?}")))
            }
        }
    }

    fn stop(self) -> io::Result<()> {
        match self {
            Under::Here(s) => {
                s.stop();
                Ok(())
            }
            Under::Child {
                mut child, stdin, ..
            } => {
                drop(stdin);
                child.wait()?;
                Ok(())
            }
        }
    }
}

/// `mark <cpu ns> [<polls> <registers> <modifies> <deregisters> <wakeups>]`.
fn format_mark(m: &Mark) -> String {
    let mut s = format!("mark {}", m.cpu.as_nanos());
    if let Some(st) = m.stats {
        s += &format!(
            " {} {} {} {} {}",
            st.polls, st.backend_registers, st.backend_modifies, st.backend_deregisters, st.wakeups
        );
    }
    s
}

fn parse_mark(line: &str) -> Option<Mark> {
    let mut f = line.trim().strip_prefix("mark ")?.split_whitespace();
    let cpu = Duration::from_nanos(f.next()?.parse().ok()?);
    let rest: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
    let stats = (rest.len() == 5).then(|| {
        let mut st = Stats::default();
        st.polls = rest[0];
        st.backend_registers = rest[1];
        st.backend_modifies = rest[2];
        st.backend_deregisters = rest[3];
        st.wakeups = rest[4];
        st
    });
    Some(Mark { cpu, stats })
}

fn hook(var: &str, pid: u32, kind: Kind, conns: usize) -> io::Result<()> {
    let Some(cmd) = env_str(var) else {
        return Ok(());
    };
    let status = Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .env("IOMAN_ECHO_PID", pid.to_string())
        .env("IOMAN_ECHO_VARIANT", kind.name())
        .env("IOMAN_ECHO_CONNS_NOW", conns.to_string())
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("{var} ({cmd}) failed: {status}")));
    }
    Ok(())
}

/// One measured window.
#[derive(Clone, Copy)]
struct Sample {
    round_trips: u64,
    wall: Duration,
    cpu: Duration,
    /// The manager's counters over the window (ioman servers).
    stats: Option<Stats>,
}

impl Sample {
    fn cpu_ns_per_rt(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.round_trips.max(1) as f64
    }

    fn rate(&self) -> f64 {
        self.round_trips as f64 / self.wall.as_secs_f64()
    }
}

fn stats_delta(a: Option<Stats>, b: Option<Stats>) -> Option<Stats> {
    let (a, b) = (a?, b?);
    let mut d = Stats::default();
    d.polls = b.polls - a.polls;
    d.backend_registers = b.backend_registers - a.backend_registers;
    d.backend_modifies = b.backend_modifies - a.backend_modifies;
    d.backend_deregisters = b.backend_deregisters - a.backend_deregisters;
    d.wakeups = b.wakeups - a.wakeups;
    d.fd_callbacks = b.fd_callbacks - a.fd_callbacks;
    Some(d)
}

fn measure(kind: Kind, conns: usize, opts: &Opts) -> io::Result<Sample> {
    let (mut under, addr) = Under::start(kind, conns, opts)?;
    let load = match Load::start(addr, conns, opts.client_threads) {
        Ok(l) => l,
        Err(e) => {
            let _ = under.stop();
            return Err(e);
        }
    };
    thread::sleep(opts.warmup);
    let pid = under.pid();
    hook("IOMAN_ECHO_HOOK_START", pid, kind, conns)?;
    let m0 = under.mark()?;
    let (rt0, t0) = (load.round_trips(), Instant::now());
    thread::sleep(opts.window);
    let (rt1, t1) = (load.round_trips(), Instant::now());
    let m1 = under.mark()?;
    hook("IOMAN_ECHO_HOOK_STOP", pid, kind, conns)?;
    let loaded = load.stop();
    under.stop()?;
    loaded?;
    Ok(Sample {
        round_trips: rt1 - rt0,
        wall: t1 - t0,
        cpu: m1.cpu.saturating_sub(m0.cpu),
        stats: stats_delta(m0.stats, m1.stats),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn run_table(conns: usize, opts: &Opts) -> io::Result<()> {
    let kinds = opts.servers(conns);
    if kinds.is_empty() {
        return Ok(());
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); kinds.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    let load_before = loadavg();
    for round in 0..opts.rounds {
        let mut this: Vec<Option<Sample>> = vec![None; kinds.len()];
        for j in 0..kinds.len() {
            let i = (j + round) % kinds.len();
            let s = measure(kinds[i], conns, opts)?;
            if opts.split {
                println!(
                    "  window: echo/{} C={conns}: {} round trips in {:.3} s",
                    kinds[i].name(),
                    s.round_trips,
                    s.wall.as_secs_f64()
                );
            }
            this[i] = Some(s);
        }
        let base = this[0].expect("mio ran").cpu_ns_per_rt();
        for (i, s) in this.into_iter().enumerate() {
            let s = s.expect("every server ran");
            ratios[i].push(s.cpu_ns_per_rt() / base);
            samples[i].push(s);
        }
    }
    println!(
        "\n## echo, C = {conns}: {} round(s) of {:.1} s per server, {} client thread(s){}; \
         load average {load_before} -> {}",
        opts.rounds,
        opts.window.as_secs_f64(),
        opts.client_threads,
        if opts.short_read {
            ", short-read servers"
        } else {
            ""
        },
        loadavg()
    );
    println!(
        "{:<22} | {:>13} | {:>15} | {:>14} | {:>11} | per RT (ioman Stats)",
        "server", "round trips/s", "server CPU ns/RT", "vs mio (median)", "ratio range"
    );
    for (i, k) in kinds.iter().enumerate() {
        let rate = median(samples[i].iter().map(Sample::rate).collect());
        let cpu = median(samples[i].iter().map(Sample::cpu_ns_per_rt).collect());
        let lo = ratios[i].iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios[i].iter().copied().fold(0.0, f64::max);
        let ratio = median(ratios[i].clone());
        let counters = {
            let rts: u64 = samples[i].iter().map(|s| s.round_trips).sum();
            let sum = |f: fn(&Stats) -> u64| -> Option<u64> {
                samples[i]
                    .iter()
                    .map(|s| s.stats.as_ref().map(f))
                    .sum::<Option<u64>>()
            };
            match (
                sum(|s| s.polls),
                sum(|s| s.backend_registers + s.backend_modifies + s.backend_deregisters),
                sum(|s| s.wakeups),
            ) {
                (Some(p), Some(c), Some(w)) => format!(
                    "{:.3} polls, {:.5} epoll_ctl, {:.5} wakeups",
                    p as f64 / rts.max(1) as f64,
                    c as f64 / rts.max(1) as f64,
                    w as f64 / rts.max(1) as f64
                ),
                _ => String::new(),
            }
        };
        println!(
            "{:<22} | {:>13.0} | {:>15.0} | {:>14.2}x | {:>5.2}-{:<5.2} | {counters}",
            if opts.chosen.contains(&name(*k, conns)) {
                k.name().to_string()
            } else {
                format!("{} (reference)", k.name())
            },
            rate,
            cpu,
            ratio,
            lo,
            hi
        );
    }
    Ok(())
}

/// The server role of split mode: serves until stdin closes; answers `mark` lines with the
/// server threads' CPU time and the manager's counters.
fn server_role() -> io::Result<()> {
    let name = env_str("IOMAN_ECHO_SERVER").unwrap_or_default();
    let kind =
        Kind::parse(&name).ok_or_else(|| io::Error::other(format!("unknown server {name:?}")))?;
    let server = start(kind, env_num("IOMAN_ECHO_SHORT_READ", 0) != 0)?;
    let mut out = io::stdout();
    writeln!(out, "addr {}", server.addr)?;
    out.flush()?;
    for line in io::stdin().lock().lines() {
        if line?.trim() == "mark" {
            let m = Mark {
                cpu: server.tids.cpu(),
                stats: (server.stats)(),
            };
            writeln!(out, "{}", format_mark(&m))?;
            out.flush()?;
        }
    }
    server.stop();
    Ok(())
}

fn main() -> io::Result<()> {
    if env_str("IOMAN_ECHO_ROLE").as_deref() == Some("server") {
        return server_role();
    }
    let Some(opts) = Opts::from_args() else {
        return Ok(());
    };
    println!(
        "echo: 64-byte messages, one outstanding per connection, 30 s idle timeout per \
         connection; server CPU per round trip ({}), ratio to the mio loop of the same round",
        if opts.split {
            "server in a child process"
        } else {
            "server threads' CPU clocks"
        }
    );
    for &c in &opts.conns {
        run_table(c, &opts)?;
    }
    Ok(())
}
