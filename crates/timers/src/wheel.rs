//! The far future of a timer queue: a hierarchical timing wheel of unsorted buckets.
//!
//! Entries (the packed `u128`s of [`heap`](crate::heap)) whose deadline is at or after
//! `elapsed` are filed here in O(1): no comparison with other entries, only a push onto
//! the bucket that covers the deadline. Level `l` has 64 buckets of 2^(20 + 6l)
//! nanoseconds each (level 0: about 1 ms a bucket, level 1: 67 ms, level 2: 4.3 s, ...,
//! level 7 reaches past `u64::MAX` nanoseconds), and an entry sits at the lowest level
//! whose current window contains its deadline, as in tokio's timer wheel
//! (`runtime/time/wheel`).
//!
//! The wheel never orders entries itself. The queue asks it for its earliest occupied
//! bucket and [`take`](Wheel::take)s it: a level-0 bucket's entries go to the queue's
//! heap, which orders them exactly (by deadline to the nanosecond, then tie); a higher
//! bucket's entries are filed again one level or more lower. `elapsed` then moves to the
//! bucket's start (its end for level 0), possibly ahead of the clock: the wheel only
//! marks the line between the heap (everything before `elapsed`) and itself, so the
//! earliest entry of the whole queue is always the heap's top once the heap is not empty.
//! An entry is moved at most once per level on its way down, so a timer costs O(levels)
//! pushes in all, against O(log n) comparisons per heap operation.

use crate::heap;

/// log2 of a level-0 bucket's width in nanoseconds (about 1 ms).
const UNIT_BITS: u32 = 20;
/// log2 of the buckets per level.
const LEVEL_BITS: u32 = 6;
const SLOTS: usize = 1 << LEVEL_BITS;
/// Enough levels for `u64::MAX` nanoseconds: 20 + 6 × 8 = 68 bits.
const LEVELS: usize = 8;
/// Entries per chunk: a chunk is 256 bytes, four cache lines, 17 bytes an entry (7 in 128
/// bytes cost 18.3 and a new chunk twice as often, measured in the timers benchmark).
const CHUNK: usize = 15;
/// Ends a chain of chunks.
const NIL: u32 = u32::MAX;

/// A piece of a bucket: up to `CHUNK` entries and the next chunk of the bucket. Buckets
/// are chains of chunks from one pool, so filing never copies a bucket to grow it.
#[derive(Clone, Copy)]
struct Chunk {
    entries: [u128; CHUNK],
    len: u32,
    next: u32,
}

/// A hierarchical timing wheel of heap entries.
pub(crate) struct Wheel {
    /// The first chunk of each bucket (the one being filled), or `NIL`.
    heads: [[u32; SLOTS]; LEVELS],
    /// Bit `s` of `occupied[l]`: bucket `s` of level `l` holds entries.
    occupied: [u64; LEVELS],
    pool: Vec<Chunk>,
    /// The first unused chunk of the pool, chained through `next`.
    free: u32,
    /// Every entry filed here has a deadline at or after `elapsed` (in ticks).
    elapsed: u64,
    /// Entries filed here.
    len: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            pool: Vec::new(),
            free: NIL,
            elapsed: 0,
            len: 0,
        }
    }
}

/// The earliest occupied bucket: its level, index and start (ticks).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    level: usize,
    slot: usize,
    start: u64,
}

impl Bucket {
    /// The first tick the bucket covers; its entries are at or after it.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }
}

/// The level at which an entry due at unit `u` is filed when the wheel is at unit `eu`.
#[inline(always)]
fn level_for(eu: u64, u: u64) -> usize {
    // The highest bit in which the deadline differs from `elapsed` picks the level; the
    // mask files anything in the current level-0 window at level 0.
    let masked = (eu ^ u) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    (significant / LEVEL_BITS) as usize & (LEVELS - 1)
}

impl Wheel {
    /// The line between the heap (before) and the wheel (at or after), in ticks.
    #[inline(always)]
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Entries filed here.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Files `e`, whose deadline must be at or after [`elapsed`](Self::elapsed). O(1).
    #[inline(always)]
    pub(crate) fn insert(&mut self, e: u128) {
        let d = heap::deadline(e);
        debug_assert!(d >= self.elapsed, "wheel entry due before elapsed");
        let u = d >> UNIT_BITS;
        let level = level_for(self.elapsed >> UNIT_BITS, u);
        let slot = ((u >> (LEVEL_BITS * level as u32)) as usize) & (SLOTS - 1);
        self.len += 1;
        let head = self.heads[level][slot];
        if let Some(c) = self.pool.get_mut(head as usize) {
            if let Some(place) = c.entries.get_mut(c.len as usize) {
                *place = e;
                c.len += 1;
                return;
            }
        }
        self.insert_in_new_chunk(level, slot, e);
    }

