//! The reactor side: the [`Source`] each [`Async`](crate::Async) registers, one
//! [`Lifetime::Edge`] registration per direction, and its readiness model.
//!
//! # Readiness
//!
//! Per direction, the reactor knows one of two things about the fd (tokio's `AsyncFd`
//! model, with its `clear_ready` done by the operations themselves):
//!
//! - **maybe ready** (`armed` clear): no operation has said `WouldBlock` since the last
//!   readiness event (or since the `Async` was made). Operations are tried; a
//!   [`Ready`] future asks the fd (one zero-timeout `poll(2)`) and completes at once if a read
//!   (write) would not block.
//! - **not ready** (`armed` set): an attempt said `WouldBlock` (or a short read of a stream
//!   socket showed it drained, or a probe found it not ready), and the registration was
//!   re-armed: it waits for the next edge. Operations return `Pending` without a syscall,
//!   waiters wait.
//!
//! An event moves a direction to "maybe ready" and wakes every waiter; only a failed attempt
//! moves it back, and only when no event came while the attempt ran (the event count, read
//! before the attempt, is compared under the lock: tokio's readiness tick), so a readiness
//! that an attempt did not see is never cleared. The registration is edge-triggered
//! underneath (the manager's [`Lifetime::Edge`]): its kernel registration is made once and
//! never changed, so a re-arm flips a flag in the manager, with no syscall, whichever thread
//! runs the loop; an edge that came while it was disarmed makes the re-arm cost one `MOD`
//! (which has the kernel report the fd again if it is still ready). Where the manager falls
//! back to level triggering (poll(2), or other registrations on the fd), the same rules hold:
//! a re-arm of a ready fd then fires at once.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use ioman::{EventManager, FdKey, Interest, Lifetime, Readiness, ShutDown};

use crate::global::ensure_driven;
use crate::sys;

mod ready;

pub use ready::Ready;

/// Locks `m`, ignoring poisoning: every critical section here leaves the state consistent
/// (a panic can only come from a waker's `clone`, before anything is changed).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Index of a direction in [`Dirs`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dir {
    Read = 0,
    Write = 1,
}

impl Dir {
    fn interest(self) -> Interest {
        match self {
            Dir::Read => Interest::READ,
            Dir::Write => Interest::WRITE,
        }
    }
}

/// Why a direction can wait no more.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Gone {
    /// Its fd was closed through the manager (`close_fd`): told `CLOSED`.
    Closed,
    /// The manager dropped the registration without a `CLOSED` (it was shut down).
    Dropped,
}

/// One direction's state.
#[derive(Default)]
struct DirState {
    /// The registration, once made.
    key: Option<FdKey>,
    /// A registration is being made by one waiter (without this lock held: a refused
    /// registration drops its callback, whose drop takes this lock).
    registering: bool,
    /// The callback of a registration being made was dropped before its key was stored (the
    /// manager was shut down in between).
    orphaned: bool,
    /// The fd is known not to be ready: an attempt found it so with no event since, and the
    /// registration waits for the next edge (re-armed, or being made). While it is set an
    /// I/O attempt is skipped; while it is clear the fd may be ready (see the module docs).
    armed: bool,
    /// Readiness events delivered so far: the readiness tick that attempts and waiters
    /// compare.
    events: u64,
    gone: Option<Gone>,
    /// The waker of `poll_read`/`poll_write`/`poll_readable`/`poll_writable` (one task).
    slot: Option<Waker>,
    /// `events` when `poll_readable`/`poll_writable` last returned `Pending`, `None` when not
    /// waiting.
    slot_since: Option<u64>,
    /// The wakers of [`Ready`] futures, by index; `None` for a free or already woken entry.
    waiters: Vec<Option<Waker>>,
    /// Free indices of `waiters`.
    free: Vec<usize>,
    /// Live entries of `waiters` (so the callback skips the scan when there are none).
    live_waiters: usize,
}

/// Both directions' states: one allocation per source, shared with the callbacks.
#[derive(Default)]
struct Dirs {
    state: [Mutex<DirState>; 2],
    /// A copy of each state's `armed`, written under its lock, read without it by the I/O
    /// fast path: seeing `false` only means "try the operation", which is always correct.
    armed: [AtomicBool; 2],
    /// A copy of each state's `events`, written under its lock, read without it before an
    /// attempt; compared with `events` under the lock when the attempt said `WouldBlock`.
    ticks: [AtomicU64; 2],
    /// Bumped (under the lock) whenever a state's `slot` gets another waker, so an owner
    /// that remembers which waker it stored ([`SlotCache`]) can skip the lock.
    slot_gen: [AtomicU64; 2],
}

