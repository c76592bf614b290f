//! GHC's event manager in Rust: a thread-safe manager of fd readiness callbacks and timeouts,
//! assembled from [`ioman_poll`], [`ioman_timers`] and [`ioman_wakeup`].
//!
//! An [`EventManager`] runs a loop that waits for file descriptors to become ready and for
//! timeouts to expire, and calls the callbacks registered for them. Any thread may register,
//! unregister and close through `&self`; the callbacks run on the loop thread. It follows
//! GHC's `GHC.Event.Manager` and `TimerManager` (O'Sullivan and Tibell, 2010) with the
//! multicore fast paths of the Mio paper (Voellmy et al., 2013): registrations are made on
//! the caller's thread under one of 32 lock stripes without waking the loop (epoll, kqueue),
//! one-shot registrations are re-armed with a single `EPOLL_CTL_MOD`, and a [`Pool`] runs one
//! manager per core.
//!
//! # Main types
//!
//! - [`EventManager`], with [`register_fd`](EventManager::register_fd),
//!   [`unregister_fd`](EventManager::unregister_fd), [`close_fd`](EventManager::close_fd)
//!   (GHC's `closeFdWith`), [`register_timeout`](EventManager::register_timeout),
//!   [`update_timeout`](EventManager::update_timeout),
//!   [`unregister_timeout`](EventManager::unregister_timeout); the loop:
//!   [`run`](EventManager::run), [`step`](EventManager::step), [`spawn`](EventManager::spawn),
//!   [`shutdown`](EventManager::shutdown).
//! - Thread helpers after GHC's `threadWaitRead`, `threadWaitWrite`, `threadDelay` and
//!   `registerDelay`: [`wait_readable`](EventManager::wait_readable),
//!   [`wait_writable`](EventManager::wait_writable), [`sleep`](EventManager::sleep),
//!   [`delay`](EventManager::delay).
//! - [`Builder`] to choose the backend, the wakeup, the clock and the panic hook.
//! - [`Pool`]: one manager per core, each fd owned by one of them.
//!
//! # Threading rules
//!
//! - Every method takes `&self`; share a manager with `Arc` or a reference.
//! - Callbacks run on the loop thread, never while a manager lock is held: a callback may
//!   register, unregister, close or shut down. A slow callback delays every other callback of
//!   its manager (GHC hazard H8), so keep them short.
//! - [`close_fd`](EventManager::close_fd) runs the `CLOSED` callbacks on the calling thread,
//!   as GHC's `closeFdWith` does, after the fd is closed.
//! - A panicking callback is caught and reported through the panic hook (default: a line on
//!   stderr); the loop goes on and the registration is dropped.
//!
//! # Examples
//!
//! ```
//! use ioman::{EventManager, Interest, Lifetime};
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//! use std::sync::{mpsc, Arc};
//! use std::time::Duration;
//!
//! let manager = Arc::new(EventManager::new()?);
//! let handle = manager.spawn()?;
//!
//! let (mut a, mut b) = UnixStream::pair()?;
//! let (tx, rx) = mpsc::channel();
//! let fd = std::os::fd::AsRawFd::as_raw_fd(&b);
//! manager.register_fd(fd, Interest::READ, Lifetime::OneShot, move |_mgr, _key, readiness| {
//!     let mut buf = [0u8; 16];
//!     let n = b.read(&mut buf).unwrap();
//!     tx.send((readiness, buf[..n].to_vec())).unwrap();
//! })?;
//! a.write_all(b"ping")?;
//! let (readiness, bytes) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
//! assert!(readiness.is_readable());
//! assert_eq!(bytes, b"ping");
//!
//! // Timeouts run on the loop thread too.
//! let (tx, rx) = mpsc::channel();
//! manager.register_timeout(Duration::from_millis(1), move |_mgr| tx.send("fired").unwrap())?;
//! assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "fired");
//!
//! manager.shutdown();
//! handle.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]

mod builder;
mod event_loop;
mod pool;
mod sync;
mod table;
mod wait;

use std::any::Any;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

pub use builder::Builder;
pub use event_loop::LoopHandle;
pub use ioman_poll::{Backend, DefaultBackend, Interest, Readiness};
pub use ioman_timers::{Clock, ManualClock, MonotonicClock};
pub use pool::{Pool, PoolBuilder};
pub use wait::Delay;

/// The backends crate, re-exported (for [`Poll`](poll::Poll), `Epoll`, `Kqueue`, ...).
pub use ioman_poll as poll;
/// The timers crate, re-exported.
pub use ioman_timers as timers;
/// The wakeup crate, re-exported.
pub use ioman_wakeup as wakeup;

use ioman_timers::{TimerKey, TimerQueue};
use ioman_wakeup::Wakeup;
use sync::{lock, AtomicU64, AtomicU8, Mutex, Ordering};
use table::{Reg, Table};

