//! The timer queue: a slab of timers, and lazily deleted entries filed in a timing wheel
//! (the future) and a heap (the near present).
//!
//! Each timer lives in a slot of the slab (its real deadline, its tie, the generation of
//! its key, its value). Timers due before the wheel's `elapsed` line are in the heap,
//! under an entry `(deadline, tie, slot)` packed in a `u128` (see `heap`), which orders
//! them exactly; the others sit unordered in the buckets of a hierarchical wheel (see
//! `wheel`), under an 8-byte entry that names the slot and the deadline's millisecond,
//! until the queue needs them: a level-0 bucket is poured into the heap, each timer read
//! from its slot; a higher bucket is filed lower. Nothing points from the slab to an
//! entry, so no operation pays for keeping a back-index up to date, and:
//!
//! - **register** files one entry: a push onto a wheel bucket, O(1), or onto the heap when
//!   the deadline is before `elapsed`;
//! - **cancel** empties the slot and leaves the entry behind, dead: O(1);
//! - **moving later** rewrites the slot's deadline only, O(1): the entry stays filed
//!   earlier than the real deadline, and when its bucket is poured, or it reaches the top
//!   of the heap, it is filed again;
//! - **moving earlier** files one more entry at the new deadline; the old one is found
//!   dead or moved when it surfaces.
//!
//! A heap entry is live when its slot is occupied by the timer with its tie (ties come
//! from one counter, so a reused slot is never confused with its previous timer). A wheel
//! entry names only a slot: a pour drops it if the slot is vacant and otherwise files the
//! slot's timer by its real deadline, so an entry left by a cancelled timer whose slot
//! was reused at worst duplicates the new timer's own entry, and the duplicate is dead
//! once the timer fires. Dead entries are dropped when they surface, and the queue is
//! rebuilt (every live timer filed once, at its real deadline) when entries outnumber
//! twice the live timers, so the entries never number more than about twice the live
//! timers (plus 1/64 of the slab, plus 64). A timer that never fires has no entry at all.
//!
//! Invariant: every live timer that can fire has an entry of its own filed at or before
//! its real deadline, and every heap entry is due before every wheel entry. Expiring
//! looks at the heap's top (pouring the wheel's earliest bucket in when the heap is
//! empty): a live entry filed before its timer's deadline is filed again, one filed at it
//! fires. The heap pops in (deadline, tie) order, so equal deadlines fire in registration
//! order, whatever the updates in between.

use std::fmt;
use std::iter::FusedIterator;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use crate::clock::{Clock, MonotonicClock};
use crate::heap::{self, Heap};
use crate::tick::{duration_ticks, Epoch, NEVER};
use crate::wheel::{Bucket, Wheel};

/// Ends the free list; also the bound on slot indices.
const NIL: u32 = u32::MAX;

/// A handle to a timer in a [`TimerQueue`], returned by
/// [`register_at`](TimerQueue::register_at) or
/// [`register_after`](TimerQueue::register_after).
///
/// Once the timer fires or is cancelled its key is stale: every operation on it answers
/// `None` or `false`, even after the queue has reused its storage for another timer.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

/// One timer, or a vacant place for one.
///
/// 24 bytes for a `u64` value: the tie is never zero, so `Option<Timer<T>>` keeps its
/// tag in the tie's zero (no tag word of its own), and a vacant slot keeps the generation
/// of its last key in `deadline`, beside the free list's link. Each byte of a slot is
/// memory a queue built from empty must fault in, and a cache line that a cancel of a
/// random timer misses.
///
/// Not over-aligned: a 32-byte alignment would keep every slot in one cache line, but std
/// grows a vector of over-aligned elements by allocating, copying and freeing instead of
/// `realloc` (which moves large blocks by remapping pages), and growth already dominates
/// building a large queue from empty.
struct Slot<T> {
    /// Occupied: the real deadline in ticks ([`NEVER`] for never). Vacant: see
    /// [`vacant`].
    deadline: u64,
    /// `Some` while occupied.
    timer: Option<Timer<T>>,
}

/// What an occupied slot holds besides the deadline.
struct Timer<T> {
    /// The timer's registration number, which its heap entries carry.
    tie: NonZeroU32,
    /// The generation of the key that names the timer. Bumped when the slot is reused, so
    /// an old key never names a later timer; a slot whose generation reaches `u32::MAX`
    /// is retired (dropped from the free list) instead of reused, so generations never
    /// wrap.
    generation: u32,
    value: T,
}

/// The `deadline` word of a vacant slot: the generation of its last key in the high half,
/// the next vacant slot of the free list ([`NIL`] at its end) in the low half.
#[inline(always)]
fn vacant(generation: u32, next: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(next)
}

