//! The timer queue: a [`Psq`] of deadlines in nanoseconds, read through a [`Clock`].
//!
//! Each timer is filed in the heap under `filed_ns` and carries its real deadline
//! `deadline_ns` in its entry, with `filed_ns <= deadline_ns` at all times. Moving a
//! deadline later only rewrites `deadline_ns` (O(1), no sift); when such an entry
//! reaches the top of the heap it is re-filed at its real deadline before anything reads
//! the minimum. Moving a deadline earlier re-files it at once. The `Psq` pops equal
//! priorities in insertion order, so equal deadlines fire in registration order.

use std::fmt;
use std::iter::FusedIterator;
use std::time::{Duration, Instant};

use crate::clock::{Clock, MonotonicClock};
use crate::psq::{Key, Psq};

/// The deadline of a timer that never fires.
const NEVER: u64 = u64::MAX;

/// A handle to a timer in a [`TimerQueue`], returned by
/// [`register_at`](TimerQueue::register_at) or
/// [`register_after`](TimerQueue::register_after).
///
/// Once the timer fires or is cancelled its key is stale: every operation on it answers
/// `None` or `false`, even after the queue has reused its storage for another timer.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug)]
pub struct TimerKey(Key);

struct Timer<T> {
    /// The real deadline, in nanoseconds since the queue's epoch; [`NEVER`] for never.
    deadline: u64,
    value: T,
}

/// A queue of timers, each a deadline and a value, with keyed update and cancel.
///
/// Deadlines are kept as nanoseconds since an epoch taken from the clock when the queue
/// is created: nanosecond precision, no ticks, no rounding. A deadline before the epoch
/// is due at once; one more than about 584 years past it, or a `register_after` whose
/// deadline overflows [`Instant`], never fires (and never panics).
///
/// The queue has one source of time, the [`Clock`] it owns: every method that needs the
/// current time ([`register_after`](Self::register_after),
/// [`update_after`](Self::update_after), [`timeout`](Self::timeout),
/// [`expire`](Self::expire)) reads it, and none takes a "now" argument, so a caller cannot
/// mix in a time from another clock or a stale reading. A test moves time with a
/// [`ManualClock`](crate::ManualClock) shared with the queue.
///
/// Costs: `register`, `cancel` and moving a deadline earlier are O(log n); moving a
/// deadline later is O(1) (the timer is re-filed lazily, in O(log n), if it reaches the
/// front of the queue before it fires); `next_deadline`, `timeout` and each timer
/// yielded by `expire` are O(log n) amortised.
///
/// # Examples
///
/// ```
/// use ioman_timers::{Clock, ManualClock, TimerQueue};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let mut timers = TimerQueue::with_clock(clock.clone());
/// let idle = timers.register_after(Duration::from_secs(10), "idle");
/// timers.register_after(Duration::from_secs(3), "write");
/// timers.update_after(idle, Duration::from_secs(20)); // activity: push it later
///
/// assert_eq!(timers.timeout(), Some(Duration::from_secs(3)));
/// clock.advance(Duration::from_secs(3));
/// let fired: Vec<_> = timers.expire().map(|(_, _, v)| v).collect();
/// assert_eq!(fired, ["write"]);
/// assert_eq!(timers.timeout(), Some(Duration::from_secs(17)));
/// ```
pub struct TimerQueue<T, C: Clock = MonotonicClock> {
    psq: Psq<u64, Timer<T>>,
    clock: C,
    epoch: Instant,
}

impl<T> TimerQueue<T> {
    /// Creates an empty queue on the system's monotonic clock. Allocates nothing until the
    /// first timer.
    pub fn new() -> Self {
        Self::with_clock(MonotonicClock)
    }

    /// Creates an empty queue on the system's monotonic clock with room for `n` timers
    /// before it reallocates.
    pub fn with_capacity(n: usize) -> Self {
        Self::with_capacity_and_clock(n, MonotonicClock)
    }
}

impl<T, C: Clock + Default> Default for TimerQueue<T, C> {
    /// An empty queue on `C::default()`.
    fn default() -> Self {
        Self::with_clock(C::default())
    }
}

impl<T, C: Clock> TimerQueue<T, C> {
    /// Creates an empty queue that reads time from `clock`.
    pub fn with_clock(clock: C) -> Self {
        Self::with_capacity_and_clock(0, clock)
    }

    /// Creates an empty queue that reads time from `clock`, with room for `n` timers
    /// before it reallocates.
    pub fn with_capacity_and_clock(n: usize, clock: C) -> Self {
        let epoch = clock.now();
        TimerQueue {
            psq: Psq::with_capacity(n),
            clock,
            epoch,
        }
    }

