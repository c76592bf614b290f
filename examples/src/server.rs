//! The keep-alive HTTP/1.1 server, built on [`ioman::EventManager`] alone.
//!
//! - **Listener**: non-blocking, one `Rearmable` `READ` registration; its callback accepts in
//!   a loop until `WouldBlock`, then re-arms. At the fd limit (`EMFILE`/`ENFILE`) a listener
//!   that stays readable would fire again at once and spin; instead the server keeps one
//!   spare fd (libuv's trick): it closes the spare, accepts the waiting connection, closes it
//!   at once (counted as refused, the client sees a clean close instead of a timeout), and
//!   reopens the spare. Without a spare it stops accepting for 50 ms.
//! - **Connections**: one `Rearmable` registration each, for the whole connection: after each
//!   batch of requests is answered the callback re-arms it (`rearm`, no syscall in steady
//!   state), for `READ`, or for `WRITE` when a write met `WouldBlock` (the unsent bytes are
//!   kept; nothing is read meanwhile: back-pressure, nothing is dropped). The callback box is
//!   allocated once per connection, not per request.
//! - **Idle timeout**: each connection registers one timeout when accepted and pushes it later
//!   with `update_timeout` on every request; when it fires the connection is closed with
//!   `close_fd` (which tells the pending registration `CLOSED`).
//! - **State**: each connection is an `Arc<Mutex<Conn>>` shared by its fd callback and its
//!   timeout callback, both running on the loop thread of the manager that owns the fd, so the
//!   lock is never contended. Reads go into one 8 KiB scratch
//!   buffer per loop thread; a connection keeps bytes only for an unfinished request or an
//!   unsent response, so an idle connection costs its socket, a small `Conn`, one
//!   registration and one timer.
//! - **Threads**: with `threads == 1` one `EventManager` runs on one thread. With `threads ==
//!   N > 1` an `ioman::Pool` of N managers runs; one listener is registered with the manager
//!   that owns its fd, and each accepted connection goes to the manager `fd % N` (the pool's
//!   ownership rule), so its callbacks and its timeout run on that manager's thread.
//!
//! Protocol details (431 then close for requests over 8 KiB, 400 then close for malformed
//! ones) are in the `http` module. After a 400 or 431 the server closes at once: if the client
//! sent more than the server read, the kernel answers with a reset and the client may see
//! that instead of the response.

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ioman::{EventManager, FdKey, Interest, Lifetime, LoopHandle, ManualClock, Pool, TimeoutKey};

use crate::http;

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen (port 0: an ephemeral port).
    pub addr: SocketAddr,
    /// Number of managers (loop threads).
    pub threads: usize,
    /// How long a connection may stay without a request before the server closes it.
    pub idle_timeout: Duration,
    /// A manual clock for the managers' timeouts (tests); the monotonic clock if `None`.
    pub clock: Option<ManualClock>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 1,
            idle_timeout: Duration::from_secs(60),
            clock: None,
        }
    }
}

/// One manager's counters, on their own cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Counters {
    accepted: AtomicU64,
    closed: AtomicU64,
    requests: AtomicU64,
    idle_timeouts: AtomicU64,
    protocol_closes: AtomicU64,
    io_errors: AtomicU64,
    refused: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the server did so far (all managers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed (by the client, an error, the protocol or the idle timeout).
    pub closed: u64,
    /// Responses queued (including 400, 404, 405 and 431).
    pub requests: u64,
    /// Connections closed by their idle timeout.
    pub idle_timeouts: u64,
    /// Connections closed after a 400, a 431 or `Connection: close`.
    pub protocol_closes: u64,
    /// Connections closed on a read or write error other than a reset, and failed accepts or
    /// registrations.
    pub io_errors: u64,
    /// Connections accepted and closed at once because the process was at its fd limit.
    pub refused: u64,
}