/// Anything that names an fd for registration: a [`RawFd`], a
/// [`BorrowedFd`](std::os::fd::BorrowedFd), or a reference to anything [`AsFd`]
/// (`&TcpStream`, `&OwnedFd`, ...).
pub trait FdLike {
    /// The fd number.
    fn fd_number(&self) -> RawFd;
}

impl FdLike for RawFd {
    fn fd_number(&self) -> RawFd {
        *self
    }
}

impl FdLike for std::os::fd::BorrowedFd<'_> {
    fn fd_number(&self) -> RawFd {
        self.as_raw_fd()
    }
}

impl<T: AsFd + ?Sized> FdLike for &T {
    fn fd_number(&self) -> RawFd {
        (**self).as_fd().as_raw_fd()
    }
}

/// How long a fd registration lives (GHC's `Lifetime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lifetime {
    /// Removed after its callback fires once.
    OneShot,
    /// Stays until [`EventManager::unregister_fd`] or [`EventManager::close_fd`].
    MultiShot,
}

/// Names one fd registration; returned by [`EventManager::register_fd`] and passed to its
/// callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdKey {
    fd: RawFd,
    id: u64,
}

impl FdKey {
    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

/// Names one timeout; returned by [`EventManager::register_timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeoutKey(TimerKey);

/// A fd callback: called on the loop thread with the manager, the registration's key and what
/// the fd is ready for (only what the registration asked for, plus error, hang-up and close).
pub type FdCallback<B> = Box<dyn FnMut(&EventManager<B>, FdKey, Readiness) + Send>;

/// A timeout callback: called once on the loop thread when the timeout expires.
pub type TimeoutCallback<B> = Box<dyn FnOnce(&EventManager<B>) + Send>;

/// Called with the payload of a callback's panic.
pub type PanicHook = Arc<dyn Fn(&(dyn Any + Send)) + Send + Sync>;

/// The error (inside an [`io::Error`] of kind [`Other`](io::ErrorKind::Other)) given by every
/// operation on a manager that was shut down, and to every waiter it released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutDown;

impl fmt::Display for ShutDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event manager was shut down")
    }
}

impl std::error::Error for ShutDown {}

impl ShutDown {
    /// Whether `e` is the manager's shut-down error.
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<ShutDown>())
    }
}

pub(crate) fn shut_down() -> io::Error {
    io::Error::other(ShutDown)
}

/// Where a manager is in its life (GHC's `State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Built; no loop has run yet (or only [`EventManager::step`] drives it).
    Created,
    /// [`EventManager::run`] is looping.
    Running,
    /// [`EventManager::shutdown`] was called while the loop ran; it stops after the current
    /// iteration.
    Dying,
    /// Shut down: every registration dropped, every waiter released.
    Finished,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Created,
            1 => State::Running,
            2 => State::Dying,
            _ => State::Finished,
        }
    }
}

/// Counters of what a manager did, for monitoring and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Loop iterations.
    pub iterations: u64,
    /// fd callbacks run (including `CLOSED` ones run by `close_fd`).
    pub fd_callbacks: u64,
    /// Timeout callbacks run.
    pub timeout_callbacks: u64,
    /// Callbacks that panicked.
    pub panics: u64,
    /// Wakeup syscalls made to interrupt the loop (coalesced wakes are not counted).
    pub wakeups: u64,
}

/// GHC's event manager: fd readiness callbacks and timeouts, driven by one loop, usable from
/// any thread.
///
/// See the [crate docs](crate) for the threading rules and an example.
pub struct EventManager<B: Backend + 'static = DefaultBackend> {
    backend: B,
    caps: ioman_poll::Capabilities,
    table: Table<B>,
    timers: Mutex<TimerQueue<TimeoutCallback<B>, Arc<dyn Clock>>>,
    wakeup: Wakeup,
    state: AtomicU8,
    loop_state: Mutex<event_loop::LoopState<B>>,
    /// Thread id (see `event_loop::thread_id`) of the thread inside the loop, 0 if none.
    loop_thread: AtomicU64,
    waiters: wait::Waiters,
    panic_hook: PanicHook,
    counters: event_loop::Counters,
}

impl EventManager<DefaultBackend> {
    /// A manager on the default backend, the monotonic clock and the default wakeup.
    ///
    /// # Errors
    ///
    /// When the backend or the wakeup fd cannot be created (`EMFILE`, `ENOMEM`).
    pub fn new() -> io::Result<Self> {
        Builder::new().build()
    }

    /// A builder, to choose the backend, wakeup, clock or panic hook.
    pub fn builder() -> Builder<DefaultBackend> {
        Builder::new()
    }
}

