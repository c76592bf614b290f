//! The timer queue's heap: a d-ary min-heap of plain `u128` keys, no back-index.
//!
//! A key packs what orders a timer and what names it: `deadline << 64 | tie << 32 | slot`
//! (see [`pack`]). One integer comparison orders two entries by deadline, then by tie
//! (registration order); the slot never decides, because ties are unique per timer. An
//! entry is 16 bytes, four to a 64-byte cache line.
//!
//! Sifts move a hole instead of swapping (as std's `BinaryHeap` does), and pop sinks the
//! hole to the bottom along the smallest children before placing the former last entry
//! (Floyd): that entry is usually large, so comparing it on the way down is wasted work.
//! A full node's children are read as one `&[u128; ARITY]`, so the bounds check is one per
//! level, not one per child, and there is no `unsafe`.

/// Children per node. 4 halves the depth of a binary heap for three comparisons per level
/// instead of one, and a node's children share a cache line or two; measured against 2
/// in the timers benchmark (crate `ioman-bench`).
const ARITY: usize = 4;

/// Packs a heap entry.
#[inline(always)]
pub(crate) fn pack(deadline: u64, tie: u32, slot: u32) -> u128 {
    (u128::from(deadline) << 64) | (u128::from(tie) << 32) | u128::from(slot)
}

/// The deadline of an entry.
#[inline(always)]
pub(crate) fn deadline(e: u128) -> u64 {
    (e >> 64) as u64
}

/// The tie (registration number) of an entry.
#[inline(always)]
pub(crate) fn tie(e: u128) -> u32 {
    (e >> 32) as u32
}

/// The slot index of an entry.
#[inline(always)]
pub(crate) fn slot(e: u128) -> u32 {
    e as u32
}

/// `a < b` on entries: by deadline, then tie.
#[inline(always)]
fn lt(a: u128, b: u128) -> bool {
    a < b
}

/// A min-heap of `u128`.
#[derive(Clone, Default)]
pub(crate) struct Heap {
    v: Vec<u128>,
}

