//! `TimerQueue` behaviour, driven by a `ManualClock`: no test sleeps.

use std::time::{Duration, Instant};

use ioman_timers::{Clock, ManualClock, TimerKey, TimerQueue};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn queue<T>() -> (ManualClock, TimerQueue<T, ManualClock>) {
    let clock = ManualClock::new();
    let q = TimerQueue::with_clock(clock.clone());
    (clock, q)
}

/// Moves the queue's clock to `now` (never backwards) and expires what is due.
fn fire<T>(q: &mut TimerQueue<T, ManualClock>, now: Instant) -> Vec<T> {
    q.clock().set(now);
    assert_eq!(q.now(), now, "the test moved its clock backwards");
    q.expire().map(|(_, _, v)| v).collect()
}

#[test]
fn timers_fire_in_deadline_order() {
    let (clock, mut q) = queue();
    let t0 = clock.now();
    for (i, d) in [50u64, 10, 40, 20, 30].into_iter().enumerate() {
        q.register_at(t0 + ms(d), i);
    }
    clock.advance(ms(35));
    assert_eq!(fire(&mut q, clock.now()), [1, 3, 4]);
    clock.advance(ms(100));
    assert_eq!(fire(&mut q, clock.now()), [2, 0]);
    assert!(q.is_empty());
}

#[test]
fn equal_deadlines_fire_in_registration_order() {
    let (clock, mut q) = queue();
    let t = clock.now() + ms(10);
    let keys: Vec<_> = (0..100).map(|i| q.register_at(t + ms(i % 3), i)).collect();
    // Moving timers away and back does not change their order among equals.
    for &k in keys.iter().step_by(7) {
        assert!(q.update_at(k, t + ms(500)));
        assert!(q.update_at(k, t));
    }
    for &k in keys.iter().skip(1).step_by(5) {
        assert!(q.update_at(k, t + ms(2)));
    }
    clock.advance(ms(20));
    let fired = fire(&mut q, clock.now());
    let mut want: Vec<u64> = (0..100).collect();
    let deadline = |i: u64| {
        if (i as usize) % 5 == 1 {
            2
        } else if (i as usize) % 7 == 0 {
            0
        } else {
            i % 3
        }
    };
    want.sort_by_key(|&i| (deadline(i), i));
    assert_eq!(fired, want);
}

#[test]
fn moving_a_deadline_earlier_fires_it_earlier() {
    let (clock, mut q) = queue();
    let t0 = clock.now();
    let a = q.register_at(t0 + ms(100), "a");
    q.register_at(t0 + ms(50), "b");
    assert!(q.update_at(a, t0 + ms(10)));
    assert_eq!(q.next_deadline(), Some(t0 + ms(10)));
    clock.advance(ms(10));
    assert_eq!(fire(&mut q, clock.now()), ["a"]);
}

#[test]
fn moving_a_deadline_later_delays_it_exactly() {
    let (clock, mut q) = queue();
    let t0 = clock.now();
    let a = q.register_at(t0 + ms(10), "a");
    q.register_at(t0 + ms(20), "b");
    assert!(q.update_after(a, ms(30)));
    assert_eq!(q.deadline(a), Some(t0 + ms(30)));
    assert_eq!(q.next_deadline(), Some(t0 + ms(20)));
    assert_eq!(fire(&mut q, t0 + ms(29)), ["b"]);
    assert!(fire(&mut q, t0 + ms(30) - Duration::from_nanos(1)).is_empty());
    assert_eq!(fire(&mut q, t0 + ms(30)), ["a"]);
}

#[test]
fn many_lazy_later_moves_fire_exactly_at_the_final_deadline() {
    let (clock, mut q) = queue();
    let t0 = clock.now();
    let keys: Vec<_> = (0..1000u64)
        .map(|i| q.register_at(t0 + ms(i + 1), i))
        .collect();
    // Push every timer later many times, to distinct final deadlines in reverse order.
    for round in 1..=10u64 {
        for (i, &k) in keys.iter().enumerate() {
            let i = i as u64;
            assert!(q.update_at(k, t0 + ms(1000 * round + (1000 - i))));
        }
    }
    assert_eq!(q.check_invariants(), Ok(()));
    assert_eq!(q.next_deadline(), Some(t0 + ms(10_001)));
    for i in (0..1000u64).rev() {
        let at = t0 + ms(10_000 + (1000 - i));
        assert_eq!(q.next_deadline(), Some(at));
        assert!(fire(&mut q, at - Duration::from_nanos(3)).is_empty());
        assert_eq!(q.timeout(), Some(Duration::from_nanos(3)));
        assert_eq!(fire(&mut q, at), [i]);
    }
    assert!(q.is_empty());
}

