//! One manager per core (the Mio design): N [`EventManager`]s, each looping on its own thread,
//! each fd owned by exactly one of them.

use crate::FdLike;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use ioman_poll::{Backend, DefaultBackend, Interest, Readiness};
use ioman_timers::{Clock, MonotonicClock};

use crate::event_loop::LoopHandle;
use crate::sync::{lock, Mutex};
use crate::{Builder, Delay, EventManager, FdKey, Lifetime, PanicHook, Stats, TimeoutKey};

/// N event managers, one loop thread each (GHC's one manager per capability, after the Mio
/// paper).
///
/// **Ownership.** An fd belongs to the manager `fd % N`. Choosing by fd number (rather than by
/// the registering thread, as GHC does) means [`unregister_fd`](Pool::unregister_fd) and
/// [`close_fd`](Pool::close_fd) touch exactly one manager with no lookup, whatever thread
/// calls them, and a reused fd number lands in the same manager, whose stripe lock orders the
/// close before any new registration (GHC has to lock that stripe in every manager on close).
/// The kernel hands out the lowest free fd numbers, so connections spread evenly.
///
/// **Timeouts** live in one timer queue per manager. A timeout registered from a callback
/// goes to that callback's manager (the `&EventManager` it is given), so a connection's idle
/// timeout runs on the same thread as its fd callbacks and needs no cross-thread wake; from
/// other threads use [`Pool::current`]. Measured against one queue shared by every thread
/// (`cargo bench -p ioman-bench --bench manager -- timer_churn`, 2 threads doing register /
/// move later / move earlier / cancel): 44.7 ns per operation with a queue per thread against
/// 233 ns with one shared queue, on a 2-core machine.
///
/// **Handles.** A `Pool` is cheap to clone (an `Arc` inside): clones share the managers, so
/// an accept callback can keep one to hand new connections to their owners. The last clone
/// dropped shuts the pool down and joins its threads. A clone held by one of the pool's own
/// callbacks would keep it alive until [`shutdown`](Pool::shutdown) (a cycle through the
/// pool's registrations): such a callback holds a [`WeakPool`] instead
/// ([`Pool::downgrade`]), which does not keep the pool running.
///
/// Threads are named `ioman-loop-<i>` and not pinned by the pool itself (that needs
/// `sched_setaffinity`, outside this crate's `forbid(unsafe_code)`): pass
/// [`PoolBuilder::on_loop_start`] a function that pins the calling thread to core `i`.
///
/// # Examples
///
/// ```
/// use ioman::{Interest, Lifetime, Pool};
/// use std::io::Write;
/// use std::os::fd::AsRawFd;
/// use std::os::unix::net::UnixStream;
/// use std::sync::mpsc;
/// use std::time::{Duration, Instant};
///
/// let pool = Pool::new(2)?;
/// let (mut a, b) = UnixStream::pair()?;
/// let (tx, rx) = mpsc::channel();
/// pool.register_fd(b.as_raw_fd(), Interest::READ, Lifetime::OneShot, move |_, key, r| {
///     tx.send((key.fd(), r.is_readable())).unwrap();
/// })?;
/// a.write_all(b"x")?;
/// assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), (b.as_raw_fd(), true));
/// pool.shutdown();
/// pool.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Pool<B: Backend + 'static = DefaultBackend> {
    inner: Arc<Inner<B>>,
}

struct Inner<B: Backend + 'static> {
    managers: Vec<Arc<EventManager<B>>>,
    /// Each loop's owner: dropping them (with the last clone) shuts down and joins.
    handles: Mutex<Vec<LoopHandle>>,
}

impl<B: Backend + 'static> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Pool {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// A handle to a [`Pool`] that does not keep it running, made by [`Pool::downgrade`]: what
/// the pool's own callbacks hold (an accept callback handing connections to their owners),
/// so that the last [`Pool`] dropped by its user still shuts the pool down.
///
/// # Examples
///
/// ```
/// use ioman::{Interest, Lifetime, Pool};
/// use std::net::{TcpListener, TcpStream};
/// use std::sync::mpsc;
/// use std::time::Duration;
///
/// let pool = Pool::new(2)?;
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// listener.set_nonblocking(true)?;
/// let addr = listener.local_addr()?;
/// let (tx, rx) = mpsc::channel();
/// let weak = pool.downgrade();
/// pool.register_fd(&listener, Interest::READ, Lifetime::MultiShot, {
///     let listener = listener.try_clone()?;
///     move |_, _, _| {
///         let Some(pool) = weak.upgrade() else { return };
///         while let Ok((conn, _)) = listener.accept() {
///             // The manager that owns the new fd, whichever thread accepted it.
///             let owner = pool.manager_for(&conn);
///             tx.send(owner.state() == ioman::State::Running).unwrap();
///         }
///     }
/// })?;
/// let _client = TcpStream::connect(addr)?;
/// assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
/// drop(pool); // the last strong handle: every loop stops and is joined
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct WeakPool<B: Backend + 'static = DefaultBackend> {
    inner: Weak<Inner<B>>,
}