impl Stats {
    /// Connections open now.
    pub fn live(&self) -> u64 {
        self.accepted.saturating_sub(self.closed)
    }
}

struct Shared {
    managers: Vec<Arc<EventManager>>,
    counters: Vec<Arc<Counters>>,
    idle_timeout: Duration,
}

/// A running server; [`shutdown`](Server::shutdown) stops it.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    pool: Option<Pool>,
    handle: Option<LoopHandle>,
}

impl Server {
    /// Binds, registers the listener and starts the loop threads.
    ///
    /// # Errors
    ///
    /// When binding, creating a manager or registering the listener fails.
    pub fn start(config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(config.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let threads = config.threads.max(1);
        let (managers, pool, handle) = if threads == 1 {
            let manager = match &config.clock {
                Some(c) => EventManager::builder().clock(c.clone()).build()?,
                None => EventManager::new()?,
            };
            let manager = Arc::new(manager);
            let handle = manager.spawn()?;
            (vec![manager], None, Some(handle))
        } else {
            let mut b = Pool::builder().threads(threads);
            if let Some(c) = &config.clock {
                b = b.clock(c.clone());
            }
            let pool = b.build()?;
            (pool.managers().to_vec(), Some(pool), None)
        };
        let shared = Arc::new(Shared {
            counters: managers.iter().map(|_| Arc::default()).collect(),
            managers,
            idle_timeout: config.idle_timeout,
        });
        let server = Server {
            addr,
            shared: Arc::clone(&shared),
            pool,
            handle,
        };
        let owner = &shared.managers[owner_index(listener.as_raw_fd(), shared.managers.len())];
        let fd = listener.as_raw_fd();
        let accept_shared = Arc::clone(&shared);
        let mut spare = spare_fd();
        let registered = owner.register_fd(
            fd,
            Interest::READ,
            Lifetime::Rearmable,
            move |mgr, key, readiness| {
                if readiness.is_closed() {
                    return;
                }
                if accept_all(&listener, &accept_shared, &mut spare) {
                    let _ = mgr.rearm(key, Interest::READ);
                } else {
                    // At the fd limit with no spare: accept again in a moment.
                    let _ = mgr.register_timeout(Duration::from_millis(50), move |mgr| {
                        let _ = mgr.rearm(key, Interest::READ);
                    });
                }
            },
        );
        if let Err(e) = registered {
            server.shutdown();
            return Err(e);
        }
        Ok(server)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The managers (one per loop thread).
    pub fn managers(&self) -> &[Arc<EventManager>] {
        &self.shared.managers
    }

    /// Live fd registrations and timers summed over the managers (`EventManager::live`).
    pub fn live(&self) -> (usize, usize) {
        self.shared
            .managers
            .iter()
            .map(|m| m.live())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// What the server did so far.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for c in &self.shared.counters {
            s.accepted += c.accepted.load(Ordering::Relaxed);
            s.closed += c.closed.load(Ordering::Relaxed);
            s.requests += c.requests.load(Ordering::Relaxed);
            s.idle_timeouts += c.idle_timeouts.load(Ordering::Relaxed);
            s.protocol_closes += c.protocol_closes.load(Ordering::Relaxed);
            s.io_errors += c.io_errors.load(Ordering::Relaxed);
            s.refused += c.refused.load(Ordering::Relaxed);
        }
        s
    }

    /// Wakes every manager (after advancing a manual clock).
    pub fn wake(&self) {
        for m in &self.shared.managers {
            m.wake();
        }
    }

    /// Stops the loops and closes every connection and the listener.
    pub fn shutdown(self) {
        for m in &self.shared.managers {
            m.shutdown();
        }
        if let Some(h) = self.handle {
            let _ = h.join();
        }
        if let Some(p) = self.pool {
            let _ = p.join();
        }
    }
}

fn owner_index(fd: RawFd, n: usize) -> usize {
    fd.rem_euclid(n as RawFd) as usize
}

/// The spare fd kept for the fd limit (see the module docs).
fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Accepts until `WouldBlock`, handing each connection to the manager that owns its fd.
/// Returns `false` when it stopped at the fd limit without a spare fd to refuse with.
fn accept_all(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    spare: &mut Option<std::fs::File>,
) -> bool {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let i = owner_index(stream.as_raw_fd(), shared.managers.len());
                if start_conn(stream, i, shared).is_err() {
                    bump(&shared.counters[i].io_errors);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                // Free one fd, take the connection that waits and close it, take the fd back.
                // At the limit accept(2) says EMFILE even with nobody waiting (it takes the
                // fd before it looks at the queue): only the accept with the spare's fd free
                // tells whether a connection waits, and when none does, the batch is over.
                if spare.take().is_none() {
                    return false;
                }
                let waiting = listener.accept();
                *spare = spare_fd();
                match waiting {
                    Ok((refused, _)) => {
                        drop(refused);
                        bump(&shared.counters[0].refused);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(_) => return true,
                }
            }
            Err(_) => {
                bump(&shared.counters[0].io_errors);
                return true;
            }
        }
    }
}

