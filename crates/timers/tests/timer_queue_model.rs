//! Property tests: `TimerQueue` against a simple model (a list of live timers, sorted on
//! demand), with a `ManualClock`, stale keys and never-firing timers included.
//!
//! The queue deletes lazily (a cancelled or moved timer leaves an entry behind until it
//! surfaces or the queue rebuilds), keeps the far future in a timing wheel whose buckets
//! span from about a millisecond to centuries, and rebuilds itself when dead entries
//! pile up. So the operations mix time scales from microseconds to hours (every wheel
//! level), cancel in bursts (timers that never surface), and every step checks the
//! exact live count and the bound on queued entries.

use std::time::{Duration, Instant};

use ioman_timers::{Clock, ManualClock, TimerKey, TimerQueue};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

/// Time scales, in nanoseconds: about 0.25 ms, 37 ms, 5.4 s, 11.5 min, 3 h, 197 days (the
/// last one files timers at wheel levels 5 and 6, whose entries the wheel hands back to
/// the queue to be filed again from the timer's deadline).
const SCALES: [u64; 6] = [
    250_000,
    37_000_000,
    5_400_000_000,
    690_000_000_000,
    11_000_000_000_000,
    17_000_000_000_000_000,
];

/// A duration: a small multiple of one of the scales, so deadlines collide often.
#[derive(Clone, Copy, Debug)]
struct Span(u64);

impl Arbitrary for Span {
    fn arbitrary(g: &mut Gen) -> Self {
        let scale = SCALES[usize::arbitrary(g) % SCALES.len()];
        Span((u64::arbitrary(g) % 64) * scale)
    }
}

impl Span {
    fn duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }
}

/// A deadline relative to the queue's start, or to now, or never.
#[derive(Clone, Copy, Debug)]
enum When {
    At(Span),
    /// `after` from the current time.
    After(Span),
    Never,
}

#[derive(Clone, Debug)]
enum Op {
    Register(When, u16),
    Update(usize, When),
    Cancel(usize),
    /// Cancel every live timer whose index in the model is a multiple of `n`.
    CancelMany(usize),
    Get(usize),
    Deadline(usize),
    Advance(Span),
    Expire(usize),
    NextDeadline,
    Timeout,
    Clear,
}

impl Arbitrary for When {
    fn arbitrary(g: &mut Gen) -> Self {
        match u8::arbitrary(g) % 10 {
            0 => When::Never,
            1..=4 => When::After(Span::arbitrary(g)),
            _ => When::At(Span::arbitrary(g)),
        }
    }
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let idx = usize::arbitrary(g);
        match u8::arbitrary(g) % 41 {
            0..=11 => Op::Register(When::arbitrary(g), u16::arbitrary(g)),
            12..=18 => Op::Update(idx, When::arbitrary(g)),
            19..=22 => Op::Cancel(idx),
            23 => Op::CancelMany(1 + idx % 3),
            24 => Op::Get(idx),
            25 => Op::Deadline(idx),
            26..=30 => Op::Advance(Span::arbitrary(g)),
            31..=34 => Op::Expire(usize::arbitrary(g) % 10),
            35..=36 => Op::NextDeadline,
            37..=39 => Op::Timeout,
            _ => Op::Clear,
        }
    }
}

struct Live {
    key: TimerKey,
    deadline: Option<Instant>,
    seq: u64,
    value: u16,
}

/// The bound on queued entries (live and dead) the queue keeps: twice the live timers,
/// plus 1/64 of its slab (itself never more than the most timers ever live at once), plus
/// a constant; one more while an operation is under way.
fn entries_bound(live: usize, peak: usize) -> usize {
    2 * live + 64 + peak / 64 + 1
}

