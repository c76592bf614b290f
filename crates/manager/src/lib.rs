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
//! - A panicking callback is caught and reported through the panic hook, with which
//!   registration or timeout it was ([`Panic`]; default: a line on stderr); the loop goes on
//!   and the registration is dropped. Dropping a callback (after a one-shot fired, at
//!   unregister, cancel or shutdown) is contained the same way.
//! - Within one batch of events, each registration's turn comes in order, and a
//!   registration that an earlier callback unregistered or closed is not called with
//!   readiness: [`unregister_fd`](EventManager::unregister_fd) returning `true` means "will
//!   not run again"; a closed one is told `CLOSED` exactly once, last.
//!
//! # Lifetime
//!
//! - [`shutdown`](EventManager::shutdown) releases everything before it returns: waiters get
//!   [`ShutDown`], registrations and timeouts are dropped, and a thread in
//!   [`run`](EventManager::run) or [`step`](EventManager::step) is woken and leaves.
//! - [`spawn`](EventManager::spawn) returns the [`LoopHandle`] that owns the loop thread:
//!   dropping it shuts the manager down and joins the thread, so a loop never outlives its
//!   users. Dropping the last `Arc` of a manager shuts it down and closes its fds.
//! - The wait helpers never hang silently: with a timeout they return by it whether or not a
//!   loop runs; without one they fail at once when no thread drives the loop.
//!
//! # Closing fds and reused numbers
//!
//! The kernel reuses a closed fd's number at once, so the manager must know when a number
//! starts naming another file.
//!
//! - [`close_fd`](EventManager::close_fd) is the safe way to close a registered fd (GHC's
//!   `closeFdWith`): it removes the fd from the kernel and the table under the fd's lock,
//!   closes it, and tells its registrations `CLOSED`.
//! - A plain `close()` (dropping the `TcpStream`) is normal once the fd's registrations have
//!   ended: a one-shot fired, `unregister_fd` returned, a wait helper returned. The manager
//!   keeps nothing that refers to the file, and the next registration of the number always
//!   reaches the kernel (an `EPOLL_CTL_MOD` that finds the new file unknown, then an `ADD`).
//! - A plain `close()` while a registration is live is misuse, and breaks this much, for this
//!   long: the live registration hears nothing more from the closed file; once the number
//!   names a new file and someone registers it, the new registration works, and the old live
//!   one is called for the new file's readiness too (it shares the number) until it is
//!   unregistered. If the closed file stays open elsewhere (a `dup`, a forked child), epoll
//!   keeps its old registration, whose events are dropped as stale: a multi-shot
//!   (level-triggered) one makes the loop wake for nothing while that file is ready, until
//!   its last copy is closed. poll(2) reports the closed number as an error once, then
//!   disarms it.
//!
//! # Features
//!
//! - `tracing` (off by default): reports what the loop otherwise handles silently (stale
//!   and stray events, lazy trims, failed re-arms, refused registrations, contained panics,
//!   wakes, shutdown) as [`tracing`](https://docs.rs/tracing) events with target `ioman`.
//!   Without it the calls compile to nothing.
//!
//! # Refused inputs
//!
//! A negative fd is [`InvalidInput`](io::ErrorKind::InvalidInput); a number the kernel does
//! not know (closed, never opened, above every open fd) is `EBADF`, found by the kernel
//! before anything is allocated for it; the manager's own fds (its wakeup, its epoll or
//! kqueue fd) are refused; a key of another manager acts on nothing.
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
//! manager.shutdown(); // (dropping `handle` would shut down and join too)
//! handle.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]

mod builder;
mod event_loop;
mod panic;
mod pool;
mod sync;
mod table;
mod timeouts;
mod trace;
mod wait;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

pub use builder::Builder;
pub use event_loop::LoopHandle;
pub use ioman_poll::{Backend, DefaultBackend, Interest, Readiness};
pub use ioman_timers::{Clock, ManualClock, MonotonicClock};
pub use panic::{Origin, Panic, PanicHook};
pub use pool::{Pool, PoolBuilder, WeakPool};
pub use wait::Delay;

/// The backends crate, re-exported (for [`PosixPoll`](poll::PosixPoll), `Epoll`, `Kqueue`, ...).
pub use ioman_poll as poll;
/// The timers crate, re-exported.
pub use ioman_timers as timers;
/// The wakeup crate, re-exported.
pub use ioman_wakeup as wakeup;