/// What the owner of an `Async` remembers of the waker it stored in a direction's slot: a
/// poll by the same task while the fd is known not ready then takes no lock.
#[derive(Default)]
pub(crate) struct SlotCache {
    gen: u64,
    waker: Option<Waker>,
}

impl Dirs {
    fn lock(&self, dir: Dir) -> MutexGuard<'_, DirState> {
        lock(&self.state[dir as usize])
    }

    /// Sets `armed` (the caller holds `st`, the lock of `dir`).
    fn set_armed(&self, dir: Dir, st: &mut DirState, armed: bool) {
        st.armed = armed;
        self.armed[dir as usize].store(armed, Ordering::Release);
    }
}

thread_local! {
    /// Wakers taken out of a state, woken after its lock is released (reused, so a callback
    /// allocates nothing in steady state; taken, not borrowed, so a reentrant use is safe).
    static SCRATCH: Cell<Vec<Waker>> = const { Cell::new(Vec::new()) };
}

/// Moved into a registration's callback: tells the direction about each event, and about the
/// end of the registration when the manager drops the callback.
struct Notifier {
    dirs: Arc<Dirs>,
    dir: Dir,
}

impl Notifier {
    /// An edge: the fd may be ready (until an attempt says otherwise); every waiter is woken.
    fn fire(&self, readiness: Readiness) {
        let mut st = self.dirs.lock(self.dir);
        self.dirs.set_armed(self.dir, &mut st, false);
        st.events = st.events.wrapping_add(1);
        self.dirs.ticks[self.dir as usize].store(st.events, Ordering::Release);
        if readiness.is_closed() {
            st.gone = Some(Gone::Closed);
        }
        wake_all(st);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let mut st = self.dirs.lock(self.dir);
        if st.key.is_none() {
            // Refused (the registering waiter handles its error), or dropped by a shutdown
            // before the key was stored.
            if st.registering {
                st.orphaned = true;
            }
            return;
        }
        st.key = None;
        self.dirs.set_armed(self.dir, &mut st, false);
        if st.gone.is_none() {
            st.gone = Some(Gone::Dropped);
        }
        wake_all(st);
    }
}

/// Takes the waiters' wakers out of `st` (and a clone of the slot's), releases the lock,
/// then wakes them.
fn wake_all(mut st: MutexGuard<'_, DirState>) {
    // The slot keeps its waker (the task waits again, usually): see `SlotCache`.
    let slot = st.slot.clone();
    if st.live_waiters == 0 {
        drop(st);
        if let Some(w) = slot {
            w.wake();
        }
        return;
    }
    let mut wakers = SCRATCH.with(|s| s.take());
    wakers.extend(slot);
    wakers.extend(st.waiters.iter_mut().filter_map(Option::take));
    drop(st);
    for w in wakers.drain(..) {
        w.wake();
    }
    SCRATCH.with(|s| s.set(wakers));
}

/// Stores `cx`'s waker in `slot`, cloning only when it would wake another task.
fn store_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// What an `Async` owns besides its I/O object: its manager, its fd number and the state of
/// both directions.
pub(crate) struct Source {
    manager: Arc<EventManager>,
    fd: RawFd,
    /// Whether a short read shows the fd drained: a stream socket (TCP, Unix stream), whose
    /// read takes everything queued up to the room given. Not so for a terminal (a line at a
    /// time) or a packet pipe, where a short read says nothing and only `WouldBlock` counts.
    short_read_drains: bool,
    dirs: Arc<Dirs>,
}

impl Source {
    pub(crate) fn new(manager: Arc<EventManager>, fd: RawFd, short_read_drains: bool) -> Source {
        Source {
            manager,
            fd,
            short_read_drains,
            dirs: Arc::default(),
        }
    }

    pub(crate) fn manager(&self) -> &Arc<EventManager> {
        &self.manager
    }

