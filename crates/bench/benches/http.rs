//! End-to-end keep-alive HTTP benchmarks: the HTTP demo's ioman server (`ioman-examples`, the
//! library behind the `http_server` example) against a tokio server and a hand-written mio
//! loop speaking the same protocol (its `http` module) with the same load generator (its
//! `loadgen`, an ioman closed-loop client).
//!
//! A throughput run, not a criterion statistic: a custom `main` prints tables.
//!
//! # Names, arguments
//!
//! The benchmarks, one per point of a table (SERVER `ioman`, `tokio` or `mio`):
//!
//! | table | names |
//! |---|---|
//! | keep-alive | `http/keepalive/SERVER/C`, C from `--clients` |
//! | CPU per request | `http/cpu/SERVER` (C = 100) |
//! | idle connections | `http/idle/ioman/I`, I from `--idle` |
//! | multicore | `http/multicore/ioman/T`, `http/multicore/tokio/T`, T from `--threads` |
//!
//! A filter runs the names that contain it; the command line is read as criterion reads its
//! own (`ioman_bench::args`: `-- --list` prints the names, `-- --help` the options,
//! criterion's own options are ignored). A table where nothing is selected is not printed;
//! the "vs first" column compares with the table's first selected server.
//!
//! ```text
//! cargo bench -p ioman-bench --bench http                          # every table
//! cargo bench -p ioman-bench --bench http -- keepalive --seconds 5 # the keep-alive table
//! cargo bench -p ioman-bench --bench http -- 'keepalive/ioman/|cpu/' --rounds 1
//! cargo bench -p ioman-bench --bench http -- multicore --threads 1,2,4,8,16 --client-threads 8
//! cargo bench -p ioman-bench --bench http -- idle --idle 0,1000,10000,18000
//! ```
//!
//! | argument | environment | default |
//! |---|---|---|
//! | `--seconds S` | `IOMAN_BENCH_SECONDS` | 3 (per point) |
//! | `--rounds N` | `IOMAN_BENCH_ROUNDS` | 3 (rounds per point; medians are printed) |
//! | `--clients LIST` | `IOMAN_BENCH_CLIENTS` | `100,1000` (keep-alive connections) |
//! | `--idle LIST` | `IOMAN_BENCH_IDLE` | `0,1000,10000,18000` (idle connections) |
//! | `--threads LIST` | `IOMAN_BENCH_THREADS` | `1,2` (multicore: managers / workers) |
//! | `--client-threads N` | `IOMAN_BENCH_CLIENT_THREADS` | 1 (multicore: load generator threads) |
//! | `--servers LIST` | `IOMAN_BENCH_SERVERS` | all (keep-alive: the servers whose names start so) |
//! | `--only TABLE` | `IOMAN_BENCH_ONLY` | all (`keepalive`, `cpu`, `idle` or `multicore`) |
//!
//! An argument wins over its variable; `--servers` and `--only` narrow the names before the
//! filter does. Without `--bench` (`cargo test --benches`) each selected server only answers
//! a few requests, to show that it works.
//!
//! 1. **Keep-alive**, C = 100 and 1,000 (`--clients`): one server thread each (ioman
//!    `EventManager`, tokio current-thread runtime, mio edge-triggered loop); requests/s and
//!    p99 latency. The tokio server wraps each read in `tokio::time::timeout` (the equivalent
//!    of ioman's per-connection idle timeout pushed on every request); the mio loop has no
//!    timers at all, so it is the floor. Then the same servers' CPU time per request, each in
//!    a child process (this binary with `IOMAN_HTTP_BENCH_ROLE=server`): a figure that other
//!    load on the machine disturbs less than requests/s.
//! 2. **Idle connections** (the 2010 paper's dead-connection benchmark): C = 100 active
//!    connections while I idle ones are held, each with its own server-side timeout. The
//!    client (load and idle connections) runs in a child process (this binary re-executed with
//!    `IOMAN_HTTP_BENCH_ROLE=client`) because one process may hold only 20,000 fds. Memory per
//!    idle connection is the server's VmRSS growth while they are opened, divided by I (user
//!    memory only: the kernel's socket buffers are not in VmRSS).
//! 3. **Multicore**: C = 1,000 against an ioman `Pool` of 1 and 2 managers and a tokio
//!    multi-thread runtime of 1 and 2 workers.
#![allow(missing_docs)]