struct Conn {
    /// `None` once closed.
    stream: Option<TcpStream>,
    /// Bytes of an unfinished request.
    input: Vec<u8>,
    /// Bytes of responses not yet sent.
    out: Vec<u8>,
    /// Close once `out` is sent.
    closing: bool,
    timer: Option<TimeoutKey>,
    idle_timeout: Duration,
    counters: Arc<Counters>,
}

type Cell = Arc<Mutex<Conn>>;

fn lock(cell: &Cell) -> MutexGuard<'_, Conn> {
    cell.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a connection waits for next.
enum Next {
    Wait(Interest),
    Close,
}

fn start_conn(stream: TcpStream, index: usize, shared: &Arc<Shared>) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    stream.set_nodelay(true)?;
    let fd = stream.as_raw_fd();
    let mgr = &shared.managers[index];
    let counters = Arc::clone(&shared.counters[index]);
    bump(&counters.accepted);
    let cell: Cell = Arc::new(Mutex::new(Conn {
        stream: Some(stream),
        input: Vec::new(),
        out: Vec::new(),
        closing: false,
        timer: None,
        idle_timeout: shared.idle_timeout,
        counters,
    }));
    let for_timer = Arc::clone(&cell);
    match mgr.register_timeout(shared.idle_timeout, move |mgr| {
        idle_expired(mgr, &for_timer)
    }) {
        Ok(key) => lock(&cell).timer = Some(key),
        Err(e) => {
            close(mgr, &cell);
            return Err(e);
        }
    }
    if let Err(e) = arm(mgr, fd, Arc::clone(&cell), Interest::READ) {
        close(mgr, &cell);
        return Err(e);
    }
    Ok(())
}

/// Registers the connection's one `Rearmable` registration, for its whole life.
fn arm(mgr: &EventManager, fd: RawFd, cell: Cell, interest: Interest) -> io::Result<()> {
    mgr.register_fd(
        fd,
        interest,
        Lifetime::Rearmable,
        move |mgr, key, readiness| {
            if !readiness.is_closed() {
                on_ready(mgr, key, &cell);
            }
        },
    )
    .map(|_| ())
}

fn idle_expired(mgr: &EventManager, cell: &Cell) {
    let (stream, counters) = {
        let mut c = lock(cell);
        c.timer = None;
        (c.stream.take(), Arc::clone(&c.counters))
    };
    if let Some(stream) = stream {
        bump(&counters.idle_timeouts);
        bump(&counters.closed);
        // Tells the pending registration `CLOSED`; it finds the stream gone and returns.
        let _ = mgr.close_fd(stream);
    }
}

