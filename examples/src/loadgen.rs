//! The load generator: C keep-alive connections in a closed loop (each sends `GET /`, waits
//! for the whole response, records the latency, sends the next), plus idle connections that
//! are opened and held ([`Idle`]): some pinged now and then so that they stay open, some
//! silent so that the server's idle timeout closes them.
//!
//! **Why an ioman client.** On a 2-core machine shared with the server, the client must be
//! cheap per request. Blocking sockets with one thread per connection cost two context
//! switches per request (the thread sleeps in `read` and is woken for the response), and at
//! C = 1,000 a thousand threads on two cores; busy loops over non-blocking sockets burn a core.
//! An event-driven client on a few threads costs one `write` and one `read` per request, with
//! the `epoll_wait` shared by every connection that became ready together, so it leaves the
//! cores to the server under test. It is built on `ioman::EventManager` (one manager per
//! client thread, default one thread), with the same `Rearmable` pattern as the server: one
//! registration per connection, re-armed after each request at no syscall, whose callback
//! owns the connection's state, so no lock is taken per request.
//!
//! Latencies go into a log-linear histogram (32 sub-buckets per power of two of nanoseconds,
//! under 3% error) per client thread; the maximum is exact.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioman::{EventManager, Interest, Lifetime, LoopHandle};

use crate::http;

const SUB: usize = 32;
const BUCKETS: usize = 64 * SUB;

fn bucket_of(v: u64) -> usize {
    if v < 2 * SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros() as usize;
    let shift = msb - 5;
    ((shift + 1) << 5) + ((v >> shift) as usize & (SUB - 1))
}

/// The middle of bucket `i`'s range.
fn value_of(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let shift = (i >> 5) - 1;
    let low = ((SUB + (i & (SUB - 1))) as u64) << shift;
    low + (1u64 << shift) / 2
}

/// A latency histogram in nanoseconds, written by one thread at a time without locks.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one latency.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(ns, Ordering::Relaxed);
    }

    /// Adds `other`'s counts to this one.
    pub fn merge(&self, other: &Histogram) {
        for (a, b) in self.buckets.iter().zip(other.buckets.iter()) {
            a.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.max
            .fetch_max(other.max.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The largest value recorded.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max.load(Ordering::Relaxed))
    }

    /// The `q` quantile (0.0..=1.0), never above [`max`](Histogram::max); zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let max = self.max.load(Ordering::Relaxed);
                return Duration::from_nanos(value_of(i).min(max));
            }
        }
        self.max()
    }
}

/// One client thread's shared counters.
#[derive(Default)]
#[repr(align(128))]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Connections still in their closed loop.
    running: AtomicUsize,
    histogram: Histogram,
}

/// The result of a run.
pub struct Report {
    /// Responses received.
    pub requests: u64,
    /// Failed connects, unexpected statuses, resets, early closes.
    pub errors: u64,
    /// From the start of the load to [`Load::stop`].
    pub elapsed: Duration,
    /// Every request's latency.
    pub latency: Histogram,
}

impl Report {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A running closed-loop load.
pub struct Load {
    managers: Vec<Arc<EventManager>>,
    handles: Vec<LoopHandle>,
    counters: Vec<Arc<Counters>>,
    stop: Arc<AtomicBool>,
    started: Instant,
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    sent: Instant,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Load {
    /// Opens `clients` connections to `addr`, spread over `threads` client threads, and starts
    /// their closed loops.
    ///
    /// # Errors
    ///
    /// When a connection or a manager cannot be created.
    pub fn start(addr: SocketAddr, clients: usize, threads: usize) -> io::Result<Load> {
        let threads = threads.max(1);
        let mut managers = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let m = Arc::new(EventManager::new()?);
            handles.push(m.spawn()?);
            managers.push(m);
        }
        let counters: Vec<Arc<Counters>> = (0..threads).map(|_| Arc::default()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut streams = Vec::with_capacity(clients);
        for _ in 0..clients {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            streams.push(s);
        }
        let load = Load {
            managers,
            handles,
            counters,
            stop,
            started: Instant::now(),
        };
        for (i, stream) in streams.into_iter().enumerate() {
            let t = i % threads;
            let client = Box::new(Client {
                stream,
                buf: Vec::with_capacity(1024),
                sent: Instant::now(),
                counters: Arc::clone(&load.counters[t]),
                stop: Arc::clone(&load.stop),
            });
            load.counters[t].running.fetch_add(1, Ordering::SeqCst);
            start_client(&load.managers[t], client);
        }
        Ok(load)
    }

    /// Responses received so far.
    pub fn requests(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.requests.load(Ordering::Relaxed))
            .sum()
    }

    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.counters
            .iter()
            .map(|c| c.errors.load(Ordering::Relaxed))
            .sum()
    }

    /// Stops the loops: each connection finishes the request it has in flight (for at most
    /// two seconds), then everything is closed.
    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        let elapsed = self.started.elapsed();
        let requests = self.requests();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline
            && self
                .counters
                .iter()
                .any(|c| c.running.load(Ordering::SeqCst) > 0)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        for m in &self.managers {
            m.shutdown();
        }
        for h in self.handles {
            let _ = h.join();
        }
        let latency = Histogram::default();
        let mut errors = 0;
        for c in &self.counters {
            latency.merge(&c.histogram);
            errors += c.errors.load(Ordering::Relaxed);
        }
        Report {
            requests,
            errors,
            elapsed,
            latency,
        }
    }
}

/// Sends the next request. `false` if the connection failed.
fn send(client: &mut Client) -> bool {
    client.sent = Instant::now();
    match client.stream.write(http::GET) {
        // A request of 36 bytes on a socket whose previous response was read cannot be short.
        Ok(n) if n == http::GET.len() => true,
        _ => {
            fail(client);
            false
        }
    }
}

