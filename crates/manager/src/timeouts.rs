//! Timeouts: registration from any thread, and the loop's side (how long to block, what
//! is due). The loop is woken only by a new deadline earlier than the one it blocks until.

use std::io;
use std::task::Waker;
use std::time::{Duration, Instant};

use ioman_poll::Backend;

use crate::panic::Origin;
use crate::sync::{lock, AtomicU64, Ordering};
use crate::{EventManager, TimeoutKey};

/// Until when the loop blocks in its poll, in nanoseconds since the manager's epoch, plus
/// one: 0 while it is awake (it will look at the timer queue before it blocks again),
/// `u64::MAX` while it blocks with no deadline.
///
/// Written by the loop under the timer lock before it blocks, and reset to 0 (without the
/// lock) once its poll returned; read by registrations under the timer lock. A registration
/// that reads a stale "blocked until" wakes the loop for nothing; one that reads 0 inserted
/// its timer before the loop's next look at the queue, which takes the same lock. So a
/// deadline earlier than the loop's wake-up always wakes it, and moving a deadline later
/// never does.
pub(crate) struct Sleep {
    epoch: Instant,
    until: AtomicU64,
}

const AWAKE: u64 = 0;
const FOREVER: u64 = u64::MAX;

impl Sleep {
    pub(crate) fn new(epoch: Instant) -> Sleep {
        Sleep {
            epoch,
            until: AtomicU64::new(AWAKE),
        }
    }

    fn encode(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(ns).map_or(FOREVER - 1, |ns| ns.saturating_add(1).min(FOREVER - 1))
    }

    /// Whether the loop is blocked in its poll (or about to block) until some time.
    #[inline]
    fn is_blocked(&self) -> bool {
        self.until.load(Ordering::SeqCst) != AWAKE
    }

    /// Whether a timer due at `deadline` must wake the loop. Call under the timer lock.
    fn wakes(&self, deadline: Option<Instant>) -> bool {
        match deadline {
            None => false,
            Some(d) => self.encode(d) < self.until.load(Ordering::SeqCst),
        }
    }

    /// The loop is about to block for `wait` from `now`. Call under the timer lock.
    fn block(&self, now: Instant, wait: Option<Duration>) {
        let v = match wait.and_then(|w| now.checked_add(w)) {
            None => FOREVER,
            Some(_) if wait == Some(Duration::ZERO) => AWAKE,
            Some(t) => self.encode(t),
        };
        self.until.store(v, Ordering::SeqCst);
    }

    /// The loop is about to block for `wait` with no timer: a registration then wakes it
    /// unless the wait is zero. A finite `max_wait` is recorded as forever, which only makes
    /// a registration wake a loop that would have woken by itself.
    fn block_for(&self, wait: Option<Duration>) {
        let v = if wait == Some(Duration::ZERO) {
            AWAKE
        } else {
            FOREVER
        };
        self.until.store(v, Ordering::SeqCst);
    }

    /// The loop's poll returned.
    pub(crate) fn awake(&self) {
        self.until.store(AWAKE, Ordering::SeqCst);
    }
}

/// What a timeout does when it fires: call a callback, or wake a task (an async timer,
/// with no allocation).
pub(crate) enum Timeout<B: Backend + 'static> {
    Call(crate::TimeoutCallback<B>),
    Wake(Waker),
}

/// When a timeout is due: at an instant, or after a duration from the queue's clock.
#[derive(Clone, Copy)]
enum When {
    At(Instant),
    After(Duration),
}