use ioman_bench::args::{Args, Mode, Opt};
use ioman_examples::{http, loadgen, server};

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const OPTS: &[Opt] = &[
    Opt::value(
        "seconds",
        "IOMAN_BENCH_SECONDS",
        "seconds per point (default 3)",
    ),
    Opt::value(
        "rounds",
        "IOMAN_BENCH_ROUNDS",
        "rounds per point, medians printed (default 3)",
    ),
    Opt::value(
        "clients",
        "IOMAN_BENCH_CLIENTS",
        "keep-alive connection counts (default 100,1000)",
    ),
    Opt::value(
        "idle",
        "IOMAN_BENCH_IDLE",
        "idle connection counts (default 0,1000,10000,18000)",
    ),
    Opt::value(
        "threads",
        "IOMAN_BENCH_THREADS",
        "multicore: manager/worker counts (default 1,2)",
    ),
    Opt::value(
        "client-threads",
        "IOMAN_BENCH_CLIENT_THREADS",
        "multicore: load generator threads (default 1)",
    ),
    Opt::value(
        "servers",
        "IOMAN_BENCH_SERVERS",
        "keep-alive: these servers only (ioman,tokio,mio)",
    ),
    Opt::value(
        "only",
        "IOMAN_BENCH_ONLY",
        "one table: keepalive, cpu, idle or multicore",
    ),
];

/// What a run measures: its counts and the selected benchmarks.
struct Ctx {
    secs: u64,
    rounds: usize,
    clients: Vec<usize>,
    idle: Vec<usize>,
    threads: Vec<usize>,
    client_threads: usize,
    chosen: Vec<String>,
}

impl Ctx {
    fn has(&self, name: &str) -> bool {
        self.chosen.iter().any(|n| n == name)
    }
}

/// The servers of the keep-alive and CPU tables: display name, name part, start.
const SERVERS: [(&str, &str, Start); 3] = [
    ("ioman EventManager", "ioman", || start_ioman(1)),
    ("tokio current_thread", "tokio", || start_tokio(0)),
    ("mio loop (edge)", "mio", start_mio),
];

