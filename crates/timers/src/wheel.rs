//! The far future of a timer queue: a hierarchical timing wheel of unsorted buckets.
//!
//! A timer whose deadline is at or after `elapsed` is filed here in O(1): no comparison
//! with other timers, only a push onto the bucket that covers the deadline. Level `l` has
//! 64 buckets of 2^(20 + 6l) nanoseconds each (level 0: about 1 ms a bucket, level 1:
//! 67 ms, level 2: 4.3 s, ..., level 7 reaches past `u64::MAX` nanoseconds), and an entry
//! sits at the lowest level whose current window contains its deadline, as in tokio's
//! timer wheel (`runtime/time/wheel`).
//!
//! An entry is 8 bytes: the timer's slot, and the low 32 bits of its deadline counted in
//! level-0 buckets ("units"). An entry of levels 0 to 4 shares every bit of its units
//! above bit 30 with `elapsed` (it is in that level's current window), so its units are
//! whole again from `elapsed` and those 32 bits, and it is filed lower without looking at
//! the timer. An entry of levels 5 to 7 (more than about 13 days ahead) is handed back to
//! the queue when its bucket comes up, which files it again from the timer's own deadline.
//!
//! The wheel never orders entries itself. The queue asks it for its earliest occupied
//! bucket and [`take`](Wheel::take)s it: a level-0 bucket's entries are handed to the
//! queue, which reads each timer (to drop a cancelled one, file a moved one again, or
//! push the rest onto its heap, which orders them exactly: by deadline to the
//! nanosecond, then registration); a higher bucket's entries are filed again one level
//! or more lower. `elapsed` then moves to the bucket's start (its end for level 0),
//! possibly ahead of the clock: the wheel only marks the line between the heap
//! (everything before `elapsed`) and itself, so the earliest entry of the whole queue is
//! always the heap's top once the heap is not empty. An entry is moved at most once per
//! level on its way down, so a timer costs O(levels) pushes in all, against O(log n)
//! comparisons per heap operation.
//!
//! An entry names a slot, not a timer: once its timer is cancelled and the slot reused,
//! it may be taken for the new timer's. The queue checks the timer's real deadline when
//! the entry comes up, so such an entry is at worst a duplicate, dropped when it
//! surfaces after its timer fired, or when the queue rebuilds.

/// log2 of a level-0 bucket's width in nanoseconds (about 1 ms).
const UNIT_BITS: u32 = 20;
/// log2 of the buckets per level.
const LEVEL_BITS: u32 = 6;
const SLOTS: usize = 1 << LEVEL_BITS;
/// Enough levels for `u64::MAX` nanoseconds: 20 + 6 × 8 = 68 bits.
const LEVELS: usize = 8;
/// The first level whose entries' units do not fit in 32 bits beside `elapsed`: its
/// window, 2^(6 × 6) units, is wider than 2^32.
const FAR: usize = 5;
/// Entries per chunk: a chunk is 256 bytes, four cache lines, 8.3 bytes an entry.
const CHUNK: usize = 31;
/// The first half of a chunk's entries, as copied when it is filed lower: 128 bytes.
const PIECE: usize = 16;
/// Ends a chain of chunks.
const NIL: u32 = u32::MAX;

/// An entry: the low 32 bits of the deadline in units, then the slot.
#[inline(always)]
fn pack(units: u64, slot: u32) -> u64 {
    (units << 32) | u64::from(slot)
}

/// The slot of an entry.
#[inline(always)]
fn slot_of(e: u64) -> u32 {
    e as u32
}

/// The units of entry `e`, filed below level [`FAR`] while the wheel is at unit `eu`.
#[inline(always)]
fn units_of(e: u64, eu: u64) -> u64 {
    (eu >> 32 << 32) | (e >> 32)
}

/// A piece of a bucket: up to `CHUNK` entries and the next chunk of the bucket. Buckets
/// are chains of chunks from one pool, so filing never copies a bucket to grow it.
#[derive(Clone, Copy)]
struct Chunk {
    entries: [u64; CHUNK],
    len: u32,
    next: u32,
}

