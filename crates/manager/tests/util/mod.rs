//! Shared helpers for the manager's integration tests.
#![allow(dead_code)]

use std::io;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ioman::{Backend, EventManager, ManualClock};

/// A non-blocking socketpair.
pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((a, b))
}

/// An fd number that is not open. Not one just closed: tests run in parallel threads, and
/// another test may be handed that number at once. This one is far above what a test binary
/// here opens (and still below the 20,000 limit, so it is a plain EBADF).
pub fn closed_fd() -> std::os::fd::RawFd {
    let fd = 19_000;
    assert!(
        std::fs::read_link(format!("/proc/self/fd/{fd}")).is_err(),
        "fd {fd} is open"
    );
    fd
}

/// A manager on the target's default backend (epoll, kqueue).
pub fn default() -> io::Result<EventManager<ioman::DefaultBackend>> {
    EventManager::new()
}

/// A manager on poll(2).
pub fn poll() -> io::Result<EventManager<ioman_poll::PosixPoll>> {
    EventManager::builder()
        .backend(ioman_poll::PosixPoll::new()?)
        .build()
}

/// A manager on the backend `make` builds, with a manual clock.
pub fn manual<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<(EventManager<B>, ManualClock)> {
    let clock = ManualClock::new();
    let m = EventManager::builder()
        .backend(make()?)
        .clock(clock.clone())
        .build()?;
    Ok((m, clock))
}

/// Steps the loop on this thread until `done` holds; panics after 20 s (generous: machines
/// here are shared and noisy).
pub fn drive<B: Backend + 'static>(m: &EventManager<B>, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 20 s"
        );
        m.step(Some(Duration::from_millis(10))).expect("step");
    }
}

/// Waits (without stepping) until `done` holds; panics after 20 s.
pub fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 20 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Instantiates each generic test `fn name<B: Backend>(make: fn() -> io::Result<B>)` for
/// the target's default backend (epoll, kqueue) and for poll(2), which every Unix has.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod default_backend {
            $(
                #[test]
                fn $name() -> std::io::Result<()> {
                    super::$name(ioman::DefaultBackend::new)
                }
            )*
        }
        mod poll {
            $(
                #[test]
                fn $name() -> std::io::Result<()> {
                    super::$name(ioman_poll::PosixPoll::new)
                }
            )*
        }
    };
}

/// A backend wrapper that fails chosen calls, for the error paths strace finds
/// (`strace -e inject=epoll_ctl:error=ENOMEM`) without strace.
///
/// `fail_*` make the next call of that kind fail with the errno (once each time they are
/// armed); `lie_deregister` makes the next `deregister` report success without removing
/// anything, the state in which the kernel watches an fd the manager believes gone.
pub struct Faulty<B> {
    pub inner: B,
    pub fail_register: std::sync::atomic::AtomicI32,
    pub fail_modify: std::sync::atomic::AtomicI32,
    pub fail_deregister: std::sync::atomic::AtomicI32,
    pub lie_deregister: std::sync::atomic::AtomicBool,
    pub deregisters: std::sync::atomic::AtomicUsize,
    /// Events the inner backend reported, over all polls.
    pub polled: std::sync::atomic::AtomicUsize,
}

impl<B> Faulty<B> {
    pub fn new(inner: B) -> Self {
        Faulty {
            inner,
            fail_register: Default::default(),
            fail_modify: Default::default(),
            fail_deregister: Default::default(),
            lie_deregister: Default::default(),
            deregisters: Default::default(),
            polled: Default::default(),
        }
    }
}

fn take_fault(slot: &std::sync::atomic::AtomicI32) -> io::Result<()> {
    match slot.swap(0, std::sync::atomic::Ordering::SeqCst) {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

impl<B: Backend> Backend for Faulty<B> {
    fn register_raw(
        &self,
        fd: std::os::fd::RawFd,
        key: u32,
        interest: ioman::Interest,
        mode: ioman_poll::Mode,
    ) -> io::Result<()> {
        take_fault(&self.fail_register)?;
        self.inner.register_raw(fd, key, interest, mode)
    }
    fn modify_raw(
        &self,
        fd: std::os::fd::RawFd,
        key: u32,
        interest: ioman::Interest,
        mode: ioman_poll::Mode,
    ) -> io::Result<()> {
        take_fault(&self.fail_modify)?;
        self.inner.modify_raw(fd, key, interest, mode)
    }
    fn deregister_raw(&self, fd: std::os::fd::RawFd) -> io::Result<()> {
        self.deregisters
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        take_fault(&self.fail_deregister)?;
        if self
            .lie_deregister
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        self.inner.deregister_raw(fd)
    }
    fn wait(
        &self,
        events: &mut ioman_poll::Events,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let n = self.inner.wait(events, timeout)?;
        self.polled
            .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        Ok(n)
    }
    fn capabilities(&self) -> ioman_poll::Capabilities {
        self.inner.capabilities()
    }
}