    /// `insert` when the bucket's first chunk is full or the bucket is empty.
    #[inline(never)]
    fn insert_in_new_chunk(&mut self, level: usize, slot: usize, e: u128) {
        let next = self.heads[level][slot];
        let index = match self.pool.get_mut(self.free as usize) {
            Some(c) => {
                // A free chunk's entries are stale, not read past `len`: write one.
                let index = self.free;
                self.free = c.next;
                c.entries[0] = e;
                c.len = 1;
                c.next = next;
                index
            }
            None => {
                // Chunk indices are below `u32::MAX`: the pool holds one chunk per
                // CHUNK entries at most, and entries are bounded by twice the timers
                // plus half the slab, itself below `u32::MAX` slots.
                self.pool.push(Chunk {
                    entries: [e; CHUNK],
                    len: 1,
                    next,
                });
                (self.pool.len() - 1) as u32
            }
        };
        self.heads[level][slot] = index;
        self.occupied[level] |= 1 << slot;
    }

    /// The earliest occupied bucket, if any: the next occupied bucket of the lowest
    /// occupied level (a lower level's entries are all earlier than a higher one's).
    #[inline]
    pub(crate) fn next_bucket(&self) -> Option<Bucket> {
        let eu = self.elapsed >> UNIT_BITS;
        for (level, &occupied) in self.occupied.iter().enumerate() {
            if occupied == 0 {
                continue;
            }
            let shift = LEVEL_BITS * level as u32;
            let now_slot = ((eu >> shift) as usize) & (SLOTS - 1);
            // Entries of this level are in the current window, at or after `now_slot`.
            let ahead = occupied >> now_slot;
            debug_assert!(ahead != 0, "wheel level {level} has entries behind elapsed");
            let slot = now_slot + ahead.trailing_zeros() as usize;
            let window = eu >> (shift + LEVEL_BITS) << (shift + LEVEL_BITS);
            let start = (window + ((slot as u64) << shift)) << UNIT_BITS;
            return Some(Bucket { level, slot, start });
        }
        None
    }

    /// Unchains bucket `level`/`slot`: returns its first chunk and marks it empty.
    #[inline]
    fn unchain(&mut self, level: usize, slot: usize) -> u32 {
        let head = std::mem::replace(&mut self.heads[level][slot], NIL);
        self.occupied[level] &= !(1 << slot);
        head
    }

    /// Empties `bucket` (from [`next_bucket`](Self::next_bucket)) and moves `elapsed` to
    /// its start, or past its end for level 0; hands each entry to `due` (level 0, now
    /// before `elapsed`: the caller's heap) or files it again lower in the wheel.
    pub(crate) fn take(&mut self, bucket: Bucket, mut due: impl FnMut(u128)) {
        let Bucket { level, slot, start } = bucket;
        let mut next = self.unchain(level, slot);
        if level == 0 {
            self.elapsed = self.elapsed.max(start.saturating_add(1 << UNIT_BITS));
        } else {
            // Every entry of the bucket is at or after `start` and shares its bits above
            // this level, so each lands at a lower level.
            self.elapsed = self.elapsed.max(start);
        }
        while let Some(c) = self.pool.get_mut(next as usize) {
            // Free the chunk (empty: `entries` and `remap` skip it) before filing its
            // entries, which may reuse it.
            let chunk = *c;
            c.len = 0;
            c.next = self.free;
            self.free = next;
            next = chunk.next;
            let entries = chunk.entries.get(..chunk.len as usize).unwrap_or_default();
            self.len -= entries.len();
            if level == 0 {
                entries.iter().copied().for_each(&mut due);
            } else {
                for &e in entries {
                    self.insert(e);
                }
            }
        }
        if level == 0 && (self.elapsed >> UNIT_BITS) & (SLOTS as u64 - 1) == 0 {
            self.cascade_at_elapsed();
        }
    }

    /// After `elapsed` crossed into a new level-1 bucket: empties, highest level first,
    /// every bucket that now contains `elapsed`, filing its entries lower. (Entries filed
    /// before the crossing sit there; the ones filed from now on go lower by themselves,
    /// and no bucket above level 0 may contain `elapsed`, or a lower bucket would pop
    /// before its earlier entries.)
    #[cold]
    fn cascade_at_elapsed(&mut self) {
        let eu = self.elapsed >> UNIT_BITS;
        for level in (1..LEVELS).rev() {
            let shift = LEVEL_BITS * level as u32;
            let slot = ((eu >> shift) as usize) & (SLOTS - 1);
            if self.occupied[level] & (1 << slot) != 0 {
                let start = (eu >> shift << shift) << UNIT_BITS;
                self.take(Bucket { level, slot, start }, |_| {});
            }
        }
    }

    /// Moves the line to `ticks` (rounded down to a level-0 bucket), backwards or
    /// forwards. Only for an empty wheel.
    pub(crate) fn rewind(&mut self, ticks: u64) {
        debug_assert_eq!(self.len, 0, "rewinding a wheel that holds entries");
        self.elapsed = ticks >> UNIT_BITS << UNIT_BITS;
    }