    /// Makes room for at least `additional` more timers without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        self.psq.reserve(additional);
    }

    /// Returns the queue's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Returns the clock's current time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Nanoseconds from the epoch to `t`: 0 before the epoch, [`NEVER`] past the range.
    #[inline]
    fn to_ns(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.epoch) {
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(NEVER),
            None => 0,
        }
    }

    /// `now` in nanoseconds, kept below [`NEVER`] so a never-timer is never due.
    #[inline]
    fn now_ns(&self, now: Instant) -> u64 {
        self.to_ns(now).min(NEVER - 1)
    }

    /// Nanoseconds from the epoch to `after` from now, saturating to [`NEVER`].
    #[inline]
    fn after_ns(&self, after: Duration) -> u64 {
        let after = u64::try_from(after.as_nanos()).unwrap_or(NEVER);
        self.to_ns(self.clock.now()).saturating_add(after)
    }

    /// The instant `ns` nanoseconds after the epoch; `None` for [`NEVER`] or beyond what
    /// [`Instant`] can represent.
    #[inline]
    fn to_instant(&self, ns: u64) -> Option<Instant> {
        if ns == NEVER {
            return None;
        }
        self.epoch.checked_add(Duration::from_nanos(ns))
    }

    /// Adds a timer that fires at `deadline` and returns its key.
    ///
    /// A deadline in the past (or exactly now) is due at the next
    /// [`expire`](Self::expire). O(log n).
    ///
    /// # Panics
    ///
    /// Panics if the queue would hold more than `u32::MAX - 1` timers.
    #[track_caller]
    pub fn register_at(&mut self, deadline: Instant, value: T) -> TimerKey {
        let ns = self.to_ns(deadline);
        self.register_ns(ns, value)
    }

    /// Adds a timer that fires `after` from now (by the queue's clock) and returns its
    /// key.
    ///
    /// A zero duration is due at the next [`expire`](Self::expire). A duration too large
    /// to add to the current [`Instant`] (such as [`Duration::MAX`]) gives a timer that
    /// never fires; it can still be updated or cancelled. O(log n).
    ///
    /// # Panics
    ///
    /// Panics if the queue would hold more than `u32::MAX - 1` timers.
    #[track_caller]
    pub fn register_after(&mut self, after: Duration, value: T) -> TimerKey {
        let ns = self.after_ns(after);
        self.register_ns(ns, value)
    }

    #[track_caller]
    fn register_ns(&mut self, deadline: u64, value: T) -> TimerKey {
        TimerKey(self.psq.insert(deadline, Timer { deadline, value }))
    }

    /// Moves the timer named by `key` to fire at `deadline`, earlier or later. Returns
    /// `false` (and does nothing) if the timer has already fired or been cancelled.
    ///
    /// Moving later is O(1); moving earlier is O(log n). Equal deadlines keep firing in
    /// registration order: an update does not move a timer behind others that share its
    /// new deadline.
    pub fn update_at(&mut self, key: TimerKey, deadline: Instant) -> bool {
        let ns = self.to_ns(deadline);
        self.update_ns(key, ns)
    }

    /// Moves the timer named by `key` to fire `after` from now, earlier or later; a
    /// duration too large to add to the current [`Instant`] makes it never fire. Returns
    /// `false` if the timer has already fired or been cancelled.
    pub fn update_after(&mut self, key: TimerKey, after: Duration) -> bool {
        let ns = self.after_ns(after);
        self.update_ns(key, ns)
    }

    fn update_ns(&mut self, key: TimerKey, deadline: u64) -> bool {
        let Some(timer) = self.psq.get_mut(key.0) else {
            return false;
        };
        // The heap files every timer at or before its real deadline, so a deadline not
        // earlier than the real one needs no heap access at all: store it and re-file
        // the timer only if it reaches the front (`settle`). One slab access.
        if deadline >= timer.deadline {
            timer.deadline = deadline;
            return true;
        }
        timer.deadline = deadline;
        if let Some(&filed) = self.psq.priority(key.0) {
            if deadline < filed {
                self.psq.change_priority(key.0, deadline);
            }
        }
        true
    }

    /// Removes the timer named by `key` and returns its value, or `None` if it has
    /// already fired or been cancelled. O(log n).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.psq.remove(key.0).map(|(_, timer)| timer.value)
    }

    /// Returns the deadline of the timer named by `key`, or `None` if it has fired or
    /// been cancelled, or if it never fires.
    ///
    /// A deadline given before the queue was created reads as the creation time.
    pub fn deadline(&self, key: TimerKey) -> Option<Instant> {
        let timer = self.psq.get(key.0)?;
        self.to_instant(timer.deadline)
    }

    /// Returns the value of the timer named by `key`, or `None` if it has fired or been
    /// cancelled.
    pub fn get(&self, key: TimerKey) -> Option<&T> {
        self.psq.get(key.0).map(|timer| &timer.value)
    }

    /// Returns a mutable reference to the value of the timer named by `key`, or `None`
    /// if it has fired or been cancelled.
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        self.psq.get_mut(key.0).map(|timer| &mut timer.value)
    }

    /// Re-files entries moved later until the front of the heap is filed at its real
    /// deadline, and returns that deadline and the front's key.
    #[inline]
    fn settle(&mut self) -> Option<(u64, Key)> {
        loop {
            let (key, &filed, timer) = self.psq.peek()?;
            let real = timer.deadline;
            if filed == real {
                return Some((real, key));
            }
            debug_assert!(
                filed < real,
                "timer {key:?} filed at {filed} ns, after its deadline {real} ns"
            );
            self.psq.change_priority(key, real);
        }
    }

    /// Returns the earliest deadline of any timer, or `None` if there is none (or every
    /// timer never fires).
    ///
    /// Exact even after deadlines were moved later; takes `&mut self` because it may
    /// re-file such timers.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let (ns, _) = self.settle()?;
        self.to_instant(ns)
    }

    /// Returns how long a poller may block, as seen now by the queue's clock: `None` if
    /// there is no timer, or only timers that never fire (block indefinitely),
    /// [`Duration::ZERO`] if a timer is due, and otherwise the exact time until the
    /// earliest deadline, never less (a poller with a coarser unit must round up).
    pub fn timeout(&mut self) -> Option<Duration> {
        let now_ns = self.now_ns(self.clock.now());
        let (ns, _) = self.settle()?;
        if ns == NEVER {
            None
        } else {
            Some(Duration::from_nanos(ns.saturating_sub(now_ns)))
        }
    }

    /// Returns an iterator that removes and yields, as `(key, deadline, value)`, every
    /// timer whose deadline is at or before the clock's reading at this call, in deadline
    /// order, equal deadlines in registration order.
    ///
    /// The clock is read once, here: a timer that falls due while the iterator runs waits
    /// for the next `expire`. The iterator is lazy: timers it did not reach (because it
    /// was dropped early) stay in the queue. Each step is O(log n) amortised.
    pub fn expire(&mut self) -> Expire<'_, T, C> {
        let now_ns = self.now_ns(self.clock.now());
        Expire {
            queue: self,
            now_ns,
        }
    }

    /// Returns the number of timers in the queue (never-firing ones included).
    pub fn len(&self) -> usize {
        self.psq.len()
    }

    /// Returns `true` if the queue holds no timers.
    pub fn is_empty(&self) -> bool {
        self.psq.is_empty()
    }

    /// Removes every timer; all keys become stale.
    pub fn clear(&mut self) {
        self.psq.clear();
    }

    /// Checks the underlying priority search queue and the lazy-filing invariant
    /// (no timer filed after its real deadline). For tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.psq.check_invariants()?;
        for (key, &filed, timer) in self.psq.iter() {
            if filed > timer.deadline {
                return Err(format!(
                    "timer {key:?} filed at {filed} ns, after its deadline {} ns",
                    timer.deadline
                ));
            }
        }
        Ok(())
    }
}

