//! Timers on a manual clock: never early, intervals without drift, resets, cancellation,
//! `timeout`. The clock is advanced by hand and the loop stepped without blocking: no sleeps.

mod util;

use std::future::Future;
use std::io;
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use ioman_async::{timeout_with, Elapsed, Timer};
use util::{manual, poll, step, CountingWaker};

const NS: Duration = Duration::from_nanos(1);

#[test]
fn a_timer_is_never_early_to_the_nanosecond() -> io::Result<()> {
    let (m, clock) = manual()?;
    let w = CountingWaker::new();
    let mut t = Timer::after_with(&m, Duration::from_secs(10));
    let deadline = t.deadline().expect("a deadline");
    assert!(poll(&mut t, &w).is_pending());
    clock.advance(Duration::from_secs(10) - NS);
    step(&m)?;
    assert_eq!(w.wakes(), 0, "fired a nanosecond early");
    assert!(poll(&mut t, &w).is_pending());
    clock.advance(NS);
    step(&m)?;
    assert_eq!(w.wakes(), 1);
    match poll(&mut t, &w) {
        Poll::Ready(at) => {
            assert_eq!(at, deadline);
            assert!(m.now() >= deadline);
        }
        Poll::Pending => panic!("not ready after its deadline"),
    }
    assert_eq!(m.live().1, 0, "the fired timeout is gone");
    Ok(())
}

#[test]
fn an_interval_yields_at_each_period_without_drift() -> io::Result<()> {
    let (m, clock) = manual()?;
    let w = CountingWaker::new();
    let period = Duration::from_millis(100);
    let start = m.now();
    let mut iv = Timer::interval_with(&m, period);
    for k in 1..=50u32 {
        let mut next = iv.next();
        assert!(poll(&mut next, &w).is_pending());
        // Late by a varying amount each time (accumulating, 18 us at most per tick): the
        // deadlines stay start + k * period.
        clock.advance(period + Duration::from_micros(u64::from(k % 7) * 3));
        step(&m)?;
        match poll(&mut next, &w) {
            Poll::Ready(Some(at)) => {
                let due = start + period * k;
                assert_eq!(at, due, "tick {k} drifted");
                assert!(m.now() >= at);
            }
            other => panic!("tick {k}: {other:?}"),
        }
    }
    assert_eq!(w.wakes(), 50);
    Ok(())
}

#[test]
fn set_after_moves_a_registered_timer_and_rearms_a_fired_one() -> io::Result<()> {
    let (m, clock) = manual()?;
    let w = CountingWaker::new();
    let mut t = Timer::after_with(&m, Duration::from_secs(1));
    assert!(poll(&mut t, &w).is_pending());
    t.set_after(Duration::from_secs(5));
    let registrations = m.live().1;
    clock.advance(Duration::from_secs(2));
    step(&m)?;
    // Moved later lazily: the old registration fired and woke the task once, but the timer
    // is not due and files itself again at the new deadline.
    assert_eq!(w.wakes(), 1);
    assert!(
        poll(&mut t, &w).is_pending(),
        "completed at the old deadline"
    );
    assert_eq!(m.live().1, registrations);
    clock.advance(Duration::from_secs(3) - NS);
    step(&m)?;
    assert_eq!(w.wakes(), 1, "woken before the new deadline");
    clock.advance(NS);
    step(&m)?;
    assert_eq!(w.wakes(), 2);
    assert!(poll(&mut t, &w).is_ready());
    // Moved earlier: the timeout itself moves.
    let mut t = Timer::after_with(&m, Duration::from_secs(60));
    assert!(poll(&mut t, &w).is_pending());
    t.set_after(Duration::from_secs(1));
    clock.advance(Duration::from_secs(1));
    step(&m)?;
    assert_eq!(w.wakes(), 3);
    assert!(poll(&mut t, &w).is_ready());
    // After it fired, a reset makes it wait again.
    t.set_after(Duration::from_secs(1));
    assert!(poll(&mut t, &w).is_pending());
    clock.advance(Duration::from_secs(1));
    step(&m)?;
    assert_eq!(w.wakes(), 4);
    assert!(poll(&mut t, &w).is_ready());
    Ok(())
}