impl Heap {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.v.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.v.capacity()
    }

    pub(crate) fn clear(&mut self) {
        self.v.clear();
    }

    /// The smallest entry.
    #[inline]
    pub(crate) fn peek(&self) -> Option<u128> {
        self.v.first().copied()
    }

    /// Adds `e`. O(log n); O(1) on average for random keys.
    #[inline]
    pub(crate) fn push(&mut self, e: u128) {
        let pos = self.v.len();
        self.v.push(e);
        Self::sift_up(&mut self.v, pos, e);
    }

    /// Removes the smallest entry. O(log n).
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<u128> {
        let last = self.v.pop()?;
        let (root, rest) = match self.v.split_first_mut() {
            Some((root, rest)) => (root, rest),
            None => return Some(last),
        };
        let top = *root;
        if rest.len() <= ARITY {
            // Every other entry is a child of the root, and a leaf: the smallest of
            // them and `last` takes the root, and if that is a child, `last` takes the
            // child's place. (The queue's heap holds about a millisecond of timers,
            // often this few.)
            let (mut smallest, mut at) = (last, usize::MAX);
            for (i, &c) in rest.iter().enumerate() {
                if lt(c, smallest) {
                    (smallest, at) = (c, i);
                }
            }
            *root = smallest;
            if let Some(place) = rest.get_mut(at) {
                *place = last;
            }
        } else {
            Self::sink(&mut self.v, last);
        }
        Some(top)
    }

    /// Replaces the smallest entry by `e`, which must not be smaller (a timer re-filed at
    /// its real, later deadline). O(log n).
    #[inline]
    pub(crate) fn replace_top(&mut self, e: u128) {
        debug_assert!(
            self.v.first().is_some_and(|&top| top <= e),
            "replace_top with a smaller entry"
        );
        Self::sink(&mut self.v, e);
    }

    /// Replaces the entries by `entries` and orders them, in O(n).
    pub(crate) fn assign(&mut self, entries: impl IntoIterator<Item = u128>) {
        self.v.clear();
        self.v.extend(entries);
        // Floyd's heap construction: sift down every inner node, last first.
        for pos in (0..self.v.len() / ARITY + 1).rev() {
            Self::sift_down(&mut self.v, pos);
        }
    }

    /// Gives the heap's allocation back down to `2 * len + 64` entries when it holds
    /// more than `4 * len + 64`.
    pub(crate) fn shrink(&mut self) {
        let len = self.v.len();
        if self.v.capacity() > 4 * len + 64 {
            self.v.shrink_to(2 * len + 64);
        }
    }

    /// Every entry, in heap order.
    pub(crate) fn entries(&self) -> &[u128] {
        &self.v
    }

    /// Rewrites every entry with `f`, which must keep the relative order of any two.
    pub(crate) fn remap(&mut self, mut f: impl FnMut(u128) -> u128) {
        for e in &mut self.v {
            *e = f(*e);
        }
    }

    /// Moves the hole at `pos` up until `e` fits, and puts `e` there.
    #[inline(always)]
    fn sift_up(v: &mut [u128], mut pos: usize, e: u128) {
        // `v` is cut to end at `pos`, so the compiler sees every index in bounds.
        let Some(mut v) = v.get_mut(..=pos) else {
            return;
        };
        while pos > 0 {
            let parent = (pos - 1) / ARITY;
            let p = v[parent];
            if !lt(e, p) {
                break;
            }
            v[pos] = p;
            v = &mut v[..=parent];
            pos = parent;
        }
        v[pos] = e;
    }

    /// The offset of the smallest of a full node's children.
    #[inline(always)]
    fn min_of(c: &[u128; ARITY]) -> usize {
        if ARITY == 4 {
            // Two independent comparisons, then one between their winners: the selects
            // pick indices, and only the winner is loaded again.
            let a = usize::from(lt(c[1], c[0]));
            let b = 2 + usize::from(lt(c[3], c[2]));
            if lt(c[b], c[a]) {
                b
            } else {
                a
            }
        } else {
            let mut best = 0;
            for i in 1..ARITY {
                if lt(c[i], c[best]) {
                    best = i;
                }
            }
            best
        }
    }

    /// The smallest of children `first..` of a node that has fewer than `ARITY`.
    #[inline(always)]
    fn min_partial(c: &[u128]) -> Option<(usize, u128)> {
        let mut it = c.iter().copied().enumerate();
        let mut best = it.next()?;
        for (i, e) in it {
            if e < best.1 {
                best = (i, e);
            }
        }
        Some(best)
    }

    /// Floyd's pop: the hole at the root sinks to a leaf along the smallest children,
    /// then `e` rises from there to where it belongs.
    #[inline(always)]
    fn sink(v: &mut [u128], e: u128) {
        let len = v.len();
        let mut pos = 0;
        // Full nodes: the children are one `&[u128; ARITY]`, one bounds check per level.
        loop {
            let first = pos * ARITY + 1;
            let end = first + ARITY;
            if end > len {
                break;
            }
            let Ok(c) = <&[u128; ARITY]>::try_from(&v[first..end]) else {
                break;
            };
            let i = Self::min_of(c);
            let m = c[i];
            v[pos] = m;
            pos = first + i;
        }
        // At most one node has fewer than `ARITY` children.
        let first = pos * ARITY + 1;
        if let Some((i, m)) = v.get(first..).and_then(Self::min_partial) {
            v[pos] = m;
            pos = first + i;
        }
        Self::sift_up(v, pos, e);
    }

    /// Moves the entry at `pos` down until no child is smaller (for `rebuild`).
    fn sift_down(v: &mut [u128], mut pos: usize) {
        let Some(&e) = v.get(pos) else {
            return;
        };
        loop {
            let first = pos * ARITY + 1;
            let best = match v.get(first..first + ARITY) {
                Some(c) => <&[u128; ARITY]>::try_from(c).ok().map(|c| {
                    let i = Self::min_of(c);
                    (i, c[i])
                }),
                None => v.get(first..).and_then(Self::min_partial),
            };
            match best {
                Some((i, m)) if m < e => {
                    v[pos] = m;
                    pos = first + i;
                }
                _ => break,
            }
        }
        v[pos] = e;
    }

    /// Checks the heap order; returns the first violation.
    pub(crate) fn check(&self) -> Result<(), String> {
        for pos in 1..self.v.len() {
            let parent = (pos - 1) / ARITY;
            if self.v[pos] < self.v[parent] {
                return Err(format!(
                    "heap[{parent}] = {:#x} is greater than its child heap[{pos}] = {:#x}",
                    self.v[parent], self.v[pos]
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order_after_pushes_replacements_and_rebuilds() {
        let mut h = Heap::default();
        let mut model = Vec::new();
        let mut s = 7u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for round in 0..50 {
            for _ in 0..(next() % 200) {
                let e = u128::from(next() % 1000);
                h.push(e);
                model.push(e);
            }
            if round % 3 == 0 {
                if let Some(top) = h.peek() {
                    let e = top + u128::from(next() % 500);
                    h.replace_top(e);
                    model.sort_unstable();
                    model[0] = e;
                }
            }
            if round % 7 == 0 {
                let kept: Vec<u128> = h
                    .entries()
                    .iter()
                    .filter(|&&e| e % 3 != 0)
                    .map(|e| e + 1)
                    .collect();
                h.assign(kept);
                model.retain(|e| e % 3 != 0);
                model.iter_mut().for_each(|e| *e += 1);
            }
            h.check().unwrap();
            model.sort_unstable();
            for _ in 0..(next() % 150) {
                assert_eq!(h.pop(), (!model.is_empty()).then(|| model.remove(0)));
            }
            assert_eq!(h.len(), model.len());
        }
    }

    #[test]
    fn packing_orders_by_deadline_then_tie() {
        assert!(pack(1, 9, 9) < pack(2, 0, 0));
        assert!(pack(1, 1, 9) < pack(1, 2, 0));
        let e = pack(u64::MAX, u32::MAX - 1, 77);
        assert_eq!((deadline(e), tie(e), slot(e)), (u64::MAX, u32::MAX - 1, 77));
    }
}
