//! Timers on the manager's timer queue: [`Timer`] (a future, and a stream for intervals) and
//! [`timeout`].

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use ioman::{EventManager, TimeoutKey};

use crate::global::ensure_driven;
use crate::reactor::lock;

/// What a registered timeout shares with its callback.
///
/// Why a callback and not [`EventManager::register_waker_at`] (which stores the waker in the
/// queue and allocates nothing): a timer raced against a read, as an idle timeout is, is
/// polled once per message and registered once per period. With `fired` here, such a poll
/// is one atomic load and a `will_wake`; with a waker in the queue, the only way to learn
/// that it fired is to ask the manager, under its timer lock, at every poll (contended by
/// the loop thread when it runs elsewhere). The box per registration is the cheaper side.
#[derive(Default)]
struct Shared {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

thread_local! {
    /// Reset shared states of dropped timers, reused by the next registrations on this
    /// thread, so a timer made and dropped in a loop allocates only the manager's callback.
    static SPARES: RefCell<Vec<Arc<Shared>>> = const { RefCell::new(Vec::new()) };
}

/// The most spare states a thread keeps.
const SPARES_KEPT: usize = 64;

fn take_spare() -> Arc<Shared> {
    SPARES
        .try_with(|s| s.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn give_spare(shared: Arc<Shared>) {
    let _ = SPARES.try_with(|s| {
        if let Ok(mut v) = s.try_borrow_mut() {
            if v.len() < SPARES_KEPT {
                v.push(shared);
            }
        }
    });
}

/// A timer on an [`EventManager`]'s timer queue: a [`Future`] that completes at its
/// deadline, and a [`Stream`] that yields at each deadline of an interval.
///
/// Deadlines are [`Instant`]s on the manager's clock ([`EventManager::now`]), with the
/// manager's nanosecond resolution, and a timer never completes before its deadline: it
/// completes when the manager's loop expires its timeout, which it does only once the clock
/// has reached the deadline. Both outputs are the deadline that was reached.
///
/// # Manager calls
///
/// - Creating a timer ([`after`](Self::after), [`at`](Self::at),
///   [`interval`](Self::interval)) registers nothing; `after` and `interval` read the
///   manager's clock ([`EventManager::now`]).
/// - The first poll registers one timeout ([`EventManager::register_timeout_at`]: the timer
///   lock, a boxed callback; the loop is woken only when the deadline is earlier than the one
///   it sleeps until). Later polls only compare the stored waker (one lock of the timer's own
///   state).
/// - [`set_at`](Self::set_at) / [`set_after`](Self::set_after) to a *later* deadline only
///   store it (`set_after` reads the manager's clock): the registered timeout stays where it
///   is, and when it fires, the poll files the timer again at the new deadline. So an idle
///   timeout pushed back at every message costs one registration per period, not one queue
///   update per message (tokio's timer wheel defers a reset the same way); the price is one
///   early wake of the task per such period, never an early completion. An *earlier*
///   deadline moves the timeout at once ([`EventManager::update_timeout_at`]).
/// - Dropping a registered timer that has not fired cancels its timeout
///   ([`EventManager::unregister_timeout`]).
/// - An interval registers one timeout per period, at `previous deadline + period`, so it
///   does not drift.
///
/// # Errors
///
/// A timer has no error to give: on a manager that was shut down (or when the global manager
/// cannot be created) it never completes, like [`Timer::never`].
///
/// # Examples
///
/// ```
/// use ioman_async::{block_on, Timer};
/// use std::time::Duration;
///
/// block_on(async {
///     let start = std::time::Instant::now();
///     Timer::after(Duration::from_millis(5)).await;
///     assert!(start.elapsed() >= Duration::from_millis(5));
/// });
/// ```
pub struct Timer {
    manager: Option<Arc<EventManager>>,
    /// `None`: never.
    deadline: Option<Instant>,
    period: Option<Duration>,
    /// The registered timeout, until its firing is observed or it is cancelled, and the
    /// deadline it was filed at (never later than `deadline`: a deadline moved later is only
    /// stored, and the registration, when it fires early, is made again).
    registered: Option<(TimeoutKey, Arc<Shared>, Instant)>,
    /// A spare shared state, reused by the next registration (intervals, resets after firing).
    spare: Option<Arc<Shared>>,
    /// The waker last stored in the registration's shared state: a poll by the same task
    /// compares with it and takes no lock.
    last_waker: Option<Waker>,
}

impl Timer {
    fn new(
        manager: Option<Arc<EventManager>>,
        deadline: Option<Instant>,
        period: Option<Duration>,
    ) -> Timer {
        Timer {
            manager,
            deadline,
            period,
            registered: None,
            spare: None,
            last_waker: None,
        }
    }

    /// A timer that never completes (and never registers anything).
    pub fn never() -> Timer {
        Timer::new(None, None, None)
    }

    /// A timer on the global manager that completes `duration` from now.
    pub fn after(duration: Duration) -> Timer {
        Timer::after_in(global(), duration)
    }

    /// A timer on `manager` that completes `duration` from now on its clock.
    pub fn after_with(manager: &Arc<EventManager>, duration: Duration) -> Timer {
        Timer::after_in(Some(Arc::clone(manager)), duration)
    }

    fn after_in(manager: Option<Arc<EventManager>>, duration: Duration) -> Timer {
        let deadline = manager.as_ref().and_then(|m| m.now().checked_add(duration));
        Timer::new(manager, deadline, None)
    }

    /// A timer on the global manager that completes at `deadline`.
    pub fn at(deadline: Instant) -> Timer {
        Timer::new(global(), Some(deadline), None)
    }

    /// A timer on `manager` that completes at `deadline` on its clock.
    pub fn at_with(manager: &Arc<EventManager>, deadline: Instant) -> Timer {
        Timer::new(Some(Arc::clone(manager)), Some(deadline), None)
    }

    /// A stream on the global manager that yields every `period`, first `period` from now.
    pub fn interval(period: Duration) -> Timer {
        let mut t = Timer::after_in(global(), period);
        t.period = Some(period);
        t
    }

    /// A stream on the global manager that yields at `start`, then every `period`.
    pub fn interval_at(start: Instant, period: Duration) -> Timer {
        Timer::new(global(), Some(start), Some(period))
    }

    /// A stream on `manager` that yields every `period` of its clock, first `period` from
    /// now.
    pub fn interval_with(manager: &Arc<EventManager>, period: Duration) -> Timer {
        let mut t = Timer::after_with(manager, period);
        t.period = Some(period);
        t
    }

    /// A stream on `manager` that yields at `start` (on its clock), then every `period`.
    pub fn interval_at_with(
        manager: &Arc<EventManager>,
        start: Instant,
        period: Duration,
    ) -> Timer {
        Timer::new(Some(Arc::clone(manager)), Some(start), Some(period))
    }

    /// The deadline it completes at next (`None`: never).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Makes the timer complete `duration` from now (also after it completed), keeping its
    /// period if it has one.
    pub fn set_after(&mut self, duration: Duration) {
        let deadline = self
            .manager
            .as_ref()
            .and_then(|m| m.now().checked_add(duration));
        self.set_deadline(deadline);
    }

    /// Makes the timer complete at `deadline` (also after it completed), keeping its period.
    pub fn set_at(&mut self, deadline: Instant) {
        self.set_deadline(Some(deadline));
    }

    /// Makes the timer a stream that yields every `period`, first `period` from now.
    pub fn set_interval(&mut self, period: Duration) {
        self.period = Some(period);
        self.set_after(period);
    }

    fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
        let (Some(m), Some(d)) = (&self.manager, deadline) else {
            self.cancel();
            return;
        };
        if let Some((key, _, filed)) = &mut self.registered {
            if d >= *filed {
                // Later (the usual reset of an idle timeout): nothing to tell the manager.
                // The registration fires at the earlier deadline, and the poll then files
                // the timer again at this one.
                return;
            }
            if m.update_timeout_at(*key, d) {
                *filed = d;
                return;
            }
            // It fired meanwhile: register anew at the next poll.
            self.forget();
        }
    }

    /// Cancels the registered timeout, if any.
    fn cancel(&mut self) {
        if let Some((key, shared, _)) = self.registered.take() {
            if let Some(m) = &self.manager {
                m.unregister_timeout(key);
            }
            self.keep_spare(shared);
        }
    }

    /// Drops the registration after it fired (the callback has run or been dropped).
    fn forget(&mut self) {
        if let Some((_, shared, _)) = self.registered.take() {
            self.keep_spare(shared);
        }
    }

    fn keep_spare(&mut self, mut shared: Arc<Shared>) {
        // Reusable only once the manager's callback (and its clone) is gone.
        if let Some(s) = Arc::get_mut(&mut shared) {
            *s.fired.get_mut() = false;
            *s.waker.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
            self.spare = Some(shared);
        }
    }

    /// Polls for the current deadline; on completion moves an interval to its next one.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        let (Some(_), Some(deadline)) = (&self.manager, self.deadline) else {
            return Poll::Pending;
        };
        if let Some((_, shared, filed)) = &self.registered {
            let filed = *filed;
            if !shared.fired.load(Ordering::Acquire) {
                let same = self
                    .last_waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()));
                if same {
                    return Poll::Pending;
                }
                let w = cx.waker().clone();
                *lock(&shared.waker) = Some(w.clone());
                self.last_waker = Some(w);
                // The callback sets `fired` before it takes the waker under the same lock:
                // either it saw the waker stored above, or `fired` is visible now.
                if !shared.fired.load(Ordering::Acquire) {
                    return Poll::Pending;
                }
            }
            self.forget();
            if deadline <= filed {
                self.advance(deadline);
                return Poll::Ready(deadline);
            }
            // Fired at a deadline that was moved later since: file it at the new one (the
            // task was woken early, once; the timer does not complete early).
        }
        let shared = self.spare.take().unwrap_or_else(take_spare);
        let Some(m) = &self.manager else {
            return Poll::Pending;
        };
        let w = cx.waker().clone();
        *lock(&shared.waker) = Some(w.clone());
        self.last_waker = Some(w);
        let s = Arc::clone(&shared);
        let registered = m.register_timeout_at(deadline, move |_| {
            s.fired.store(true, Ordering::Release);
            let w = lock(&s.waker).take();
            if let Some(w) = w {
                w.wake();
            }
        });
        if let Ok(key) = registered {
            ensure_driven(m);
            self.registered = Some((key, shared, deadline));
        }
        // On error (shut down) the timer never completes, as documented.
        Poll::Pending
    }

    fn advance(&mut self, fired: Instant) {
        self.deadline = self.period.and_then(|p| fired.checked_add(p));
    }
}