fn run(ops: Vec<Op>) -> TestResult {
    let clock = ManualClock::new();
    let t0 = clock.now();
    let mut q = TimerQueue::with_clock(clock.clone());
    let mut live: Vec<Live> = Vec::new();
    let mut keys: Vec<TimerKey> = Vec::new();
    let mut seq = 0;
    let mut peak = 0;
    let resolve = |w: When, now: Instant| match w {
        When::At(s) => Some(t0 + s.duration()),
        When::After(s) => Some(now + s.duration()),
        When::Never => None,
    };
    let sorted = |live: &mut Vec<Live>| {
        live.sort_by_key(|l| (l.deadline.is_none(), l.deadline, l.seq));
    };

    for op in ops {
        let now = clock.now();
        let op_name = format!("{op:?}");
        match op {
            Op::Register(w, v) => {
                let deadline = resolve(w, now);
                let key = match (w, deadline) {
                    (When::At(_), Some(d)) => q.register_at(d, v),
                    (When::After(s), _) => q.register_after(s.duration(), v),
                    _ => q.register_after(Duration::MAX, v),
                };
                seq += 1;
                live.push(Live {
                    key,
                    deadline,
                    seq,
                    value: v,
                });
                keys.push(key);
            }
            Op::Update(i, w) => {
                let Some(&key) = keys.get(i % keys.len().max(1)) else {
                    continue;
                };
                let deadline = resolve(w, now);
                let ok = match (w, deadline) {
                    (When::At(_), Some(d)) => q.update_at(key, d),
                    (When::After(s), _) => q.update_after(key, s.duration()),
                    _ => q.update_after(key, Duration::MAX),
                };
                let model = live.iter_mut().find(|l| l.key == key);
                if ok != model.is_some() {
                    return TestResult::error(format!("update({key:?}) gave {ok}"));
                }
                if let Some(l) = model {
                    l.deadline = deadline;
                }
            }
            Op::Cancel(i) => {
                let Some(&key) = keys.get(i % keys.len().max(1)) else {
                    continue;
                };
                let want = live
                    .iter()
                    .position(|l| l.key == key)
                    .map(|p| live.remove(p).value);
                if q.cancel(key) != want {
                    return TestResult::error(format!("cancel({key:?})"));
                }
            }
            Op::CancelMany(n) => {
                let mut kept = Vec::new();
                for (i, l) in live.drain(..).enumerate() {
                    if i % n == 0 {
                        if q.cancel(l.key) != Some(l.value) {
                            return TestResult::error(format!("cancel({:?}) in a burst", l.key));
                        }
                    } else {
                        kept.push(l);
                    }
                }
                live = kept;
            }
            Op::Get(i) => {
                let Some(&key) = keys.get(i % keys.len().max(1)) else {
                    continue;
                };
                let want = live.iter().find(|l| l.key == key).map(|l| l.value);
                if q.get(key).copied() != want {
                    return TestResult::error(format!("get({key:?})"));
                }
            }
            Op::Deadline(i) => {
                let Some(&key) = keys.get(i % keys.len().max(1)) else {
                    continue;
                };
                let want = live.iter().find(|l| l.key == key).and_then(|l| l.deadline);
                if q.deadline(key) != want {
                    return TestResult::error(format!("deadline({key:?})"));
                }
            }
            Op::Advance(s) => clock.advance(s.duration()),
            Op::Expire(take) => {
                sorted(&mut live);
                let due = live
                    .iter()
                    .take_while(|l| l.deadline.is_some_and(|d| d <= now))
                    .count();
                let n = due.min(take);
                let want: Vec<(TimerKey, Option<Instant>, u16)> = live
                    .drain(..n)
                    .map(|l| (l.key, l.deadline, l.value))
                    .collect();
                let got: Vec<(TimerKey, Option<Instant>, u16)> = q
                    .expire()
                    .take(take)
                    .map(|(k, d, v)| (k, Some(d), v))
                    .collect();
                if got != want {
                    return TestResult::error(format!("expire gave {got:?}, want {want:?}"));
                }
            }
            Op::NextDeadline => {
                let want = live.iter().filter_map(|l| l.deadline).min();
                // The poller's lower bound: never after the real next deadline, and there
                // whenever a timer can fire.
                let wake = q.next_wake();
                match (wake, want) {
                    (Some(w), Some(d)) if w > d => {
                        return TestResult::error(format!("next_wake {w:?} after {d:?}"))
                    }
                    (None, Some(_)) => return TestResult::error("next_wake None, a timer due"),
                    _ => {}
                }
                if q.next_deadline() != want {
                    return TestResult::error("next_deadline");
                }
            }
            Op::Timeout => {
                let want = live
                    .iter()
                    .filter_map(|l| l.deadline)
                    .min()
                    .map(|d| d.saturating_duration_since(now));
                let got = q.timeout();
                if got != want {
                    return TestResult::error(format!("timeout gave {got:?}, want {want:?}"));
                }
            }
            Op::Clear => {
                q.clear();
                live.clear();
            }
        }
        if q.len() != live.len() {
            return TestResult::error(format!(
                "len {} disagrees with the model's {}",
                q.len(),
                live.len()
            ));
        }
        // Every structural invariant after every step (wheel placement included), so a
        // violation is caught where it happens, not only if it reorders an expiry.
        if let Err(e) = q.check_invariants() {
            return TestResult::error(format!("after {op_name}: {e}"));
        }
        peak = peak.max(live.len());
        if q.queued_entries() > entries_bound(live.len(), peak) {
            return TestResult::error(format!(
                "{} entries queued for {} live timers (peak {peak})",
                q.queued_entries(),
                live.len()
            ));
        }
    }
    if let Err(e) = q.check_invariants() {
        return TestResult::error(e);
    }
    TestResult::passed()
}