/// The generation kept in a vacant slot's `deadline` word.
#[inline(always)]
fn vacant_generation(word: u64) -> u32 {
    (word >> 32) as u32
}

/// A queue of timers, each a deadline and a value, with keyed update and cancel.
///
/// The queue has one source of time, the [`Clock`] it owns: every method that needs the
/// current time ([`register_after`](Self::register_after),
/// [`update_after`](Self::update_after), [`timeout`](Self::timeout),
/// [`expire`](Self::expire)) reads it, and none takes a "now" argument, so a caller cannot
/// mix in a time from another clock or a stale reading. A test moves time with a
/// [`ManualClock`](crate::ManualClock) shared with the queue.
///
/// Deadlines are kept as nanoseconds since an epoch taken from the clock when the queue
/// is created: nanosecond precision, nothing rounded. A deadline before the epoch is due
/// at once; one more than about 584 years past it, or a `register_after` whose deadline
/// overflows that, never fires (and never panics).
///
/// Costs: a timer is filed unordered in a hierarchical timing wheel (buckets of about
/// 1 ms, 67 ms, 4.3 s, 4.6 min, ... wide) and ordered exactly only when its bucket comes
/// up, in a heap that holds the timers of about one millisecond. So `register_at`,
/// `register_after` and moving a deadline earlier are O(1) (O(log h) for a deadline in
/// the millisecond at hand, h the timers in it); `cancel` and moving a deadline later are
/// O(1); each timer yielded by `expire` costs at most one move per wheel level (8) plus
/// O(log h); `timeout` and `next_deadline` are O(1) when nothing changed, amortised
/// O(log h) otherwise. Cancelled and moved timers leave their entries behind until those
/// surface or the queue rebuilds, which it does when dead entries outnumber live timers
/// (O(n), amortised over the cancels that made them), so memory stays within a constant
/// factor of the live count. `len` is exact at all times. A live timer costs one slot (24
/// bytes for a `u64` value, 32 for a boxed closure on 64-bit targets) and one 8-byte
/// wheel entry (plus a 31st of a 256-byte chunk's header; a 16-byte heap entry instead
/// in the millisecond before it fires): 32 bytes for a `u64` value.
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
    /// Entries due before `wheel.elapsed()`, in (deadline, tie) order.
    heap: Heap,
    /// Entries due at or after `wheel.elapsed()`.
    wheel: Wheel,
    slots: Vec<Slot<T>>,
    /// Head of the free list of vacant slots.
    free: u32,
    /// The tie of the next registration.
    next_tie: NonZeroU32,
    /// Live timers.
    live: usize,
    /// Heap size past which a registration rebuilds (see `file`).
    heap_limit: usize,
    /// The slots a pour files again in the wheel (kept for its allocation).
    again: Vec<u32>,
    epoch: Epoch,
    clock: C,
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
        let epoch = Epoch::new(clock.now());
        let mut wheel = Wheel::default();
        wheel.reserve(n);
        TimerQueue {
            heap: Heap::default(),
            wheel,
            slots: Vec::with_capacity(n),
            free: NIL,
            next_tie: NonZeroU32::MIN,
            live: 0,
            heap_limit: 64,
            again: Vec::new(),
            epoch,
            clock,
        }
    }

    /// Makes room for at least `additional` more timers without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        self.wheel.reserve(additional);
        let vacant = self.slots.len() - self.live;
        self.slots.reserve(additional.saturating_sub(vacant));
    }

    /// Returns the queue's clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Returns the clock's current time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The clock's reading in ticks, kept below [`NEVER`] so a never-timer is never due.
    #[inline]
    fn now_ticks(&self) -> u64 {
        self.epoch.ticks(self.clock.now()).min(NEVER - 1)
    }

    /// `after` from now, in ticks, saturating to [`NEVER`].
    #[inline]
    fn after_ticks(&self, after: Duration) -> u64 {
        self.now_ticks().saturating_add(duration_ticks(after))
    }

    /// Adds a timer that fires at `deadline` and returns its key.
    ///
    /// A deadline in the past (or exactly now) is due at the next
    /// [`expire`](Self::expire). O(1) (see the costs above).
    ///
    /// # Panics
    ///
    /// Panics if the queue would hold more than `u32::MAX - 1` timers.
    #[track_caller]
    #[inline(always)]
    pub fn register_at(&mut self, deadline: Instant, value: T) -> TimerKey {
        let ticks = self.epoch.ticks(deadline);
        self.register_ticks(ticks, value)
    }

    /// Adds a timer that fires `after` from now (by the queue's clock) and returns its
    /// key.
    ///
    /// A zero duration is due at the next [`expire`](Self::expire). A duration too large
    /// to count in nanoseconds from the queue's creation (such as [`Duration::MAX`]) gives
    /// a timer that never fires; it can still be updated or cancelled. O(1) (see the
    /// costs above).
    ///
    /// # Panics
    ///
    /// Panics if the queue would hold more than `u32::MAX - 1` timers.
    #[track_caller]
    #[inline]
    pub fn register_after(&mut self, after: Duration, value: T) -> TimerKey {
        let ticks = self.after_ticks(after);
        self.register_ticks(ticks, value)
    }

    #[track_caller]
    #[inline(always)]
    fn register_ticks(&mut self, deadline: u64, value: T) -> TimerKey {
        if self.next_tie == NonZeroU32::MAX {
            self.renumber_ties();
        }
        let tie = self.next_tie;
        self.next_tie = tie.saturating_add(1);
        self.live += 1;
        let (index, generation) = loop {
            let index = self.free;
            let Some(slot) = self.slots.get_mut(index as usize) else {
                break (self.push_slot(deadline, tie, value), 0);
            };
            debug_assert!(slot.timer.is_none(), "free list names an occupied slot");
            self.free = slot.deadline as u32;
            let generation = vacant_generation(slot.deadline);
            if generation == u32::MAX {
                // Retired: left off the free list for good.
                continue;
            }
            let generation = generation + 1;
            slot.deadline = deadline;
            slot.timer = Some(Timer {
                tie,
                generation,
                value,
            });
            // Only a queue with vacant slots can hold dead entries: check here, not
            // when every slot is taken.
            self.compact_if_dirty();
            break (index, generation);
        };
        self.file(heap::pack(deadline, tie.get(), index));
        TimerKey { index, generation }
    }

    /// A new slot for a timer, when none is vacant; returns its index.
    #[track_caller]
    #[inline]
    fn push_slot(&mut self, deadline: u64, tie: NonZeroU32, value: T) -> u32 {
        let index = self.slots.len();
        if index == self.slots.capacity() {
            self.grow_slots();
        }
        self.slots.push(Slot {
            deadline,
            timer: Some(Timer {
                tie,
                generation: 0,
                value,
            }),
        });
        index as u32
    }

    /// Makes room for more slots, within the bound on indices.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn grow_slots(&mut self) {
        let len = self.slots.len();
        assert!(
            len < NIL as usize,
            "TimerQueue: more than {} timers",
            NIL - 1
        );
        // Double, as `Vec::push` would, but never past the last index.
        let additional = len.max(4).min(NIL as usize - len);
        self.slots.reserve(additional);
    }

    /// Files entry `e`: in the heap if it is due before the wheel's line, else in the
    /// wheel. A timer that never fires is not filed.
    #[inline(always)]
    fn file(&mut self, e: u128) {
        let d = heap::deadline(e);
        if d >= self.wheel.elapsed() {
            if d != NEVER {
                self.wheel.insert(d, heap::slot(e));
            }
        } else {
            self.heap.push(e);
            // The wheel's line can run ahead of the clock (it moves to the next bucket
            // when the heap is empty); then new timers land in the heap. Rebuild, with
            // the line back at the clock, before the heap grows large with them. The
            // limit at least doubles the heap a rebuild leaves (timers already due stay
            // in the heap), so rebuilds stay amortised.
            if self.heap.len() > self.heap_limit {
                self.rebuild();
            }
        }
    }

    /// Entries filed, live or dead.
    #[inline(always)]
    fn entries(&self) -> usize {
        self.heap.len() + self.wheel.len()
    }

    /// Rebuilds when dead entries outnumber live timers (plus 1/64 of the slab, so the
    /// rebuild's bitmap of the slab is amortised over the cancels too).
    #[inline(always)]
    fn compact_if_dirty(&mut self) {
        if self.entries() > 2 * self.live + 64 + (self.slots.len() >> 6) {
            self.rebuild();
        }
    }

    /// The slot of the live timer named by `key`, and the timer.
    #[inline]
    fn slot(&self, key: TimerKey) -> Option<(&Slot<T>, &Timer<T>)> {
        let slot = self.slots.get(key.index as usize)?;
        let timer = slot.timer.as_ref()?;
        (timer.generation == key.generation).then_some((slot, timer))
    }

    /// Moves the timer named by `key` to fire at `deadline`, earlier or later. Returns
    /// `false` (and does nothing) if the timer has already fired or been cancelled.
    ///
    /// Moving later is O(1) and touches only the timer; moving earlier files one more
    /// entry, O(1) like a registration. Equal
    /// deadlines keep firing in registration order: an update does not move a timer
    /// behind others that share its new deadline.
    #[inline]
    pub fn update_at(&mut self, key: TimerKey, deadline: Instant) -> bool {
        let ticks = self.epoch.ticks(deadline);
        self.update_ticks(key, ticks)
    }

    /// Moves the timer named by `key` to fire `after` from now, earlier or later; a
    /// duration too large to count in nanoseconds from the queue's creation makes it
    /// never fire. Returns `false` if the timer has already fired or been cancelled.
    ///
    /// Costs as for [`update_at`](Self::update_at).
    #[inline]
    pub fn update_after(&mut self, key: TimerKey, after: Duration) -> bool {
        let ticks = self.after_ticks(after);
        self.update_ticks(key, ticks)
    }

    #[inline]
    fn update_ticks(&mut self, key: TimerKey, deadline: u64) -> bool {
        let Some(slot) = self.slots.get_mut(key.index as usize) else {
            return false;
        };
        let Some(timer) = slot
            .timer
            .as_ref()
            .filter(|t| t.generation == key.generation)
        else {
            return false;
        };
        // Every timer is filed at or before its real deadline, so a deadline not earlier
        // than the real one needs no heap access at all: the entry is re-filed when it
        // reaches the top.
        if deadline < slot.deadline {
            let tie = timer.tie.get();
            slot.deadline = deadline;
            self.file_earlier(deadline, tie, key.index);
        } else {
            slot.deadline = deadline;
        }
        true
    }

    /// Files one more entry for a timer moved earlier (the old one will be found dead or
    /// re-filed when it surfaces). Out of line: the common update moves a timer later.
    #[inline(never)]
    fn file_earlier(&mut self, deadline: u64, tie: u32, index: u32) {
        self.compact_if_dirty();
        self.file(heap::pack(deadline, tie, index));
    }

    /// Removes the timer named by `key` and returns its value, or `None` if it has
    /// already fired or been cancelled. O(1): its heap entry is dropped later.
    #[inline]
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.timer.as_ref()?.generation != key.generation {
            return None;
        }
        let timer = slot.timer.take()?;
        self.live -= 1;
        slot.deadline = vacant(timer.generation, self.free);
        self.free = key.index;
        Some(timer.value)
    }

    /// Returns the deadline of the timer named by `key`, or `None` if it has fired or
    /// been cancelled, or if it never fires.
    ///
    /// A deadline given before the queue was created reads as the creation time.
    pub fn deadline(&self, key: TimerKey) -> Option<Instant> {
        let (slot, _) = self.slot(key)?;
        self.epoch.instant_at(slot.deadline)
    }

    /// Returns the value of the timer named by `key`, or `None` if it has fired or been
    /// cancelled.
    pub fn get(&self, key: TimerKey) -> Option<&T> {
        self.slot(key).map(|(_, t)| &t.value)
    }

    /// Returns a mutable reference to the value of the timer named by `key`, or `None`
    /// if it has fired or been cancelled.
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        self.slots
            .get_mut(key.index as usize)?
            .timer
            .as_mut()
            .filter(|t| t.generation == key.generation)
            .map(|t| &mut t.value)
    }

    /// Drops dead entries and re-files moved timers at the top until the top entry is a
    /// live timer filed at its real deadline; returns that deadline.
    #[inline]
    fn settle(&mut self) -> Option<u64> {
        loop {
            let Some(top) = self.heap.peek() else {
                let bucket = self.wheel.next_bucket()?;
                self.pour(bucket);
                continue;
            };
            match self.classify(top) {
                Top::Due(at) => return Some(at),
                Top::Dead => {
                    self.heap.pop();
                }
                Top::Moved(e) => self.refile_top(e),
            }
        }
    }

    /// Files the heap's top again as `e`, its real (later) deadline.
    #[inline]
    fn refile_top(&mut self, e: u128) {
        if heap::deadline(e) < self.wheel.elapsed() {
            self.heap.replace_top(e);
        } else {
            self.heap.pop();
            // A timer moved to never is left unfiled.
            if heap::deadline(e) != NEVER {
                self.wheel.insert(heap::deadline(e), heap::slot(e));
            }
        }
    }

    /// Empties the wheel's earliest bucket into the heap or lower in the wheel. Each
    /// timer of a level-0 bucket is read here: a cancelled one is dropped, one moved past
    /// the bucket is filed again in the wheel (unless it now never fires), and the rest
    /// go onto the heap, ordered by deadline and tie.
    ///
    /// A timer due before the bucket is not dropped here, though the entry is not its
    /// own: only `expire` and `settle` pour, when the heap is empty, so a live timer's
    /// own entry, at or before its deadline, is in this bucket or a later one, and no
    /// such timer is left but one reached through a bucket of a higher level cascading
    /// after this one; that one's entry goes onto the heap as a duplicate, dead once the
    /// first of the two fires.
    #[inline(never)]
    fn pour(&mut self, bucket: Bucket) {
        let (heap, slots, again) = (&mut self.heap, &self.slots, &mut self.again);
        self.wheel.take(bucket, &mut |index, line| {
            let Some(s) = slots.get(index as usize) else {
                return;
            };
            let Some(timer) = &s.timer else {
                return;
            };
            if s.deadline < line {
                heap.push(heap::pack(s.deadline, timer.tie.get(), index));
            } else {
                again.push(index);
            }
        });
        while let Some(index) = self.again.pop() {
            if let Some(s) = self.slots.get(index as usize) {
                if s.deadline != NEVER {
                    self.wheel.insert(s.deadline, index);
                }
            }
        }
    }

    /// What the top entry `e` is.
    #[inline(always)]
    fn classify(&self, e: u128) -> Top {
        let index = heap::slot(e);
        let tie = heap::tie(e);
        let at = heap::deadline(e);
        match self.slots.get(index as usize) {
            Some(s) if s.timer.as_ref().is_some_and(|t| t.tie.get() == tie) => {
                if at < s.deadline {
                    Top::Moved(heap::pack(s.deadline, tie, index))
                } else {
                    debug_assert_eq!(
                        at, s.deadline,
                        "timer in slot {index} filed after its deadline"
                    );
                    Top::Due(at)
                }
            }
            _ => Top::Dead,
        }
    }

    /// Returns the earliest deadline of any timer, or `None` if there is none (or every
    /// timer never fires).
    ///
    /// Exact even after deadlines were moved later; takes `&mut self` because it may
    /// re-file such timers and drop cancelled ones.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let at = self.settle()?;
        self.epoch.instant_at(at)
    }

    /// Returns a time at which a poller should look at the queue again: never later than
    /// [`next_deadline`](Self::next_deadline), and `None` only when there is no timer that
    /// can fire. O(1) and read-only: unlike `next_deadline` it files nothing again, so it
    /// may be earlier than the real next deadline (when the earliest timers were moved later
    /// since they were filed, or sit in a coarse wheel bucket that starts before them); a
    /// poller that wakes then calls [`expire`](Self::expire), finds nothing due, and asks
    /// again. This is what an event loop should block until: a queue whose timers are
    /// pushed later at every message (idle timeouts) pays the re-filing once per timer per
    /// timeout period, not once per poll.
    pub fn next_wake(&self) -> Option<Instant> {
        let ticks = match self.heap.peek() {
            Some(top) => heap::deadline(top),
            None => self.wheel.next_bucket()?.start(),
        };
        self.epoch.instant_at(ticks)
    }

    /// Returns how long a poller may block, as seen now by the queue's clock: `None` if
    /// there is no timer, or only timers that never fire (block indefinitely),
    /// [`Duration::ZERO`] if a timer is due, and otherwise the exact time until the
    /// earliest deadline, never less (a poller with a coarser unit must round up).
    pub fn timeout(&mut self) -> Option<Duration> {
        let at = self.settle()?;
        if at == NEVER {
            return None;
        }
        Some(Duration::from_nanos(at.saturating_sub(self.now_ticks())))
    }

    /// Returns an iterator that removes and yields, as `(key, deadline, value)`, every
    /// timer whose deadline is at or before the clock's reading at this call, in deadline
    /// order, equal deadlines in registration order.
    ///
    /// The clock is read once, here: a timer that falls due while the iterator runs waits
    /// for the next `expire`. The iterator is lazy: timers it did not reach (because it
    /// was dropped early) stay in the queue. Each step is amortised O(log h), h the timers
    /// due in the same millisecond (see the costs above).
    pub fn expire(&mut self) -> Expire<'_, T, C> {
        let now = self.now_ticks();
        Expire { queue: self, now }
    }

    /// Returns the number of live timers (never-firing ones included). Exact: cancelled
    /// timers whose heap entries are still queued do not count.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Returns `true` if the queue holds no timers.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Removes every timer; all keys become stale. O(capacity).
    pub fn clear(&mut self) {
        self.heap.clear();
        self.wheel.clear(usize::MAX);
        self.live = 0;
        self.next_tie = NonZeroU32::MIN;
        self.free = NIL;
        for (index, slot) in self.slots.iter_mut().enumerate().rev() {
            let generation = match slot.timer.take() {
                Some(timer) => timer.generation,
                None => vacant_generation(slot.deadline),
            };
            slot.deadline = vacant(generation, self.free);
            self.free = index as u32;
        }
    }

    /// Removes every timer and returns them with their keys, in no particular order, so the
    /// caller can drop each value on its own terms (an event manager drops each callback
    /// under `catch_unwind`). All keys become stale, as with [`clear`](Self::clear).
    pub fn drain(&mut self) -> Vec<(TimerKey, T)> {
        let mut out = Vec::with_capacity(self.live);
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if let Some(timer) = slot.timer.take() {
                let key = TimerKey {
                    index: index as u32,
                    generation: timer.generation,
                };
                slot.deadline = vacant(timer.generation, NIL);
                out.push((key, timer.value));
            }
        }
        self.clear();
        out
    }

    /// Files every live timer once, at its real deadline: drops every dead entry and
    /// duplicate, and puts the wheel's line back at the clock. O(entries + slab / 64).
    #[cold]
    #[inline(never)]
    fn rebuild(&mut self) {
        let slots = &self.slots;
        // A timer moved earlier can have several live entries: keep the first one seen.
        let mut seen = vec![0u64; slots.len().div_ceil(64)];
        let mut live = Vec::with_capacity(self.live);
        // Every entry that names an occupied slot keeps its timer (each live timer has
        // an entry of its own, so none is lost and none is taken twice).
        let mut keep = |index: u32| {
            let Some(s) = slots.get(index as usize) else {
                return;
            };
            let Some(tie) = s.timer.as_ref().map(|t| t.tie.get()) else {
                return;
            };
            if s.deadline == NEVER {
                return;
            }
            let bit = 1u64 << (index % 64);
            if let Some(word) = seen.get_mut(index as usize / 64) {
                if *word & bit == 0 {
                    *word |= bit;
                    live.push(heap::pack(s.deadline, tie, index));
                }
            }
        };
        self.heap
            .entries()
            .iter()
            .map(|&e| heap::slot(e))
            .for_each(&mut keep);
        self.wheel.slots().for_each(&mut keep);
        self.heap.clear();
        self.wheel.clear(live.len());
        let now = self.now_ticks();
        self.wheel.rewind(now);
        let elapsed = self.wheel.elapsed();
        let mut near = Vec::new();
        for e in live {
            if heap::deadline(e) < elapsed {
                near.push(e);
            } else {
                self.wheel.insert(heap::deadline(e), heap::slot(e));
            }
        }
        self.heap.assign(near);
        self.heap.shrink();
        self.heap_limit = (64 + self.live / 4).max(2 * self.heap.len());
    }

    /// Renumbers the live timers' ties `0..len`, keeping their order, so the counter can
    /// go on. Runs once per 2³² - 1 registrations at most.
    #[cold]
    #[inline(never)]
    fn renumber_ties(&mut self) {
        // One entry per live timer that can fire now, and none dead.
        self.rebuild();
        // Rank every live timer by tie (never-firing ones too: moved earlier, they are
        // filed with their tie), from 1.
        let mut ties: Vec<u32> = self
            .slots
            .iter()
            .filter_map(|s| s.timer.as_ref().map(|t| t.tie.get()))
            .collect();
        ties.sort_unstable();
        let rank = |tie: u32| {
            let r = ties.binary_search(&tie).unwrap_or_else(|r| r) as u32;
            NonZeroU32::MIN.saturating_add(r)
        };
        let rerank =
            |e: u128| heap::pack(heap::deadline(e), rank(heap::tie(e)).get(), heap::slot(e));
        self.heap.remap(rerank);
        for t in self.slots.iter_mut().filter_map(|s| s.timer.as_mut()) {
            t.tie = rank(t.tie.get());
        }
        self.next_tie = NonZeroU32::MIN.saturating_add(self.live as u32);
    }

    /// Checks the heap order, the count of live timers, the free list, and that every
    /// live timer has a live entry filed at or before its deadline. For tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.heap.check()?;
        self.wheel.check()?;
        if let Some(&late) = self
            .heap
            .entries()
            .iter()
            .find(|&&e| heap::deadline(e) >= self.wheel.elapsed())
        {
            return Err(format!(
                "heap entry due at {} is not before the wheel's line {}",
                heap::deadline(late),
                self.wheel.elapsed()
            ));
        }
        let mut ties: Vec<u32> = self
            .slots
            .iter()
            .filter_map(|s| s.timer.as_ref().map(|t| t.tie.get()))
            .collect();
        if ties.len() != self.live {
            return Err(format!(
                "{} occupied slots, live count {}",
                ties.len(),
                self.live
            ));
        }
        ties.sort_unstable();
        if ties.windows(2).any(|w| w[0] == w[1]) {
            return Err("two live timers share a tie".into());
        }
        if ties.last().is_some_and(|&t| t >= self.next_tie.get()) {
            return Err(format!(
                "a live tie is not below the next one, {}",
                self.next_tie
            ));
        }
        let mut filed = vec![false; self.slots.len()];
        // A heap entry is a timer's own if it carries its tie; a wheel entry names a
        // slot only, and counts if it is not later than the slot's timer.
        let heap = self
            .heap
            .entries()
            .iter()
            .map(|&e| (heap::slot(e), heap::deadline(e), Some(heap::tie(e))));
        let wheel = self.wheel.entries().map(|(slot, at)| (slot, at, None));
        for (index, at, tie) in heap.chain(wheel) {
            let index = index as usize;
            let s = self
                .slots
                .get(index)
                .ok_or_else(|| format!("an entry names slot {index} out of range"))?;
            let Some(timer) = &s.timer else {
                continue;
            };
            if tie.is_none_or(|t| t == timer.tie.get()) && at <= s.deadline {
                filed[index] = true;
            }
        }
        for (index, s) in self.slots.iter().enumerate() {
            if s.timer.is_some() && s.deadline != NEVER && !filed[index] {
                return Err(format!(
                    "timer in slot {index} has no entry at or before its deadline {}",
                    s.deadline
                ));
            }
        }
        let mut listed = vec![false; self.slots.len()];
        let mut next = self.free;
        while next != NIL {
            let s = self
                .slots
                .get(next as usize)
                .ok_or_else(|| format!("free list names slot {next} out of range"))?;
            if s.timer.is_some() {
                return Err(format!("free list names occupied slot {next}"));
            }
            if std::mem::replace(&mut listed[next as usize], true) {
                return Err("free list has a cycle".into());
            }
            next = s.deadline as u32;
        }
        // A vacant slot off the free list must be retired.
        for (index, s) in self.slots.iter().enumerate() {
            if s.timer.is_none() && !listed[index] && vacant_generation(s.deadline) != u32::MAX {
                return Err(format!(
                    "vacant slot {index} is lost: not free, not retired"
                ));
            }
        }
        Ok(())
    }

    /// How many entries the queue has allocated room for: (heap entries, slots). For
    /// tests that bound memory.
    #[doc(hidden)]
    pub fn allocated_entries(&self) -> (usize, usize) {
        (
            self.heap.capacity() + self.wheel.capacity(),
            self.slots.capacity(),
        )
    }

    /// How many heap entries are queued, live and dead. For tests.
    #[doc(hidden)]
    pub fn queued_entries(&self) -> usize {
        self.entries()
    }
}