impl<B: Backend + 'static> WeakPool<B> {
    /// The pool, while any [`Pool`] of it is alive; `None` once the last one was dropped.
    pub fn upgrade(&self) -> Option<Pool<B>> {
        self.inner.upgrade().map(|inner| Pool { inner })
    }
}

impl<B: Backend + 'static> Clone for WeakPool<B> {
    fn clone(&self) -> Self {
        WeakPool {
            inner: Weak::clone(&self.inner),
        }
    }
}

impl<B: Backend + 'static> fmt::Debug for WeakPool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakPool")
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}

/// Builds a [`Pool`]; see [`Pool::builder`].
pub struct PoolBuilder<B: Backend + 'static = DefaultBackend> {
    threads: usize,
    backend: Arc<dyn Fn() -> io::Result<B> + Send + Sync>,
    clock: Arc<dyn Clock>,
    panic_hook: Option<PanicHook>,
    on_loop_start: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    timer_slack: Option<Duration>,
}

impl Pool<DefaultBackend> {
    /// A pool of `threads` managers on the default backend (at least one).
    ///
    /// # Errors
    ///
    /// When a backend, a wakeup or a thread cannot be created.
    pub fn new(threads: usize) -> io::Result<Self> {
        Pool::builder().threads(threads).build()
    }

    /// A builder; the default thread count is the number of available cores.
    pub fn builder() -> PoolBuilder<DefaultBackend> {
        PoolBuilder {
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            backend: Arc::new(DefaultBackend::new),
            clock: Arc::new(MonotonicClock),
            panic_hook: None,
            on_loop_start: None,
            timer_slack: None,
        }
    }
}