impl<B: Backend + 'static> EventManager<B> {
    /// Registers `callback` to run once on the loop thread after `after` (GHC's
    /// `registerTimeout`).
    ///
    /// A zero duration fires on the next loop iteration; a duration too large for the clock
    /// never fires (and never overflows). The loop is woken only when the new timeout is
    /// earlier than the one it is blocked until.
    ///
    /// # Errors
    ///
    /// [`ShutDown`](crate::ShutDown) after [`shutdown`](Self::shutdown).
    pub fn register_timeout<F>(&self, after: Duration, callback: F) -> io::Result<TimeoutKey>
    where
        F: FnOnce(&EventManager<B>) + Send + 'static,
    {
        self.register_inner(When::After(after), Timeout::Call(Box::new(callback)))
    }

    /// Registers `callback` to run once on the loop thread at `deadline` on the manager's
    /// clock (a deadline in the past fires on the next iteration). A chain of timeouts that
    /// re-registers itself at `previous deadline + period` does not drift, as one of
    /// relative timeouts does.
    ///
    /// # Errors
    ///
    /// [`ShutDown`](crate::ShutDown) after [`shutdown`](Self::shutdown).
    pub fn register_timeout_at<F>(&self, deadline: Instant, callback: F) -> io::Result<TimeoutKey>
    where
        F: FnOnce(&EventManager<B>) + Send + 'static,
    {
        self.register_inner(When::At(deadline), Timeout::Call(Box::new(callback)))
    }

    /// Registers a timeout that wakes `waker` at `deadline` on the manager's clock: the
    /// timer of an async runtime, with no allocation (the waker is stored in the queue, not
    /// boxed in a callback). [`update_timeout_at`](Self::update_timeout_at) and
    /// [`unregister_timeout`](Self::unregister_timeout) work on its key as on any other;
    /// [`set_timeout_waker`](Self::set_timeout_waker) replaces the waker when the future is
    /// polled by another task.
    ///
    /// # Errors
    ///
    /// [`ShutDown`](crate::ShutDown) after [`shutdown`](Self::shutdown).
    pub fn register_waker_at(&self, deadline: Instant, waker: &Waker) -> io::Result<TimeoutKey> {
        self.register_inner(When::At(deadline), Timeout::Wake(waker.clone()))
    }

    /// Replaces the waker of a timeout made by [`register_waker_at`](Self::register_waker_at)
    /// (a no-op when it would wake the same task). Returns `false` when the key is unknown
    /// (fired, unregistered, another manager's) or names a callback timeout.
    pub fn set_timeout_waker(&self, key: TimeoutKey, waker: &Waker) -> bool {
        if key.manager != self.id {
            return false;
        }
        let old = match lock(&self.timers).get_mut(key.key) {
            Some(Timeout::Wake(w)) if w.will_wake(waker) => return true,
            Some(Timeout::Wake(w)) => std::mem::replace(w, waker.clone()),
            _ => return false,
        };
        // Dropped outside the lock: a waker's drop is the executor's code.
        self.drop_contained(Origin::TimeoutDrop(key), old);
        true
    }

    fn register_inner(&self, when: When, timeout: Timeout<B>) -> io::Result<TimeoutKey> {
        let mut timers = lock(&self.timers);
        if let Err(e) = self.check_live() {
            drop(timers);
            self.drop_contained(Origin::Refused, timeout);
            return Err(e);
        }
        let key = match when {
            When::At(d) => timers.register_at(d, timeout),
            When::After(d) => timers.register_after(d, timeout),
        };
        let wake = self.sleep.is_blocked() && self.sleep.wakes(timers.deadline(key));
        drop(timers);
        if wake {
            self.wake();
        }
        Ok(TimeoutKey {
            manager: self.id,
            key,
        })
    }

    /// Moves a timeout to `after` from now, earlier or later. Returns `false` when the key is
    /// unknown (fired, unregistered, or another manager's). Moving a timeout later is O(1)
    /// and never wakes the loop; the loop is woken only when the new deadline is earlier than
    /// the one it is blocked until.
    pub fn update_timeout(&self, key: TimeoutKey, after: Duration) -> bool {
        self.update_inner(key, When::After(after))
    }

    /// Moves a timeout to `deadline` on the manager's clock; as
    /// [`update_timeout`](Self::update_timeout).
    pub fn update_timeout_at(&self, key: TimeoutKey, deadline: Instant) -> bool {
        self.update_inner(key, When::At(deadline))
    }

    fn update_inner(&self, key: TimeoutKey, when: When) -> bool {
        if key.manager != self.id {
            return false;
        }
        let mut timers = lock(&self.timers);
        let updated = match when {
            When::At(d) => timers.update_at(key.key, d),
            When::After(d) => timers.update_after(key.key, d),
        };
        if !updated {
            return false;
        }
        // Only a loop blocked until later than the new deadline needs a wake: while it is
        // awake (the usual case: a callback pushing its connection's idle timeout) this is
        // one atomic load.
        let wake = self.sleep.is_blocked() && self.sleep.wakes(timers.deadline(key.key));
        drop(timers);
        if wake {
            self.wake();
        }
        true
    }

    /// Cancels a timeout. Returns `false` when the key is unknown (fired, unregistered, or
    /// another manager's).
    pub fn unregister_timeout(&self, key: TimeoutKey) -> bool {
        if key.manager != self.id {
            return false;
        }
        let cb = lock(&self.timers).cancel(key.key);
        match cb {
            Some(cb) => {
                // Dropped outside the lock: it may own things whose drop calls the manager.
                self.drop_contained(Origin::TimeoutDrop(key), cb);
                true
            }
            None => false,
        }
    }

    /// Runs a timeout that fired (on the loop thread), contained.
    pub(crate) fn fire_timeout(&self, key: TimeoutKey, timeout: Timeout<B>) {
        match timeout {
            Timeout::Call(cb) => self.contain(Origin::Timeout(key), || cb(self)),
            Timeout::Wake(w) => self.contain(Origin::Timeout(key), || w.wake()),
        };
    }

    /// How long the loop may block: until the earliest timeout, at most `max_wait` (`None`:
    /// no limit), zero when shut down. Records it (see [`Sleep`]), so a timeout registered
    /// after this and earlier than what it returned wakes the loop: the blocking poll that
    /// follows cannot miss it.
    pub(crate) fn prepare_wait(&self, max_wait: Option<Duration>) -> Option<Duration> {
        let timers = lock(&self.timers);
        if timers.is_empty() {
            // No timer: no clock reading, nothing to record but how long the poll blocks.
            let wait = if self.is_shut_down() {
                Some(Duration::ZERO)
            } else {
                max_wait
            };
            self.sleep.block_for(wait);
            return wait;
        }
        // One reading of the clock for both the wait and the recorded wake-up time, so the
        // loop never wakes later than it recorded (a registration relies on that).
        let now = timers.now();
        // The queue's lower bound, not its exact next deadline: finding that would re-file
        // every timer moved later since it was filed (every connection's idle timeout,
        // pushed at each message) at every poll. Waking at the bound finds nothing due at
        // worst, once per timer per timeout period.
        let timer_wait = timers.next_wake().map(|d| d.saturating_duration_since(now));
        let wait = match (timer_wait, max_wait) {
            _ if self.is_shut_down() => Some(Duration::ZERO),
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        self.sleep.block(now, wait);
        wait
    }

    /// Takes the due timeouts out of the queue, to run outside the lock.
    pub(crate) fn expire_into(&self, due: &mut Vec<(ioman_timers::TimerKey, Timeout<B>)>) {
        let mut timers = lock(&self.timers);
        if !timers.is_empty() {
            due.extend(timers.expire().map(|(key, _, cb)| (key, cb)));
        }
    }
}