fn fail(client: &Client) {
    client.counters.errors.fetch_add(1, Ordering::Relaxed);
    client.counters.running.fetch_sub(1, Ordering::SeqCst);
}

/// Sends the first request and registers the connection's one `Rearmable` registration,
/// whose callback owns the client from then on.
fn start_client(mgr: &EventManager, mut client: Box<Client>) {
    if !send(&mut client) {
        return;
    }
    let fd: RawFd = client.stream.as_raw_fd();
    let r = mgr.register_fd(
        fd,
        Interest::READ,
        Lifetime::Rearmable,
        move |mgr, key, readiness| {
            if readiness.is_closed() {
                return fail(&client);
            }
            // A connection that failed or stopped ends its registration, which drops this
            // callback and with it the stream: the server sees the close at once.
            if !on_readable(&mut client) || !matches!(mgr.rearm(key, Interest::READ), Ok(true)) {
                let _ = mgr.unregister_fd(key);
            }
        },
    );
    if r.is_err() {
        // Only after shutdown: the load is over.
    }
}

/// Reads what came; records a complete response and sends the next request. Returns whether
/// the connection waits for more (`false`: failed, or stopped).
fn on_readable(client: &mut Client) -> bool {
    let mut chunk = [0u8; 2048];
    let n = match client.stream.read(&mut chunk) {
        Ok(0) => {
            fail(client);
            return false;
        }
        Ok(n) => n,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
            return true;
        }
        Err(_) => {
            fail(client);
            return false;
        }
    };
    let now = Instant::now();
    client.buf.extend_from_slice(&chunk[..n]);
    match http::parse_response(&client.buf) {
        http::Response::Incomplete => true,
        http::Response::Bad => {
            fail(client);
            false
        }
        http::Response::Done { status, len } => {
            if len != client.buf.len() || status != 200 {
                // One request in flight: nothing may follow its response.
                fail(client);
                return false;
            }
            client.buf.clear();
            let c = &client.counters;
            c.histogram.record(now - client.sent);
            c.requests.fetch_add(1, Ordering::Relaxed);
            if client.stop.load(Ordering::Relaxed) {
                c.running.fetch_sub(1, Ordering::SeqCst);
                false
            } else {
                send(client)
            }
        }
    }
}

/// Opens `n` connections to `addr` and returns them, to be held open and never used.
///
/// The listener's accept queue is short (std listens with a backlog of 128), and a connect
/// that finds it full waits a whole second for the SYN to be retransmitted; so after every
/// [`BATCH`] connections `synced` is called with the count so far and should return once the
/// server has accepted them.
///
/// # Errors
///
/// When a connection fails (for example `EMFILE`).
pub fn open_idle(
    addr: SocketAddr,
    n: usize,
    mut synced: impl FnMut(usize),
) -> io::Result<Vec<TcpStream>> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        v.push(TcpStream::connect(addr)?);
        if (i + 1) % BATCH == 0 {
            synced(i + 1);
        }
    }
    Ok(v)
}

/// Connections opened between two calls of [`open_idle`]'s `synced`.
pub const BATCH: usize = 64;

/// A `synced` for [`open_idle`] that knows nothing of the server: one request's round trip on
/// `probe` (the server's loop ran, and its level-triggered listener was drained, since the
/// batch was queued).
pub fn probe_round_trip(probe: &mut TcpStream) -> io::Result<()> {
    probe.write_all(http::GET)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match http::parse_response(&buf) {
            http::Response::Done { .. } => return Ok(()),
            http::Response::Bad => return Err(io::Error::other("bad response")),
            http::Response::Incomplete => {}
        }
        let n = probe.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::other("probe closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Idle connections held open: `pinged` ones send one request every `every` (shorter than
/// the server's idle timeout, which each ping pushes back, so they stay open), `silent` ones
/// never send anything (the server's idle timeout closes them).
pub struct Idle {
    opened: usize,
    stop: Arc<AtomicBool>,
    pinger: Option<std::thread::JoinHandle<(u64, u64)>>,
    _silent: Vec<TcpStream>,
}

impl Idle {
    /// Opens the connections (see [`open_idle`] for `synced`) and starts the pinging thread.
    ///
    /// # Errors
    ///
    /// When a connection fails (for example `EMFILE`) or the thread cannot start.
    pub fn open(
        addr: SocketAddr,
        pinged: usize,
        silent: usize,
        every: Duration,
        synced: impl FnMut(usize),
    ) -> io::Result<Idle> {
        let mut all = open_idle(addr, pinged + silent, synced)?;
        let silent_streams = all.split_off(pinged);
        for s in &all {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let pinger = std::thread::Builder::new()
            .name("idle-pinger".into())
            .spawn(move || {
                let (mut pings, mut errors) = (0, 0);
                let mut next = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    next += every;
                    for s in &mut all {
                        match probe_round_trip(s) {
                            Ok(()) => pings += 1,
                            Err(_) => errors += 1,
                        }
                    }
                }
                (pings, errors)
            })?;
        Ok(Idle {
            opened: pinged + silent,
            stop,
            pinger: Some(pinger),
            _silent: silent_streams,
        })
    }

    /// Connections opened.
    pub fn len(&self) -> usize {
        self.opened
    }

    /// Whether none was opened.
    pub fn is_empty(&self) -> bool {
        self.opened == 0
    }

    /// Stops pinging and closes every connection. Returns (pings answered, pings failed).
    pub fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.pinger
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, 1))
    }
}