/// What the top entry of the heap is.
enum Top {
    /// A live timer filed at its real deadline.
    Due(u64),
    /// A cancelled or fired timer's entry, or a duplicate.
    Dead,
    /// A live timer filed before its real deadline; the entry to re-file it under.
    Moved(u128),
}

impl<T: fmt::Debug, C: Clock + fmt::Debug> fmt::Debug for TimerQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerQueue")
            .field("clock", &self.clock)
            .field("epoch", &self.epoch.instant())
            .field("len", &self.live)
            .finish_non_exhaustive()
    }
}

/// Iterator returned by [`TimerQueue::expire`]: removes and yields due timers in
/// deadline order, as `(key, deadline, value)`.
pub struct Expire<'a, T, C: Clock = MonotonicClock> {
    queue: &'a mut TimerQueue<T, C>,
    /// The clock's reading in ticks when `expire` was called.
    now: u64,
}

impl<T, C: Clock> Iterator for Expire<'_, T, C> {
    type Item = (TimerKey, Instant, T);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let q = &mut *self.queue;
        loop {
            let Some(top) = q.heap.peek() else {
                // Every wheel entry is after every heap entry: pour the earliest bucket
                // in if it may hold a due timer.
                let bucket = q.wheel.next_bucket()?;
                if bucket.start() > self.now {
                    return None;
                }
                q.pour(bucket);
                continue;
            };
            let at = heap::deadline(top);
            if at > self.now {
                return None;
            }
            match q.classify(top) {
                Top::Dead => {
                    q.heap.pop();
                }
                Top::Moved(e) => q.refile_top(e),
                Top::Due(_) => {
                    q.heap.pop();
                    let index = heap::slot(top);
                    let slot = q.slots.get_mut(index as usize)?;
                    let Timer {
                        generation, value, ..
                    } = slot.timer.take()?;
                    let key = TimerKey { index, generation };
                    q.live -= 1;
                    slot.deadline = vacant(generation, q.free);
                    q.free = index;
                    // A due deadline is at most the clock's reading, an `Instant`.
                    let deadline = q.epoch.instant_at(at).unwrap_or(q.epoch.instant());
                    return Some((key, deadline, value));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.queue.len()))
    }
}

