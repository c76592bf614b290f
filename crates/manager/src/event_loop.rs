//! The loop: poll, dispatch fd events one registration at a time, expire timeouts; and the
//! manager's lifetime (shutdown, spawned loops).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use ioman_poll::{Backend, Event, Events, Readiness};
use ioman_timers::TimerKey;

use crate::panic::Origin;
use crate::sync::{lock, AtomicU64, MutexGuard, Ordering};
use crate::table::{mask, Follow, STRIPES};
use crate::{shut_down, EventManager, FdCallback, FdKey, Lifetime, Stats, TimeoutKey};

/// What only the thread inside the loop touches; its lock is also what makes a second
/// concurrent loop an error.
pub(crate) struct LoopState<B: Backend + 'static> {
    events: Events,
    due: Vec<(TimerKey, crate::timeouts::Timeout<B>)>,
}

impl<B: Backend + 'static> LoopState<B> {
    pub(crate) fn new() -> Self {
        LoopState {
            events: Events::with_capacity(64),
            due: Vec::new(),
        }
    }
}

/// Counters bumped by the loop thread (relaxed: they are statistics).
#[derive(Default)]
pub(crate) struct Counters {
    iterations: AtomicU64,
    fd_callbacks: AtomicU64,
    timeout_callbacks: AtomicU64,
    panics: AtomicU64,
    pub(crate) polls: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            iterations: self.iterations.load(Ordering::Relaxed),
            fd_callbacks: self.fd_callbacks.load(Ordering::Relaxed),
            timeout_callbacks: self.timeout_callbacks.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            polls: self.polls.load(Ordering::Relaxed),
            ..Stats::default()
        }
    }

    pub(crate) fn bump_panics(&self) {
        bump(&self.panics);
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A small process-unique id for the current thread (`ThreadId::as_u64` is unstable).
pub(crate) fn thread_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local!(static ID: u64 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    ID.with(|id| *id)
}

/// The owner of a loop running on its own thread; see [`EventManager::spawn`].
///
/// Dropping the handle shuts the manager down and waits for the loop thread to finish (as
/// dropping tokio's `Runtime` does), so a spawned loop never outlives every handle to it:
/// its thread ends, and once the last `Arc` of the manager is gone its fds are closed.
/// Dropped on the loop thread itself (from a callback), it shuts down without waiting.
/// To let a loop run for the rest of the process, keep the handle (in a `static`, say).
#[must_use = "dropping the LoopHandle shuts the manager down"]
pub struct LoopHandle {
    thread: Option<thread::JoinHandle<io::Result<()>>>,
    stop: Box<dyn Fn() + Send + Sync>,
}

impl LoopHandle {
    /// Waits for the loop to finish (after [`EventManager::shutdown`]) and returns what
    /// [`EventManager::run`] returned.
    ///
    /// # Errors
    ///
    /// The loop's error, [`Other`](io::ErrorKind::Other) if the loop thread panicked, or
    /// [`Deadlock`](io::ErrorKind::Deadlock) when called on the loop thread itself.
    pub fn join(mut self) -> io::Result<()> {
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        if t.thread().id() == thread::current().id() {
            return Err(io::Error::new(
                io::ErrorKind::Deadlock,
                "LoopHandle::join called on the loop thread: it would wait for itself",
            ));
        }
        t.join()
            .unwrap_or_else(|_| Err(io::Error::other("the loop thread panicked")))
    }

    /// The loop's thread.
    pub fn thread(&self) -> &thread::Thread {
        self.thread
            .as_ref()
            .expect("a LoopHandle holds its thread until join or drop")
            .thread()
    }

    /// Whether the loop has returned.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for LoopHandle {
    fn drop(&mut self) {
        let Some(t) = self.thread.take() else {
            return;
        };
        (self.stop)();
        if t.thread().id() != thread::current().id() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopHandle")
            .field("thread", &self.thread.as_ref().map(|t| t.thread().name()))
            .finish_non_exhaustive()
    }
}

impl<B: Backend + 'static> EventManager<B> {
    /// Runs the loop on the calling thread until [`shutdown`](Self::shutdown).
    ///
    /// Each iteration polls without blocking first and blocks only when nothing was ready,
    /// until the earliest timeout (GHC's and the Mio paper's loop).
    ///
    /// # Errors
    ///
    /// [`ResourceBusy`](io::ErrorKind::ResourceBusy) when another thread is running this
    /// manager's loop (or [`step`](Self::step)); [`ShutDown`](crate::ShutDown) when the manager
    /// was already shut down; an unexpected backend error (the manager is then shut down).
    /// A shutdown while it runs ends it with `Ok(())`.
    pub fn run(&self) -> io::Result<()> {
        let ls = self.enter()?;
        if self.is_shut_down() {
            drop(ls);
            self.leave();
            return Err(shut_down());
        }
        if self.running.swap(true, Ordering::SeqCst) {
            // A spawned loop is starting (it set the flag and waits for this lock).
            drop(ls);
            self.leave();
            return Err(busy());
        }
        self.run_loop(ls)
    }

    /// The loop of `run` and `spawn`: iterates until shutdown.
    fn run_loop(&self, mut ls: MutexGuard<'_, LoopState<B>>) -> io::Result<()> {
        let slack = self.timer_slack.map_or(Ok(()), ioman_poll::set_timer_slack);
        let result = slack.and_then(|()| loop {
            if self.is_shut_down() {
                break Ok(());
            }
            if let Err(e) = self.iterate(&mut ls, None) {
                break Err(e);
            }
        });
        drop(ls);
        self.running.store(false, Ordering::SeqCst);
        self.leave();
        if result.is_err() {
            // A loop that cannot poll any more releases everything it was keeping.
            self.shutdown();
        }
        result
    }

    /// Runs one iteration of the loop on the calling thread, waiting at most `max_wait`
    /// (`None`: until an event or the earliest timeout; `Some(ZERO)`: not at all), for
    /// embedding the manager in another loop. Returns the number of callbacks run.
    ///
    /// [`shutdown`](Self::shutdown) from another thread wakes a blocked `step`.
    ///
    /// # Errors
    ///
    /// [`ResourceBusy`](io::ErrorKind::ResourceBusy) when another thread is inside the loop;
    /// [`ShutDown`](crate::ShutDown) when the manager was shut down before or during the
    /// step; an unexpected backend error.
    pub fn step(&self, max_wait: Option<Duration>) -> io::Result<usize> {
        let mut ls = self.enter()?;
        let r = if self.is_shut_down() {
            Err(shut_down())
        } else {
            self.iterate(&mut ls, max_wait)
        };
        drop(ls);
        self.leave();
        match r {
            Ok(_) if self.is_shut_down() => Err(shut_down()),
            r => r,
        }
    }

    /// Starts [`run`](Self::run) on a new thread named `ioman-loop`, owned by the returned
    /// [`LoopHandle`]: dropping the handle shuts the manager down and joins the thread.
    ///
    /// # Errors
    ///
    /// [`ResourceBusy`](io::ErrorKind::ResourceBusy) when a loop already runs;
    /// [`ShutDown`](crate::ShutDown) after shutdown; when the thread cannot be spawned. The
    /// loop's own errors come from [`LoopHandle::join`].
    pub fn spawn(self: &Arc<Self>) -> io::Result<LoopHandle> {
        self.spawn_with("ioman-loop".into(), || {})
    }

    /// `spawn` with a thread name and a hook run first on the new thread (a `Pool` uses it to
    /// let its user pin each loop to a core).
    pub(crate) fn spawn_with(
        self: &Arc<Self>,
        name: String,
        on_start: impl FnOnce() + Send + 'static,
    ) -> io::Result<LoopHandle> {
        self.check_live()?;
        if self.running.swap(true, Ordering::SeqCst) {
            return Err(busy());
        }
        let me = Arc::clone(self);
        let spawned = thread::Builder::new().name(name).spawn(move || {
            on_start();
            // `running` is set already, so no `run` can start; a `step` may hold the loop
            // lock for a moment.
            let ls = lock(&me.loop_state);
            me.loop_thread.store(thread_id(), Ordering::SeqCst);
            me.run_loop(ls)
        });
        match spawned {
            Ok(thread) => {
                let weak: Weak<Self> = Arc::downgrade(self);
                Ok(LoopHandle {
                    thread: Some(thread),
                    stop: Box::new(move || {
                        if let Some(m) = weak.upgrade() {
                            m.shutdown();
                        }
                    }),
                })
            }
            Err(e) => {
                self.running.store(false, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// Stops the loop and releases everything, before it returns: every thread blocked in
    /// a wait helper gets [`ShutDown`](crate::ShutDown), every fd registration and timeout is
    /// dropped without being called, and every later registration fails with `ShutDown`. A
    /// thread in [`run`](Self::run) or [`step`](Self::step) is woken and leaves after the
    /// iteration it is in (at once if it is blocked). Idempotent; callable from any thread,
    /// including a callback.
    pub fn shutdown(&self) {
        if !self.shut_down.swap(true, Ordering::SeqCst) {
            crate::trace::event!(DEBUG, "shutdown", manager = self.id);
            self.wake();
        }
        self.release_all();
    }

    /// Drops every registration and timeout (outside the locks, each drop contained) and
    /// releases the waiters. Idempotent: what shutdown left behind is nothing.
    fn release_all(&self) {
        self.waiters.release_all();
        let mut dropped = Vec::new();
        for i in 0..STRIPES {
            let mut stripe = self.table.lock_index(i);
            for (fd, entry) in stripe.drain() {
                if entry.kernel.is_some() {
                    let _ = self.kernel().deregister(fd);
                }
                dropped.push((fd, entry));
            }
        }
        let timers = lock(&self.timers).drain();
        for (fd, entry) in dropped {
            for r in entry.regs {
                if let Some(cb) = r.cb {
                    let key = self.fd_key(fd, r.id);
                    self.drop_contained(Origin::FdCallbackDrop(key), cb);
                }
            }
        }
        for (key, cb) in timers {
            let key = TimeoutKey {
                manager: self.id,
                key,
            };
            self.drop_contained(Origin::TimeoutDrop(key), cb);
        }
    }

    pub(crate) fn fd_key(&self, fd: RawFd, id: u64) -> FdKey {
        FdKey {
            fd,
            manager: self.id,
            id,
        }
    }

    /// Takes the loop lock and records the loop thread.
    fn enter(&self) -> io::Result<MutexGuard<'_, LoopState<B>>> {
        let ls = match self.loop_state.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(busy()),
        };
        self.loop_thread.store(thread_id(), Ordering::SeqCst);
        Ok(ls)
    }

    fn leave(&self) {
        self.loop_thread.store(0, Ordering::SeqCst);
    }

    pub(crate) fn on_loop_thread(&self) -> bool {
        self.loop_thread.load(Ordering::SeqCst) == thread_id()
    }

    /// Whether some thread drives the loop: `run`/`spawn`, or a `step` in progress.
    pub(crate) fn is_driven(&self) -> bool {
        self.running.load(Ordering::SeqCst) || self.loop_thread.load(Ordering::SeqCst) != 0
    }

    /// One iteration: one poll (blocking until the earliest timeout, at most `max_wait`),
    /// dispatch, expire timeouts. An idle pass is one syscall.
    fn iterate(&self, ls: &mut LoopState<B>, max_wait: Option<Duration>) -> io::Result<usize> {
        bump(&self.counters.iterations);
        let wait = self.prepare_wait(max_wait);
        bump(&self.counters.polls);
        let polled = self.backend.wait(&mut ls.events, wait);
        self.sleep.awake();
        let n = polled?;
        let mut ran = 0;
        if n > 0 {
            let wakeup_fd = self.wakeup.as_raw_fd();
            for &ev in ls.events.iter() {
                if ev.fd() == wakeup_fd {
                    // Drain before looking at timers and state: see `Wakeup::reset`.
                    let _ = self.wakeup.reset();
                } else {
                    ran += self.dispatch(ev);
                }
            }
        }
        self.expire_into(&mut ls.due);
        for (key, timeout) in ls.due.drain(..) {
            bump(&self.counters.timeout_callbacks);
            let key = TimeoutKey {
                manager: self.id,
                key,
            };
            self.fire_timeout(key, timeout);
            ran += 1;
        }
        Ok(ran)
    }

    /// Runs the callbacks one event wakes, each only if it is still registered when its
    /// turn comes (GHC's `onFdEvent` runs an fd's callbacks before looking at the next fd):
    /// a callback that unregisters or closes another takes effect before that one's turn.
    /// Returns the number of callbacks run.
    fn dispatch(&self, ev: Event) -> usize {
        let (fd, readiness) = (ev.fd(), ev.readiness());
        let mut stripe = self.table.lock(fd);
        let Some(entry) = stripe.get(fd) else {
            // Never registered through the table: nothing here wants it.
            let _removed = self.kernel().deregister(fd);
            crate::trace::event!(WARN, "stray_fd", fd, removed = _removed.is_ok());
            return 0;
        };
        if entry.gen != ev.key() {
            crate::trace::event!(
                DEBUG,
                "stale_event",
                fd,
                key = ev.key(),
                current = entry.gen
            );
            // An event of an earlier kernel registration of this fd number (one-shot, so it
            // fires once), or queued before a `close_fd`: stale.
            return 0;
        }
        let Some(kernel) = entry.kernel.as_mut() else {
            // The table holds no kernel registration for the fd (it was removed, or a
            // removal was reported done), yet the kernel reported it: remove it again, under
            // the stripe lock so no new registration of the number can interleave (libuv
            // does the same in its poll loop). A level-triggered fd is never spun on.
            let _removed = self.kernel().deregister(fd);
            crate::trace::event!(WARN, "stray_fd", fd, removed = _removed.is_ok());
            return 0;
        };
        if kernel.mode == ioman_poll::Mode::OneShot {
            kernel.armed = false;
        }
        if kernel.mode == ioman_poll::Mode::Edge {
            // An edge no disarmed registration sees again: remember it for their `rearm`.
            for r in entry.regs.iter_mut().filter(|r| !r.wakes(readiness)) {
                if readiness.satisfies(r.interest) {
                    r.pending |= readiness;
                }
            }
        }
        let mut wakes = entry
            .regs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.wakes(readiness));
        let Some((first, _)) = wakes.next() else {
            if entry.is_edge() {
                return 0; // remembered above; an edge is reported once, nothing spins
            }
            // Nothing armed wants this readiness: the kernel watches more than is wanted
            // (a fired `Rearmable` not re-armed yet: libev's lazy disarm; or a shrink that
            // failed), or a one-shot fd must be re-armed for the registrations it did not
            // wake. Bring the kernel in line, exactly, so nothing spins.
            crate::trace::event!(TRACE, "lazy_trim", fd, readiness = ?readiness);
            if let Err(_e) = entry.sync(fd, &self.kernel(), Follow::Exact) {
                crate::trace::event!(WARN, "rearm_failed", fd, error = %_e);
            }
            return 0;
        };
        if wakes.next().is_none() {
            // The common case, one registration woken: its turn is now, under this lock.
            let turn = self.take_turn(fd, entry, first, readiness);
            drop(stripe);
            return self.run_turn(fd, turn);
        }
        let woken = entry.woken(readiness);
        let gen = entry.gen;
        let mut ran = 0;
        let mut held = Some(stripe);
        for id in woken {
            let mut stripe = match held.take() {
                Some(s) => s,
                None => self.table.lock(fd),
            };
            let Some(entry) = stripe.get(fd) else { break };
            if entry.gen != gen {
                break; // closed (and maybe registered anew) by an earlier callback
            }
            let Some(i) = entry.regs.iter().position(|r| r.id == id) else {
                continue; // unregistered by an earlier callback
            };
            if !entry.regs[i].wakes(readiness) {
                continue; // disarmed (or interest changed) by an earlier callback
            }
            let turn = self.take_turn(fd, entry, i, readiness);
            drop(stripe);
            ran += self.run_turn(fd, turn);
        }
        ran
    }

    /// Takes registration `i`'s callback out of the table for its turn (under the stripe
    /// lock): a fired `Rearmable` is disarmed, a one-shot removed (and the kernel re-armed
    /// for the registrations that stay).
    fn take_turn(
        &self,
        fd: RawFd,
        entry: &mut crate::table::FdEntry<B>,
        i: usize,
        readiness: Readiness,
    ) -> Option<(u64, FdCallback<B>, Readiness, bool)> {
        let reg = &mut entry.regs[i];
        let cb = reg.cb.take()?;
        let (id, delivered) = (reg.id, mask(readiness, reg.interest));
        let oneshot = reg.lifetime == Lifetime::OneShot;
        if matches!(reg.lifetime, Lifetime::Rearmable | Lifetime::Edge) {
            // Fired: it waits for `rearm`. The kernel keeps watching (lazily, or for edges).
            (reg.armed, reg.pending) = (false, Readiness::EMPTY);
        }
        if oneshot {
            entry.regs.remove(i);
            // Re-arm for the registrations that stay, before the callback runs: a callback
            // that registers again then costs its own single `MOD`, not two.
            if let Err(_e) = entry.sync(fd, &self.kernel(), Follow::Lazy) {
                crate::trace::event!(WARN, "rearm_failed", fd, error = %_e);
            }
        }
        Some((id, cb, delivered, oneshot))
    }

    /// Runs a turn taken by `take_turn` (outside every lock); returns the callbacks run.
    fn run_turn(&self, fd: RawFd, turn: Option<(u64, FdCallback<B>, Readiness, bool)>) -> usize {
        match turn {
            Some((id, cb, delivered, oneshot)) => {
                self.call_fd(self.fd_key(fd, id), cb, delivered, oneshot);
                1
            }
            None => 0,
        }
    }

    /// Runs a callback taken out of the table, then drops it (one-shot) or gives it back to
    /// its registration (multi-shot, rearmable).
    fn call_fd(&self, key: FdKey, mut cb: FdCallback<B>, r: Readiness, oneshot: bool) {
        bump(&self.counters.fd_callbacks);
        let ok = self.contain(Origin::FdCallback(key), || cb(self, key, r));
        if oneshot {
            self.drop_contained(Origin::FdCallbackDrop(key), cb);
        } else {
            self.give_back(key, cb, ok);
        }
    }

    /// Returns a multi-shot callback to its registration after it ran; tells it `CLOSED` if
    /// `close_fd` removed it meanwhile; drops it if it was unregistered or panicked.
    fn give_back(&self, key: FdKey, cb: FdCallback<B>, ok: bool) {
        let mut stripe = self.table.lock(key.fd);
        if let Some(i) = stripe
            .closed_while_running
            .iter()
            .position(|&id| id == key.id)
        {
            stripe.closed_while_running.swap_remove(i);
            drop(stripe);
            if ok {
                self.run_fd_callback(cb, key, Readiness::CLOSED);
            } else {
                self.drop_contained(Origin::FdCallbackDrop(key), cb);
            }
            return;
        }
        let position = stripe
            .get(key.fd)
            .and_then(|e| e.regs.iter().position(|r| r.id == key.id));
        match position {
            Some(i) if ok => {
                if let Some(entry) = stripe.get(key.fd) {
                    entry.regs[i].cb = Some(cb);
                }
            }
            Some(i) => {
                // It panicked: its registration is dropped.
                if let Some(entry) = stripe.get(key.fd) {
                    entry.regs.remove(i);
                    let _ = entry.sync(key.fd, &self.kernel(), Follow::Exact);
                }
                drop(stripe);
                self.drop_contained(Origin::FdCallbackDrop(key), cb);
            }
            None => {
                // Unregistered while it ran (or shut down).
                drop(stripe);
                self.drop_contained(Origin::FdCallbackDrop(key), cb);
            }
        }
    }

    /// Calls a callback taken out of the table for the last time (`close_fd`'s `CLOSED`),
    /// then drops it.
    pub(crate) fn run_fd_callback(&self, mut cb: FdCallback<B>, key: FdKey, r: Readiness) {
        bump(&self.counters.fd_callbacks);
        self.contain(Origin::FdCallback(key), || cb(self, key, r));
        self.drop_contained(Origin::FdCallbackDrop(key), cb);
    }
}

fn busy() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "another thread is running this event manager's loop",
    )
}