#[test]
fn timer_queue_agrees_with_a_sorted_list_model() {
    QuickCheck::new()
        .tests(500)
        .rng(Gen::new(400))
        .quickcheck(run as fn(Vec<Op>) -> TestResult);
}

/// Registers and cancels for ever at about `live` timers: cancelled timers, far in the
/// future, never surface, yet the queue's allocation stays within a constant factor of
/// the live count.
fn churn(live: usize, rounds: usize, seed: u64) {
    let clock = ManualClock::new();
    let mut q = TimerQueue::with_clock(clock.clone());
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut keys: Vec<TimerKey> = (0..live)
        .map(|_| q.register_after(Duration::from_millis(1_000 + next() % 60_000), ()))
        .collect();
    let mut peak_allocated = (0, 0);
    for round in 0..rounds {
        let i = next() as usize % keys.len();
        assert!(q.cancel(keys[i]).is_some());
        keys[i] = q.register_after(Duration::from_millis(1_000 + next() % 60_000), ());
        if round % 7 == 0 {
            // Some timers move, later and earlier, leaving entries behind too.
            let j = next() as usize % keys.len();
            q.update_after(keys[j], Duration::from_millis(2_000 + next() % 90_000));
        }
        if round % 1000 == 0 {
            clock.advance(Duration::from_millis(1));
            let fired = q.expire().count();
            assert_eq!(fired, 0, "nothing is due a second ahead");
        }
        assert_eq!(q.len(), live);
        assert!(
            q.queued_entries() <= entries_bound(live, live),
            "{}",
            q.queued_entries()
        );
        let (entries, slots) = q.allocated_entries();
        peak_allocated = (peak_allocated.0.max(entries), peak_allocated.1.max(slots));
    }
    assert_eq!(q.check_invariants(), Ok(()));
    let (entries, slots) = peak_allocated;
    // Entries: at most twice live, plus the wheel's partly filled chunks (one per bucket,
    // 512 buckets of 31 entries), doubled by vector growth. Slots: the live count, doubled
    // by vector growth.
    assert!(
        entries <= 2 * (2 * live + 64 + 512 * 31),
        "{entries} entries allocated for {live} timers"
    );
    assert!(
        slots <= 2 * live + 8,
        "{slots} slots allocated for {live} timers"
    );
}

#[test]
fn memory_stays_bounded_after_many_cancels() {
    churn(1_000, 200_000, 7);
    churn(20_000, 200_000, 11);
}

#[test]
fn memory_is_given_back_when_the_live_count_falls() {
    let clock = ManualClock::new();
    let mut q = TimerQueue::with_clock(clock.clone());
    let keys: Vec<TimerKey> = (0..100_000u64)
        .map(|i| q.register_after(Duration::from_millis(1_000 + i % 50_000), i))
        .collect();
    let (big, _) = q.allocated_entries();
    // Cancel all but 100; the survivors churn on.
    for &k in &keys[100..] {
        assert!(q.cancel(k).is_some());
    }
    let mut kept: Vec<TimerKey> = keys[..100].to_vec();
    for round in 0..10_000u64 {
        let i = (round % 100) as usize;
        assert!(q.cancel(kept[i]).is_some());
        kept[i] = q.register_after(Duration::from_millis(1_000 + round % 50_000), round);
    }
    assert_eq!(q.len(), 100);
    let (entries, _) = q.allocated_entries();
    assert!(
        entries < big / 8,
        "{entries} entries still allocated for 100 timers (was {big} for 100,000)"
    );
    assert_eq!(q.check_invariants(), Ok(()));
}
