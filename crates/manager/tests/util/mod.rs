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

/// A manager on epoll.
pub fn epoll() -> io::Result<EventManager<ioman_poll::Epoll>> {
    EventManager::builder()
        .backend(ioman_poll::Epoll::new()?)
        .build()
}

/// A manager on poll(2).
pub fn poll() -> io::Result<EventManager<ioman_poll::Poll>> {
    EventManager::builder()
        .backend(ioman_poll::Poll::new()?)
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
/// every backend compiled here.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod epoll {
            $(
                #[test]
                fn $name() -> std::io::Result<()> {
                    super::$name(ioman_poll::Epoll::new)
                }
            )*
        }
        mod poll {
            $(
                #[test]
                fn $name() -> std::io::Result<()> {
                    super::$name(ioman_poll::Poll::new)
                }
            )*
        }
    };
}