/// A hierarchical timing wheel of timers, named by their slots.
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

    /// Files the timer in `slot` due at `deadline` (ticks), which must be at or after
    /// [`elapsed`](Self::elapsed). O(1).
    #[inline(always)]
    pub(crate) fn insert(&mut self, deadline: u64, slot: u32) {
        debug_assert!(deadline >= self.elapsed, "wheel entry due before elapsed");
        self.insert_units(deadline >> UNIT_BITS, slot);
    }

    /// Files the timer in `slot` due in unit `u`, at or after `elapsed`'s.
    #[inline(always)]
    fn insert_units(&mut self, u: u64, slot: u32) {
        let level = level_for(self.elapsed >> UNIT_BITS, u);
        let bucket = ((u >> (LEVEL_BITS * level as u32)) as usize) & (SLOTS - 1);
        let e = pack(u, slot);
        self.len += 1;
        let head = self.heads[level][bucket];
        if let Some(c) = self.pool.get_mut(head as usize) {
            if let Some(place) = c.entries.get_mut(c.len as usize) {
                *place = e;
                c.len += 1;
                return;
            }
        }
        self.insert_in_new_chunk(level, bucket, e);
    }

    /// `insert` when the bucket's first chunk is full or the bucket is empty.
    #[inline(never)]
    fn insert_in_new_chunk(&mut self, level: usize, slot: usize, e: u64) {
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
    /// its start, or past its end for level 0. Entries of levels 1 to [`FAR`] - 1 are
    /// filed again lower; every other entry is handed to `out` as `(slot, line)`, `line`
    /// the new [`elapsed`](Self::elapsed): if the timer in `slot` is due before it, it
    /// belongs in the caller's heap, and otherwise the caller must file it again (with
    /// [`insert`](Self::insert)). A timer due before the bucket's start is not the
    /// entry's own (the entry is stale).
    pub(crate) fn take(&mut self, bucket: Bucket, out: &mut impl FnMut(u32, u64)) {
        let Bucket { level, slot, start } = bucket;
        let mut next = self.unchain(level, slot);
        if level == 0 {
            self.elapsed = self.elapsed.max(start.saturating_add(1 << UNIT_BITS));
        } else {
            // Every entry of the bucket is at or after `start` and shares its bits above
            // this level, so each lands at a lower level.
            self.elapsed = self.elapsed.max(start);
        }
        let (eu, line) = (self.elapsed >> UNIT_BITS, self.elapsed);
        // Each chunk is read in place (a copy of 256 bytes is a `memcpy` call) and freed
        // after: filing lower never writes into it, since it is in no bucket any more.
        while let Some(c) = self.pool.get(next as usize) {
            let (len, after) = ((c.len as usize).min(CHUNK), c.next);
            self.len -= len;
            if level == 0 || level >= FAR {
                for &e in c.entries.iter().take(len) {
                    out(slot_of(e), line);
                }
            } else {
                // Filing lower may grow the pool, so the entries are copied out first, in
                // two fixed halves: copies of 128 and 120 bytes are inline moves, where
                // one of 248 bytes is a `memcpy` call.
                let (a, b) = c.entries.split_at(PIECE);
                let low: [u64; PIECE] = a.try_into().unwrap_or([0; PIECE]);
                let high: [u64; CHUNK - PIECE] = b.try_into().unwrap_or([0; CHUNK - PIECE]);
                for &e in low.iter().take(len) {
                    self.insert_units(units_of(e, eu), slot_of(e));
                }
                for &e in high.iter().take(len.saturating_sub(PIECE)) {
                    self.insert_units(units_of(e, eu), slot_of(e));
                }
            }
            if let Some(c) = self.pool.get_mut(next as usize) {
                c.len = 0;
                c.next = self.free;
            }
            self.free = next;
            next = after;
        }
        if level == 0 && eu & (SLOTS as u64 - 1) == 0 {
            self.cascade_at_elapsed(out);
        }
    }

    /// After `elapsed` crossed into a new level-1 bucket: empties, highest level first,
    /// every bucket that now contains `elapsed`, filing its entries lower. (Entries filed
    /// before the crossing sit there; the ones filed from now on go lower by themselves,
    /// and no bucket above level 0 may contain `elapsed`, or a lower bucket would pop
    /// before its earlier entries.)
    #[cold]
    fn cascade_at_elapsed(&mut self, out: &mut impl FnMut(u32, u64)) {
        let eu = self.elapsed >> UNIT_BITS;
        for level in (1..LEVELS).rev() {
            let shift = LEVEL_BITS * level as u32;
            let slot = ((eu >> shift) as usize) & (SLOTS - 1);
            if self.occupied[level] & (1 << slot) != 0 {
                let start = (eu >> shift << shift) << UNIT_BITS;
                self.take(Bucket { level, slot, start }, out);
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

    /// The slot of every entry, in no order: the used chunks of the pool, read in order
    /// (free chunks are empty).
    pub(crate) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.pool
            .iter()
            .flat_map(|c| c.entries.iter().take(c.len as usize).map(|&e| slot_of(e)))
    }

    /// Every entry as `(slot, earliest)`: the timer it names may be due no earlier than
    /// tick `earliest` for the entry to be its own (the start of its unit below level
    /// [`FAR`], of its bucket above).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let eu = self.elapsed >> UNIT_BITS;
        self.chunks().flat_map(move |(level, slot, c)| {
            let shift = LEVEL_BITS * level as u32;
            let window = eu >> (shift + LEVEL_BITS) << (shift + LEVEL_BITS);
            let bucket_start = (window + ((slot as u64) << shift)) << UNIT_BITS;
            c.entries.iter().take(c.len as usize).map(move |&e| {
                let earliest = if level < FAR {
                    units_of(e, eu) << UNIT_BITS
                } else {
                    bucket_start
                };
                (slot_of(e), earliest)
            })
        })
    }

    /// Makes room for `additional` more entries.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.pool.reserve(additional.div_ceil(CHUNK));
    }

    /// How many entries the pool has room for.
    pub(crate) fn capacity(&self) -> usize {
        self.pool.capacity() * CHUNK
    }

    /// Checks that each entry below level [`FAR`] is filed where `insert` would put it
    /// now, after `elapsed`, and that the occupied bits match the buckets.
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
            if slot < now_slot || (level > 0 && slot == now_slot) {
                return Err(format!(
                    "wheel bucket {level}/{slot} holds entries, elapsed is at {now_slot}"
                ));
            }
            len += c.len as usize;
            if level >= FAR {
                continue;
            }
            for &e in &c.entries[..c.len as usize] {
                let u = units_of(e, eu);
                // In this level's current window, in its own bucket.
                let misplaced = u >> (shift + LEVEL_BITS) != eu >> (shift + LEVEL_BITS)
                    || ((u >> shift) as usize) & (SLOTS - 1) != slot;
                if u < eu || misplaced {
                    return Err(format!(
                        "wheel entry due in unit {u} in bucket {level}/{slot}, elapsed {}",
                        self.elapsed
                    ));
                }
            }
        }
        if len != self.len || self.slots().count() != len {
            return Err(format!(
                "wheel counts {} entries, chains hold {len}, chunks {}",
                self.len,
                self.slots().count()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes every bucket in turn, as the queue does: the entries handed back are kept
    /// (before the line) or filed again from `deadlines`; returns the slots kept, in the
    /// order their buckets came.
    fn drain(w: &mut Wheel, deadlines: &[u64]) -> Vec<u32> {
        let mut got = Vec::new();
        let mut last_start = 0;
        while let Some(b) = w.next_bucket() {
            assert!(b.start() >= last_start, "buckets out of order");
            last_start = b.start();
            let start = b.start();
            let mut again = Vec::new();
            w.take(b, &mut |slot, line| {
                let d = deadlines[slot as usize];
                assert!(
                    d >= start,
                    "slot {slot} due at {d} handed back from {start}"
                );
                if d < line {
                    got.push(slot);
                } else {
                    again.push(slot);
                }
            });
            for slot in again {
                w.insert(deadlines[slot as usize], slot);
            }
            w.check().unwrap();
        }
        got
    }

    #[test]
    fn buckets_come_out_in_deadline_order_and_every_entry_reaches_level_0() {
        let mut w = Wheel::default();
        let mut s = 99u64;
        let mut deadlines = Vec::new();
        for i in 0..5000u32 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // Deadlines from nanoseconds to centuries away.
            let d = s >> (s % 40);
            w.insert(d, i);
            deadlines.push(d);
        }
        w.check().unwrap();
        assert_eq!(w.len(), 5000);
        let got = drain(&mut w, &deadlines);
        assert_eq!(w.len(), 0);
        // Handed back in bucket order: each one's unit is not before the previous one's.
        assert!(got.windows(2).all(
            |p| deadlines[p[0] as usize] >> UNIT_BITS <= deadlines[p[1] as usize] >> UNIT_BITS
        ));
        let mut got = got;
        got.sort_unstable();
        assert_eq!(got, (0..5000).collect::<Vec<u32>>());
    }

    #[test]
    fn the_last_representable_deadline_is_filed_and_taken() {
        let mut w = Wheel::default();
        w.insert(u64::MAX - 1, 0);
        assert_eq!(drain(&mut w, &[u64::MAX - 1]), [0]);
        assert_eq!(w.elapsed(), u64::MAX);
    }

    #[test]
    fn an_entry_is_eight_bytes_and_a_chunk_four_cache_lines() {
        assert_eq!(std::mem::size_of::<Chunk>(), 256);
        assert_eq!(std::mem::size_of::<Chunk>(), CHUNK * 8 + 8);
    }
}
