//! Loopback echo with per-connection idle timeouts, served by `ioman-async` on an executor
//! beside `async-io` on the same executor, tokio's current-thread runtime and a callback
//! `EventManager` server. (The `Timer` micro-benchmark against tokio's `sleep` is the
//! criterion bench `async_timer`.)
//!
//! A measurement run, not a criterion statistic: a custom `main` prints tables. Its
//! benchmarks are `async_echo/SERVER/C`; the name filter and the modes are those of every
//! table bench ([`ioman_bench::args`]: `-- --list` names them, `cargo test --benches` runs
//! each once, briefly); the `callback` server, the reference of every ratio, runs beside any
//! selected server of its C. Options (`-- --help`), each also given by its variable:
//!
//! ```text
//! cargo bench -p ioman-bench --bench async_echo
//! cargo bench -p ioman-bench --bench async_echo -- 'ioman-async/1000$' --seconds 2
//! --conns 100,1000     IOMAN_BENCH_CLIENTS   connections, one table each (default both)
//! --seconds 3          IOMAN_BENCH_SECONDS   seconds per point
//! --rounds 3           IOMAN_BENCH_ROUNDS    rounds (servers interleaved in each round;
//!                                            medians printed; 0 skips the CPU table, for
//!                                            the counting modes alone)
//! --servers LIST       IOMAN_ECHO_SERVERS    default callback,ioman-async,
//!                                            ioman-async-thread,async-io,tokio (`kind@EXE`:
//!                                            that server from another build of this bench,
//!                                            for before/after ratios in the same rounds)
//! --strace             IOMAN_ECHO_STRACE     also count the servers' syscalls per round trip
//!                                            (strace -c)
//! --perf               IOMAN_ECHO_PERF       also count them with perf stat on the syscall
//!                                            tracepoints, with context switches (the server
//!                                            runs at full speed)
//! --callgrind          IOMAN_ECHO_CALLGRIND  also count user-space instructions per round
//!                                            trip (callgrind)
//! IOMAN_ECHO_SERVER_CPU=1        run each server under `taskset -c 1` (run this binary under
//!                                `taskset -c 0` to keep the load generator off that core)
//! IOMAN_ECHO_CALLGRIND_KEEP=1    keep the callgrind profiles
//! IOMAN_ECHO_CACHESIM=1          add cache misses per round trip to the callgrind counts
//! ```
//!
//! **Echo.** C connections each send a 64-byte message and wait for its echo, closed loop.
//! Every server holds a 30 s idle timeout per connection, reset at each message: the callback
//! server with `update_timeout`, the async ones with a per-connection timer reset per message
//! (`Timer::set_after`, `async_io::Timer::set_after`, tokio `Sleep::reset`) raced against the
//! read. Each server runs in a child process (this binary with `IOMAN_ECHO_ROLE=server`) on
//! one thread, so its CPU time (`/proc/self/stat`, user + system) is its own; the load
//! generator (an ioman callback client on one thread) runs in this process. The figure is
//! server CPU per round trip, and the ratio to the callback server of the same round.
//!
//! - `callback`: `EventManager::run`, a `Rearmable` registration per connection re-armed
//!   after each message, `update_timeout` per message.
//! - `ioman-async`: `ioman_async::block_on(LocalExecutor::run(..))`: tasks and the manager's
//!   loop on one thread.
//! - `ioman-async-thread`: the same tasks under `futures::executor::block_on`, so the
//!   global manager's loop runs on its own thread and hands each readiness to the executor's
//!   thread (the configuration where a level-triggered registration is seen still ready by
//!   the loop before the task reads it, and trimmed: an `EPOLL_CTL_ADD` + `DEL` per wait,
//!   which ioman-async's `Lifetime::Edge` registrations removed).
//! - `async-io`: `async_io::block_on(LocalExecutor::run(..))`, `async_io::Async`.
//! - `tokio`: current-thread runtime, `tokio::net::TcpStream`, `select!` on read and sleep.
//!
//! # Results
//!
//! One shared 2-core x86_64 Linux VM (Rust 1.95, async-io 2, tokio 1, async-executor 1.14,
//! valgrind 3.19), the load generator on core 0 and the server on core 1. "before" is the
//! same bench built at 096203b, where ioman-async registered `Lifetime::Rearmable`
//! (`ioman-async@before`, `ioman-async-thread@before`: run in the same rounds, see
//! `kind@EXE`). Syscalls per round trip with `perf stat` (the server at full speed, so its
//! loop batches events as it does unobserved; `strace -c` slows the server until every
//! event is one wait, and then counts 3.0 for `ioman-async-thread`, 6.0 before):
//!
//! ```text
//! IOMAN_BENCH_ROUNDS=7 IOMAN_BENCH_SECONDS=4 IOMAN_ECHO_SERVER_CPU=1 \
//! IOMAN_ECHO_PERF=1 IOMAN_ECHO_STRACE=1 IOMAN_ECHO_SERVERS=callback,ioman-async,\
//! ioman-async-thread,ioman-async@$BEFORE,ioman-async-thread@$BEFORE,async-io,tokio \
//! taskset -c 0 target/release/deps/async_echo-<hash>
//! IOMAN_ECHO_CALLGRIND=1 IOMAN_BENCH_ROUNDS=0 ...     # user-space instructions
//! ```
//!
//! | server, C = 100 / 1,000 | syscalls/trip | `epoll_ctl`/trip | context switches/trip | CPU vs callback (paired) | user instructions/trip |
//! |---|---|---|---|---|---|
//! | callback | 2.12 / 2.01 | 0 / 0 | 0.01 / 0.00 | 1 / 1 | 1,294 / 1,442 |
//! | ioman-async (`block_on`) | 2.04 / 2.12 | 0 / 0 | 0.00 / 0.01 | 1.02 / 1.09 | 1,863 / 1,839 |
//! | ioman-async (`block_on`), before | 2.06 / 2.04 | 0 / 0 | 0.00 / 0.00 | 1.05 / 1.06 | 1,809 / 1,784 |
//! | ioman-async-thread | **2.26 / 2.26** | **0 / 0** | 0.30 / 0.42 | **1.52 / 1.55** | **2,255 / 2,337** |
//! | ioman-async-thread, before | 4.33 / 4.57 | 2.00 / 2.00 (1 ADD + 1 DEL) | 0.11 / 0.42 | 1.95 / 1.99 | 3,092 / 3,137 |
//! | async-io | 5.25 / 5.04 | 1.09 / 1.01 | 0.01 / 0.00 | 1.42 / 1.37 | 3,091 / 3,478 |
//! | tokio current_thread | 2.05 / 2.05 | 0 / 0 | 0.00 / 0.00 | 1.08 / 1.01 | 1,777 / 1,777 |
//!
//! The syscalls are `sendto` and `recvfrom` (one each per trip for every server but
//! async-io, which reads until `WouldBlock` and re-arms its one-shot registration: 3
//! `recvfrom` and 1 `epoll_ctl` per trip) plus the loop's share of `epoll_wait`; for
//! `ioman-async-thread` also 0.23–0.26 `epoll_pwait2` and 0.04 `futex` per trip, the loop
//! thread's own wake-ups. The CPU ratios are medians of 7 paired rounds of 4 s on a shared
//! machine; other runs gave 1.03–1.05 (C = 100) and 0.93–1.18 (C = 1,000) for ioman-async,
//! 1.04–1.23 and 1.02–1.05 for tokio, so the two are within the noise of each other, and
//! the instruction counts put tokio 3–5 % ahead in user space. What is left of
//! `ioman-async-thread`'s cost is the hand-over between two threads sharing one core (a
//! context switch per 2–4 trips), not the registration. Instruction counts are the
//! server's whole user space in the window; ioman-async's own code is about 320 of them
//! per trip, the manager's 200, async-executor's with its queues about 480.

