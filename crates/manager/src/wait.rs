//! Thread helpers after GHC's `threadWaitRead`, `threadWaitWrite`, `threadDelay` and
//! `registerDelay`: block the calling thread until an fd is ready or a time has passed.

use crate::FdLike;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use ioman_poll::{Backend, Interest, Readiness};
use slab::Slab;

use crate::sync::{lock, Condvar, Mutex};
use crate::{shut_down, EventManager, Lifetime, TimeoutKey};

/// One blocked thread's result, completed once (the first completion wins).
struct Slot {
    result: Mutex<Option<io::Result<Readiness>>>,
    ready: Condvar,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            result: Mutex::new(None),
            ready: Condvar::new(),
        })
    }

    fn complete(&self, r: io::Result<Readiness>) {
        let mut g = lock(&self.result);
        if g.is_none() {
            *g = Some(r);
            self.ready.notify_one();
        }
    }

    /// Waits for the result, or until `left()` (the time left on the manager's clock, `None`
    /// for no limit) reaches zero: then `None`. The time left is read again after each wake,
    /// so a wait on a manual clock ends once the clock has passed the deadline and the
    /// remaining real time has elapsed, loop or no loop.
    fn wait(&self, left: impl Fn() -> Option<Duration>) -> Option<io::Result<Readiness>> {
        let mut g = lock(&self.result);
        loop {
            if let Some(r) = g.take() {
                return Some(r);
            }
            g = match left() {
                None => self.ready.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) if d.is_zero() => return None,
                Some(d) => {
                    self.ready
                        .wait_timeout(g, d)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Every thread blocked in a wait helper, so shutdown can release them all.
#[derive(Default)]
pub(crate) struct Waiters {
    inner: Mutex<WaitersInner>,
}

#[derive(Default)]
struct WaitersInner {
    slots: Slab<Arc<Slot>>,
    released: bool,
}

impl Waiters {
    fn insert(&self, slot: &Arc<Slot>) -> io::Result<usize> {
        let mut g = lock(&self.inner);
        if g.released {
            return Err(shut_down());
        }
        Ok(g.slots.insert(Arc::clone(slot)))
    }

    fn remove(&self, id: usize) {
        lock(&self.inner).slots.try_remove(id);
    }

    /// Completes every waiter with [`ShutDown`](crate::ShutDown); later waits fail at once.
    pub(crate) fn release_all(&self) {
        let slots = {
            let mut g = lock(&self.inner);
            g.released = true;
            std::mem::take(&mut g.slots)
        };
        for (_, s) in slots {
            s.complete(Err(shut_down()));
        }
    }
}

/// The error a waiter gets when its fd is closed through [`EventManager::close_fd`]: `EBADF`,
/// as GHC's `threadWait` throws.
fn closed() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for the fd")
}

/// A flag set when a delay expires; see [`EventManager::delay`].
#[derive(Debug, Clone)]
pub struct Delay {
    flag: Arc<AtomicBool>,
    key: TimeoutKey,
}

impl Delay {
    /// Whether the delay has expired.
    pub fn is_expired(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The delay's timeout, to move it with [`EventManager::update_timeout`] or cancel it
    /// with [`EventManager::unregister_timeout`].
    pub fn key(&self) -> TimeoutKey {
        self.key
    }
}

impl<B: Backend + 'static> EventManager<B> {
    /// Blocks the calling thread until `fd` is readable (GHC's `threadWaitRead`), or until
    /// `timeout` passes on the manager's clock. Returns the readiness (readable, or error or
    /// hang-up).
    ///
    /// Readiness is seen by the loop, so the loop must run on another thread (`run`,
    /// `spawn`, or `step` called in a loop). A wait never hangs silently: with a timeout it
    /// returns by the timeout whether or not a loop runs; without one, on a manager that no
    /// thread drives at the moment of the call, it fails at once (a program that drives the
    /// manager with `step` should give its waiters a timeout, as the waiter may look between
    /// two steps).
    ///
    /// # Errors
    ///
    /// - [`TimedOut`](io::ErrorKind::TimedOut) after `timeout`;
    /// - `EBADF` (raw OS error) when the fd is closed through [`close_fd`](Self::close_fd)
    ///   meanwhile;
    /// - [`ShutDown`](crate::ShutDown) when the manager is shut down;
    /// - [`Deadlock`](io::ErrorKind::Deadlock) when called on the loop thread (it would wait
    ///   for itself);
    /// - [`WouldBlock`](io::ErrorKind::WouldBlock) without a timeout when no thread drives
    ///   the loop;
    /// - the errors of [`register_fd`](Self::register_fd), except that a file type the
    ///   backend cannot watch (a regular file) is reported ready at once, as it is always
    ///   ready.
    pub fn wait_readable(
        &self,
        fd: impl FdLike,
        timeout: Option<Duration>,
    ) -> io::Result<Readiness> {
        self.wait_fd(fd.fd_number(), Interest::READ, timeout)
    }

    /// Blocks the calling thread until `fd` is writable (GHC's `threadWaitWrite`); as
    /// [`wait_readable`](Self::wait_readable).
    ///
    /// # Errors
    ///
    /// As [`wait_readable`](Self::wait_readable).
    pub fn wait_writable(
        &self,
        fd: impl FdLike,
        timeout: Option<Duration>,
    ) -> io::Result<Readiness> {
        self.wait_fd(fd.fd_number(), Interest::WRITE, timeout)
    }

    fn wait_fd(
        &self,
        fd: std::os::fd::RawFd,
        interest: Interest,
        timeout: Option<Duration>,
    ) -> io::Result<Readiness> {
        self.refuse_loop_thread()?;
        if timeout.is_none() && !self.is_driven() && !self.is_shut_down() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "no loop runs this event manager (run, spawn or a step in progress): a wait without a timeout would never return",
            ));
        }
        let deadline = timeout.map(|d| self.now().checked_add(d));
        let slot = Slot::new();
        let wid = self.waiters.insert(&slot)?;
        let s = Arc::clone(&slot);
        let registered = self.register_fd(fd, interest, Lifetime::OneShot, move |_, _, r| {
            s.complete(if r.is_closed() { Err(closed()) } else { Ok(r) })
        });
        let fd_key = match registered {
            Ok(k) => k,
            Err(e) => {
                self.waiters.remove(wid);
                if e.kind() == io::ErrorKind::Unsupported {
                    return Ok(if interest.is_readable() {
                        Readiness::READABLE
                    } else {
                        Readiness::WRITABLE
                    });
                }
                return Err(e);
            }
        };
        let timer = match timeout {
            None => None,
            Some(d) => {
                let s = Arc::clone(&slot);
                match self.register_timeout(d, move |_| s.complete(Err(timed_out()))) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        let _ = self.unregister_fd(fd_key);
                        self.waiters.remove(wid);
                        return Err(e);
                    }
                }
            }
        };
        let r = slot
            .wait(|| self.left(deadline))
            .unwrap_or_else(|| Err(timed_out()));
        // Whichever side did not fire is removed (a no-op for the one that did).
        let _ = self.unregister_fd(fd_key);
        if let Some(t) = timer {
            self.unregister_timeout(t);
        }
        self.waiters.remove(wid);
        r
    }

    /// The time left until `deadline` on the manager's clock: `None` for no deadline (or
    /// one too far away to represent), zero once it has passed.
    fn left(&self, deadline: Option<Option<std::time::Instant>>) -> Option<Duration> {
        let deadline = deadline.flatten()?;
        Some(deadline.saturating_duration_since(self.now()))
    }

    /// Blocks the calling thread for `duration` on the manager's clock (GHC's
    /// `threadDelay`). It returns when the manager's loop fires its timeout, or when the
    /// calling thread sees the time has passed, whichever comes first: it does not need a
    /// loop to return.
    ///
    /// # Errors
    ///
    /// [`ShutDown`](crate::ShutDown) when the manager is shut down before the time is up;
    /// [`Deadlock`](io::ErrorKind::Deadlock) when called on the loop thread.
    pub fn sleep(&self, duration: Duration) -> io::Result<()> {
        self.refuse_loop_thread()?;
        let slot = Slot::new();
        let wid = self.waiters.insert(&slot)?;
        let s = Arc::clone(&slot);
        let key = match self.register_timeout(duration, move |_| s.complete(Ok(Readiness::EMPTY))) {
            Ok(k) => k,
            Err(e) => {
                self.waiters.remove(wid);
                return Err(e);
            }
        };
        let deadline = Some(self.now().checked_add(duration));
        // Time up with no loop to fire the timer: the sleep is over all the same.
        let r = slot
            .wait(|| self.left(deadline))
            .unwrap_or(Ok(Readiness::EMPTY));
        self.unregister_timeout(key);
        self.waiters.remove(wid);
        r.map(drop)
    }

    /// Returns a flag that the loop sets when `duration` has passed (GHC's `registerDelay`).
    /// Dropping the [`Delay`] does not cancel it; use
    /// [`unregister_timeout`](Self::unregister_timeout) with [`Delay::key`].
    ///
    /// # Errors
    ///
    /// [`ShutDown`](crate::ShutDown) after shutdown.
    pub fn delay(&self, duration: Duration) -> io::Result<Delay> {
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        let key = self.register_timeout(duration, move |_| {
            f.store(true, std::sync::atomic::Ordering::Release)
        })?;
        Ok(Delay { flag, key })
    }

    fn refuse_loop_thread(&self) -> io::Result<()> {
        if self.on_loop_thread() {
            return Err(io::Error::new(
                io::ErrorKind::Deadlock,
                "a wait helper was called on the loop thread: it would wait for itself",
            ));
        }
        Ok(())
    }
}
