//! Property test: `TimerQueue` against a simple model (a list of live timers, sorted
//! on demand), with a `ManualClock`, stale keys and never-firing timers included.

use std::time::{Duration, Instant};

use ioman_timers::{Clock, ManualClock, TimerKey, TimerQueue};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

/// A deadline relative to the queue's start, in microseconds, or never.
#[derive(Clone, Copy, Debug)]
enum When {
    At(u32),
    /// `after` from the current time.
    After(u32),
    Never,
}

#[derive(Clone, Debug)]
enum Op {
    Register(When, u16),
    Update(usize, When),
    Cancel(usize),
    Get(usize),
    Deadline(usize),
    Advance(u32),
    Expire(usize),
    NextDeadline,
    Timeout,
}

impl Arbitrary for When {
    fn arbitrary(g: &mut Gen) -> Self {
        // Coarse values so deadlines collide often.
        let t = (u32::arbitrary(g) % 64) * 250;
        match u8::arbitrary(g) % 10 {
            0 => When::Never,
            1..=4 => When::After(t),
            _ => When::At(t),
        }
    }
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Self {
        let idx = usize::arbitrary(g);
        match u8::arbitrary(g) % 20 {
            0..=5 => Op::Register(When::arbitrary(g), u16::arbitrary(g)),
            6..=9 => Op::Update(idx, When::arbitrary(g)),
            10..=11 => Op::Cancel(idx),
            12 => Op::Get(idx),
            13 => Op::Deadline(idx),
            14..=15 => Op::Advance(u32::arbitrary(g) % 2000),
            16..=17 => Op::Expire(usize::arbitrary(g) % 10),
            18 => Op::NextDeadline,
            _ => Op::Timeout,
        }
    }
}

struct Live {
    key: TimerKey,
    deadline: Option<Instant>,
    seq: u64,
    value: u16,
}

fn run(ops: Vec<Op>) -> TestResult {
    let clock = ManualClock::new();
    let t0 = clock.now();
    let mut q = TimerQueue::with_clock(clock.clone());
    let mut live: Vec<Live> = Vec::new();
    let mut keys: Vec<TimerKey> = Vec::new();
    let mut seq = 0;
    let resolve = |w: When, now: Instant| match w {
        When::At(us) => Some(t0 + Duration::from_micros(us.into())),
        When::After(us) => Some(now + Duration::from_micros(us.into())),
        When::Never => None,
    };
    let sorted = |live: &mut Vec<Live>| {
        live.sort_by_key(|l| (l.deadline.is_none(), l.deadline, l.seq));
    };

    for op in ops {
        let now = clock.now();
        match op {
            Op::Register(w, v) => {
                let deadline = resolve(w, now);
                let key = match (w, deadline) {
                    (When::At(_), Some(d)) => q.register_at(d, v),
                    (When::After(us), _) => q.register_after(Duration::from_micros(us.into()), v),
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
                    (When::After(us), _) => q.update_after(key, Duration::from_micros(us.into())),
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
            Op::Advance(us) => clock.advance(Duration::from_micros(us.into())),
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
        }
        if q.len() != live.len() {
            return TestResult::error("len disagrees with the model");
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
        .tests(300)
        .rng(Gen::new(300))
        .quickcheck(run as fn(Vec<Op>) -> TestResult);
}