#![allow(missing_docs)]

use std::future::Future;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ioman::{EventManager, Interest, Lifetime, Readiness};
use ioman_bench::args::{Args, Mode, Opt};

const MSG: usize = 64;
const IDLE: Duration = Duration::from_secs(30);

/// CPU time (user + system) this process used so far, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

// ---------------------------------------------------------------------------------------
// Servers (each in a child process)

/// The callback server: one `Rearmable` registration per connection, re-armed after each
/// message; one timeout per connection, moved per message.
fn serve_callback(listener: TcpListener) -> io::Result<Arc<EventManager>> {
    let m = Arc::new(EventManager::new()?);
    listener.set_nonblocking(true)?;
    let lfd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    m.register_fd(lfd, Interest::READ, Lifetime::MultiShot, move |m, _, _| {
        while let Ok((s, _)) = listener.accept() {
            if s.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = s.set_nodelay(true);
            let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
            let mut conn = Some(s);
            let mut timer = None;
            let mut buf = [0u8; 4096];
            let r = m.register_fd(
                fd,
                Interest::READ,
                Lifetime::Rearmable,
                move |m: &EventManager, key, r: Readiness| {
                    if r.is_closed() {
                        return;
                    }
                    let Some(s) = conn.as_mut() else { return };
                    let mut close = false;
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                close = true;
                                break;
                            }
                            Ok(n) => {
                                if s.write_all(&buf[..n]).is_err() {
                                    close = true;
                                    break;
                                }
                                if n < buf.len() {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => {
                                close = true;
                                break;
                            }
                        }
                    }
                    if close {
                        if let Some(t) = timer.take() {
                            m.unregister_timeout(t);
                        }
                        if let Some(s) = conn.take() {
                            m.close_fd(s);
                        }
                        return;
                    }
                    match timer {
                        Some(t) => {
                            m.update_timeout(t, IDLE);
                        }
                        None => {
                            // Idle for 30 s: closed through the manager. (Never reached in
                            // the benchmark; it only has to be held and moved.)
                            let dup = s.try_clone().ok();
                            timer = m
                                .register_timeout(IDLE, move |_| {
                                    // The read side sees end of file and closes.
                                    if let Some(d) = dup {
                                        let _ = d.shutdown(std::net::Shutdown::Both);
                                    }
                                })
                                .ok();
                        }
                    }
                    let _ = m.rearm(key, Interest::READ);
                },
            );
            drop(r);
        }
    })?;
    Ok(m)
}

