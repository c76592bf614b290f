//! Clocks: where a [`TimerQueue`](crate::TimerQueue) gets the current time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tick::Epoch;

/// A source of monotonic time.
///
/// Production code uses [`MonotonicClock`]; tests use [`ManualClock`] and move time by
/// hand, so no test has to sleep to see a timer fire. A clock must never go backwards.
///
/// The trait is implemented for `&C`, `Arc<C>` and `Box<C>`, so one clock can be shared
/// by a timer queue and the code that drives it.
pub trait Clock: Send + Sync {
    /// Returns the current time.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    #[inline]
    fn now(&self) -> Instant {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    #[inline]
    fn now(&self) -> Instant {
        (**self).now()
    }
}

impl<C: Clock + ?Sized> Clock for Box<C> {
    #[inline]
    fn now(&self) -> Instant {
        (**self).now()
    }
}

/// The system's monotonic clock: [`Instant::now`].
#[derive(Default, Clone, Copy, Debug)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for tests.
///
/// Clones share the same time (the state lives behind an `Arc`), so a test can hand one
/// clone to a [`TimerQueue`](crate::TimerQueue) and keep another to advance. Reading
/// the time is one atomic load: the clock is a base [`Instant`] plus a nanosecond offset.
///
/// # Examples
///
/// ```
/// use ioman_timers::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// let shared = clock.clone();
/// shared.advance(Duration::from_millis(5));
/// assert_eq!(clock.now() - start, Duration::from_millis(5));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    base: Epoch,
    /// The largest offset `base` can be moved by (`u64::MAX` wherever `Instant` reaches
    /// 584 years past the start, as on every platform std supports today).
    max_offset_ns: u64,
    offset_ns: AtomicU64,
}

impl ManualClock {
    /// Creates a clock that reads [`Instant::now`] at the moment of creation and stays
    /// there until advanced.
    pub fn new() -> Self {
        Self::starting_at(Instant::now())
    }

    /// Creates a clock that reads `start` until advanced.
    pub fn starting_at(start: Instant) -> Self {
        // The largest representable offset, found once so `advance` is integer arithmetic.
        let representable = |ns: u64| start.checked_add(Duration::from_nanos(ns)).is_some();
        let max_offset_ns = if representable(u64::MAX) {
            u64::MAX
        } else {
            let (mut lo, mut hi) = (0u64, u64::MAX);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if representable(mid) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            lo
        };
        ManualClock {
            inner: Arc::new(ManualInner {
                base: Epoch::new(start),
                max_offset_ns,
                offset_ns: AtomicU64::new(0),
            }),
        }
    }

    /// Moves the clock forward by `d` (for every clone).
    ///
    /// # Panics
    ///
    /// Panics if the clock would move more than `u64::MAX` nanoseconds (about 584 years)
    /// past its start, or past what [`Instant`] can represent.
    #[track_caller]
    pub fn advance(&self, d: Duration) {
        let d_ns = u64::try_from(d.as_nanos()).ok();
        let max = self.inner.max_offset_ns;
        let result =
            self.inner
                .offset_ns
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                    old.checked_add(d_ns?).filter(|&new| new <= max)
                });
        assert!(
            result.is_ok(),
            "ManualClock::advance: the clock cannot move {d:?} further"
        );
    }

    /// Sets the clock to `t` (for every clone). A `t` earlier than the current reading is
    /// ignored: the clock never moves backwards.
    ///
    /// # Panics
    ///
    /// Panics if `t` is more than `u64::MAX` nanoseconds (about 584 years) past the
    /// clock's start.
    #[track_caller]
    pub fn set(&self, t: Instant) {
        let ns = self.inner.base.ticks(t);
        // `ticks` saturates at u64::MAX nanoseconds: check such a reading exactly.
        assert!(
            ns < u64::MAX
                || t.checked_duration_since(self.inner.base.instant())
                    .is_some_and(|d| d.as_nanos() <= u128::from(u64::MAX)),
            "ManualClock::set: {t:?} is too far past the clock's start"
        );
        self.inner.offset_ns.fetch_max(ns, Ordering::AcqRel);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> Instant {
        let ns = self.inner.offset_ns.load(Ordering::Acquire);
        // `advance` and `set` only store offsets that `base` can be moved by.
        self.inner.base.instant() + Duration::from_nanos(ns)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("base", &self.inner.base.instant())
            .field(
                "elapsed",
                &Duration::from_nanos(self.inner.offset_ns.load(Ordering::Acquire)),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_never_moves_backwards() {
        let c = ManualClock::new();
        let t0 = c.now();
        c.advance(Duration::from_secs(2));
        c.set(t0 + Duration::from_secs(1));
        assert_eq!(c.now(), t0 + Duration::from_secs(2));
        c.set(t0 + Duration::from_secs(3));
        assert_eq!(c.now(), t0 + Duration::from_secs(3));
        c.set(t0);
        assert_eq!(c.now(), t0 + Duration::from_secs(3));
    }

    #[test]
    fn shared_clocks_see_one_time() {
        let c = ManualClock::new();
        let arc: Arc<dyn Clock> = Arc::new(c.clone());
        let by_ref: &dyn Clock = &c;
        c.advance(Duration::from_nanos(7));
        assert_eq!(arc.now(), c.now());
        assert_eq!(by_ref.now(), c.now());
    }

    #[test]
    #[should_panic(expected = "cannot move")]
    fn advancing_past_the_representable_range_panics() {
        let c = ManualClock::new();
        c.advance(Duration::MAX);
    }
}