    /// Removes every entry, keeping `elapsed`, and gives back a pool much larger than
    /// `keep` entries need (`usize::MAX`: keep it all, as `Vec::clear` does).
    pub(crate) fn clear(&mut self, keep: usize) {
        self.heads = [[NIL; SLOTS]; LEVELS];
        self.occupied = [0; LEVELS];
        self.pool.clear();
        // One partly filled chunk per bucket at most, beyond the full ones.
        let chunks = (keep / CHUNK).saturating_add(LEVELS * SLOTS / 4);
        if self.pool.capacity() > 4 * chunks {
            self.pool.shrink_to(2 * chunks);
        }
        self.free = NIL;
        self.len = 0;
    }

    /// The chunks of every bucket.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize, &Chunk)> + '_ {
        (0..LEVELS).flat_map(move |level| {
            (0..SLOTS).flat_map(move |slot| {
                let mut next = self.heads[level][slot];
                std::iter::from_fn(move || {
                    let c = self.pool.get(next as usize)?;
                    next = c.next;
                    Some((level, slot, c))
                })
            })
        })
    }

    /// Every entry, in no order: the used chunks of the pool, read in order (free chunks
    /// are empty).
    pub(crate) fn entries(&self) -> impl Iterator<Item = u128> + '_ {
        self.pool
            .iter()
            .flat_map(|c| c.entries.iter().take(c.len as usize).copied())
    }

    /// Rewrites every entry with `f`, which must keep its deadline.
    pub(crate) fn remap(&mut self, mut f: impl FnMut(u128) -> u128) {
        for c in &mut self.pool {
            for e in c.entries.iter_mut().take(c.len as usize) {
                *e = f(*e);
            }
        }
    }

    /// Makes room for `additional` more entries.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.pool.reserve(additional.div_ceil(CHUNK));
    }

    /// How many entries the pool has room for.
    pub(crate) fn capacity(&self) -> usize {
        self.pool.capacity() * CHUNK
    }

    /// Checks that each entry is filed where `insert` would put it now, after `elapsed`,
    /// and that the occupied bits match the buckets.
    pub(crate) fn check(&self) -> Result<(), String> {
        let eu = self.elapsed >> UNIT_BITS;
        for level in 0..LEVELS {
            for slot in 0..SLOTS {
                let marked = self.occupied[level] & (1 << slot) != 0;
                if marked != (self.heads[level][slot] != NIL) {
                    return Err(format!(
                        "wheel bucket {level}/{slot}: occupied bit {marked}"
                    ));
                }
            }
        }
        let mut len = 0;
        for (level, slot, c) in self.chunks() {
            if c.len == 0 || c.len as usize > CHUNK {
                return Err(format!("wheel chunk in {level}/{slot} holds {}", c.len));
            }
            let shift = LEVEL_BITS * level as u32;
            let now_slot = ((eu >> shift) as usize) & (SLOTS - 1);
            for &e in &c.entries[..c.len as usize] {
                len += 1;
                let u = heap::deadline(e) >> UNIT_BITS;
                // In this level's current window, in its own bucket, and (above level 0)
                // not in the bucket that contains `elapsed`.
                let misplaced = u >> (shift + LEVEL_BITS) != eu >> (shift + LEVEL_BITS)
                    || ((u >> shift) as usize) & (SLOTS - 1) != slot
                    || slot < now_slot
                    || (level > 0 && slot == now_slot);
                if heap::deadline(e) < self.elapsed || misplaced {
                    return Err(format!(
                        "wheel entry due at {} in bucket {level}/{slot}, elapsed {}",
                        heap::deadline(e),
                        self.elapsed
                    ));
                }
            }
        }
        if len != self.len || self.entries().count() != len {
            return Err(format!(
                "wheel counts {} entries, chains hold {len}, chunks {}",
                self.len,
                self.entries().count()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_out_in_deadline_order_and_every_entry_reaches_level_0() {
        let mut w = Wheel::default();
        let mut s = 99u64;
        let mut want = Vec::new();
        for i in 0..5000u32 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // Deadlines from nanoseconds to centuries away.
            let d = s >> (s % 40);
            let e = heap::pack(d, i, i);
            w.insert(e);
            want.push(e);
        }
        w.check().unwrap();
        let mut got = Vec::new();
        let mut last_start = 0;
        while let Some(b) = w.next_bucket() {
            assert!(b.start() >= last_start, "buckets out of order");
            last_start = b.start();
            let before = got.len();
            w.take(b, |e| got.push(e));
            // A level-0 bucket's entries are all before the new `elapsed`.
            assert!(got[before..]
                .iter()
                .all(|&e| heap::deadline(e) < w.elapsed()));
            w.check().unwrap();
        }
        assert_eq!(w.len(), 0);
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn the_last_representable_deadline_is_filed_and_taken() {
        let mut w = Wheel::default();
        w.insert(heap::pack(u64::MAX - 1, 0, 0));
        let mut got = Vec::new();
        while let Some(b) = w.next_bucket() {
            w.take(b, |e| got.push(e));
        }
        assert_eq!(got.len(), 1);
        assert_eq!(w.elapsed(), u64::MAX);
    }
}