/// A read raced against an idle timer: `None` when the timer fired first.
async fn or_idle<F: Future + Unpin, T: Future + Unpin>(
    read: F,
    timer: &mut T,
) -> Option<F::Output> {
    let mut read = read;
    std::future::poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(r) = Pin::new(&mut read).poll(cx) {
            return Poll::Ready(Some(r));
        }
        match Pin::new(&mut *timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

async fn ioman_conn(mut s: ioman_async::Async<TcpStream>) {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.get_ref().set_nodelay(true);
    let mut buf = [0u8; 4096];
    let mut idle = ioman_async::Timer::after_with(s.manager(), IDLE);
    loop {
        match or_idle(s.read(&mut buf), &mut idle).await {
            Some(Ok(n)) if n > 0 => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                idle.set_after(IDLE);
            }
            _ => return,
        }
    }
}

fn serve_ioman_async(listener: TcpListener, own_thread: bool) -> io::Result<()> {
    let listener = ioman_async::Async::new(listener)?;
    let ex = async_executor::LocalExecutor::new();
    let server = ex.run(async {
        loop {
            match listener.accept().await {
                Ok((s, _)) => ex.spawn(ioman_conn(s)).detach(),
                Err(_) => return,
            }
        }
    });
    if own_thread {
        futures::executor::block_on(server);
    } else {
        ioman_async::block_on(server);
    }
    Ok(())
}

async fn async_io_conn(mut s: async_io::Async<TcpStream>) {
    use futures::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.get_ref().set_nodelay(true);
    let mut buf = [0u8; 4096];
    let mut idle = async_io::Timer::after(IDLE);
    loop {
        match or_idle(s.read(&mut buf), &mut idle).await {
            Some(Ok(n)) if n > 0 => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                idle.set_after(IDLE);
            }
            _ => return,
        }
    }
}

fn serve_async_io(listener: TcpListener) -> io::Result<()> {
    let listener = async_io::Async::new(listener)?;
    let ex = async_executor::LocalExecutor::new();
    async_io::block_on(ex.run(async {
        loop {
            match listener.accept().await {
                Ok((s, _)) => ex.spawn(async_io_conn(s)).detach(),
                Err(_) => return,
            }
        }
    }));
    Ok(())
}