#[test]
fn next_deadline_is_exact_after_lazy_moves() {
    let (clock, mut q) = queue::<()>();
    let t0 = clock.now();
    let a = q.register_at(t0 + ms(1), ());
    let b = q.register_at(t0 + ms(2), ());
    assert_eq!(q.next_deadline(), Some(t0 + ms(1)));
    q.update_at(a, t0 + ms(5));
    assert_eq!(q.next_deadline(), Some(t0 + ms(2)));
    q.update_at(b, t0 + ms(7));
    assert_eq!(q.next_deadline(), Some(t0 + ms(5)));
    q.update_at(a, t0 + ms(9));
    assert_eq!(q.next_deadline(), Some(t0 + ms(7)));
    q.update_at(b, t0 + ms(3));
    assert_eq!(q.next_deadline(), Some(t0 + ms(3)));
    assert_eq!(q.check_invariants(), Ok(()));
}

#[test]
fn cancel_after_expiry_returns_none() {
    let (clock, mut q) = queue();
    let a = q.register_after(ms(1), "a");
    clock.advance(ms(1));
    assert_eq!(fire(&mut q, clock.now()), ["a"]);
    assert_eq!(q.cancel(a), None);
    assert!(!q.update_after(a, ms(1)));
    assert_eq!(q.deadline(a), None);
    assert_eq!(q.get(a), None);
    // The slot is reused; the stale key still reaches nothing.
    let b = q.register_after(ms(1), "b");
    assert_ne!(a, b);
    assert_eq!(q.cancel(a), None);
    assert_eq!(q.get(b), Some(&"b"));
    assert_eq!(q.cancel(b), Some("b"));
    assert_eq!(q.cancel(b), None);
}

#[test]
fn huge_durations_never_fire_and_never_panic() {
    let (clock, mut q) = queue();
    let never = q.register_after(Duration::MAX, "never");
    assert_eq!(q.deadline(never), None);
    assert_eq!(q.next_deadline(), None);
    assert_eq!(q.timeout(), None);
    let soon = q.register_after(ms(5), "soon");
    assert!(q.update_after(soon, Duration::MAX));
    assert!(q.update_after(never, Duration::from_secs(u64::MAX)));
    assert_eq!(q.timeout(), None);
    clock.advance(Duration::from_secs(100 * 365 * 24 * 3600));
    assert!(fire(&mut q, clock.now()).is_empty());
    assert_eq!(q.len(), 2);
    assert_eq!(q.get(never), Some(&"never"));
    // A never-timer can be brought back.
    assert!(q.update_after(never, Duration::ZERO));
    assert_eq!(fire(&mut q, clock.now()), ["never"]);
    assert_eq!(q.cancel(soon), Some("soon"));
}

#[test]
fn zero_durations_and_past_deadlines_are_due_at_the_next_expire() {
    let (clock, mut q) = queue();
    let t0 = clock.now();
    q.register_after(Duration::ZERO, "zero");
    q.register_at(t0, "now");
    if let Some(past) = t0.checked_sub(Duration::from_secs(1)) {
        q.register_at(past, "past");
    }
    assert_eq!(q.timeout(), Some(Duration::ZERO));
    let fired = fire(&mut q, t0);
    assert_eq!(&fired[..2], ["zero", "now"]);
    assert!(q.is_empty());
}

#[test]
fn timeout_is_exact_to_the_nanosecond() {
    let (clock, mut q) = queue();
    assert_eq!(q.timeout(), None);
    let t0 = clock.now();
    q.register_at(t0 + Duration::from_nanos(1_234_567), ());
    assert_eq!(q.timeout(), Some(Duration::from_nanos(1_234_567)));
    clock.advance(Duration::from_nanos(1_234_566));
    assert_eq!(q.timeout(), Some(Duration::from_nanos(1)));
    assert!(fire(&mut q, clock.now()).is_empty());
    clock.advance(Duration::from_nanos(1));
    assert_eq!(q.timeout(), Some(Duration::ZERO));
    // Late callers see zero, not an underflow.
    clock.advance(ms(5));
    assert_eq!(q.timeout(), Some(Duration::ZERO));
    assert_eq!(fire(&mut q, clock.now()).len(), 1);
    assert_eq!(q.timeout(), None);
}

#[test]
fn expire_leaves_unconsumed_timers_queued() {
    let (clock, mut q) = queue();
    for i in 0..5u64 {
        q.register_after(ms(i), i);
    }
    clock.advance(ms(10));
    let first: Vec<_> = q.expire().take(2).map(|(_, _, v)| v).collect();
    assert_eq!(first, [0, 1]);
    assert_eq!(q.len(), 3);
    assert_eq!(fire(&mut q, clock.now()), [2, 3, 4]);
}

#[test]
fn expire_yields_each_timers_deadline() {
    let (clock, mut q) = queue();
    let t0 = clock.now();
    let a = q.register_at(t0 + ms(3), "a");
    let b = q.register_after(ms(1), "b");
    q.update_at(a, t0 + ms(4));
    clock.advance(ms(10));
    let fired: Vec<_> = q.expire().collect();
    assert_eq!(fired, [(b, t0 + ms(1), "b"), (a, t0 + ms(4), "a")]);
}