/// Every benchmark name the counts give, the tables narrowed by `--only` and the keep-alive
/// servers by `--servers`.
fn names(args: &Args, ctx: &Ctx) -> Vec<String> {
    let only = args.text("only").unwrap_or_default();
    let servers = args.text("servers").unwrap_or_default();
    let table = |t: &str| only.is_empty() || only == t;
    let mut v = Vec::new();
    if table("keepalive") {
        for &c in &ctx.clients {
            for (_, id, _) in SERVERS {
                if servers.is_empty() || servers.split(',').any(|s| id.starts_with(s.trim())) {
                    v.push(format!("http/keepalive/{id}/{c}"));
                }
            }
        }
    }
    if table("cpu") {
        v.extend(SERVERS.iter().map(|(_, id, _)| format!("http/cpu/{id}")));
    }
    if table("idle") {
        v.extend(ctx.idle.iter().map(|i| format!("http/idle/ioman/{i}")));
    }
    if table("multicore") {
        for &t in &ctx.threads {
            v.push(format!("http/multicore/ioman/{t}"));
            v.push(format!("http/multicore/tokio/{t}"));
        }
    }
    v
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The server's resident memory in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Servers under test

enum Running {
    Ioman(server::Server),
    Other {
        stop: Box<dyn FnOnce() + Send>,
        thread: JoinHandle<()>,
    },
}

struct Under {
    addr: SocketAddr,
    running: Running,
}

impl Under {
    fn stop(self) {
        match self.running {
            Running::Ioman(s) => s.shutdown(),
            Running::Other { stop, thread } => {
                stop();
                let _ = thread.join();
            }
        }
    }
}

fn start_ioman(threads: usize) -> io::Result<Under> {
    let s = server::Server::start(server::Config {
        addr: localhost(),
        threads,
        idle_timeout: IDLE_TIMEOUT,
        clock: None,
    })?;
    Ok(Under {
        addr: s.addr(),
        running: Running::Ioman(s),
    })
}

/// One tokio connection: the same parse-and-answer step as the ioman server, each read under
/// the idle timeout.
async fn tokio_conn(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_nodelay(true);
    let mut scratch = vec![0u8; http::MAX_REQUEST];
    let mut input: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let room = http::MAX_REQUEST - input.len();
        let n = match tokio::time::timeout(IDLE_TIMEOUT, s.read(&mut scratch[..room])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => n,
        };
        let keep = if input.is_empty() {
            let (used, _, keep) = http::serve(&scratch[..n], &mut out);
            if keep && used < n {
                input.extend_from_slice(&scratch[used..n]);
            }
            keep
        } else {
            input.extend_from_slice(&scratch[..n]);
            let (used, _, keep) = http::serve(&input, &mut out);
            input.drain(..used);
            keep
        };
        if !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if !keep {
            return;
        }
    }
}

/// tokio: `workers == 0` is the current-thread runtime, else a multi-thread one.
fn start_tokio(workers: usize) -> io::Result<Under> {
    let std_listener = TcpListener::bind(localhost())?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = thread::spawn(move || {
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(_) => return,
            };
            let accept = async {
                loop {
                    if let Ok((s, _)) = listener.accept().await {
                        tokio::spawn(tokio_conn(s));
                    }
                }
            };
            tokio::select! {
                _ = accept => {}
                _ = rx => {}
            }
        });
        // Dropping the runtime drops every connection task.
        drop(rt);
    });
    Ok(Under {
        addr,
        running: Running::Other {
            stop: Box::new(move || {
                let _ = tx.send(());
            }),
            thread,
        },
    })
}

struct MioConn {
    s: mio::net::TcpStream,
    input: Vec<u8>,
    out: Vec<u8>,
    closing: bool,
}