impl<T, C: Clock> FusedIterator for Expire<'_, T, C> {}

impl<T, C: Clock> fmt::Debug for Expire<'_, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expire")
            .field("now_ticks", &self.now)
            .field("len", &self.queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn ties_stay_in_registration_order_across_a_tie_counter_wrap() {
        let clock = ManualClock::new();
        let mut q = TimerQueue::with_clock(clock.clone());
        q.next_tie = NonZeroU32::new(u32::MAX - 4).unwrap();
        // A timer that never fires has no entry, but keeps its place in the order.
        let never = q.register_after(Duration::MAX, 100);
        let keys: Vec<_> = (0..8)
            .map(|i| q.register_after(Duration::from_millis(i % 2), i))
            .collect();
        let dead = q.register_after(Duration::ZERO, 99);
        q.cancel(dead);
        q.update_after(keys[0], Duration::from_millis(1));
        q.update_after(keys[0], Duration::ZERO);
        assert_eq!(q.check_invariants(), Ok(()));
        assert!(q.next_tie.get() < 20, "the counter was renumbered");
        q.update_after(never, Duration::ZERO);
        assert_eq!(q.check_invariants(), Ok(()));
        clock.advance(Duration::from_millis(1));
        let fired: Vec<_> = q.expire().map(|(_, _, v)| v).collect();
        assert_eq!(fired, [100, 0, 2, 4, 6, 1, 3, 5, 7]);
    }

    #[test]
    fn a_rebuild_keeps_one_entry_per_timer() {
        let clock = ManualClock::new();
        let mut q = TimerQueue::with_clock(clock.clone());
        let a = q.register_after(Duration::from_secs(10), 'a');
        let b = q.register_after(Duration::from_secs(20), 'b');
        // Earlier twice: two more entries for `a`; later, then earlier: one more for `b`.
        q.update_after(a, Duration::from_secs(5));
        q.update_after(a, Duration::from_secs(3));
        q.update_after(b, Duration::from_secs(30));
        q.update_after(b, Duration::from_secs(25));
        let gone = q.register_after(Duration::from_secs(1), 'x');
        q.cancel(gone);
        assert_eq!(q.queued_entries(), 6);
        q.rebuild();
        assert_eq!(q.queued_entries(), 2);
        assert_eq!(q.check_invariants(), Ok(()));
        clock.advance(Duration::from_secs(25));
        let fired: Vec<_> = q.expire().map(|(_, _, v)| v).collect();
        assert_eq!(fired, ['a', 'b']);
    }

    #[test]
    fn a_slot_whose_generation_is_spent_is_retired() {
        let mut q = TimerQueue::with_clock(ManualClock::new());
        let a = q.register_after(Duration::ZERO, 1);
        if let Some(t) = q.slots[a.index as usize].timer.as_mut() {
            t.generation = u32::MAX;
        }
        let a = TimerKey {
            generation: u32::MAX,
            ..a
        };
        assert_eq!(q.cancel(a), Some(1));
        let b = q.register_after(Duration::ZERO, 2);
        assert_ne!(b.index, a.index, "a retired slot was reused");
        assert_eq!(q.cancel(a), None);
        assert_eq!(q.check_invariants(), Ok(()));
        q.clear();
        assert_eq!(q.check_invariants(), Ok(()));
        let c = q.register_after(Duration::ZERO, 3);
        assert_ne!(c.index, a.index);
    }

    #[test]
    fn a_timer_costs_one_heap_entry_and_one_slot() {
        use std::mem::size_of;
        assert_eq!(size_of::<u128>(), 16);
        // deadline, tie, generation, value: no tag (it is the tie's zero), no padding,
        // 24 bytes on every target.
        assert_eq!(size_of::<Slot<u64>>(), 8 + 4 + 4 + 8);
        // A boxed callback (the manager's value): 16 + two pointers.
        assert_eq!(
            size_of::<Slot<Box<dyn FnOnce()>>>(),
            16 + 2 * size_of::<usize>()
        );
    }
}