impl<B: Backend + 'static> EventManager<B> {
    fn check_live(&self) -> io::Result<()> {
        match self.state() {
            State::Dying | State::Finished => Err(shut_down()),
            _ => Ok(()),
        }
    }

    /// Where the manager is in its life.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::SeqCst))
    }

    /// The backend's capabilities.
    pub fn capabilities(&self) -> ioman_poll::Capabilities {
        self.caps
    }

    /// What the manager did so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.counters.snapshot();
        s.wakeups = self.wakeup.syscalls();
        s
    }

    /// The clock the manager's timeouts run on.
    pub fn now(&self) -> std::time::Instant {
        lock(&self.timers).now()
    }

    /// Wakes the loop if it is blocked, so it looks again at its timeouts and state (for
    /// example after a [`ManualClock`] was advanced). Cheap when a wake is already pending.
    pub fn wake(&self) {
        // A failed wake (EBADF after the fd was closed at drop) has nobody left to wake.
        let _ = self.wakeup.wake();
    }

    fn wake_if_needed(&self) {
        if !self.caps.live_modify {
            self.wake();
        }
    }

    /// Registers `callback` for `interest` on `fd`.
    ///
    /// Several registrations on one fd are allowed; the kernel is asked for the union of
    /// their interests, in one-shot mode only if all of them are [`Lifetime::OneShot`]. The
    /// backend call is made on the calling thread, under the fd's lock stripe; with epoll and
    /// kqueue the loop is not woken, with poll(2) it is. Registering a one-shot again after
    /// it fired costs one `EPOLL_CTL_MOD`.
    ///
    /// The fd must stay open until it is unregistered or passed to
    /// [`close_fd`](Self::close_fd): closing it behind the manager's back lets a reused fd
    /// number receive this registration's events.
    ///
    /// # Errors
    ///
    /// The backend's: `EBADF` (raw OS error) for a closed or invalid fd,
    /// [`Unsupported`](io::ErrorKind::Unsupported) for a file type the backend cannot watch
    /// (epoll and regular files); [`InvalidInput`](io::ErrorKind::InvalidInput) for a negative
    /// fd; [`ShutDown`] after [`shutdown`](Self::shutdown). Nothing stays registered on error.
    pub fn register_fd<F>(
        &self,
        fd: impl FdLike,
        interest: Interest,
        lifetime: Lifetime,
        callback: F,
    ) -> io::Result<FdKey>
    where
        F: FnMut(&EventManager<B>, FdKey, Readiness) + Send + 'static,
    {
        self.register_boxed(fd.fd_number(), interest, lifetime, Box::new(callback))
    }

    pub(crate) fn register_boxed(
        &self,
        fd: RawFd,
        interest: Interest,
        lifetime: Lifetime,
        cb: FdCallback<B>,
    ) -> io::Result<FdKey> {
        if fd < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a negative fd cannot be registered",
            ));
        }
        let mut stripe = self.table.lock(fd);
        // Checked under the stripe lock: shutdown drains each stripe after setting the state,
        // so a registration either sees the state or is drained.
        self.check_live()?;
        let id = stripe.next_id();
        let entry = stripe.entry(fd);
        entry.regs.push(Reg {
            id,
            interest,
            lifetime,
            cb: Some(cb),
        });
        match entry.sync(fd, &self.backend, &self.caps) {
            Ok(changed) => {
                drop(stripe);
                if changed {
                    self.wake_if_needed();
                }
                Ok(FdKey { fd, id })
            }
            Err(e) => {
                let reg = entry.regs.pop();
                drop(stripe);
                // Dropped outside the lock: the callback may own things whose drop calls the
                // manager.
                drop(reg);
                Err(e)
            }
        }
    }

    /// Removes a registration. Returns `false` (and does nothing) when the key is unknown:
    /// already unregistered, a one-shot that already fired, or closed.
    ///
    /// # Errors
    ///
    /// Only when the backend refuses to shrink the fd's interest (a level-triggered fd that
    /// was closed behind the manager's back is not an error).
    pub fn unregister_fd(&self, key: FdKey) -> io::Result<bool> {
        if key.fd < 0 {
            return Ok(false);
        }
        let mut stripe = self.table.lock(key.fd);
        let Some(entry) = stripe.get(key.fd) else {
            return Ok(false);
        };
        let Some(i) = entry.regs.iter().position(|r| r.id == key.id) else {
            return Ok(false);
        };
        let reg = entry.regs.swap_remove(i);
        let changed = entry.sync(key.fd, &self.backend, &self.caps);
        drop(stripe);
        // The callback may own resources whose drop calls back into the manager.
        drop(reg);
        if changed? {
            self.wake_if_needed();
        }
        Ok(true)
    }

    /// GHC's `closeFdWith`: removes `fd` from the kernel set, closes it, then calls each of
    /// its registrations' callbacks once with [`Readiness::CLOSED`], on the calling thread.
    /// Returns how many callbacks were told.
    ///
    /// The close happens under the fd's lock stripe, so a registration of the reused fd
    /// number made by another thread can only land after the old registrations are gone: a
    /// reused number never receives an old registration's events.
    ///
    /// A multi-shot callback that is running on the loop thread at that moment is told when
    /// it returns.
    ///
    /// # Errors
    ///
    /// Never for the close itself (the fd is closed in every case); the result carries the
    /// count. [`ShutDown`] is not returned: closing after shutdown just closes.
    pub fn close_fd(&self, fd: impl Into<OwnedFd>) -> io::Result<usize> {
        let fd: OwnedFd = fd.into();
        let raw = fd.as_raw_fd();
        let mut stripe = self.table.lock(raw);
        let mut deregistered = false;
        let regs = match stripe.get(raw) {
            Some(entry) => {
                if entry.kernel.take().is_some() {
                    // Best effort: whatever the kernel says, the close below removes it.
                    let _ = self.backend.deregister(raw);
                    deregistered = true;
                }
                // A later registration of the reused number must not match queued events.
                entry.gen = entry.gen.wrapping_add(1);
                std::mem::take(&mut entry.regs)
            }
            None => Vec::new(),
        };
        for r in regs.iter().filter(|r| r.cb.is_none()) {
            stripe.closed_while_running.push(r.id);
        }
        drop(fd);
        drop(stripe);
        if deregistered {
            self.wake_if_needed();
        }
        let mut told = 0;
        for r in regs {
            if let Some(cb) = r.cb {
                self.run_fd_callback(cb, FdKey { fd: raw, id: r.id }, Readiness::CLOSED);
                told += 1;
            }
        }
        Ok(told)
    }

    /// Registers `callback` to run once on the loop thread after `after`.
    ///
    /// A zero duration fires on the next loop iteration; a duration too large for the clock
    /// never fires (and never overflows). The loop is woken only when the new timeout is
    /// earlier than every other.
    ///
    /// # Errors
    ///
    /// [`ShutDown`] after [`shutdown`](Self::shutdown).
    pub fn register_timeout<F>(&self, after: Duration, callback: F) -> io::Result<TimeoutKey>
    where
        F: FnOnce(&EventManager<B>) + Send + 'static,
    {
        let mut timers = lock(&self.timers);
        self.check_live()?;
        let before = timers.next_deadline();
        let key = timers.register_after(after, Box::new(callback));
        let wake = earlier(timers.deadline(key), before);
        drop(timers);
        if wake {
            self.wake();
        }
        Ok(TimeoutKey(key))
    }

    /// Moves a timeout to `after` from now, earlier or later. Returns `false` when the key is
    /// unknown (fired or unregistered). Moving a timeout later is O(1) and never wakes the
    /// loop; the loop is woken only when the new deadline is earlier than every other.
    pub fn update_timeout(&self, key: TimeoutKey, after: Duration) -> bool {
        let mut timers = lock(&self.timers);
        let before = timers.next_deadline();
        if !timers.update_after(key.0, after) {
            return false;
        }
        let wake = earlier(timers.deadline(key.0), before);
        drop(timers);
        if wake {
            self.wake();
        }
        true
    }

    /// Cancels a timeout. Returns `false` when the key is unknown (fired or unregistered).
    pub fn unregister_timeout(&self, key: TimeoutKey) -> bool {
        let cb = lock(&self.timers).cancel(key.0);
        // Dropped outside the lock: it may own things whose drop calls the manager.
        cb.is_some()
    }

    /// The number of live fd registrations and timeouts (for monitoring; takes every lock in
    /// turn, so it is not for hot paths).
    pub fn live(&self) -> (usize, usize) {
        let mut fds = 0;
        for i in 0..table::STRIPES {
            fds += self.table.lock_index(i).live_regs();
        }
        (fds, lock(&self.timers).len())
    }
}

/// Whether `new` is earlier than `before` (or the queue was empty, or all "never").
fn earlier(new: Option<std::time::Instant>, before: Option<std::time::Instant>) -> bool {
    match (new, before) {
        (Some(n), Some(b)) => n < b,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

impl<B: Backend + 'static> fmt::Debug for EventManager<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventManager")
            .field("state", &self.state())
            .field("capabilities", &self.caps)
            .field("wakeup", &self.wakeup)
            .finish_non_exhaustive()
    }
}

impl<B: Backend + 'static> Drop for EventManager<B> {
    fn drop(&mut self) {
        // Release waiters and drop callbacks; the backend and wakeup fds close with their
        // owners.
        self.shutdown();
    }
}

#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<EventManager>();
        assert::<EventManager<ioman_poll::Poll>>();
        assert::<Pool>();
        assert::<FdKey>();
        assert::<TimeoutKey>();
    }
}