/// Closes the connection (idempotent): cancels its timeout, closes the fd.
fn close(mgr: &EventManager, cell: &Cell) {
    let (stream, timer) = {
        let mut c = lock(cell);
        let s = c.stream.take();
        if s.is_some() {
            bump(&c.counters.closed);
        }
        (s, c.timer.take())
    };
    if let Some(key) = timer {
        mgr.unregister_timeout(key);
    }
    if let Some(stream) = stream {
        let _ = mgr.close_fd(stream);
    }
}

fn on_ready(mgr: &EventManager, key: FdKey, cell: &Cell) {
    let next = {
        let mut c = lock(cell);
        c.drive(mgr)
    };
    match next {
        Next::Wait(interest) => {
            if mgr.rearm(key, interest).is_err() {
                close(mgr, cell);
            }
        }
        Next::Close => close(mgr, cell),
    }
}

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; http::MAX_REQUEST].into_boxed_slice());
}

enum Flush {
    Done,
    Blocked,
    Failed,
}

impl Conn {
    /// Sends what it can of `out`.
    fn flush(&mut self, written_already: usize) -> Flush {
        let Some(stream) = self.stream.as_mut() else {
            return Flush::Failed;
        };
        let mut at = written_already;
        while at < self.out.len() {
            match stream.write(&self.out[at..]) {
                Ok(0) => return Flush::Failed,
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.out.drain(..at);
                    return Flush::Blocked;
                }
                Err(e) => {
                    self.note_error(&e);
                    return Flush::Failed;
                }
            }
        }
        self.out.clear();
        Flush::Done
    }

    fn note_error(&self, e: &io::Error) {
        if !matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
        ) {
            bump(&self.counters.io_errors);
        }
    }

    /// Does what the connection can do without blocking and says what it waits for next.
    fn drive(&mut self, mgr: &EventManager) -> Next {
        if !self.out.is_empty() {
            return match self.flush(0) {
                Flush::Done if self.closing => Next::Close,
                // Any pipelined bytes left in `input` are an unfinished request: read more.
                Flush::Done => Next::Wait(Interest::READ),
                Flush::Blocked => Next::Wait(Interest::WRITE),
                Flush::Failed => Next::Close,
            };
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Some(stream) = self.stream.as_mut() else {
                return Next::Close;
            };
            let room = http::MAX_REQUEST.saturating_sub(self.input.len()).max(1);
            let n = match stream.read(&mut scratch[..room]) {
                Ok(0) => return Next::Close,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait(Interest::READ),
                Err(e) if e.kind() == ErrorKind::Interrupted => return Next::Wait(Interest::READ),
                Err(e) => {
                    self.note_error(&e);
                    return Next::Close;
                }
            };
            let (answered, keep) = if self.input.is_empty() {
                let data = &scratch[..n];
                let (used, answered, keep) = http::serve(data, &mut self.out);
                if keep && used < n {
                    self.input.extend_from_slice(&data[used..]);
                }
                (answered, keep)
            } else {
                self.input.extend_from_slice(&scratch[..n]);
                let (used, answered, keep) = http::serve(&self.input, &mut self.out);
                if keep {
                    self.input.drain(..used);
                } else {
                    self.input = Vec::new();
                }
                (answered, keep)
            };
            if answered > 0 {
                self.counters
                    .requests
                    .fetch_add(answered, Ordering::Relaxed);
                // Before the response goes out, so that a client that saw it finds the
                // timeout already pushed.
                if let Some(key) = self.timer {
                    mgr.update_timeout(key, self.idle_timeout);
                }
            }
            if !keep {
                bump(&self.counters.protocol_closes);
                self.closing = true;
            }
            if self.out.is_empty() {
                // An unfinished request: wait for the rest.
                return Next::Wait(Interest::READ);
            }
            match self.flush(0) {
                Flush::Done if self.closing => Next::Close,
                Flush::Done => Next::Wait(Interest::READ),
                Flush::Blocked => Next::Wait(Interest::WRITE),
                Flush::Failed => Next::Close,
            }
        })
    }
}