async fn tokio_conn(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; 4096];
    let idle = tokio::time::sleep(IDLE);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            biased;
            r = s.read(&mut buf) => match r {
                Ok(n) if n > 0 => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                }
                _ => return,
            },
            _ = &mut idle => return,
        }
    }
}

fn serve_tokio(listener: TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (s, _) = listener.accept().await?;
            tokio::spawn(tokio_conn(s));
        }
    })
}

/// The server role: serves on a thread until stdin closes, then prints its CPU time and
/// (for the ioman servers) the manager's backend calls.
fn server_role() -> io::Result<()> {
    let kind = std::env::var("IOMAN_ECHO_SERVER").unwrap_or_default();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut manager = None;
    match kind.as_str() {
        "callback" => {
            let m = serve_callback(listener)?;
            manager = Some(Arc::clone(&m));
            std::thread::spawn(move || m.run());
        }
        "ioman-async" | "ioman-async-thread" => {
            manager = Some(ioman_async::global_manager()?);
            let own = kind == "ioman-async-thread";
            std::thread::spawn(move || serve_ioman_async(listener, own));
        }
        "async-io" => {
            std::thread::spawn(move || serve_async_io(listener));
        }
        "tokio" => {
            std::thread::spawn(move || serve_tokio(listener));
        }
        other => return Err(io::Error::other(format!("unknown server {other:?}"))),
    }
    println!("addr {addr}");
    io::stdout().flush()?;
    // "start" opens the measured window, "stop" closes it (or end of input).
    let mut lines = io::stdin().lock().lines();
    let _ = lines.next();
    let before = cpu_time();
    let stats_before = manager.as_ref().map(|m| m.stats());
    let _ = lines.next();
    let used = cpu_time().saturating_sub(before);
    println!("cpu {}", used.as_secs_f64());
    if let (Some(m), Some(b)) = (manager, stats_before) {
        let s = m.stats();
        println!(
            "ctl {} {} {} {}",
            s.backend_registers - b.backend_registers,
            s.backend_modifies - b.backend_modifies,
            s.backend_deregisters - b.backend_deregisters,
            s.polls - b.polls
        );
    } else {
        println!("ctl -");
    }
    io::stdout().flush()?;
    // Exit without tearing the servers down (their threads are blocked in their loops).
    std::process::exit(0);
}

// ---------------------------------------------------------------------------------------
// The load generator (this process): C closed-loop connections on one callback manager.

struct Load {
    manager: Arc<EventManager>,
    thread: std::thread::JoinHandle<io::Result<()>>,
    trips: Arc<AtomicU64>,
}

