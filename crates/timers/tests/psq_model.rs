//! Property tests: `Psq` against an obviously correct model, over random sequences of
//! every operation, stale keys included.

use std::collections::{BTreeMap, HashMap};

use ioman_timers::{Key, Psq};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

#[derive(Clone, Debug)]
enum Op {
    Insert(u8, u16),
    Get(usize),
    GetMut(usize, u16),
    Priority(usize),
    Contains(usize),
    ChangePriority(usize, u8),
    Remove(usize),
    Peek,
    Pop,
    PopAtMost(u8, usize),
    Iter,
    Clear,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        // Few distinct priorities, so ties are common.
        let prio = |g: &mut Gen| u8::arbitrary(g) % 16;
        let idx = |g: &mut Gen| usize::arbitrary(g);
        match u8::arbitrary(g) % 40 {
            0..=11 => Op::Insert(prio(g), u16::arbitrary(g)),
            12..=13 => Op::Get(idx(g)),
            14 => Op::GetMut(idx(g), u16::arbitrary(g)),
            15..=16 => Op::Priority(idx(g)),
            17 => Op::Contains(idx(g)),
            18..=23 => Op::ChangePriority(idx(g), prio(g)),
            24..=29 => Op::Remove(idx(g)),
            30..=31 => Op::Peek,
            32..=35 => Op::Pop,
            36..=37 => Op::PopAtMost(prio(g), usize::arbitrary(g) % 8),
            38 => Op::Iter,
            _ => {
                if u8::arbitrary(g) % 8 == 0 {
                    Op::Clear
                } else {
                    Op::Pop
                }
            }
        }
    }
}

/// The model: entries by key, and an ordered index by (priority, insertion number).
#[derive(Default)]
struct Model {
    by_key: HashMap<Key, (u8, u16, u64)>,
    order: BTreeMap<(u8, u64), Key>,
    seq: u64,
}

impl Model {
    fn insert(&mut self, key: Key, p: u8, v: u16) {
        self.seq += 1;
        self.by_key.insert(key, (p, v, self.seq));
        self.order.insert((p, self.seq), key);
    }

    fn remove(&mut self, key: Key) -> Option<(u8, u16)> {
        let (p, v, s) = self.by_key.remove(&key)?;
        self.order.remove(&(p, s));
        Some((p, v))
    }

    /// Changes the priority of `key`, keeping its insertion number (its place among
    /// equal priorities); returns the old priority.
    fn change(&mut self, key: Key, p: u8) -> Option<u8> {
        let e = self.by_key.get_mut(&key)?;
        let old = e.0;
        self.order.remove(&(old, e.2));
        e.0 = p;
        self.order.insert((p, e.2), key);
        Some(old)
    }

    /// The entry that must pop next: lowest priority, then first inserted.
    fn first(&self) -> Option<(Key, u8, u16)> {
        let (&(p, _), &k) = self.order.iter().next()?;
        Some((k, p, self.by_key[&k].1))
    }
}

fn run(ops: Vec<Op>) -> TestResult {
    let mut psq: Psq<u8, u16> = Psq::new();
    let mut model = Model::default();
    // Every key ever handed out, live or stale.
    let mut keys: Vec<Key> = Vec::new();
    let pick = |keys: &[Key], i: usize| keys.get(i % keys.len().max(1)).copied();

    for op in ops {
        match op {
            Op::Insert(p, v) => {
                let k = psq.insert(p, v);
                if model.by_key.contains_key(&k) {
                    return TestResult::error(format!("insert reused live key {k:?}"));
                }
                model.insert(k, p, v);
                keys.push(k);
            }
            Op::Get(i) => {
                if let Some(k) = pick(&keys, i) {
                    let want = model.by_key.get(&k).map(|e| e.1);
                    if psq.get(k).copied() != want {
                        return TestResult::error(format!("get({k:?})"));
                    }
                }
            }
            Op::GetMut(i, v) => {
                if let Some(k) = pick(&keys, i) {
                    match (psq.get_mut(k), model.by_key.get_mut(&k)) {
                        (Some(a), Some(b)) => {
                            *a = v;
                            b.1 = v;
                        }
                        (None, None) => {}
                        _ => return TestResult::error(format!("get_mut({k:?})")),
                    }
                }
            }
            Op::Priority(i) => {
                if let Some(k) = pick(&keys, i) {
                    let want = model.by_key.get(&k).map(|e| e.0);
                    if psq.priority(k).copied() != want {
                        return TestResult::error(format!("priority({k:?})"));
                    }
                }
            }
            Op::Contains(i) => {
                if let Some(k) = pick(&keys, i) {
                    if psq.contains(k) != model.by_key.contains_key(&k) {
                        return TestResult::error(format!("contains({k:?})"));
                    }
                }
            }
            Op::ChangePriority(i, p) => {
                if let Some(k) = pick(&keys, i) {
                    let want = model.change(k, p);
                    if psq.change_priority(k, p) != want {
                        return TestResult::error(format!("change_priority({k:?}, {p})"));
                    }
                }
            }
            Op::Remove(i) => {
                if let Some(k) = pick(&keys, i) {
                    if psq.remove(k) != model.remove(k) {
                        return TestResult::error(format!("remove({k:?})"));
                    }
                }
            }
            Op::Peek => {
                let got = psq.peek().map(|(k, &p, &v)| (k, p, v));
                if got != model.first() {
                    return TestResult::error(format!(
                        "peek gave {got:?}, want {:?}",
                        model.first()
                    ));
                }
            }
            Op::Pop => {
                let want = model.first();
                let got = psq.pop();
                if got != want {
                    return TestResult::error(format!("pop gave {got:?}, want {want:?}"));
                }
                if let Some((k, _, _)) = got {
                    model.remove(k);
                }
            }
            Op::PopAtMost(bound, take) => {
                let got: Vec<_> = psq.pop_at_most(&bound).take(take).collect();
                let mut want = Vec::new();
                while let Some(first) = model.first().filter(|f| f.1 <= bound && want.len() < take)
                {
                    model.remove(first.0);
                    want.push(first);
                }
                if got != want {
                    return TestResult::error(format!(
                        "pop_at_most({bound}) gave {got:?}, want {want:?}"
                    ));
                }
            }
            Op::Iter => {
                let mut seen: Vec<(Key, u8, u16)> =
                    psq.iter().map(|(k, &p, &v)| (k, p, v)).collect();
                let mut want: Vec<(Key, u8, u16)> = model
                    .by_key
                    .iter()
                    .map(|(&k, &(p, v, _))| (k, p, v))
                    .collect();
                seen.sort();
                want.sort();
                if seen != want || psq.iter().len() != want.len() {
                    return TestResult::error("iter disagrees with the model");
                }
            }
            Op::Clear => {
                psq.clear();
                model.by_key.clear();
                model.order.clear();
            }
        }
        if psq.len() != model.by_key.len() || psq.is_empty() != model.by_key.is_empty() {
            return TestResult::error("len disagrees with the model");
        }
    }
    if let Err(e) = psq.check_invariants() {
        return TestResult::error(e);
    }
    // Drain: everything left pops in (priority, insertion) order, as in the model.
    while let Some(got) = psq.pop() {
        if Some(got) != model.first() {
            return TestResult::error(format!("final drain gave {got:?}"));
        }
        model.remove(got.0);
    }
    TestResult::from_bool(model.by_key.is_empty())
}

