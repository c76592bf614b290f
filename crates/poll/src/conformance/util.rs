//! The helpers the checks are written with, public for a backend's own tests beside the
//! suite: fds of each kind, a closed fd number no other test can reuse, the `SIGUSR2`
//! handler, and waiting until an fd shows up.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use crate::{Backend, Event, Events};

/// A generous bound for "returns promptly": the machines are noisy.
pub const PROMPT: Duration = Duration::from_secs(2);
/// How long a test waits for an event it expects.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A non-blocking Unix socket pair.
pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((a, b))
}

/// A non-blocking pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe writes. (pipe2 would set the flags at once
    // but macOS lacks it.)
    if unsafe { libc::pipe(fds.as_mut_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe succeeded, so both fds are open and owned by nobody else.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in fds {
        // SAFETY: `fd` is open (owned by `ends`); F_SETFL/F_SETFD only set flags.
        let ok = unsafe {
            libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) != -1
                && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != -1
        };
        if !ok {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(ends)
}

/// Writes `bytes` to `fd` (one `write(2)`, so a pipe's `OwnedFd` needs no `File`).
pub fn write_fd(fd: impl AsFd, bytes: &[u8]) -> io::Result<usize> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: `fd` is open (borrowed) and `bytes` is valid for `bytes.len()` bytes of reading.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads everything available from a non-blocking stream.
pub fn drain(s: &mut UnixStream) -> io::Result<usize> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
            Err(e) => return Err(e),
        }
    }
}

/// Writes one byte to a stream.
pub fn poke(s: &mut UnixStream) -> io::Result<()> {
    s.write_all(b"x")
}

/// A connected TCP pair on 127.0.0.1 (client, server side), both non-blocking.
pub fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    client.set_nonblocking(true)?;
    server.set_nonblocking(true)?;
    Ok((client, server))
}

/// Waits (100 ms at a time) until an event for `fd` arrives or [`PATIENCE`] runs out.
pub fn wait_for<B: Backend>(
    backend: &B,
    events: &mut Events,
    fd: RawFd,
) -> io::Result<Option<Event>> {
    let end = Instant::now() + PATIENCE;
    while Instant::now() < end {
        backend.wait(events, Some(Duration::from_millis(100)))?;
        if let Some(ev) = events.iter().find(|e| e.fd() == fd) {
            return Ok(Some(*ev));
        }
    }
    Ok(None)
}

/// Waits with a zero timeout and returns the events for `fd`.
pub fn now_for<B: Backend>(backend: &B, events: &mut Events, fd: RawFd) -> io::Result<Vec<Event>> {
    backend.wait(events, Some(Duration::ZERO))?;
    Ok(events.iter().filter(|e| e.fd() == fd).copied().collect())
}

/// The raw OS error of a result, for asserting `EBADF`.
pub fn errno<T>(r: io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// The soft limit on open files.
pub fn nofile_limit() -> u64 {
    // SAFETY: getrlimit writes one `rlimit` into the struct it is given.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `rl` is a valid `rlimit` to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == -1 {
        return 1024;
    }
    rl.rlim_cur as u64
}

static HIGH_FDS: Mutex<()> = Mutex::new(());

/// Serialises the tests that use fd numbers near the top of the table, so a number one of
/// them closed is not reused by another while it is being checked. The other tests allocate
/// the lowest free numbers and never get there.
pub fn high_fd_lock() -> MutexGuard<'static, ()> {
    HIGH_FDS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The lowest fd number in the reserved range near the top of the table.
fn high_base() -> RawFd {
    (nofile_limit().min(1 << 20) as RawFd - 64).max(512)
}

/// Duplicates `fd` to a number in the reserved high range (hold [`high_fd_lock`]).
pub fn dup_high(fd: impl AsFd) -> io::Result<OwnedFd> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: F_DUPFD_CLOEXEC duplicates the open `fd` to the lowest free number >= the base.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, high_base()) };
    if n == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// An fd number that is closed and stays closed while the caller holds [`high_fd_lock`].
pub fn closed_fd() -> io::Result<RawFd> {
    let (a, _b) = pair()?;
    let high = dup_high(&a)?;
    Ok(high.as_raw_fd())
    // `high` is dropped (closed) here.
}

/// How many SIGUSR2 the no-op handler has seen.
pub(crate) static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigusr2(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// Installs a counting SIGUSR2 handler without `SA_RESTART`, once per process, so a blocked
/// wait in a thread that receives it fails with `EINTR`.
pub(crate) fn install_sigusr2() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed `sigaction` is valid; the handler only touches an atomic, which is
        // async-signal-safe; the mask is initialised by sigemptyset before use.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigusr2 as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = 0; // no SA_RESTART
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
        }
    });
}

/// Sends SIGUSR2 to a thread.
///
/// # Safety
///
/// `thread` is still running (a `pthread_t` of a thread that has exited may name anything).
pub(crate) unsafe fn signal_thread(thread: libc::pthread_t) -> io::Result<()> {
    // SAFETY: the caller guarantees `thread` is still running.
    let r = unsafe { libc::pthread_kill(thread, libc::SIGUSR2) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// A number of socket pairs that fits the open-file limit: `IOMAN_TEST_FDS` pairs (default
/// 9,000), scaled down to leave 1,000 fds to the rest of the test process.
pub fn many_pairs_count() -> usize {
    let wanted = std::env::var("IOMAN_TEST_FDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9_000usize);
    let fit = (nofile_limit().saturating_sub(1_000) / 2) as usize;
    wanted.min(fit).max(1)
}