impl<B: Backend + 'static> PoolBuilder<B> {
    /// The number of managers (and loop threads); at least one.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Makes each manager's backend with `make` (for example `ioman_poll::PosixPoll::new`).
    pub fn backend<B2: Backend + 'static>(
        self,
        make: impl Fn() -> io::Result<B2> + Send + Sync + 'static,
    ) -> PoolBuilder<B2> {
        PoolBuilder {
            threads: self.threads,
            backend: Arc::new(make),
            clock: self.clock,
            panic_hook: self.panic_hook,
            on_loop_start: self.on_loop_start,
            timer_slack: self.timer_slack,
        }
    }

    /// Runs every manager's timeouts on `clock`.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Reports callback panics of every manager to `hook`.
    pub fn panic_hook(mut self, hook: impl Fn(&crate::Panic<'_>) + Send + Sync + 'static) -> Self {
        self.panic_hook = Some(Arc::new(hook));
        self
    }

    /// Calls `hook(i)` on loop thread `i` before its loop starts: the place to pin it to a
    /// core or set its priority.
    pub fn on_loop_start(mut self, hook: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.on_loop_start = Some(Arc::new(hook));
        self
    }

    /// Sets every loop thread's timer slack ([`Builder::timer_slack`]).
    pub fn timer_slack(mut self, slack: Duration) -> Self {
        self.timer_slack = Some(slack);
        self
    }

    /// Creates the managers and starts their loops.
    ///
    /// # Errors
    ///
    /// When a backend, a wakeup or a thread cannot be created (the managers already started
    /// are shut down); [`Unsupported`](io::ErrorKind::Unsupported) for a
    /// [`timer_slack`](Self::timer_slack) where the target has none.
    pub fn build(self) -> io::Result<Pool<B>> {
        let mut managers = Vec::with_capacity(self.threads);
        for _ in 0..self.threads {
            let make = Arc::clone(&self.backend);
            let mut b = Builder::new()
                .backend(make()?)
                .clock(Arc::clone(&self.clock));
            if let Some(h) = &self.panic_hook {
                let h = Arc::clone(h);
                b = b.panic_hook(move |p| h(p));
            }
            if let Some(slack) = self.timer_slack {
                b = b.timer_slack(slack);
            }
            managers.push(Arc::new(b.build()?));
        }
        let pool = Pool {
            inner: Arc::new(Inner {
                managers,
                handles: Mutex::new(Vec::new()),
            }),
        };
        for (i, m) in pool.inner.managers.iter().enumerate() {
            let hook = self.on_loop_start.clone();
            let started = m.spawn_with(format!("ioman-loop-{i}"), move || {
                if let Some(h) = hook {
                    h(i);
                }
            });
            match started {
                Ok(h) => lock(&pool.inner.handles).push(h),
                Err(e) => {
                    pool.shutdown();
                    let _ = pool.join();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }
}

impl<B: Backend + 'static> Pool<B> {
    /// The number of managers.
    pub fn len(&self) -> usize {
        self.inner.managers.len()
    }

    /// Always `false`: a pool has at least one manager.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A [`WeakPool`]: a handle for the pool's own callbacks, which does not keep the pool
    /// running (a [`Pool`] captured by one of its callbacks would, until
    /// [`shutdown`](Self::shutdown)).
    pub fn downgrade(&self) -> WeakPool<B> {
        WeakPool {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The managers, in order.
    pub fn managers(&self) -> &[Arc<EventManager<B>>] {
        &self.inner.managers
    }

    /// The manager that owns `fd`: number `fd % len()`. Register a new connection there
    /// (or through [`register_fd`](Self::register_fd), which does it for you).
    pub fn manager_for(&self, fd: impl FdLike) -> &Arc<EventManager<B>> {
        let fd = fd.fd_number();
        let n = self.inner.managers.len() as RawFd;
        &self.inner.managers[fd.rem_euclid(n) as usize]
    }

    /// The manager whose loop runs on the calling thread, or, on any other thread, one
    /// chosen by the thread's identity (so one thread keeps using one manager). Timeouts
    /// and sleeps of the pool go there.
    pub fn current(&self) -> &Arc<EventManager<B>> {
        let managers = &self.inner.managers;
        if let Some(m) = managers.iter().find(|m| m.on_loop_thread()) {
            return m;
        }
        let id = crate::event_loop::thread_id() as usize;
        &managers[id % managers.len()]
    }

    /// The manager that made `key`, if it is one of this pool's.
    fn owner_of(&self, key: TimeoutKey) -> Option<&Arc<EventManager<B>>> {
        self.inner.managers.iter().find(|m| m.id == key.manager)
    }

    /// [`EventManager::register_fd`] on the fd's manager.
    ///
    /// # Errors
    ///
    /// As [`EventManager::register_fd`].
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
        self.manager_for(fd)
            .register_fd(fd, interest, lifetime, callback)
    }

    /// [`EventManager::unregister_fd`] on the key's manager.
    ///
    /// # Errors
    ///
    /// As [`EventManager::unregister_fd`].
    pub fn unregister_fd(&self, key: FdKey) -> io::Result<bool> {
        self.manager_for(key.fd()).unregister_fd(key)
    }

    /// [`EventManager::rearm`] on the key's manager.
    ///
    /// # Errors
    ///
    /// As [`EventManager::rearm`].
    pub fn rearm(&self, key: FdKey, interest: Interest) -> io::Result<bool> {
        self.manager_for(key.fd()).rearm(key, interest)
    }

    /// [`EventManager::close_fd`] on the fd's manager; safe from any thread.
    pub fn close_fd(&self, fd: impl Into<OwnedFd>) -> usize {
        let fd: OwnedFd = fd.into();
        let m = Arc::clone(self.manager_for(fd.as_raw_fd()));
        m.close_fd(fd)
    }

    /// [`EventManager::register_timeout`] on the [`current`](Self::current) manager.
    ///
    /// # Errors
    ///
    /// As [`EventManager::register_timeout`].
    pub fn register_timeout<F>(&self, after: Duration, callback: F) -> io::Result<TimeoutKey>
    where
        F: FnOnce(&EventManager<B>) + Send + 'static,
    {
        self.current().register_timeout(after, callback)
    }

    /// [`EventManager::register_timeout_at`] on the [`current`](Self::current) manager.
    ///
    /// # Errors
    ///
    /// As [`EventManager::register_timeout_at`].
    pub fn register_timeout_at<F>(&self, deadline: Instant, callback: F) -> io::Result<TimeoutKey>
    where
        F: FnOnce(&EventManager<B>) + Send + 'static,
    {
        self.current().register_timeout_at(deadline, callback)
    }

    /// [`EventManager::update_timeout`] on the manager that made the key; `false` for a key
    /// of no manager of this pool.
    pub fn update_timeout(&self, key: TimeoutKey, after: Duration) -> bool {
        self.owner_of(key)
            .is_some_and(|m| m.update_timeout(key, after))
    }

    /// [`EventManager::update_timeout_at`] on the manager that made the key.
    pub fn update_timeout_at(&self, key: TimeoutKey, deadline: Instant) -> bool {
        self.owner_of(key)
            .is_some_and(|m| m.update_timeout_at(key, deadline))
    }

    /// [`EventManager::unregister_timeout`] on the manager that made the key.
    pub fn unregister_timeout(&self, key: TimeoutKey) -> bool {
        self.owner_of(key)
            .is_some_and(|m| m.unregister_timeout(key))
    }

    /// [`EventManager::sleep`] on the [`current`](Self::current) manager.
    ///
    /// # Errors
    ///
    /// As [`EventManager::sleep`].
    pub fn sleep(&self, duration: Duration) -> io::Result<()> {
        self.current().sleep(duration)
    }

    /// [`EventManager::delay`] on the [`current`](Self::current) manager.
    ///
    /// # Errors
    ///
    /// As [`EventManager::delay`].
    pub fn delay(&self, duration: Duration) -> io::Result<Delay> {
        self.current().delay(duration)
    }

    /// [`EventManager::wait_readable`] on the fd's manager.
    ///
    /// # Errors
    ///
    /// As [`EventManager::wait_readable`].
    pub fn wait_readable(
        &self,
        fd: impl FdLike,
        timeout: Option<Duration>,
    ) -> io::Result<Readiness> {
        let fd = fd.fd_number();
        self.manager_for(fd).wait_readable(fd, timeout)
    }

    /// [`EventManager::wait_writable`] on the fd's manager.
    ///
    /// # Errors
    ///
    /// As [`EventManager::wait_writable`].
    pub fn wait_writable(
        &self,
        fd: impl FdLike,
        timeout: Option<Duration>,
    ) -> io::Result<Readiness> {
        let fd = fd.fd_number();
        self.manager_for(fd).wait_writable(fd, timeout)
    }

    /// What every manager did, summed.
    pub fn stats(&self) -> Stats {
        self.inner.managers.iter().fold(Stats::default(), |a, m| {
            let s = m.stats();
            Stats {
                iterations: a.iterations + s.iterations,
                fd_callbacks: a.fd_callbacks + s.fd_callbacks,
                timeout_callbacks: a.timeout_callbacks + s.timeout_callbacks,
                panics: a.panics + s.panics,
                wakeups: a.wakeups + s.wakeups,
                polls: a.polls + s.polls,
                backend_registers: a.backend_registers + s.backend_registers,
                backend_modifies: a.backend_modifies + s.backend_modifies,
                backend_deregisters: a.backend_deregisters + s.backend_deregisters,
            }
        })
    }

    /// Shuts every manager down (see [`EventManager::shutdown`]): all loops stop, every waiter
    /// is released with [`ShutDown`](crate::ShutDown).
    pub fn shutdown(&self) {
        for m in &self.inner.managers {
            m.shutdown();
        }
    }

    /// Waits for every loop thread to finish (after [`shutdown`](Self::shutdown)).
    ///
    /// # Errors
    ///
    /// The first loop error; [`Deadlock`](io::ErrorKind::Deadlock) when called on one of
    /// the pool's loop threads.
    pub fn join(&self) -> io::Result<()> {
        let handles = std::mem::take(&mut *lock(&self.inner.handles));
        let mut result = Ok(());
        for h in handles {
            if let Err(e) = h.join() {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }
}

impl<B: Backend + 'static> Drop for Inner<B> {
    fn drop(&mut self) {
        for m in &self.managers {
            m.shutdown();
        }
        // Dropping the handles joins the loop threads (except the calling one's, if the last
        // clone goes away inside one of the pool's callbacks).
        lock(&self.handles).clear();
    }
}

impl<B: Backend + 'static> fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("managers", &self.inner.managers)
            .finish()
    }
}

impl<B: Backend + 'static> fmt::Debug for PoolBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("threads", &self.threads)
            .field("timer_slack", &self.timer_slack)
            .finish_non_exhaustive()
    }
}