    fn state(&self, dir: Dir) -> MutexGuard<'_, DirState> {
        self.dirs.lock(dir)
    }

    /// The readiness tick of `dir`, read before an attempt.
    pub(crate) fn tick(&self, dir: Dir) -> u64 {
        self.dirs.ticks[dir as usize].load(Ordering::Acquire)
    }

    fn gone_error(&self, gone: Gone) -> io::Error {
        match gone {
            Gone::Closed => io::Error::new(
                io::ErrorKind::NotConnected,
                "the fd was closed through the event manager",
            ),
            Gone::Dropped if self.shut_down() => io::Error::other(ShutDown),
            Gone::Dropped => io::Error::other("the event manager dropped the fd registration"),
        }
    }

    fn shut_down(&self) -> bool {
        matches!(
            self.manager.state(),
            ioman::State::Dying | ioman::State::Finished
        )
    }

    /// `dir` was found not ready by an attempt that started at readiness tick `tick`. Unless
    /// an event came since (its readiness is not lost: returns `false`, try again), the
    /// direction becomes "not ready" and its registration waits for the next edge. Returns
    /// whether it now waits. Called with the state locked; may release and take the lock
    /// again (to register), so the caller must look at the state afresh afterwards.
    ///
    /// Costs nothing when it waits already; one flag flip in the manager for a re-arm (no
    /// syscall; one `EPOLL_CTL_MOD` when an edge came while it was disarmed); one
    /// `EPOLL_CTL_ADD` (`MOD` for the second direction) for the first wait in a direction.
    fn clear_ready<'a>(
        &'a self,
        dir: Dir,
        mut st: MutexGuard<'a, DirState>,
        tick: u64,
    ) -> io::Result<(MutexGuard<'a, DirState>, bool)> {
        if st.events != tick {
            return Ok((st, false));
        }
        if st.armed || st.registering {
            return Ok((st, true));
        }
        if let Some(gone) = st.gone {
            return Err(self.gone_error(gone));
        }
        ensure_driven(&self.manager);
        if let Some(key) = st.key {
            // Under our lock: `rearm` never runs or drops a callback.
            return match self.manager.rearm(key, dir.interest()) {
                Ok(true) => {
                    self.dirs.set_armed(dir, &mut st, true);
                    Ok((st, true))
                }
                Ok(false) => {
                    // The manager no longer knows it (shut down, or closed): the callback's
                    // drop says which, or is about to.
                    let gone = *st.gone.get_or_insert(Gone::Dropped);
                    Err(self.gone_error(gone))
                }
                Err(e) => Err(e),
            };
        }
        // First wait in this direction: register, without our lock (a refused registration
        // drops its callback, and the callback's drop takes the lock). Armed from now on,
        // so that an event that fires before the key is stored is not overwritten. The
        // kernel reports an fd that is ready when it is added, so nothing that came after
        // the attempt is missed.
        st.registering = true;
        self.dirs.set_armed(dir, &mut st, true);
        drop(st);
        let notifier = Notifier {
            dirs: Arc::clone(&self.dirs),
            dir,
        };
        let r = self.manager.register_fd(
            self.fd,
            dir.interest(),
            Lifetime::Edge,
            move |_, _, readiness| notifier.fire(readiness),
        );
        let mut st = self.state(dir);
        st.registering = false;
        let orphaned = std::mem::take(&mut st.orphaned);
        match r {
            Ok(key) if !orphaned => {
                st.key = Some(key);
                // Not armed any more if it fired while being made.
                let waits = st.armed;
                Ok((st, waits))
            }
            Ok(_) => {
                self.dirs.set_armed(dir, &mut st, false);
                st.gone = Some(Gone::Dropped);
                let e = self.gone_error(Gone::Dropped);
                wake_all(st);
                Err(e)
            }
            Err(e) => {
                self.dirs.set_armed(dir, &mut st, false);
                // Other waiters stored their wakers while this one registered: let them try
                // again (and meet the error themselves).
                wake_all(st);
                Err(e)
            }
        }
    }

    /// For a waiter that starts (or goes on) waiting, with the state locked: `Ok(None)` when
    /// the fd is ready in `dir`, else the state with the direction waiting for the next edge.
    /// `seen` is the tick at which the caller's own attempt said `WouldBlock`; without one,
    /// a direction not known to be not ready is asked (one zero-timeout `poll(2)`, without
    /// the lock): ready means done, not ready counts as a `WouldBlock`.
    fn start_wait<'a>(
        &'a self,
        dir: Dir,
        st: MutexGuard<'a, DirState>,
        seen: Option<u64>,
    ) -> io::Result<Option<MutexGuard<'a, DirState>>> {
        let (st, tick) = match seen {
            Some(tick) => (st, tick),
            None if st.armed || st.registering => return Ok(Some(st)),
            None => {
                if self.shut_down() {
                    return Err(io::Error::other(ShutDown));
                }
                let tick = st.events;
                drop(st);
                if sys::ready_now(self.fd, dir == Dir::Write) {
                    return Ok(None);
                }
                (self.state(dir), tick)
            }
        };
        let (st, waits) = self.clear_ready(dir, st, tick)?;
        Ok(waits.then_some(st))
    }

    /// Runs `op` unless the direction is known not to be ready; on `WouldBlock` clears the
    /// readiness (see [`clear_ready`](Self::clear_ready)) and stores the task's waker.
    /// `drained(&r)` says that a successful result shows the fd drained (a short read): on a
    /// stream socket the readiness is then cleared at once, so the next call skips the
    /// attempt that would only say `WouldBlock`.
    pub(crate) fn poll_io<R>(
        &self,
        dir: Dir,
        cx: &mut Context<'_>,
        mut cache: Option<&mut SlotCache>,
        mut op: impl FnMut() -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        loop {
            if self.dirs.armed[dir as usize].load(Ordering::Acquire) {
                if let Some(c) = cache.as_deref() {
                    // Not ready, and the slot still holds this task's waker (nobody stored
                    // another since): an event wakes it. If the registration fires right
                    // after the load above, it wakes that waker too.
                    if c.gen == self.dirs.slot_gen[dir as usize].load(Ordering::Acquire)
                        && c.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        return Poll::Pending;
                    }
                }
                let mut st = self.state(dir);
                if st.armed {
                    self.store_slot(dir, &mut st, cx, cache);
                    return Poll::Pending;
                }
            }
            // Read before the attempt: an event after it is seen by `clear_ready`.
            let tick = self.tick(dir);
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(r) => {
                    if self.short_read_drains && drained(&r) {
                        let st = self.state(dir);
                        if st.key.is_some() {
                            // Best effort: an error shows up at the next wait.
                            if let Ok((mut st, true)) = self.clear_ready(dir, st, tick) {
                                // The next poll is usually this task's, and finds the slot
                                // filled.
                                self.store_slot(dir, &mut st, cx, cache);
                            }
                        }
                    }
                    return Poll::Ready(Ok(r));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            match self.clear_ready(dir, self.state(dir), tick) {
                Ok((mut st, true)) => {
                    self.store_slot(dir, &mut st, cx, cache.as_deref_mut());
                    return Poll::Pending;
                }
                // An event came while the attempt ran: try again.
                Ok((_, false)) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Stores `cx`'s waker in the slot (the lock of `dir` held as `st`), and what was stored
    /// in `cache`.
    fn store_slot(
        &self,
        dir: Dir,
        st: &mut DirState,
        cx: &Context<'_>,
        cache: Option<&mut SlotCache>,
    ) {
        let gen = &self.dirs.slot_gen[dir as usize];
        if !st.slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.slot = Some(cx.waker().clone());
            gen.fetch_add(1, Ordering::Release);
        }
        if let Some(c) = cache {
            let now = gen.load(Ordering::Relaxed);
            if c.gen != now || c.waker.is_none() {
                c.gen = now;
                c.waker = st.slot.clone();
            }
        }
    }

    /// `poll_readable`/`poll_writable`: ready when an event arrived since the previous call
    /// that returned `Pending`, or when the fd is ready now (as a [`Ready`] future).
    pub(crate) fn poll_ready(&self, dir: Dir, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.state(dir);
        if let Some(since) = st.slot_since {
            if st.events != since {
                st.slot_since = None;
                return Poll::Ready(Ok(()));
            }
        }
        if let Some(gone) = st.gone {
            return Poll::Ready(Err(self.gone_error(gone)));
        }
        let since = st.slot_since;
        match self.start_wait(dir, st, since) {
            Ok(Some(mut st)) => {
                let now = st.events;
                st.slot_since.get_or_insert(now);
                self.store_slot(dir, &mut st, cx, None);
                Poll::Pending
            }
            Ok(None) => {
                self.state(dir).slot_since = None;
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Takes the registrations' keys out (for `into_inner`), so they can be unregistered
    /// outside the locks.
    pub(crate) fn take_keys(&self) -> [Option<FdKey>; 2] {
        [
            self.state(Dir::Read).key.take(),
            self.state(Dir::Write).key.take(),
        ]
    }
}
