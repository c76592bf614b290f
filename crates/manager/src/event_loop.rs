//! The loop: poll, dispatch fd events, expire timeouts, run callbacks outside every lock.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ioman_poll::{Backend, Events, Readiness};
use ioman_timers::TimerKey;

use crate::sync::{lock, AtomicU64, Ordering};
use crate::table::{Fired, STRIPES};
use crate::{shut_down, EventManager, FdCallback, FdKey, State, Stats, TimeoutCallback};

pub(crate) const CREATED: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
pub(crate) const DYING: u8 = 2;
pub(crate) const FINISHED: u8 = 3;

/// What only the thread inside the loop touches; its lock is also what makes a second
/// concurrent loop an error.
pub(crate) struct LoopState<B: Backend + 'static> {
    events: Events,
    fired: Vec<Fired<B>>,
    due: Vec<(TimerKey, TimeoutCallback<B>)>,
}

impl<B: Backend + 'static> LoopState<B> {
    pub(crate) fn new() -> Self {
        LoopState {
            events: Events::with_capacity(64),
            fired: Vec::new(),
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
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            iterations: self.iterations.load(Ordering::Relaxed),
            fd_callbacks: self.fd_callbacks.load(Ordering::Relaxed),
            timeout_callbacks: self.timeout_callbacks.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            wakeups: 0,
        }
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

/// A loop running on its own thread; see [`EventManager::spawn`].
#[derive(Debug)]
pub struct LoopHandle {
    thread: thread::JoinHandle<io::Result<()>>,
}

impl LoopHandle {
    /// Waits for the loop to finish (after [`EventManager::shutdown`]) and returns what
    /// [`EventManager::run`] returned.
    ///
    /// # Errors
    ///
    /// The loop's error, or [`Other`](io::ErrorKind::Other) if the loop thread panicked.
    pub fn join(self) -> io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the loop thread panicked")))
    }

    /// The loop's thread.
    pub fn thread(&self) -> &thread::Thread {
        self.thread.thread()
    }

    /// Whether the loop has returned.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
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
    pub fn run(&self) -> io::Result<()> {
        let ls = self.enter()?;
        match self
            .state
            .compare_exchange(CREATED, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => self.run_loop(ls),
            Err(RUNNING) => {
                drop(ls);
                self.leave();
                Err(busy())
            }
            Err(_) => {
                drop(ls);
                self.leave();
                Err(shut_down())
            }
        }
    }

    /// The loop of `run` and `spawn`: iterates while the state is Running, then finishes
    /// the shutdown.
    fn run_loop(&self, mut ls: crate::sync::MutexGuard<'_, LoopState<B>>) -> io::Result<()> {
        let result = loop {
            if self.state.load(Ordering::SeqCst) != RUNNING {
                break Ok(());
            }
            if let Err(e) = self.iterate(&mut ls, None) {
                break Err(e);
            }
        };
        drop(ls);
        self.leave();
        self.shutdown();
        result
    }

    /// Runs one iteration of the loop on the calling thread, waiting at most `max_wait`
    /// (`None`: until an event or the earliest timeout; `Some(ZERO)`: not at all), for
    /// embedding the manager in another loop. Returns the number of callbacks run.
    ///
    /// # Errors
    ///
    /// [`ResourceBusy`](io::ErrorKind::ResourceBusy) when another thread is inside the loop;
    /// [`ShutDown`](crate::ShutDown) after shutdown; an unexpected backend error.
    pub fn step(&self, max_wait: Option<Duration>) -> io::Result<usize> {
        let mut ls = self.enter()?;
        let r = match self.state() {
            State::Dying | State::Finished => Err(shut_down()),
            _ => self.iterate(&mut ls, max_wait),
        };
        drop(ls);
        self.leave();
        r
    }

    /// Starts [`run`](Self::run) on a new thread named `ioman-loop`.
    ///
    /// # Errors
    ///
    /// When the thread cannot be spawned. The loop's own errors come from
    /// [`LoopHandle::join`].
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
        match self
            .state
            .compare_exchange(CREATED, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {}
            Err(RUNNING) => return Err(busy()),
            Err(_) => return Err(shut_down()),
        }
        let me = Arc::clone(self);
        match thread::Builder::new().name(name).spawn(move || {
            on_start();
            // The state is Running already (set above), so no other `run` can start; a
            // `step` may hold the loop lock for a moment.
            let ls = lock(&me.loop_state);
            me.loop_thread.store(thread_id(), Ordering::SeqCst);
            me.run_loop(ls)
        }) {
            Ok(thread) => Ok(LoopHandle { thread }),
            Err(e) => {
                let _ = self.state.compare_exchange(
                    RUNNING,
                    CREATED,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                Err(e)
            }
        }
    }

    /// Stops the loop and releases everything: the loop finishes its current iteration,
    /// every fd registration and timeout is dropped without being called, every thread
    /// blocked in a wait helper gets [`ShutDown`](crate::ShutDown), and every later
    /// registration fails with it. Idempotent; callable from any thread, including a
    /// callback.
    pub fn shutdown(&self) {
        loop {
            match self.state.load(Ordering::SeqCst) {
                CREATED => {
                    if self
                        .state
                        .compare_exchange(CREATED, FINISHED, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        break;
                    }
                }
                RUNNING => {
                    if self
                        .state
                        .compare_exchange(RUNNING, DYING, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        self.wake();
                        // The loop finishes the job when it sees `Dying`, unless this is the
                        // loop thread itself (a callback): then `run` will, on return.
                        break;
                    }
                }
                DYING => {
                    // Called by `run` after its loop ended.
                    if self.loop_thread.load(Ordering::SeqCst) != 0 {
                        return;
                    }
                    if self
                        .state
                        .compare_exchange(DYING, FINISHED, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        break;
                    }
                }
                _ => return,
            }
        }
        if self.state.load(Ordering::SeqCst) == FINISHED {
            self.release_all();
        }
    }

    /// Drops every registration and timeout (outside the locks) and releases the waiters.
    fn release_all(&self) {
        let mut dropped: Vec<(RawFd, crate::table::FdEntry<B>)> = Vec::new();
        for i in 0..STRIPES {
            let mut stripe = self.table.lock_index(i);
            for (fd, entry) in stripe.drain() {
                if entry.kernel.is_some() {
                    let _ = self.backend.deregister(fd);
                }
                dropped.push((fd, entry));
            }
        }
        let timers = {
            let mut q = lock(&self.timers);
            let empty = ioman_timers::TimerQueue::with_clock(Arc::clone(q.clock()));
            std::mem::replace(&mut *q, empty)
        };
        self.waiters.release_all();
        drop(dropped);
        drop(timers);
    }

    /// Takes the loop lock and records the loop thread.
    fn enter(&self) -> io::Result<crate::sync::MutexGuard<'_, LoopState<B>>> {
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

    /// One iteration: non-blocking poll, blocking poll only if nothing was ready, dispatch,
    /// expire timeouts, run callbacks.
    fn iterate(&self, ls: &mut LoopState<B>, max_wait: Option<Duration>) -> io::Result<usize> {
        bump(&self.counters.iterations);
        let mut n = self.backend.poll(&mut ls.events, Some(Duration::ZERO))?;
        if n == 0 {
            let timeout = self.timer_timeout();
            let wait = match (timeout, max_wait) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, None) => a,
                (None, b) => b,
            };
            if wait != Some(Duration::ZERO) && self.state.load(Ordering::SeqCst) <= RUNNING {
                n = self.backend.poll(&mut ls.events, wait)?;
            }
        }
        let mut ran = 0;
        if n > 0 {
            self.dispatch(ls);
            ran += self.run_fired(ls);
        }
        {
            let mut timers = lock(&self.timers);
            ls.due.extend(timers.expire().map(|(key, _, cb)| (key, cb)));
        }
        for (_, cb) in ls.due.drain(..) {
            bump(&self.counters.timeout_callbacks);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb(self))) {
                self.report_panic(p);
            }
            ran += 1;
        }
        Ok(ran)
    }

    /// How long the loop may block for its timeouts: `None` when there is none. A timeout
    /// registered after this returns and earlier than what it returned wakes the loop (see
    /// `register_timeout`), so the blocking poll that follows cannot miss it.
    pub(crate) fn timer_timeout(&self) -> Option<Duration> {
        lock(&self.timers).timeout()
    }

    /// Turns the polled events into callbacks to run (stripe by stripe, under each fd's
    /// stripe lock), re-arming what stays registered.
    fn dispatch(&self, ls: &mut LoopState<B>) {
        let wakeup_fd = self.wakeup.as_raw_fd();
        for ev in ls.events.iter() {
            let fd = ev.fd();
            if fd == wakeup_fd {
                // Drain before looking at timers and state: see `Wakeup::reset`.
                let _ = self.wakeup.reset();
                continue;
            }
            let mut stripe = self.table.lock(fd);
            let Some(entry) = stripe.get(fd) else {
                continue;
            };
            if entry.kernel.is_none() || entry.gen != ev.key() {
                continue; // an event of an earlier registration of this fd number
            }
            entry.fire(fd, ev.readiness(), &mut ls.fired);
            // Re-arm (or remove) with the minimal change. A failure here means the fd was
            // closed behind our back: its registrations stay until unregistered or closed.
            let _ = entry.sync(fd, &self.backend, &self.caps);
        }
    }

    fn run_fired(&self, ls: &mut LoopState<B>) -> usize {
        let ran = ls.fired.len();
        for f in ls.fired.drain(..) {
            let Fired {
                key,
                readiness,
                mut cb,
                multishot,
            } = f;
            bump(&self.counters.fd_callbacks);
            let ok = match catch_unwind(AssertUnwindSafe(|| cb(self, key, readiness))) {
                Ok(()) => true,
                Err(p) => {
                    self.report_panic(p);
                    false
                }
            };
            if multishot {
                self.give_back(key, cb, ok);
            }
        }
        ran
    }

    /// Returns a multi-shot callback to its registration after it ran; tells it `CLOSED` if
    /// `close_fd` removed it meanwhile; drops it if it was unregistered or panicked.
    fn give_back(&self, key: FdKey, cb: FdCallback<B>, keep: bool) {
        let mut stripe = self.table.lock(key.fd);
        if let Some(i) = stripe
            .closed_while_running
            .iter()
            .position(|&id| id == key.id)
        {
            stripe.closed_while_running.swap_remove(i);
            drop(stripe);
            self.run_fd_callback(cb, key, Readiness::CLOSED);
            return;
        }
        let Some(entry) = stripe.get(key.fd) else {
            return;
        };
        let Some(i) = entry.regs.iter().position(|r| r.id == key.id) else {
            drop(stripe);
            drop(cb); // unregistered while it ran
            return;
        };
        if keep {
            entry.regs[i].cb = Some(cb);
        } else {
            entry.regs.swap_remove(i);
            let _ = entry.sync(key.fd, &self.backend, &self.caps);
            drop(stripe);
            drop(cb);
        }
    }

    pub(crate) fn run_fd_callback(&self, mut cb: FdCallback<B>, key: FdKey, r: Readiness) {
        bump(&self.counters.fd_callbacks);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb(self, key, r))) {
            self.report_panic(p);
        }
    }

    fn report_panic(&self, payload: Box<dyn std::any::Any + Send>) {
        bump(&self.counters.panics);
        let hook = &self.panic_hook;
        // A panicking hook must not take the loop down either.
        let _ = catch_unwind(AssertUnwindSafe(|| hook(&*payload)));
    }
}

fn busy() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "another thread is running this event manager's loop",
    )
}

/// The default panic hook: one line on stderr.
pub(crate) fn default_panic_hook(payload: &(dyn std::any::Any + Send)) {
    let msg = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    eprintln!("ioman: a callback panicked: {msg}");
}