fn global() -> Option<Arc<EventManager>> {
    crate::global_manager().ok()
}

impl Future for Timer {
    type Output = Instant;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        self.poll_deadline(cx)
    }
}

impl Stream for Timer {
    type Item = Instant;

    /// Yields at each deadline; a one-shot timer yields once, then ends.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        if self.deadline.is_none() && self.manager.is_some() && self.period.is_none() {
            return Poll::Ready(None);
        }
        self.poll_deadline(cx).map(Some)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.cancel();
        if let Some(spare) = self.spare.take() {
            give_spare(spare);
        }
    }
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("deadline", &self.deadline)
            .field("period", &self.period)
            .field("registered", &self.registered.is_some())
            .finish_non_exhaustive()
    }
}

/// The error of a [`timeout`] that expired: converts into an [`io::Error`] of kind
/// [`TimedOut`](io::ErrorKind::TimedOut), so `?` works in functions returning `io::Result`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for io::Error {
    fn from(e: Elapsed) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, e)
    }
}

/// Runs `future` for at most `duration` on the global manager: its output, or [`Elapsed`].
///
/// The deadline is taken when `timeout` is called. The future is polled first at every wake,
/// so one that is ready at its deadline wins. The timer costs what a [`Timer`] does (one
/// timeout registered at the first poll, cancelled when the future completes first or the
/// returned future is dropped).
///
/// # Examples
///
/// ```
/// use ioman_async::{block_on, timeout, Timer};
/// use std::time::Duration;
///
/// let r = block_on(timeout(Duration::from_millis(5), Timer::never()));
/// assert!(r.is_err());
/// let r = block_on(timeout(Duration::from_secs(60), async { 7 }));
/// assert_eq!(r, Ok(7));
/// ```
pub fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> impl Future<Output = Result<F::Output, Elapsed>> {
    race_timer(future, Timer::after(duration))
}

/// [`timeout`] on `manager`'s timer queue and clock.
pub fn timeout_with<F: Future>(
    manager: &Arc<EventManager>,
    duration: Duration,
    future: F,
) -> impl Future<Output = Result<F::Output, Elapsed>> {
    race_timer(future, Timer::after_with(manager, duration))
}

async fn race_timer<F: Future>(future: F, mut timer: Timer) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
