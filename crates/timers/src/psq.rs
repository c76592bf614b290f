//! The priority search queue: an indexed 4-ary min-heap over a slab of entries.
//!
//! Layout: `heap` is an array of `(priority, slot index)` pairs ordered as a 4-ary
//! min-heap, so comparisons during a sift touch only the heap array. `slots` is a slab
//! holding each entry's value, its generation and its position in `heap` (the
//! back-index that makes keyed operations O(log n), as in libev's `ANHE`/`ev_active`).
//! Vacant slots form a free list threaded through their `pos` field.

use std::fmt;
use std::iter::FusedIterator;

/// Children per heap node. 4 keeps the tree shallow (log4 n levels) and the four
/// children of a node in one or two cache lines; measured against 2 in the timers
/// benchmark.
const ARITY: usize = 4;

/// Marks the end of the free list.
const NIL: u32 = u32::MAX;

/// A handle to an entry of a [`Psq`], handed out by [`Psq::insert`].
///
/// A key is a slot index plus the generation of that slot. When an entry is removed its
/// slot's generation is bumped, so an old key never reaches an entry inserted later into
/// the same slot: every keyed operation on a stale key answers `None` or `false`. A slot
/// whose generation counter is exhausted (after 2³² reuses) is retired instead of
/// reused, so the guarantee has no wrap-around.
#[derive(Copy, Clone, Eq, PartialEq, Hash, Debug, PartialOrd, Ord)]
pub struct Key {
    index: u32,
    generation: u32,
}

#[derive(Clone)]
struct HeapEntry<P> {
    priority: P,
    slot: u32,
    /// Insertion number, to pop equal priorities first-in first-out. For `P = u64` it
    /// fits in what would otherwise be padding.
    tie: u32,
}

impl<P: Ord> HeapEntry<P> {
    /// `self` pops before `other`.
    #[inline(always)]
    fn before(&self, other: &Self) -> bool {
        match self.priority.cmp(&other.priority) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => self.tie < other.tie,
            std::cmp::Ordering::Greater => false,
        }
    }
}

#[derive(Clone)]
struct Slot<V> {
    /// `Some` while the slot holds a live entry.
    value: Option<V>,
    generation: u32,
    /// Position in `heap` while occupied; next free slot (or [`NIL`]) while vacant.
    pos: u32,
}

/// A priority search queue: a min-priority queue whose entries can also be found,
/// re-prioritised and removed through the [`Key`] returned by [`insert`](Psq::insert).
///
/// This is the structure GHC's timer manager keeps its timeouts in
/// (`GHC.Event.PSQ`), rebuilt as an indexed 4-ary heap: `peek` is O(1); `insert`,
/// `change_priority`, `remove` and `pop` are O(log n) worst case (plus amortised vector
/// growth); `get`, `get_mut`, `priority` and `contains` are O(1).
///
/// Entries with equal priorities pop first-in first-out: in the order of the `insert`
/// calls that created them (`change_priority` keeps an entry's place among equals).
///
/// # Examples
///
/// ```
/// use ioman_timers::Psq;
///
/// let mut q = Psq::new();
/// let a = q.insert(30, "a");
/// let b = q.insert(10, "b");
/// let c = q.insert(20, "c");
/// q.change_priority(a, 5);
/// assert_eq!(q.remove(c), Some((20, "c")));
/// let due: Vec<_> = q.pop_at_most(&10).map(|(_, p, v)| (p, v)).collect();
/// assert_eq!(due, [(5, "a"), (10, "b")]);
/// assert!(q.is_empty());
/// assert_eq!(q.get(b), None); // b was popped: its key is stale
/// ```
#[derive(Clone)]
pub struct Psq<P: Ord, V> {
    heap: Vec<HeapEntry<P>>,
    slots: Vec<Slot<V>>,
    free_head: u32,
    /// The `tie` of the next insert.
    next_tie: u32,
}

impl<P: Ord, V> Default for Psq<P, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Ord + fmt::Debug, V: fmt::Debug> fmt::Debug for Psq<P, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<P: Ord, V> Psq<P, V> {
    /// Creates an empty queue. Allocates nothing until the first insert.
    pub fn new() -> Self {
        Psq {
            heap: Vec::new(),
            slots: Vec::new(),
            free_head: NIL,
            next_tie: 0,
        }
    }

    /// Creates an empty queue with room for `n` entries before it reallocates.
    pub fn with_capacity(n: usize) -> Self {
        Psq {
            heap: Vec::with_capacity(n),
            slots: Vec::with_capacity(n),
            free_head: NIL,
            next_tie: 0,
        }
    }