use ioman_timers::{TimerKey, TimerQueue};
use ioman_wakeup::Wakeup;
use sync::{lock, AtomicBool, AtomicU64, Mutex, Ordering};
use table::{FdEntry, Follow, Kernel, KernelCalls, Reg, Table};

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

/// How long a fd registration lives (GHC's `Lifetime`, plus the re-armable one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lifetime {
    /// Fires once and is removed (GHC's `OneShot`, `threadWaitRead`). Registering again
    /// costs one `EPOLL_CTL_MOD` (the Mio paper's cost).
    OneShot,
    /// Fires at every loop iteration while the fd is ready; stays until
    /// [`EventManager::unregister_fd`] or [`EventManager::close_fd`].
    MultiShot,
    /// Fires once, then waits, disarmed but still registered with its callback, until
    /// [`EventManager::rearm`]; stays until [`EventManager::unregister_fd`] or
    /// [`EventManager::close_fd`]. GHC's one-shot meaning at no syscall per wait: the kernel
    /// keeps a level-triggered registration, and a re-arm only flips a flag (when the fd
    /// reports readiness nobody is armed for, the kernel registration is trimmed with one
    /// call, libev's lazy disarm). A re-arm on an fd that is already ready fires at once.
    /// This is the fast path for a connection that waits again and again.
    Rearmable,
    /// Edge-triggered (mio's and tokio's contract): fires once when the fd becomes ready,
    /// then waits, disarmed but registered, until [`EventManager::rearm`]; a re-arm fires
    /// again only at the next edge, or at once if an edge came while it was disarmed. So
    /// re-arm only after the fd said `WouldBlock` (read or write until then); a re-arm on a
    /// fd left ready with no new edge waits. The kernel registration (`EPOLLET`,
    /// `EV_CLEAR`) is made once and never changed: no syscall per wait even when the loop
    /// runs on another thread than the code that re-arms (a missed edge costs one `MOD` at
    /// its re-arm, which makes the kernel report a still-ready fd). It must be the fd's only
    /// kind of registration to be edge-triggered; mixed with others, or on a backend without
    /// edge mode (poll(2)), it behaves as [`Rearmable`](Lifetime::Rearmable), which keeps the
    /// contract. For async reactors (`ioman-async` uses it).
    Edge,
}

/// Names one fd registration; returned by [`EventManager::register_fd`] and passed to its
/// callback. A key names its registration in its own manager only: another manager's
/// methods treat it as unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FdKey {
    fd: RawFd,
    manager: u32,
    id: u64,
}

impl FdKey {
    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }
}

/// Names one timeout; returned by [`EventManager::register_timeout`]. Like an [`FdKey`],
/// it acts only on the manager that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeoutKey {
    manager: u32,
    key: TimerKey,
}

/// A fd callback: called on the loop thread with the manager, the registration's key and what
/// the fd is ready for (only what the registration asked for, plus error, hang-up and close).
pub type FdCallback<B> = Box<dyn FnMut(&EventManager<B>, FdKey, Readiness) + Send>;

/// A timeout callback: called once on the loop thread when the timeout expires.
pub type TimeoutCallback<B> = Box<dyn FnOnce(&EventManager<B>) + Send>;

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
#[non_exhaustive]
pub enum State {
    /// Built; no loop runs (or only [`EventManager::step`] drives it).
    Created,
    /// [`EventManager::run`] (or [`spawn`](EventManager::spawn)) is looping.
    Running,
    /// [`EventManager::shutdown`] was called while a thread was inside the loop; it leaves
    /// after the current iteration.
    Dying,
    /// Shut down and no thread inside the loop: every registration dropped, every waiter
    /// released.
    Finished,
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
    /// Callbacks that panicked (while running or while dropped).
    pub panics: u64,
    /// Wakeup syscalls made to interrupt the loop (coalesced wakes are not counted).
    pub wakeups: u64,
    /// Backend `wait` calls (one per loop iteration).
    pub polls: u64,
    /// Backend `register` calls (`EPOLL_CTL_ADD`).
    pub backend_registers: u64,
    /// Backend `modify` calls (`EPOLL_CTL_MOD`: re-arming a one-shot, changing interest).
    pub backend_modifies: u64,
    /// Backend `deregister` calls (`EPOLL_CTL_DEL`).
    pub backend_deregisters: u64,
}