/// Serves one mio connection after an edge: flush, then read until `WouldBlock`. Returns
/// whether to close it.
fn mio_drive(c: &mut MioConn, scratch: &mut [u8]) -> bool {
    loop {
        while !c.out.is_empty() {
            match c.s.write(&c.out) {
                Ok(0) => return true,
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        if c.closing {
            return true;
        }
        let room = http::MAX_REQUEST - c.input.len();
        let n = match c.s.read(&mut scratch[..room]) {
            Ok(0) => return true,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        };
        let keep = if c.input.is_empty() {
            let (used, _, keep) = http::serve(&scratch[..n], &mut c.out);
            if keep && used < n {
                c.input.extend_from_slice(&scratch[used..n]);
            }
            keep
        } else {
            c.input.extend_from_slice(&scratch[..n]);
            let (used, _, keep) = http::serve(&c.input, &mut c.out);
            c.input.drain(..used);
            keep
        };
        c.closing = !keep;
    }
}

/// A hand-written mio loop: one thread, edge-triggered, no timers.
fn start_mio() -> io::Result<Under> {
    use mio::{Events, Interest, Poll, Token, Waker};
    const LISTENER: Token = Token(usize::MAX - 1);
    const WAKE: Token = Token(usize::MAX - 2);
    let std_listener = TcpListener::bind(localhost())?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let mut listener = mio::net::TcpListener::from_std(std_listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    // The loop keeps the waker's fd open: closing it would drop a wake still queued in epoll.
    let keep_waker = Arc::clone(&waker);
    let thread = thread::spawn(move || {
        let _keep_waker = keep_waker;
        let mut events = Events::with_capacity(1024);
        let mut conns: Vec<Option<MioConn>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut scratch = vec![0u8; http::MAX_REQUEST];
        while !stop2.load(Ordering::Relaxed) {
            if poll.poll(&mut events, None).is_err() {
                continue;
            }
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
                                if poll
                                    .registry()
                                    .register(
                                        &mut s,
                                        Token(i),
                                        Interest::READABLE | Interest::WRITABLE,
                                    )
                                    .is_ok()
                                {
                                    conns[i] = Some(MioConn {
                                        s,
                                        input: Vec::new(),
                                        out: Vec::new(),
                                        closing: false,
                                    });
                                } else {
                                    free.push(i);
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    },
                    Token(i) => {
                        let close = match conns.get_mut(i).and_then(Option::as_mut) {
                            Some(c) => mio_drive(c, &mut scratch),
                            None => false,
                        };
                        if close {
                            if let Some(mut c) = conns[i].take() {
                                let _ = poll.registry().deregister(&mut c.s);
                            }
                            free.push(i);
                        }
                    }
                }
            }
        }
    });
    Ok(Under {
        addr,
        running: Running::Other {
            stop: Box::new(move || {
                stop.store(true, Ordering::SeqCst);
                let _ = waker.wake();
            }),
            thread,
        },
    })
}

// ---------------------------------------------------------------------------------------
// Measurements

struct Point {
    rate: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the in-process closed loop for `secs` against `under`, then stops it.
fn measure(under: Under, clients: usize, secs: u64) -> io::Result<Point> {
    measure_with(under, clients, 1, secs)
}

fn measure_with(
    under: Under,
    clients: usize,
    client_threads: usize,
    secs: u64,
) -> io::Result<Point> {
    let load = loadgen::Load::start(under.addr, clients, client_threads)?;
    thread::sleep(Duration::from_secs(secs));
    let r = load.stop();
    under.stop();
    Ok(Point {
        rate: r.rate(),
        p50: r.latency.quantile(0.5),
        p99: r.latency.quantile(0.99),
        errors: r.errors,
    })
}

/// The median of each figure over several rounds (the rounds interleave the servers, so a
/// burst of load from elsewhere on the machine does not land on one server only).
fn median(points: &[Point]) -> Point {
    let pick = |f: &dyn Fn(&Point) -> f64| {
        let mut v: Vec<f64> = points.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Point {
        rate: pick(&|p| p.rate),
        p50: Duration::from_secs_f64(pick(&|p| p.p50.as_secs_f64())),
        p99: Duration::from_secs_f64(pick(&|p| p.p99.as_secs_f64())),
        errors: points.iter().map(|p| p.errors).sum(),
    }
}

type Start = fn() -> io::Result<Under>;

fn keepalive(ctx: &Ctx) -> io::Result<()> {
    let (rounds, secs) = (ctx.rounds, ctx.secs);
    let mut header = false;
    for &clients in &ctx.clients {
        let chosen: Vec<(&str, Start)> = SERVERS
            .into_iter()
            .filter(|(_, id, _)| ctx.has(&format!("http/keepalive/{id}/{clients}")))
            .map(|(name, _, start)| (name, start))
            .collect();
        if chosen.is_empty() {
            continue;
        }
        if !header {
            header = true;
            println!(
                "\n## Keep-alive HTTP, one server thread, 1 client thread; median of {rounds} \
                 rounds of {secs} s per point (errors: total)"
            );
            println!(
                "{:>7} | {:<22} | {:>10} | {:>8} | {:>8} | {:>6} | {:>9}",
                "C", "server", "req/s", "p50 ms", "p99 ms", "errors", "vs first"
            );
        }
        let mut points: Vec<Vec<Point>> = chosen.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (k, (_, start)) in chosen.iter().enumerate() {
                points[k].push(measure(start()?, clients, secs)?);
            }
        }
        let mut first_rate = 0.0;
        for (k, (name, _)) in chosen.iter().enumerate() {
            let p = median(&points[k]);
            if first_rate == 0.0 {
                first_rate = p.rate;
            }
            println!(
                "{:>7} | {:<22} | {:>10.0} | {:>8.3} | {:>8.3} | {:>6} | {:>8.2}x",
                clients,
                name,
                p.rate,
                ms(p.p50),
                ms(p.p99),
                p.errors,
                p.rate / first_rate
            );
        }
    }
    Ok(())
}

fn multicore(ctx: &Ctx) -> io::Result<()> {
    let clients = 1000;
    let (rounds, secs, client_threads) = (ctx.rounds, ctx.secs, ctx.client_threads);
    // A bigger machine: --threads 1,2,4,8,16 --client-threads 8.
    type StartN = fn(usize) -> io::Result<Under>;
    let servers: [(&str, &str, StartN); 2] = [
        ("ioman (1 manager / Pool)", "ioman", start_ioman),
        ("tokio multi_thread", "tokio", start_tokio),
    ];
    // (thread count, server) pairs selected, in table order.
    let cells: Vec<(usize, usize)> = ctx
        .threads
        .iter()
        .flat_map(|&t| (0..servers.len()).map(move |k| (t, k)))
        .filter(|&(t, k)| ctx.has(&format!("http/multicore/{}/{t}", servers[k].1)))
        .collect();
    if cells.is_empty() {
        return Ok(());
    }
    println!(
        "\n## Multicore keep-alive HTTP, C = {clients}, {client_threads} client thread(s), \
         median of {rounds} rounds of {secs} s per point (client and server share this \
         machine's {} cores)",
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:>7} | {:<26} | {:>10} | {:>8} | {:>10}",
        "threads", "server", "req/s", "p99 ms", "efficiency"
    );
    let mut points: Vec<Vec<Point>> = cells.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, &(threads, k)) in cells.iter().enumerate() {
            let under = (servers[k].2)(threads)?;
            points[i].push(measure_with(under, clients, client_threads, secs)?);
        }
    }
    // Efficiency is relative to each server's first count (normally 1 thread).
    let mut base: [Option<(f64, f64)>; 2] = [None, None];
    for (i, &(threads, k)) in cells.iter().enumerate() {
        let p = median(&points[i]);
        let (first, rate) = *base[k].get_or_insert((threads.max(1) as f64, p.rate));
        println!(
            "{:>7} | {:<26} | {:>10.0} | {:>8.3} | {:>9.0}%",
            threads,
            servers[k].0,
            p.rate,
            ms(p.p99),
            100.0 * p.rate * first / (threads.max(1) as f64 * rate)
        );
    }
    Ok(())
}