    /// Makes room for at least `additional` more entries without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        self.heap.reserve(additional);
        self.slots.reserve(additional);
    }

    /// Inserts `value` with `priority` and returns the key that names the new entry.
    ///
    /// O(log n).
    ///
    /// # Panics
    ///
    /// Panics if the queue would need more than `u32::MAX - 1` slots.
    #[track_caller]
    pub fn insert(&mut self, priority: P, value: V) -> Key {
        let pos = self.heap.len();
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let slot = &mut self.slots[index as usize];
            self.free_head = slot.pos;
            slot.value = Some(value);
            slot.pos = pos as u32;
            index
        } else {
            let index = self.slots.len();
            assert!(
                index < NIL as usize,
                "Psq::insert: more than {} entries",
                NIL - 1
            );
            self.slots.push(Slot {
                value: Some(value),
                generation: 0,
                pos: pos as u32,
            });
            index as u32
        };
        if self.next_tie == u32::MAX {
            self.renumber_ties();
        }
        let tie = self.next_tie;
        self.next_tie += 1;
        self.heap.push(HeapEntry {
            priority,
            slot: index,
            tie,
        });
        self.sift_up(pos);
        Key {
            index,
            generation: self.slots[index as usize].generation,
        }
    }

    /// Renumbers the live entries' tie-breakers `0..len`, keeping their order, so the
    /// counter can go on. Runs once per 2³² - 1 inserts at most: O(n log n) amortised to
    /// nothing. The heap stays valid because the relative order of every pair is kept.
    #[cold]
    fn renumber_ties(&mut self) {
        let mut order: Vec<u32> = (0..self.heap.len() as u32).collect();
        order.sort_unstable_by_key(|&i| self.heap[i as usize].tie);
        for (tie, &i) in order.iter().enumerate() {
            self.heap[i as usize].tie = tie as u32;
        }
        self.next_tie = self.heap.len() as u32;
    }

    /// The slot of a live entry named by `key`, or `None` for a stale key.
    #[inline]
    fn slot(&self, key: Key) -> Option<&Slot<V>> {
        self.slots
            .get(key.index as usize)
            .filter(|s| s.generation == key.generation && s.value.is_some())
    }

    /// The heap position of the live entry named by `key`.
    #[inline]
    fn pos_of(&self, key: Key) -> Option<usize> {
        self.slot(key).map(|s| s.pos as usize)
    }

    /// Returns the value of the entry named by `key`, or `None` if it is no longer in
    /// the queue.
    pub fn get(&self, key: Key) -> Option<&V> {
        self.slot(key).and_then(|s| s.value.as_ref())
    }

    /// Returns a mutable reference to the value of the entry named by `key`, or `None`
    /// if it is no longer in the queue.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut V> {
        self.slots
            .get_mut(key.index as usize)
            .filter(|s| s.generation == key.generation)
            .and_then(|s| s.value.as_mut())
    }

    /// Returns the priority of the entry named by `key`, or `None` if it is no longer in
    /// the queue.
    pub fn priority(&self, key: Key) -> Option<&P> {
        self.pos_of(key).map(|pos| &self.heap[pos].priority)
    }

    /// Returns `true` if the entry named by `key` is still in the queue.
    pub fn contains(&self, key: Key) -> bool {
        self.slot(key).is_some()
    }

    /// Gives the entry named by `key` a new priority, higher or lower, and returns the
    /// old one; returns `None` (and drops `priority`) if the key is stale.
    ///
    /// O(log n).
    pub fn change_priority(&mut self, key: Key, priority: P) -> Option<P> {
        let pos = self.pos_of(key)?;
        let old = std::mem::replace(&mut self.heap[pos].priority, priority);
        if self.heap[pos].priority < old {
            self.sift_up(pos);
        } else {
            self.sift_down(pos);
        }
        Some(old)
    }

    /// Removes the entry named by `key` and returns its priority and value, or `None` if
    /// the key is stale.
    ///
    /// O(log n).
    pub fn remove(&mut self, key: Key) -> Option<(P, V)> {
        let pos = self.pos_of(key)?;
        Some(self.remove_at(pos))
    }

    /// Returns the entry with the lowest priority without removing it. O(1).
    pub fn peek(&self) -> Option<(Key, &P, &V)> {
        let top = self.heap.first()?;
        let slot = &self.slots[top.slot as usize];
        let key = Key {
            index: top.slot,
            generation: slot.generation,
        };
        Some((key, &top.priority, slot.value.as_ref()?))
    }

    /// Removes and returns the entry with the lowest priority. O(log n).
    pub fn pop(&mut self) -> Option<(Key, P, V)> {
        if self.heap.is_empty() {
            return None;
        }
        let key = Key {
            index: self.heap[0].slot,
            generation: self.slots[self.heap[0].slot as usize].generation,
        };
        let (p, v) = self.remove_at(0);
        Some((key, p, v))
    }

    /// Returns an iterator that pops, in priority order, every entry whose priority is
    /// at most `bound` (GHC's `atMost`).
    ///
    /// The iterator is lazy: each `next` pops one entry in O(log n), and entries it did
    /// not reach (because it was dropped early) stay in the queue.
    pub fn pop_at_most<'a>(&'a mut self, bound: &'a P) -> PopAtMost<'a, P, V> {
        PopAtMost { psq: self, bound }
    }

    /// Returns the number of entries in the queue.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Returns `true` if the queue holds no entries.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Returns an iterator over all entries in an unspecified order (heap order, not
    /// priority order).
    pub fn iter(&self) -> Iter<'_, P, V> {
        Iter {
            heap: self.heap.iter(),
            slots: &self.slots,
        }
    }

    /// Removes every entry. All keys handed out so far become stale. O(capacity).
    pub fn clear(&mut self) {
        self.heap.clear();
        self.free_head = NIL;
        self.next_tie = 0;
        for index in (0..self.slots.len()).rev() {
            let slot = &mut self.slots[index];
            if slot.value.take().is_some() {
                if slot.generation == u32::MAX {
                    // Retired: see `release`.
                    slot.pos = NIL;
                    continue;
                }
                slot.generation += 1;
            } else if slot.pos == NIL && slot.generation == u32::MAX {
                // Already retired.
                continue;
            }
            slot.pos = self.free_head;
            self.free_head = index as u32;
        }
    }

    /// Removes the heap entry at `pos` and frees its slot.
    fn remove_at(&mut self, pos: usize) -> (P, V) {
        let entry = self.heap.swap_remove(pos);
        if pos < self.heap.len() {
            // The former last entry now sits at `pos`; it may belong above or below.
            let moved = self.heap[pos].slot as usize;
            self.slots[moved].pos = pos as u32;
            if pos > 0 && self.heap[pos].before(&self.heap[(pos - 1) / ARITY]) {
                self.sift_up(pos);
            } else {
                // The former last entry is usually large: sink it to the bottom without
                // comparing it on the way, then let it rise (Floyd; std's BinaryHeap
                // pops the same way).
                self.sift_down_to_bottom(pos);
            }
        }
        let value = self.release(entry.slot);
        (entry.priority, value)
    }

    /// Takes the value out of slot `index`, bumps its generation and puts it on the free
    /// list (or retires it when its generation counter is exhausted).
    fn release(&mut self, index: u32) -> V {
        let slot = &mut self.slots[index as usize];
        let value = slot.value.take();
        if slot.generation == u32::MAX {
            slot.pos = NIL;
        } else {
            slot.generation += 1;
            slot.pos = self.free_head;
            self.free_head = index;
        }
        // Callers only release occupied slots, reached through `pos_of` or the heap.
        value.expect("Psq: released a vacant slot")
    }

    /// Moves the entry at `pos` towards the root until its parent is not greater.
    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / ARITY;
            if !self.heap[pos].before(&self.heap[parent]) {
                break;
            }
            self.heap.swap(pos, parent);
            self.slots[self.heap[pos].slot as usize].pos = pos as u32;
            pos = parent;
        }
        self.slots[self.heap[pos].slot as usize].pos = pos as u32;
        self.debug_check_at(pos);
    }

    /// The smallest child of `pos`, if it has any.
    #[inline]
    fn min_child(&self, pos: usize) -> Option<usize> {
        let first = pos * ARITY + 1;
        let len = self.heap.len();
        if first >= len {
            return None;
        }
        let end = (first + ARITY).min(len);
        let mut min = first;
        for c in first + 1..end {
            if self.heap[c].before(&self.heap[min]) {
                min = c;
            }
        }
        Some(min)
    }

    /// Moves the entry at `pos` towards the leaves until no child is smaller.
    fn sift_down(&mut self, mut pos: usize) {
        while let Some(min) = self.min_child(pos) {
            if !self.heap[min].before(&self.heap[pos]) {
                break;
            }
            self.heap.swap(pos, min);
            self.slots[self.heap[pos].slot as usize].pos = pos as u32;
            pos = min;
        }
        self.slots[self.heap[pos].slot as usize].pos = pos as u32;
        self.debug_check_at(pos);
    }

    /// Moves the entry at `pos` down along the path of smallest children to a leaf, then
    /// up to where it belongs.
    fn sift_down_to_bottom(&mut self, mut pos: usize) {
        while let Some(min) = self.min_child(pos) {
            self.heap.swap(pos, min);
            self.slots[self.heap[pos].slot as usize].pos = pos as u32;
            pos = min;
        }
        self.sift_up(pos);
    }

    /// In debug builds, checks the heap invariant around `pos` (its parent and its
    /// children) and the back-index of the entry there: O(ARITY), so debug tests with
    /// many operations stay fast. [`check_invariants`](Self::check_invariants) checks
    /// everything.
    #[inline]
    fn debug_check_at(&self, pos: usize) {
        if cfg!(debug_assertions) {
            if let Err(msg) = self.check_at(pos) {
                panic!("Psq heap invariant violated: {msg}");
            }
        }
    }

    fn check_at(&self, pos: usize) -> Result<(), String> {
        let entry = &self.heap[pos];
        let slot = self
            .slots
            .get(entry.slot as usize)
            .ok_or_else(|| format!("heap[{pos}] names slot {} out of range", entry.slot))?;
        if slot.value.is_none() {
            return Err(format!("heap[{pos}] names vacant slot {}", entry.slot));
        }
        if slot.pos as usize != pos {
            return Err(format!(
                "heap[{pos}] names slot {} whose back-index is {}",
                entry.slot, slot.pos
            ));
        }
        if pos > 0 {
            let parent = (pos - 1) / ARITY;
            if entry.before(&self.heap[parent]) {
                return Err(format!(
                    "heap[{parent}] (slot {}) has a greater priority than its child heap[{pos}] (slot {})",
                    self.heap[parent].slot, entry.slot
                ));
            }
        }
        let first = pos * ARITY + 1;
        for c in first..(first + ARITY).min(self.heap.len()) {
            if self.heap[c].before(entry) {
                return Err(format!(
                    "heap[{pos}] (slot {}) has a greater priority than its child heap[{c}] (slot {})",
                    entry.slot, self.heap[c].slot
                ));
            }
        }
        Ok(())
    }

    /// Checks every invariant of the structure in O(n + capacity): the heap order, the
    /// back-index of every entry, and that every slot is either in the heap or on the
    /// free list (or retired). Returns a description of the first violation found.
    ///
    /// For tests; debug builds already check the path touched by each operation.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        for pos in 0..self.heap.len() {
            self.check_at(pos)?;
        }
        let occupied = self.slots.iter().filter(|s| s.value.is_some()).count();
        if occupied != self.heap.len() {
            return Err(format!(
                "{occupied} occupied slots but {} heap entries",
                self.heap.len()
            ));
        }
        let mut free = 0usize;
        let mut next = self.free_head;
        while next != NIL {
            let slot = self
                .slots
                .get(next as usize)
                .ok_or_else(|| format!("free list names slot {next} out of range"))?;
            if slot.value.is_some() {
                return Err(format!("free list names occupied slot {next}"));
            }
            free += 1;
            if free > self.slots.len() {
                return Err("free list has a cycle".to_string());
            }
            next = slot.pos;
        }
        let retired = self
            .slots
            .iter()
            .filter(|s| s.value.is_none() && s.pos == NIL && s.generation == u32::MAX)
            .count();
        if occupied + free + retired < self.slots.len() {
            return Err(format!(
                "{} slots, but {occupied} occupied, {free} free, {retired} retired",
                self.slots.len()
            ));
        }
        Ok(())
    }

    /// Mutable access to the heap for tests that corrupt it on purpose.
    #[cfg(test)]
    fn swap_heap_entries_unchecked(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
    }
}