fn start_load(addr: SocketAddr, clients: usize) -> io::Result<Load> {
    let m = Arc::new(EventManager::new()?);
    let trips = Arc::new(AtomicU64::new(0));
    for _ in 0..clients {
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        s.write_all(&[7u8; MSG])?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        let trips = Arc::clone(&trips);
        let mut got = 0usize;
        let mut buf = [0u8; MSG];
        let mut conn = Some(s);
        m.register_fd(fd, Interest::READ, Lifetime::Rearmable, move |m, key, r| {
            if r.is_closed() {
                return;
            }
            let Some(s) = conn.as_mut() else { return };
            loop {
                match s.read(&mut buf[got..]) {
                    Ok(0) => {
                        if let Some(s) = conn.take() {
                            m.close_fd(s);
                        }
                        return;
                    }
                    Ok(n) => {
                        got += n;
                        if got == MSG {
                            got = 0;
                            trips.fetch_add(1, Ordering::Relaxed);
                            if s.write_all(&[7u8; MSG]).is_err() {
                                return;
                            }
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => return,
                }
            }
            let _ = m.rearm(key, Interest::READ);
        })?;
    }
    let m2 = Arc::clone(&m);
    let thread = std::thread::spawn(move || m2.run());
    Ok(Load {
        manager: m,
        thread,
        trips,
    })
}

impl Load {
    fn stop(self) -> u64 {
        self.manager.shutdown();
        let _ = self.thread.join();
        self.trips.load(Ordering::Relaxed)
    }
}

struct Point {
    trips: u64,
    secs: f64,
    cpu: f64,
    ctl: Option<[u64; 4]>,
    syscalls: Vec<(String, u64)>,
}

/// What a measurement counts besides CPU time and the manager's stats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Count {
    /// Nothing more.
    Cpu,
    /// Syscalls by name, `strace -c` attached to the server's threads (slows them down).
    Strace,
    /// Syscalls, context switches and a few syscalls by name, `perf stat` on tracepoints
    /// (barely slows the server: its loop batches events as it does unobserved).
    Perf,
    /// User-space instructions, callgrind.
    Callgrind,
}

/// The `perf stat` events of `Count::Perf`: every syscall, then a few by name.
const PERF_EVENTS: &[&str] = &[
    "raw_syscalls:sys_enter",
    "context-switches",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_epoll_ctl",
    "syscalls:sys_enter_epoll_pwait2",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_epoll_pwait",
    "syscalls:sys_enter_futex",
    "syscalls:sys_enter_read",
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_poll",
];

/// Runs one server in a child process under `clients` connections for `secs` seconds.
/// `kind@EXE` runs the server `kind` from the binary `EXE` (another build of this bench),
/// for before/after ratios measured in the same rounds.
fn measure(kind: &str, clients: usize, secs: f64, count: Count) -> io::Result<Point> {
    let (strace, callgrind) = (count == Count::Strace, count == Count::Callgrind);
    let (kind, exe) = match kind.split_once('@') {
        Some((k, e)) => (k, std::path::PathBuf::from(e)),
        None => (kind, std::env::current_exe()?),
    };
    let cg_file = std::env::temp_dir().join(format!(
        "ioman-echo-{}-{kind}-{}.cg",
        std::process::id(),
        label_suffix(&exe)
    ));
    let mut cmd = if callgrind {
        let mut c = Command::new("valgrind");
        c.arg("--tool=callgrind")
            .arg("--instr-atstart=no")
            .arg(if std::env::var_os("IOMAN_ECHO_CACHESIM").is_some() {
                "--cache-sim=yes"
            } else {
                "--cache-sim=no"
            })
            .arg(format!("--callgrind-out-file={}", cg_file.display()))
            .arg(&exe)
            .stderr(Stdio::null());
        c
    } else if let Ok(cpu) = std::env::var("IOMAN_ECHO_SERVER_CPU") {
        // Pinned, so the server's CPU time does not depend on where the scheduler puts it.
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let mut child = cmd
        .env("IOMAN_ECHO_ROLE", "server")
        .env("IOMAN_ECHO_SERVER", kind)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("stdin"))?;
    let mut out = BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("stdout"))?,
    );
    let mut line = String::new();
    out.read_line(&mut line)?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("addr ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other(format!("server said {line:?}")))?;
    let load = start_load(addr, clients)?;
    // Warm up: every connection accepted, its task and timer made, caches warm.
    std::thread::sleep(Duration::from_millis(500));
    let trace_file = std::env::temp_dir().join(format!("ioman-echo-{}.strace", child.id()));
    let mut tracer = None;
    let perf_file = std::env::temp_dir().join(format!("ioman-echo-{}.perf", child.id()));
    if count == Count::Perf {
        let mut c = Command::new("perf");
        c.arg("stat").arg("-x,").arg("-o").arg(&perf_file);
        for e in PERF_EVENTS {
            c.arg("-e").arg(e);
        }
        c.arg("-p").arg(child.id().to_string());
        tracer = Some(c.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
        std::thread::sleep(Duration::from_millis(300));
    }
    if strace {
        // Attach to every thread of the server for the measured window only.
        let mut c = Command::new("strace");
        c.arg("-c").arg("-o").arg(&trace_file);
        for t in std::fs::read_dir(format!("/proc/{}/task", child.id()))? {
            c.arg("-p").arg(t?.file_name());
        }
        tracer = Some(c.stderr(Stdio::null()).spawn()?);
        std::thread::sleep(Duration::from_millis(300));
    }
    let toggle = |on: &str| {
        let _ = Command::new("callgrind_control")
            .arg("-i")
            .arg(on)
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    if callgrind {
        toggle("on");
    }
    writeln!(stdin, "start")?;
    let t0 = load.trips.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let mut syscalls = Vec::new();
    if let Some(mut t) = tracer {
        // Detached before the server is told to exit: a multi-threaded process that exits
        // while `strace -p` is attached to its threads can leave strace waiting forever.
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(t.id().to_string())
            .status();
        let _ = t.wait();
        if strace {
            syscalls = parse_strace(&std::fs::read_to_string(&trace_file).unwrap_or_default());
            let _ = std::fs::remove_file(&trace_file);
        } else {
            syscalls = parse_perf(&std::fs::read_to_string(&perf_file).unwrap_or_default());
            let _ = std::fs::remove_file(&perf_file);
        }
    }
    if callgrind {
        toggle("off");
    }
    writeln!(stdin, "stop")?;
    let t1 = load.trips.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let mut cpu = 0.0;
    let mut ctl = None;
    for _ in 0..2 {
        line.clear();
        out.read_line(&mut line)?;
        if let Some(c) = line.trim().strip_prefix("cpu ") {
            cpu = c.parse().unwrap_or(0.0);
        } else if let Some(c) = line.trim().strip_prefix("ctl ") {
            let v: Vec<u64> = c.split(' ').filter_map(|x| x.parse().ok()).collect();
            if v.len() == 4 {
                ctl = Some([v[0], v[1], v[2], v[3]]);
            }
        }
    }
    let _ = child.wait();
    load.stop();
    if callgrind {
        // Instructions executed in user space while collection was on.
        let text = std::fs::read_to_string(&cg_file).unwrap_or_default();
        if std::env::var_os("IOMAN_ECHO_CALLGRIND_KEEP").is_some() {
            println!("  (profile kept: {})", cg_file.display());
        } else {
            let _ = std::fs::remove_file(&cg_file);
        }
        // `events: Ir [Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw]` (with --cache-sim) names the
        // columns of `totals:`.
        let line = |prefix: &str| -> Vec<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let (names, totals) = (line("events:"), line("totals:"));
        syscalls = names
            .into_iter()
            .zip(totals)
            .filter_map(|(n, v)| Some((n, v.parse().ok()?)))
            .collect();
    }
    Ok(Point {
        trips: t1 - t0,
        secs: elapsed,
        cpu,
        ctl,
        syscalls,
    })
}

/// The file name of a server binary, for labels and file names.
fn label_suffix(exe: &std::path::Path) -> String {
    exe.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// How a server is named in the tables: `kind`, or `kind@file` for another binary's.
fn label(kind: &str) -> String {
    match kind.split_once('@') {
        Some((k, e)) => format!("{k}@{}", label_suffix(std::path::Path::new(e))),
        None => kind.to_string(),
    }
}

/// `strace -c` summary lines: `% time seconds usecs/call calls [errors] syscall`.
fn parse_strace(text: &str) -> Vec<(String, u64)> {
    let mut v = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let name = f[f.len() - 1].to_string();
        if let Ok(calls) = f[3].parse::<u64>() {
            v.push((name, calls));
        }
    }
    v
}

/// `perf stat -x,` lines: `count,unit,event,...`; events as `PERF_EVENTS` names them, with
/// the `syscalls:sys_enter_` prefix dropped.
fn parse_perf(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = f.first()?.parse().ok()?;
            let name = f.get(2)?;
            let name = name.strip_prefix("syscalls:sys_enter_").unwrap_or(name);
            let name = if name == "raw_syscalls:sys_enter" {
                "total"
            } else {
                name
            };
            Some((name.to_string(), n))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

const OPTS: &[Opt] = &[
    Opt::value(
        "conns",
        "IOMAN_BENCH_CLIENTS",
        "connection counts, one table each (default 100,1000)",
    ),
    Opt::value(
        "seconds",
        "IOMAN_BENCH_SECONDS",
        "measured window per server, s (default 3)",
    ),
    Opt::value(
        "rounds",
        "IOMAN_BENCH_ROUNDS",
        "rounds per table, 0 for the counts alone (default 3)",
    ),
    Opt::value(
        "servers",
        "IOMAN_ECHO_SERVERS",
        "servers, kind or kind@EXE (default callback,ioman-async,ioman-async-thread,async-io,tokio)",
    ),
    Opt::flag(
        "strace",
        "IOMAN_ECHO_STRACE",
        "also count syscalls per round trip with strace -c",
    ),
    Opt::flag(
        "perf",
        "IOMAN_ECHO_PERF",
        "also count syscalls and context switches with perf stat",
    ),
    Opt::flag(
        "callgrind",
        "IOMAN_ECHO_CALLGRIND",
        "also count user-space instructions with callgrind",
    ),
];

/// The reference server of every ratio.
const REFERENCE: &str = "callback";

fn bench_name(kind: &str, conns: usize) -> String {
    format!("async_echo/{kind}/{conns}")
}

fn echo() -> io::Result<()> {
    let args = Args::parse("async_echo", OPTS);
    let clients = args.list("conns", &[100, 1000]);
    let servers: Vec<String> = args
        .text("servers")
        .unwrap_or_else(|| "callback,ioman-async,ioman-async-thread,async-io,tokio".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let names = clients
        .iter()
        .flat_map(|&c| servers.iter().map(move |k| bench_name(k, c)));
    let Some(chosen) = args.select(names) else {
        return Ok(());
    };
    let test = args.mode() == Mode::Test;
    let secs = if test {
        0.1
    } else {
        args.num("seconds", 3.0f64).max(0.001)
    };
    let rounds = if test { 1 } else { args.num("rounds", 3usize) };
    let strace = args.flag("strace");
    let callgrind = args.flag("callgrind");
    let perf = args.flag("perf");
    for &c in &clients {
        // The selected servers of this C, and the reference beside them.
        let picked = |k: &String| chosen.contains(&bench_name(k, c));
        if !servers.iter().any(picked) {
            continue;
        }
        let mut kinds: Vec<String> = servers
            .iter()
            .filter(|k| *k == REFERENCE || picked(k))
            .cloned()
            .collect();
        if !kinds.iter().any(|k| k == REFERENCE) {
            kinds.insert(0, REFERENCE.to_string());
        }
        println!(
            "\n## Echo, {MSG}-byte messages, C = {c}, 30 s idle timeout reset per message; \
             server CPU per round trip, median of {rounds} rounds of {secs} s"
        );
        println!(
            "{:<30} | {:>10} | {:>13} | {:>12} | {:>26}",
            "server", "trips/s", "CPU us/trip", "vs callback", "epoll_ctl/trip (ADD MOD DEL)"
        );
        // ratios[k][round]: CPU per trip of kind k over the callback server's in that round.
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
        let mut rate: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
        let mut ratio: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
        let mut ctl: Vec<Option<[f64; 4]>> = vec![None; kinds.len()];
        for _ in 0..rounds {
            let mut base = None;
            let mut this_round = Vec::new();
            for (k, kind) in kinds.iter().enumerate() {
                let p = measure(kind, c, secs, Count::Cpu)?;
                let per = p.cpu * 1e6 / p.trips.max(1) as f64;
                if kind == REFERENCE {
                    base = Some(per);
                }
                this_round.push(per);
                cpu[k].push(per);
                rate[k].push(p.trips as f64 / p.secs);
                if let Some(x) = p.ctl {
                    let t = p.trips.max(1) as f64;
                    ctl[k] = Some([
                        x[0] as f64 / t,
                        x[1] as f64 / t,
                        x[2] as f64 / t,
                        x[3] as f64 / t,
                    ]);
                }
            }
            for (k, per) in this_round.into_iter().enumerate() {
                ratio[k].push(base.map_or(f64::NAN, |b| per / b));
            }
        }
        for (k, kind) in kinds.iter().enumerate().filter(|_| rounds > 0) {
            let ctl = ctl[k].map_or("-".to_string(), |x| {
                format!("{:.3} {:.3} {:.3} (polls {:.2})", x[0], x[1], x[2], x[3])
            });
            println!(
                "{:<30} | {:>10.0} | {:>13.3} | {:>11.3}x | {:>26}",
                label(kind),
                median(rate[k].clone()),
                median(cpu[k].clone()),
                median(ratio[k].clone()),
                ctl
            );
        }
        if strace {
            println!(
                "\nsyscalls per round trip (strace -c on the server's threads, C = {c}, {secs} s, \
                 per sendto):"
            );
            for kind in &kinds {
                let p = measure(kind, c, secs, Count::Strace)?;
                // Per echoed message: every server sends each echo with one `sendto`, so the
                // count of `sendto` calls is the number of round trips strace saw (the
                // tracer's window is not exactly the load generator's).
                let t = p
                    .syscalls
                    .iter()
                    .find(|(n, _)| n == "sendto" || n == "write")
                    .map_or(1.0, |(_, c)| *c as f64);
                let total: u64 = p
                    .syscalls
                    .iter()
                    .filter(|(n, _)| n != "total")
                    .map(|(_, c)| c)
                    .sum();
                let mut top: Vec<_> = p.syscalls.iter().filter(|(n, _)| n != "total").collect();
                top.sort_by_key(|x| std::cmp::Reverse(x.1));
                let parts: Vec<String> = top
                    .iter()
                    .take(6)
                    .map(|(n, c)| format!("{n} {:.3}", *c as f64 / t))
                    .collect();
                println!(
                    "  {:<30} total {:.3}: {}",
                    label(kind),
                    total as f64 / t,
                    parts.join(", ")
                );
            }
        }
        if perf {
            println!(
                "\nsyscalls and context switches per round trip (perf stat on the server's \
                 tracepoints, C = {c}, {secs} s, per sendto):"
            );
            for kind in &kinds {
                let p = measure(kind, c, secs, Count::Perf)?;
                let get = |n: &str| p.syscalls.iter().find(|(x, _)| x == n).map_or(0, |x| x.1);
                // Per echoed message, as for strace.
                let t = get("sendto").max(1) as f64;
                let waits = get("epoll_pwait2") + get("epoll_wait") + get("epoll_pwait");
                let named = [
                    ("recvfrom", get("recvfrom")),
                    ("epoll_ctl", get("epoll_ctl")),
                    ("epoll waits", waits),
                    ("futex", get("futex")),
                    ("read", get("read")),
                    ("write", get("write")),
                    ("poll", get("poll")),
                ];
                let parts: Vec<String> = named
                    .iter()
                    .map(|(n, c)| format!("{n} {:.3}", *c as f64 / t))
                    .collect();
                println!(
                    "  {:<30} total {:.3}, context switches {:.3}: sendto 1, {}",
                    label(kind),
                    get("total") as f64 / t,
                    get("context-switches") as f64 / t,
                    parts.join(", ")
                );
            }
        }
        if callgrind {
            println!(
                "\nuser-space instructions per round trip (callgrind on the server, C = {c}, \
                 {secs} s, instrumentation on during the window only):"
            );
            let mut base = None;
            for kind in &kinds {
                let p = measure(kind, c, secs, Count::Callgrind)?;
                let t = p.trips.max(1) as f64;
                let ins = p.syscalls.first().map_or(0, |x| x.1) as f64 / t;
                if kind == REFERENCE {
                    base = Some(ins);
                }
                let misses: Vec<String> = p
                    .syscalls
                    .iter()
                    .skip(1)
                    .filter(|(n, _)| n.starts_with('D') && n.ends_with("mr") || n.ends_with("mw"))
                    .map(|(n, v)| format!("{n} {:.2}", *v as f64 / t))
                    .collect();
                println!(
                    "  {:<30} {:>9.0} instructions/trip ({} trips){}{}",
                    label(kind),
                    ins,
                    p.trips,
                    base.map_or(String::new(), |b| format!(", {:.3}x callback", ins / b)),
                    if misses.is_empty() {
                        String::new()
                    } else {
                        format!("; misses/trip: {}", misses.join(", "))
                    }
                );
            }
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    if std::env::var("IOMAN_ECHO_ROLE").as_deref() == Ok("server") {
        return server_role();
    }
    echo()
}