/// CPU time (user + system) this process used so far, from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// The server role (a child process): starts the server named by `IOMAN_HTTP_SERVER`,
/// prints `addr ...`, serves until stdin closes, prints `cpu <seconds>`.
fn server_role() -> io::Result<()> {
    let kind = std::env::var("IOMAN_HTTP_SERVER").unwrap_or_default();
    let under = match kind.as_str() {
        "tokio" => start_tokio(0)?,
        "mio" => start_mio()?,
        _ => start_ioman(1)?,
    };
    let before = cpu_time();
    println!("addr {}", under.addr);
    io::stdout().flush()?;
    let mut sink = Vec::new();
    io::stdin().read_to_end(&mut sink)?;
    let used = cpu_time().saturating_sub(before);
    under.stop();
    println!("cpu {}", used.as_secs_f64());
    io::stdout().flush()?;
    Ok(())
}

/// Server CPU time per request, each server in its own process (so its CPU time is its own)
/// and the load generator in this one: less sensitive to other load on the machine than
/// requests/s.
fn cpu_per_request(ctx: &Ctx) -> io::Result<()> {
    let clients = 100;
    let (rounds, secs) = (ctx.rounds, ctx.secs);
    let kinds: Vec<(&str, &str)> = SERVERS
        .iter()
        .filter(|(_, id, _)| ctx.has(&format!("http/cpu/{id}")))
        .map(|&(name, id, _)| (name, id))
        .collect();
    if kinds.is_empty() {
        return Ok(());
    }
    println!(
        "\n## Server CPU per request (server in a child process), C = {clients}, median of \
         {rounds} rounds of {secs} s"
    );
    println!(
        "{:<22} | {:>10} | {:>13} | {:>9}",
        "server", "req/s", "CPU us/req", "vs first"
    );
    let exe = std::env::current_exe()?;
    let mut results: Vec<Vec<(f64, f64)>> = kinds.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (k, (_, kind)) in kinds.iter().enumerate() {
            let mut child = Command::new(&exe)
                .env("IOMAN_HTTP_BENCH_ROLE", "server")
                .env("IOMAN_HTTP_SERVER", kind)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let mut out = BufReader::new(child.stdout.take().expect("piped"));
            let mut line = String::new();
            out.read_line(&mut line)?;
            let addr: SocketAddr = line
                .trim()
                .strip_prefix("addr ")
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| io::Error::other(format!("server said {line:?}")))?;
            let load = loadgen::Load::start(addr, clients, 1)?;
            thread::sleep(Duration::from_secs(secs));
            let r = load.stop();
            drop(child.stdin.take());
            line.clear();
            out.read_line(&mut line)?;
            let _ = child.wait();
            let cpu: f64 = line
                .trim()
                .strip_prefix("cpu ")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0.0);
            results[k].push((r.rate(), cpu * 1e6 / r.requests.max(1) as f64));
        }
    }
    let med = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let base = med(&results[0], |x| x.1);
    for (k, (name, _)) in kinds.iter().enumerate() {
        let cpu = med(&results[k], |x| x.1);
        println!(
            "{:<22} | {:>10.0} | {:>13.2} | {:>8.2}x",
            name,
            med(&results[k], |x| x.0),
            cpu,
            cpu / base
        );
    }
    Ok(())
}