/// Iterator returned by [`Psq::pop_at_most`]: pops entries with priority at most the
/// bound, lowest first.
pub struct PopAtMost<'a, P: Ord, V> {
    psq: &'a mut Psq<P, V>,
    bound: &'a P,
}

impl<P: Ord, V> Iterator for PopAtMost<'_, P, V> {
    type Item = (Key, P, V);

    fn next(&mut self) -> Option<Self::Item> {
        match self.psq.heap.first() {
            Some(top) if top.priority <= *self.bound => self.psq.pop(),
            _ => None,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.psq.len()))
    }
}

impl<P: Ord + fmt::Debug, V> fmt::Debug for PopAtMost<'_, P, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PopAtMost")
            .field("bound", self.bound)
            .field("len", &self.psq.len())
            .finish()
    }
}

/// Iterator returned by [`Psq::iter`]: every entry, in unspecified order.
pub struct Iter<'a, P, V> {
    heap: std::slice::Iter<'a, HeapEntry<P>>,
    slots: &'a [Slot<V>],
}

impl<'a, P, V> Iterator for Iter<'a, P, V> {
    type Item = (Key, &'a P, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        let e = self.heap.next()?;
        let slot = &self.slots[e.slot as usize];
        let key = Key {
            index: e.slot,
            generation: slot.generation,
        };
        Some((key, &e.priority, slot.value.as_ref()?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.heap.size_hint()
    }
}

impl<P, V> ExactSizeIterator for Iter<'_, P, V> {}
impl<P, V> FusedIterator for Iter<'_, P, V> {}

impl<P, V> fmt::Debug for Iter<'_, P, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("remaining", &self.heap.len())
            .finish()
    }
}

impl<'a, P: Ord, V> IntoIterator for &'a Psq<P, V> {
    type Item = (Key, &'a P, &'a V);
    type IntoIter = Iter<'a, P, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests;