/// A process-unique number per manager, carried by its keys.
fn next_manager_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// GHC's event manager: fd readiness callbacks and timeouts, driven by one loop, usable from
/// any thread.
///
/// See the [crate docs](crate) for the threading rules, the ownership of a spawned loop and
/// an example.
pub struct EventManager<B: Backend + 'static = DefaultBackend> {
    id: u32,
    backend: B,
    caps: ioman_poll::Capabilities,
    table: Table<B>,
    timers: Mutex<TimerQueue<timeouts::Timeout<B>, std::sync::Arc<dyn Clock>>>,
    /// The timer queue's clock, read without its lock.
    clock: std::sync::Arc<dyn Clock>,
    /// Until when the loop blocks in its poll: see `timeouts::Sleep`.
    sleep: timeouts::Sleep,
    wakeup: Wakeup,
    /// The one shutdown flag: set once by [`shutdown`](Self::shutdown), read by everyone.
    shut_down: AtomicBool,
    /// Whether `run` (or a spawned loop) is looping.
    running: AtomicBool,
    loop_state: Mutex<event_loop::LoopState<B>>,
    /// Thread id (see `event_loop::thread_id`) of the thread inside the loop, 0 if none.
    loop_thread: AtomicU64,
    waiters: wait::Waiters,
    panic_hook: PanicHook,
    counters: event_loop::Counters,
    calls: KernelCalls,
    /// Set on the loop's thread when `run` starts (`Builder::timer_slack`).
    timer_slack: Option<std::time::Duration>,
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
        if self.is_shut_down() {
            Err(shut_down())
        } else {
            Ok(())
        }
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }

    /// Where the manager is in its life.
    pub fn state(&self) -> State {
        match (self.is_shut_down(), self.running.load(Ordering::SeqCst)) {
            (false, false) => State::Created,
            (false, true) => State::Running,
            (true, _) if self.is_driven() => State::Dying,
            (true, _) => State::Finished,
        }
    }

    /// The backend's capabilities.
    pub fn capabilities(&self) -> ioman_poll::Capabilities {
        self.caps
    }

    /// What the manager did so far.
    pub fn stats(&self) -> Stats {
        let mut s = self.counters.snapshot();
        s.wakeups = self.wakeup.syscalls();
        s.backend_registers = self.calls.registers.load(Ordering::Relaxed);
        s.backend_modifies = self.calls.modifies.load(Ordering::Relaxed);
        s.backend_deregisters = self.calls.deregisters.load(Ordering::Relaxed);
        s
    }

    /// The backend, as the table calls it (counted).
    pub(crate) fn kernel(&self) -> Kernel<'_, B> {
        Kernel {
            backend: &self.backend,
            caps: &self.caps,
            calls: &self.calls,
        }
    }

    /// The clock the manager's timeouts run on.
    pub fn now(&self) -> std::time::Instant {
        self.clock.now()
    }

    /// Wakes the loop if it is blocked, so it looks again at its timeouts and state (for
    /// example after a [`ManualClock`] was advanced). Cheap when a wake is already pending.
    pub fn wake(&self) {
        trace::event!(TRACE, "wake", manager = self.id);
        // The wakeup lives as long as the manager and `wake` has no error case left on an
        // fd it owns (a full eventfd or pipe is drained and written again).
        let _ = self.wakeup.wake();
    }

    /// After a backend change: poll(2) sees it only at its next call, so a loop blocked in
    /// it must be woken, unless the change was made on the loop thread itself (it polls
    /// again after the callback). epoll and kqueue see it at once.
    fn wake_if_needed(&self) {
        if !self.caps.live_modify && !self.on_loop_thread() {
            self.wake();
        }
    }

    /// Refuses the manager's own fds: registering its wakeup (or, below, the backend's own
    /// fd) would let a stale `RawFd` take the wakeup over, and unregistering it then would
    /// leave the loop deaf to timers and shutdown.
    fn refuse_own_fd(&self, fd: RawFd) -> io::Result<()> {
        if self.wakeup.owns_fd(fd) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("fd {fd} is the event manager's own wakeup fd"),
            ));
        }
        Ok(())
    }

    /// Registers `callback` for `interest` on `fd`.
    ///
    /// Several registrations on one fd are allowed; the kernel is asked for the union of
    /// their interests, in one-shot mode only if all of them are [`Lifetime::OneShot`]. The
    /// backend call is made on the calling thread, under the fd's lock stripe; with epoll and
    /// kqueue the loop is not woken, with poll(2) it is. Every registration tells the kernel
    /// (one `EPOLL_CTL_MOD`, or an `ADD` for an fd it does not watch), so a number reused
    /// after a plain `close()` is watched anew.
    ///
    /// The fd must stay open until its registrations have ended (fired, for a one-shot) or
    /// it is passed to [`close_fd`](Self::close_fd); see the crate docs on closing.
    ///
    /// # Errors
    ///
    /// - [`InvalidInput`](io::ErrorKind::InvalidInput) for a negative fd;
    /// - `EBADF` (raw OS error) for an fd the kernel does not know (closed, never opened, or
    ///   above any open fd); nothing is allocated for it;
    /// - [`AlreadyExists`](io::ErrorKind::AlreadyExists) for the manager's own wakeup fd,
    ///   and the backend's error for its own fd (epoll refuses to watch itself);
    /// - [`Unsupported`](io::ErrorKind::Unsupported) for a file type the backend cannot
    ///   watch (epoll and regular files);
    /// - [`ShutDown`] after [`shutdown`](Self::shutdown).
    ///
    /// Nothing stays registered on error.
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
        let fd = fd.fd_number();
        match self.register_boxed(fd, interest, lifetime, Box::new(callback)) {
            Ok(key) => Ok(key),
            Err((e, cb)) => {
                trace::event!(DEBUG, "refused", fd, error = %e);
                // Dropped outside the lock and contained: the callback may own things whose
                // drop calls the manager, or panics.
                self.drop_contained(Origin::Refused, cb);
                Err(e)
            }
        }
    }

    /// `register_fd` without the generic: on error, hands the callback back to be dropped
    /// outside the stripe lock.
    pub(crate) fn register_boxed(
        &self,
        fd: RawFd,
        interest: Interest,
        lifetime: Lifetime,
        cb: FdCallback<B>,
    ) -> Result<FdKey, (io::Error, FdCallback<B>)> {
        if fd < 0 {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                "a negative fd cannot be registered",
            );
            return Err((e, cb));
        }
        if let Err(e) = self.refuse_own_fd(fd) {
            return Err((e, cb));
        }
        let mut stripe = self.table.lock(fd);
        // Checked under the stripe lock: shutdown drains each stripe after setting the flag,
        // so a registration either sees the flag or is drained.
        if let Err(e) = self.check_live() {
            return Err((e, cb));
        }
        let id = stripe.next_id();
        let reg = Reg {
            id,
            interest,
            lifetime,
            armed: true,
            pending: Readiness::EMPTY,
            cb: Some(cb),
        };
        let result = match stripe.get(fd) {
            Some(entry) => {
                entry.regs.push(reg);
                entry
                    .sync(fd, &self.kernel(), Follow::Fresh)
                    .map_err(|e| (e, entry.regs.pop()))
            }
            None => {
                // No slot yet: the kernel validates the number before the stripe grows to
                // it, so an arbitrary number allocates nothing.
                let mut entry = FdEntry::default();
                entry.regs.push(reg);
                match entry.sync(fd, &self.kernel(), Follow::Fresh) {
                    Ok(changed) => {
                        stripe.insert(fd, entry);
                        Ok(changed)
                    }
                    Err(e) => Err((e, entry.regs.pop())),
                }
            }
        };
        drop(stripe);
        match result {
            Ok(changed) => {
                if changed {
                    self.wake_if_needed();
                }
                Ok(FdKey {
                    fd,
                    manager: self.id,
                    id,
                })
            }
            Err((e, reg)) => {
                // The registration just pushed is the last one, and it has its callback.
                let cb = reg.and_then(|r| r.cb).expect("the refused registration");
                Err((e, cb))
            }
        }
    }

    /// Removes a registration.
    ///
    /// Returns `true` when the registration was live: its callback will not run again (not
    /// even for an event already in the batch the loop is dispatching), and it is dropped
    /// once it is not running. Returns `false` (and does nothing) when the key is unknown:
    /// already unregistered, a one-shot that fired (or is firing), closed, or another
    /// manager's key.
    ///
    /// # Errors
    ///
    /// When the backend refuses to shrink or remove the fd's kernel registration (for
    /// example `ENOMEM`). Nothing changed then: the registration is still live, the kernel
    /// still watches the fd, and the call can be retried.
    pub fn unregister_fd(&self, key: FdKey) -> io::Result<bool> {
        if key.fd < 0 || key.manager != self.id {
            return Ok(false);
        }
        let mut stripe = self.table.lock(key.fd);
        let Some(entry) = stripe.get(key.fd) else {
            return Ok(false);
        };
        let Some(i) = entry.regs.iter().position(|r| r.id == key.id) else {
            return Ok(false);
        };
        let reg = entry.regs.remove(i);
        let changed = match entry.sync(key.fd, &self.kernel(), Follow::Exact) {
            Ok(changed) => changed,
            Err(e) => {
                entry.regs.insert(i, reg);
                return Err(e);
            }
        };
        drop(stripe);
        // The callback may own resources whose drop calls back into the manager.
        if let Some(cb) = reg.cb {
            self.drop_contained(Origin::FdCallbackDrop(key), cb);
        }
        if changed {
            self.wake_if_needed();
        }
        Ok(true)
    }

    /// Arms a registration again with `interest`: a fired [`Lifetime::Rearmable`] waits for
    /// its next readiness (and fires at once if the fd is ready already); a live one-shot or
    /// multi-shot registration changes its interest. Callable from the registration's own
    /// callback (the usual place: read until `WouldBlock`, then re-arm) or from any thread.
    ///
    /// Costs no syscall when the kernel already watches `interest` for the fd, which is the
    /// steady state of a `Rearmable` registration; otherwise one `EPOLL_CTL_MOD` (or `ADD`
    /// after the kernel registration was trimmed). With poll(2), a re-arm from another
    /// thread that changed the backend wakes the loop.
    ///
    /// Returns `false` (and does nothing) when the key is unknown: unregistered, closed, a
    /// one-shot that fired, or another manager's.
    ///
    /// # Errors
    ///
    /// When the backend refuses the change (`ENOMEM`, or `EBADF` for an fd closed behind
    /// the manager's back): the registration stays as it was.
    pub fn rearm(&self, key: FdKey, interest: Interest) -> io::Result<bool> {
        if key.fd < 0 || key.manager != self.id {
            return Ok(false);
        }
        let mut stripe = self.table.lock(key.fd);
        let Some(entry) = stripe.get(key.fd) else {
            return Ok(false);
        };
        let Some(i) = entry.regs.iter().position(|r| r.id == key.id) else {
            return Ok(false);
        };
        if entry.rearm_in_place(i, interest) {
            return Ok(true); // the steady state: the kernel still watches it
        }
        let r = &mut entry.regs[i];
        let before = (r.interest, r.armed, r.pending);
        // Edge mode and an edge came while disarmed: a `MOD` makes the kernel report the fd
        // again if it is still ready.
        let missed = r.pending.satisfies(interest);
        (r.interest, r.armed, r.pending) = (interest, true, Readiness::EMPTY);
        let how = if missed && entry.is_edge() {
            Follow::Fresh
        } else {
            Follow::Lazy
        };
        let changed = match entry.sync(key.fd, &self.kernel(), how) {
            Ok(changed) => changed,
            Err(e) => {
                let r = &mut entry.regs[i];
                (r.interest, r.armed, r.pending) = before;
                return Err(e);
            }
        };
        drop(stripe);
        if changed {
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
    /// reused number never receives an old registration's events. A registration closed
    /// before its turn in a batch the loop is dispatching is not called with that readiness:
    /// `CLOSED` is the last thing it is told.
    ///
    /// A multi-shot callback that is running on the loop thread at that moment is told when
    /// it returns.
    ///
    /// It cannot fail: the fd is closed in every case (a `close(2)` error, such as `EIO`
    /// from a network file system, is as unreportable here as in `OwnedFd`'s drop), also
    /// after shutdown.
    pub fn close_fd(&self, fd: impl Into<OwnedFd>) -> usize {
        let fd: OwnedFd = fd.into();
        let raw = fd.as_raw_fd();
        let mut stripe = self.table.lock(raw);
        let mut deregistered = false;
        let regs = match stripe.get(raw) {
            Some(entry) => {
                if entry.kernel.take().is_some() {
                    // Best effort: whatever the kernel says, the close below removes it.
                    let _ = self.kernel().deregister(raw);
                    deregistered = true;
                }
                // Events of the closed file still queued in the batch are stale from now on.
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
                let key = FdKey {
                    fd: raw,
                    manager: self.id,
                    id: r.id,
                };
                self.run_fd_callback(cb, key, Readiness::CLOSED);
                told += 1;
            }
        }
        told
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
        assert::<EventManager<ioman_poll::PosixPoll>>();
        assert::<Pool>();
        assert::<FdKey>();
        assert::<TimeoutKey>();
        assert::<LoopHandle>();
    }
}