/// The client role of the idle benchmark (a child process): opens the idle connections, says
/// `ready`, waits for `go` on stdin, runs the load, prints `result ...`.
fn client_role() -> io::Result<()> {
    let addr: SocketAddr = std::env::var("IOMAN_HTTP_ADDR")
        .ok()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| io::Error::other("IOMAN_HTTP_ADDR missing"))?;
    let idle = env_num("IOMAN_HTTP_IDLE", 0) as usize;
    let clients = env_num("IOMAN_HTTP_CLIENTS", 100) as usize;
    let secs = env_num("IOMAN_HTTP_SECONDS", 3);
    let mut probe = std::net::TcpStream::connect(addr)?;
    let mut probe_err = None;
    let held = loadgen::open_idle(addr, idle, |_| {
        if let Err(e) = loadgen::probe_round_trip(&mut probe) {
            probe_err.get_or_insert(e);
        }
    })?;
    if let Some(e) = probe_err {
        return Err(e);
    }
    println!("ready {}", held.len());
    io::stdout().flush()?;
    let mut line = String::new();
    io::stdin().read_line(&mut line)?;
    let load = loadgen::Load::start(addr, clients, 1)?;
    thread::sleep(Duration::from_secs(secs));
    let r = load.stop();
    println!(
        "result {} {} {} {} {}",
        r.rate(),
        r.latency.quantile(0.5).as_nanos(),
        r.latency.quantile(0.99).as_nanos(),
        r.errors,
        held.len()
    );
    io::stdout().flush()?;
    drop(held);
    Ok(())
}