#[test]
fn psq_agrees_with_a_btreemap_model() {
    QuickCheck::new()
        .tests(300)
        .rng(Gen::new(400))
        .quickcheck(run as fn(Vec<Op>) -> TestResult);
}

#[test]
fn stale_keys_never_reach_a_reused_slot() {
    let mut q = Psq::new();
    let old = q.insert(1, "old");
    assert_eq!(q.remove(old), Some((1, "old")));
    let new = q.insert(2, "new");
    assert_ne!(old, new);
    assert_eq!(q.get(old), None);
    assert_eq!(q.get_mut(old), None);
    assert_eq!(q.priority(old), None);
    assert!(!q.contains(old));
    assert_eq!(q.change_priority(old, 0), None);
    assert_eq!(q.remove(old), None);
    assert_eq!(q.get(new), Some(&"new"));
    assert_eq!(q.priority(new), Some(&2));
}

#[test]
fn clear_makes_every_key_stale() {
    let mut q = Psq::with_capacity(4);
    let keys: Vec<_> = (0..4).map(|i| q.insert(i, i)).collect();
    q.clear();
    assert!(q.is_empty());
    let fresh: Vec<_> = (0..4).map(|i| q.insert(i, i + 10)).collect();
    for k in keys {
        assert!(!q.contains(k));
    }
    for (i, k) in fresh.into_iter().enumerate() {
        assert_eq!(q.get(k), Some(&(i as i32 + 10)));
    }
    assert_eq!(q.check_invariants(), Ok(()));
}

#[test]
fn pop_at_most_leaves_unconsumed_entries_queued() {
    let mut q = Psq::new();
    for p in [5, 1, 4, 2, 3, 9] {
        q.insert(p, ());
    }
    let first: Vec<_> = q.pop_at_most(&4).take(2).map(|(_, p, _)| p).collect();
    assert_eq!(first, [1, 2]);
    assert_eq!(q.len(), 4);
    let rest: Vec<_> = q.pop_at_most(&4).map(|(_, p, _)| p).collect();
    assert_eq!(rest, [3, 4]);
    assert_eq!(q.peek().map(|(_, &p, _)| p), Some(5));
}

#[test]
fn ten_thousand_random_operations_keep_the_invariants() {
    let mut q = Psq::new();
    let mut live = Vec::new();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for _ in 0..10_000 {
        let r = next();
        match r % 4 {
            0 | 1 => live.push(q.insert(next() % 10_000, r)),
            2 if !live.is_empty() => {
                let k = live[(next() % live.len() as u64) as usize];
                q.change_priority(k, next() % 10_000);
            }
            _ if !live.is_empty() => {
                let k = live.swap_remove((next() % live.len() as u64) as usize);
                assert!(q.remove(k).is_some());
            }
            _ => {}
        }
    }
    assert_eq!(q.check_invariants(), Ok(()));
    let mut last = 0;
    while let Some((_, p, _)) = q.pop() {
        assert!(p >= last);
        last = p;
    }
}