#[test]
fn capacity_is_reserved_up_front() {
    let mut q = TimerQueue::<u32>::with_capacity(100);
    assert!(q.is_empty());
    q.reserve(1000);
    let keys: Vec<_> = (0..1000).map(|i| q.register_after(ms(1), i)).collect();
    assert_eq!(q.len(), 1000);
    assert_eq!(q.cancel(keys[7]), Some(7));
}

#[test]
fn expire_yields_keys_that_match_registration() {
    let (clock, mut q) = queue();
    let keys: Vec<TimerKey> = (0..3).map(|i| q.register_after(ms(i), i)).collect();
    clock.advance(ms(5));
    let fired: Vec<TimerKey> = q.expire().map(|(k, _, _)| k).collect();
    assert_eq!(fired, keys);
}

#[test]
fn clear_makes_every_timer_key_stale() {
    let (_clock, mut q) = queue();
    let a = q.register_after(ms(1), 1);
    q.clear();
    assert!(q.is_empty());
    let b = q.register_after(ms(1), 2);
    assert_eq!(q.get(a), None);
    assert_eq!(q.get(b), Some(&2));
}

#[test]
fn cancelled_timers_that_never_surface_do_not_count() {
    let (clock, mut q) = queue();
    let keys: Vec<_> = (0..10_000u64)
        .map(|i| q.register_after(Duration::from_secs(3600 + i), i))
        .collect();
    let soon = q.register_after(ms(1), u64::MAX);
    for &k in keys.iter().skip(1) {
        assert!(q.cancel(k).is_some());
    }
    // Exact at once, though the cancelled timers' entries wait in the far future.
    assert_eq!(q.len(), 2);
    clock.advance(ms(1));
    assert_eq!(fire(&mut q, clock.now()), [u64::MAX]);
    assert_eq!(q.cancel(soon), None);
    // New registrations drop the dead entries rather than pile up more.
    for i in 0..200 {
        let k = q.register_after(ms(10 + i), i);
        assert!(q.cancel(k).is_some());
    }
    assert!(
        q.queued_entries() < 300,
        "{} entries queued",
        q.queued_entries()
    );
    assert_eq!(q.len(), 1);
    assert_eq!(q.check_invariants(), Ok(()));
    clock.advance(Duration::from_secs(3600));
    assert_eq!(fire(&mut q, clock.now()), [0]);
}

#[test]
fn a_timeout_is_exact_when_the_next_timer_is_far_ahead() {
    let (clock, mut q) = queue();
    let t0 = clock.now();
    // The only timer is an hour away: finding it moves the queue's bookkeeping an hour
    // ahead of the clock. Timers registered after that must still be exact.
    q.register_at(t0 + Duration::from_secs(3600), "hour");
    assert_eq!(q.timeout(), Some(Duration::from_secs(3600)));
    q.register_at(t0 + ms(30), "soon");
    assert_eq!(q.timeout(), Some(ms(30)));
    q.register_at(t0 + Duration::from_nanos(1), "now");
    assert_eq!(q.timeout(), Some(Duration::from_nanos(1)));
    for i in 0..1000 {
        q.register_at(t0 + ms(100) + Duration::from_micros(i), "many");
    }
    assert_eq!(q.check_invariants(), Ok(()));
    assert_eq!(fire(&mut q, t0 + ms(30)), ["now", "soon"]);
    assert_eq!(fire(&mut q, t0 + ms(101)).len(), 1000);
    assert_eq!(q.timeout(), Some(Duration::from_secs(3600) - ms(101)));
}

#[test]
fn many_timers_already_due_register_in_linear_time() {
    // Timers due before the queue's current millisecond go straight to its heap; a
    // heap that large must not make every registration rebuild the queue.
    let (clock, mut q) = queue();
    let t0 = clock.now();
    clock.advance(Duration::from_secs(10));
    // Expiring a timer moves the queue's line between heap and wheel up to the clock.
    q.register_after(Duration::ZERO, u64::MAX);
    assert_eq!(q.expire().count(), 1);
    for i in 0..50_000u64 {
        q.register_at(t0 + ms(i % 5_000), i);
    }
    assert_eq!(q.len(), 50_000);
    assert_eq!(q.expire().count(), 50_000);
}

#[test]
fn the_monotonic_clock_queue_works_without_a_manual_clock() {
    let mut q = TimerQueue::new();
    let now = q.now();
    q.register_at(now, "due");
    assert_eq!(q.expire().count(), 1);
    assert!(q.clock().now() >= now);
}

#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TimerQueue<String>>();
    assert_send_sync::<TimerQueue<String, ManualClock>>();
    assert_send_sync::<ioman_timers::Psq<u64, String>>();
    assert_send_sync::<ManualClock>();
    assert_send_sync::<TimerKey>();
}