#[test]
fn dropping_a_timer_cancels_its_timeout() -> io::Result<()> {
    let (m, _clock) = manual()?;
    let w = CountingWaker::new();
    let mut timers: Vec<_> = (1..=100)
        .map(|s| Timer::after_with(&m, Duration::from_secs(s)))
        .collect();
    for t in &mut timers {
        assert!(poll(t, &w).is_pending());
    }
    assert_eq!(m.live().1, 100);
    drop(timers);
    assert_eq!(m.live().1, 0);
    // An unpolled timer registers nothing.
    let t = Timer::after_with(&m, Duration::from_secs(1));
    assert_eq!(m.live().1, 0);
    drop(t);
    Ok(())
}

#[test]
fn a_timer_moved_to_another_task_wakes_the_new_one() -> io::Result<()> {
    let (m, clock) = manual()?;
    let (a, b) = (CountingWaker::new(), CountingWaker::new());
    let mut t = Timer::after_with(&m, Duration::from_secs(1));
    assert!(poll(&mut t, &a).is_pending());
    std::thread::scope(|s| {
        s.spawn(|| assert!(poll(&mut t, &b).is_pending()));
    });
    clock.advance(Duration::from_secs(1));
    step(&m)?;
    assert_eq!((a.wakes(), b.wakes()), (0, 1));
    Ok(())
}

#[test]
fn timeout_expires_on_the_managers_clock_and_lets_a_ready_future_win() -> io::Result<()> {
    let (m, clock) = manual()?;
    let w = CountingWaker::new();
    let mut t = Box::pin(timeout_with(&m, Duration::from_secs(30), Timer::never()));
    assert!(t
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&w.waker))
        .is_pending());
    clock.advance(Duration::from_secs(30) - NS);
    step(&m)?;
    assert_eq!(w.wakes(), 0);
    clock.advance(NS);
    step(&m)?;
    assert_eq!(w.wakes(), 1);
    assert_eq!(
        futures::executor::block_on(t),
        Err(Elapsed),
        "not timed out at its deadline"
    );

    let r = futures::executor::block_on(timeout_with(&m, Duration::ZERO, async { 5 }));
    assert_eq!(r, Ok(5));
    // The timeout of a future that won is cancelled.
    let r = futures::executor::block_on(timeout_with(&m, Duration::from_secs(9), async { 6 }));
    assert_eq!(r, Ok(6));
    assert_eq!(m.live().1, 0);
    let e: io::Error = Elapsed.into();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    Ok(())
}

#[test]
fn a_one_shot_timer_stream_yields_once() -> io::Result<()> {
    let (m, clock) = manual()?;
    let w = CountingWaker::new();
    let mut t = Timer::after_with(&m, Duration::from_secs(1));
    assert!(poll(&mut t.next(), &w).is_pending());
    clock.advance(Duration::from_secs(1));
    step(&m)?;
    assert!(matches!(poll(&mut t.next(), &w), Poll::Ready(Some(_))));
    assert!(matches!(poll(&mut t.next(), &w), Poll::Ready(None)));
    Ok(())
}

#[test]
fn block_on_with_sleeps_through_timers_without_a_loop_thread() -> io::Result<()> {
    // Real clock here: a 2 ms timer, to see block_on block in the manager's poll and wake.
    let m = util::manager()?;
    let start = std::time::Instant::now();
    let at = ioman_async::block_on_with(&m, Timer::after_with(&m, Duration::from_millis(2)));
    assert!(at - start >= Duration::from_millis(2));
    assert!(std::time::Instant::now() >= at);
    assert_eq!(
        m.state(),
        ioman::State::Created,
        "a loop thread was started"
    );
    Ok(())
}