fn idle_scaling(ctx: &Ctx) -> io::Result<()> {
    let clients = 100;
    let secs = ctx.secs;
    let idles: Vec<usize> = ctx
        .idle
        .iter()
        .copied()
        .filter(|i| ctx.has(&format!("http/idle/ioman/{i}")))
        .collect();
    if idles.is_empty() {
        return Ok(());
    }
    println!(
        "\n## Idle connections: C = {clients} active while I idle ones are held (each with a \
         server-side timeout); {secs} s per point; client in a child process"
    );
    println!(
        "{:>7} | {:>10} | {:>8} | {:>8} | {:>6} | {:>12} | {:>13}",
        "I", "req/s", "p50 ms", "p99 ms", "errors", "live timers", "RSS B/idle"
    );
    let exe = std::env::current_exe()?;
    for idle in idles {
        let s = server::Server::start(server::Config {
            addr: localhost(),
            threads: 1,
            idle_timeout: IDLE_TIMEOUT,
            clock: None,
        })?;
        let before = rss_kib();
        let mut child = Command::new(&exe)
            .env("IOMAN_HTTP_BENCH_ROLE", "client")
            .env("IOMAN_HTTP_ADDR", s.addr().to_string())
            .env("IOMAN_HTTP_IDLE", idle.to_string())
            .env("IOMAN_HTTP_CLIENTS", clients.to_string())
            .env("IOMAN_HTTP_SECONDS", secs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        if !line.starts_with("ready") {
            let _ = child.kill();
            let _ = child.wait();
            s.shutdown();
            println!("{idle:>7} | client failed to open its idle connections: {line:?}");
            continue;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while s.stats().accepted < idle as u64 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let per_idle = if idle > 0 {
            (rss_kib().saturating_sub(before) * 1024) as f64 / idle as f64
        } else {
            0.0
        };
        child.stdin.take().expect("piped").write_all(b"go\n")?;
        // Sampled during the load, with every connection open.
        thread::sleep(Duration::from_millis(500));
        let timers = s.live().1;
        line.clear();
        out.read_line(&mut line)?;
        let _ = child.wait();
        s.shutdown();
        let f: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() < 4 {
            println!("{idle:>7} | client failed: {line:?}");
            continue;
        }
        println!(
            "{:>7} | {:>10.0} | {:>8.3} | {:>8.3} | {:>6} | {:>12} | {:>13}",
            idle,
            f[0],
            f[1] / 1e6,
            f[2] / 1e6,
            f[3],
            timers,
            if idle > 0 {
                format!("{per_idle:.0}")
            } else {
                "-".into()
            }
        );
    }
    Ok(())
}

fn main() -> io::Result<()> {
    match std::env::var("IOMAN_HTTP_BENCH_ROLE").as_deref() {
        Ok("client") => return client_role(),
        Ok("server") => return server_role(),
        _ => {}
    }
    let args = Args::parse("http", OPTS);
    let mut ctx = Ctx {
        secs: args.num("seconds", 3),
        rounds: args.num("rounds", 3usize).max(1),
        clients: args.list("clients", &[100, 1000]),
        idle: args.list("idle", &[0, 1000, 10000, 18000]),
        threads: args.list("threads", &[1, 2]),
        client_threads: args.num("client-threads", 1usize).max(1),
        chosen: Vec::new(),
    };
    let Some(chosen) = args.select(names(&args, &ctx)) else {
        return Ok(());
    };
    ctx.chosen = chosen;
    println!(
        "# ioman http benchmarks ({} cores; the load generator runs on the same machine)",
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    if args.mode() == Mode::Test {
        // `cargo test --benches` (no `--bench`): a smoke run, every selected server answers.
        for (name, id, start) in SERVERS {
            if ctx.chosen.iter().any(|n| n.split('/').nth(2) == Some(id)) {
                let p = measure(start()?, 4, 0)?;
                assert_eq!(p.errors, 0, "{name}");
                println!("{name}: answers");
            }
        }
        return Ok(());
    }
    keepalive(&ctx)?;
    cpu_per_request(&ctx)?;
    idle_scaling(&ctx)?;
    multicore(&ctx)?;
    Ok(())
}