impl<T: fmt::Debug, C: Clock + fmt::Debug> fmt::Debug for TimerQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerQueue")
            .field("clock", &self.clock)
            .field("epoch", &self.epoch)
            .field("len", &self.psq.len())
            .finish_non_exhaustive()
    }
}

/// Iterator returned by [`TimerQueue::expire`]: removes and yields due timers in
/// deadline order.
pub struct Expire<'a, T, C: Clock = MonotonicClock> {
    queue: &'a mut TimerQueue<T, C>,
    now_ns: u64,
}

impl<T, C: Clock> Iterator for Expire<'_, T, C> {
    type Item = (TimerKey, Instant, T);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (deadline, _) = self.queue.settle()?;
        if deadline > self.now_ns {
            return None;
        }
        let (key, _, timer) = self.queue.psq.pop()?;
        // A due deadline is at most `now`, which `Instant` represents.
        let at = self.queue.to_instant(deadline).unwrap_or(self.queue.epoch);
        Some((TimerKey(key), at, timer.value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.queue.len()))
    }
}

impl<T, C: Clock> FusedIterator for Expire<'_, T, C> {}

impl<T, C: Clock> fmt::Debug for Expire<'_, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expire")
            .field("now_ns", &self.now_ns)
            .field("len", &self.queue.len())
            .finish()
    }
}
