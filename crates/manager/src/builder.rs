//! Choosing a manager's backend, wakeup, clock and panic hook.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use ioman_poll::{Backend, DefaultBackend, Interest, Mode};
use ioman_timers::{Clock, MonotonicClock, TimerQueue};
use ioman_wakeup::Wakeup;

use crate::event_loop::{Counters, LoopState};
use crate::panic::default_panic_hook;
use crate::sync::{AtomicBool, AtomicU64, Mutex};
use crate::table::Table;
use crate::{EventManager, Panic, PanicHook};

/// Builds an [`EventManager`] with a chosen backend, wakeup, clock or panic hook.
///
/// # Examples
///
/// A manager on poll(2) whose timeouts follow a manual clock, as tests use it:
///
/// ```
/// use ioman::{EventManager, ManualClock};
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let manager = EventManager::builder()
///     .backend(ioman_poll::PosixPoll::new()?)
///     .clock(clock.clone())
///     .build()?;
/// let fired = Arc::new(AtomicBool::new(false));
/// let f = fired.clone();
/// manager.register_timeout(Duration::from_secs(60), move |_| f.store(true, Ordering::SeqCst))?;
///
/// manager.step(Some(Duration::ZERO))?;
/// assert!(!fired.load(Ordering::SeqCst));
/// clock.advance(Duration::from_secs(60));
/// manager.step(Some(Duration::ZERO))?;
/// assert!(fired.load(Ordering::SeqCst));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Builder<B: Backend + 'static = DefaultBackend> {
    backend: Box<dyn FnOnce() -> io::Result<B>>,
    wakeup: Option<Wakeup>,
    clock: Arc<dyn Clock>,
    panic_hook: PanicHook,
    timer_slack: Option<Duration>,
}

impl Builder<DefaultBackend> {
    /// The defaults: [`DefaultBackend`], [`Wakeup::new`] (eventfd, or a pipe where eventfd is
    /// refused), the monotonic clock, and a panic hook that prints a line on stderr.
    pub fn new() -> Self {
        Builder {
            backend: Box::new(DefaultBackend::new),
            wakeup: None,
            clock: Arc::new(MonotonicClock),
            panic_hook: Arc::new(default_panic_hook),
            timer_slack: None,
        }
    }
}

impl Default for Builder<DefaultBackend> {
    fn default() -> Self {
        Builder::new()
    }
}

impl<B: Backend + 'static> Builder<B> {
    /// Uses `backend` (for example [`ioman_poll::PosixPoll`] to run on poll(2)).
    pub fn backend<B2: Backend + 'static>(self, backend: B2) -> Builder<B2> {
        Builder {
            backend: Box::new(move || Ok(backend)),
            wakeup: self.wakeup,
            clock: self.clock,
            panic_hook: self.panic_hook,
            timer_slack: self.timer_slack,
        }
    }

    /// Uses `wakeup` to interrupt the loop (for example [`Wakeup::pipe`]).
    pub fn wakeup(mut self, wakeup: Wakeup) -> Self {
        self.wakeup = Some(wakeup);
        self
    }

    /// Runs timeouts on `clock` (for example a [`ManualClock`](ioman_timers::ManualClock) in
    /// tests; after advancing it, call [`EventManager::wake`] if a loop is blocked).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Calls `hook` with every contained panic: which callback panicked ([`Panic::origin`])
    /// and its payload (the default prints a line on stderr). The hook runs on the thread
    /// where the callback ran or was dropped (the loop thread, or the caller of
    /// `unregister_fd`, `close_fd` or `shutdown`); a panic inside it is swallowed.
    pub fn panic_hook(mut self, hook: impl Fn(&Panic<'_>) + Send + Sync + 'static) -> Self {
        self.panic_hook = Arc::new(hook);
        self
    }

    /// Sets the timer slack of the thread that runs the loop ([`run`](EventManager::run)'s
    /// caller, from then on, or [`spawn`](EventManager::spawn)'s thread) to `slack`, with
    /// [`ioman_poll::set_timer_slack`]: how much later than its deadline the kernel may end
    /// the loop's timed wait. Linux's default, 50 µs, is most of a timeout's lateness (the
    /// `lateness` bench of `ioman-bench`); 1 ns, the least, lets timeouts fire within the
    /// loop's own wakeup and dispatch time, at the cost of wakeups the kernel would have
    /// batched. A thread driving the manager with [`step`](EventManager::step) sets its own.
    ///
    /// Off by default: the thread keeps the slack it has. On targets without the setting
    /// (every one but Linux and Android) [`build`](Self::build) fails with
    /// [`Unsupported`](io::ErrorKind::Unsupported).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(target_os = "linux")] {
    /// use std::sync::{mpsc, Arc};
    /// use std::time::Duration;
    ///
    /// let manager = Arc::new(
    ///     ioman::EventManager::builder()
    ///         .timer_slack(Duration::from_nanos(1))
    ///         .build()?,
    /// );
    /// let _loop = manager.spawn()?;
    /// let (tx, rx) = mpsc::channel();
    /// manager.register_timeout(Duration::ZERO, move |_| {
    ///     tx.send(ioman_poll::timer_slack().unwrap()).unwrap();
    /// })?;
    /// assert_eq!(rx.recv().unwrap(), Duration::from_nanos(1)); // on the loop thread
    /// # }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn timer_slack(mut self, slack: Duration) -> Self {
        self.timer_slack = Some(slack);
        self
    }

    /// Builds the manager: creates the backend and the wakeup and registers the wakeup's fd.
    ///
    /// # Errors
    ///
    /// When the backend or the wakeup cannot be created or registered (`EMFILE`, `ENOMEM`);
    /// [`Unsupported`](io::ErrorKind::Unsupported) for a [`timer_slack`](Self::timer_slack)
    /// where the target has none.
    pub fn build(self) -> io::Result<EventManager<B>> {
        if self.timer_slack.is_some() {
            // Says now, not at the loop's start, where the setting does not exist.
            ioman_poll::timer_slack()?;
        }
        let backend = (self.backend)()?;
        let wakeup = match self.wakeup {
            Some(w) => w,
            None => Wakeup::new()?,
        };
        backend.register_raw(wakeup.as_raw_fd(), 0, Interest::READ, Mode::Level)?;
        Ok(EventManager {
            id: crate::next_manager_id(),
            caps: backend.capabilities(),
            backend,
            table: Table::new(),
            sleep: crate::timeouts::Sleep::new(self.clock.now()),
            clock: Arc::clone(&self.clock),
            timers: Mutex::new(TimerQueue::with_clock(self.clock)),
            wakeup,
            shut_down: AtomicBool::new(false),
            running: AtomicBool::new(false),
            loop_state: Mutex::new(LoopState::new()),
            loop_thread: AtomicU64::new(0),
            waiters: Default::default(),
            panic_hook: self.panic_hook,
            counters: Counters::default(),
            calls: Default::default(),
            timer_slack: self.timer_slack,
        })
    }
}

impl<B: Backend + 'static> fmt::Debug for Builder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("wakeup", &self.wakeup)
            .field("timer_slack", &self.timer_slack)
            .finish_non_exhaustive()
    }
}
