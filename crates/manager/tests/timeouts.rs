//! Timeouts through the manager, on a manual clock: nothing here sleeps to observe a timer.

mod util;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioman::{Backend, EventManager};

type Log = Arc<Mutex<Vec<&'static str>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn push<B: Backend + 'static>(
    log: &Log,
    s: &'static str,
) -> impl FnOnce(&EventManager<B>) + Send + 'static {
    let log = log.clone();
    move |_| log.lock().unwrap().push(s)
}

fn step<B: Backend>(m: &EventManager<B>) -> io::Result<usize> {
    m.step(Some(Duration::ZERO))
}

/// Timeouts fire at their deadline, not before, in deadline order.
fn fire_in_order_at_deadline<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, clock) = util::manual(make)?;
    let l = log();
    m.register_timeout(Duration::from_millis(30), push(&l, "30"))?;
    m.register_timeout(Duration::from_millis(10), push(&l, "10"))?;
    m.register_timeout(Duration::from_millis(20), push(&l, "20"))?;
    m.register_timeout(Duration::from_millis(10), push(&l, "10b"))?;
    step(&m)?;
    assert!(l.lock().unwrap().is_empty());
    clock.advance(Duration::from_millis(10) - Duration::from_nanos(1));
    step(&m)?;
    assert!(l.lock().unwrap().is_empty(), "never early, even by 1 ns");
    clock.advance(Duration::from_nanos(1));
    assert_eq!(step(&m)?, 2);
    clock.advance(Duration::from_millis(100));
    step(&m)?;
    assert_eq!(*l.lock().unwrap(), ["10", "10b", "20", "30"]);
    assert_eq!(m.stats().timeout_callbacks, 4);
    Ok(())
}

/// update_timeout moves a timeout later or earlier; unregister_timeout cancels it.
fn update_and_cancel<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, clock) = util::manual(make)?;
    let l = log();
    let later = m.register_timeout(Duration::from_secs(1), push(&l, "later"))?;
    let earlier = m.register_timeout(Duration::from_secs(10), push(&l, "earlier"))?;
    let cancelled = m.register_timeout(Duration::from_secs(2), push(&l, "cancelled"))?;
    assert!(m.update_timeout(later, Duration::from_secs(5)));
    assert!(m.update_timeout(earlier, Duration::from_secs(3)));
    assert!(m.unregister_timeout(cancelled));
    assert!(
        !m.unregister_timeout(cancelled),
        "a cancelled key is unknown"
    );
    clock.advance(Duration::from_secs(4));
    step(&m)?;
    assert_eq!(*l.lock().unwrap(), ["earlier"]);
    clock.advance(Duration::from_secs(1));
    step(&m)?;
    assert_eq!(*l.lock().unwrap(), ["earlier", "later"]);
    assert!(
        !m.update_timeout(later, Duration::from_secs(1)),
        "a fired key is unknown"
    );
    assert!(!m.unregister_timeout(later));
    Ok(())
}

/// A zero duration fires on the next iteration; a huge one never fires and never overflows.
fn zero_and_huge<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, clock) = util::manual(make)?;
    let l = log();
    let huge = m.register_timeout(Duration::MAX, push(&l, "huge"))?;
    m.register_timeout(Duration::from_secs(u64::MAX / 2), push(&l, "huge2"))?;
    m.register_timeout(Duration::ZERO, push(&l, "zero"))?;
    // A loop with only "never" timers left must not spin or overflow.
    assert_eq!(step(&m)?, 1);
    assert_eq!(*l.lock().unwrap(), ["zero"]);
    clock.advance(Duration::from_secs(365 * 24 * 3600 * 100));
    m.step(Some(Duration::from_millis(1)))?;
    assert_eq!(*l.lock().unwrap(), ["zero"]);
    assert!(m.update_timeout(huge, Duration::ZERO));
    step(&m)?;
    assert_eq!(*l.lock().unwrap(), ["zero", "huge"]);
    Ok(())
}

/// The loop is woken only by a deadline earlier than the one it blocks until: a later
/// timeout, moving one later, or cancelling never wakes it; nor does anything while it is
/// awake (it looks at the queue before blocking again).
fn wake_only_when_earlier<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, _clock) = util::manual(make)?;
    let wakes = |m: &EventManager<B>| m.stats().wakeups;
    // Awake (nobody in the loop): nothing wakes. Deadlines are hours away on a clock that
    // does not move, so the loop blocks (for real) until woken.
    let hour = Duration::from_secs(3600);
    let first = m.register_timeout(hour * 2, |_| {})?;
    assert!(m.update_timeout(first, hour));
    assert_eq!(wakes(&m), 0, "nobody blocks: nothing to wake");
    let m = std::sync::Arc::new(m);
    let h = m.spawn()?;
    // Blocked until the first timeout.
    let blocked = |m: &EventManager<B>, polls: u64| util::wait_until(|| m.stats().polls == polls);
    blocked(&m, 1);
    let later = m.register_timeout(hour * 3, |_| {})?;
    assert!(m.update_timeout(later, hour * 4));
    assert!(m.update_timeout(first, hour + Duration::from_secs(1)));
    assert!(m.unregister_timeout(later));
    assert_eq!(wakes(&m), 0, "later, moved later or cancelled: no wake");
    m.register_timeout(hour / 2, |_| {})?;
    assert_eq!(wakes(&m), 1, "an earlier timeout wakes");
    blocked(&m, 2); // woke, and blocks again until the new earliest
    assert!(m.update_timeout(first, Duration::from_secs(60)));
    assert_eq!(wakes(&m), 2, "moving to the front wakes");
    blocked(&m, 3);
    m.shutdown();
    h.join()
}

/// A timeout callback may register and cancel timeouts and fd callbacks.
fn callbacks_may_reenter<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, clock) = util::manual(make)?;
    let l = log();
    let l2 = l.clone();
    m.register_timeout(Duration::from_secs(1), move |m| {
        let k = m
            .register_timeout(Duration::from_secs(1), push(&l2, "cancelled"))
            .unwrap();
        assert!(m.unregister_timeout(k));
        m.register_timeout(Duration::ZERO, push(&l2, "nested"))
            .unwrap();
    })?;
    clock.advance(Duration::from_secs(1));
    step(&m)?;
    step(&m)?;
    clock.advance(Duration::from_secs(5));
    step(&m)?;
    assert_eq!(*l.lock().unwrap(), ["nested"]);
    Ok(())
}

/// A loop blocked with no timers is woken by a new timeout from another thread, and an
/// advanced manual clock plus `wake` makes a blocked loop fire what is due.
fn blocked_loop_sees_new_timeout<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let (m, clock) = util::manual(make)?;
    let m = Arc::new(m);
    let h = m.spawn()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    m.register_timeout(Duration::ZERO, move |_| tx.send("zero").unwrap())?;
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "zero");
    m.register_timeout(Duration::from_secs(60), move |_| tx2.send("60s").unwrap())?;
    clock.advance(Duration::from_secs(60));
    m.wake();
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "60s");
    m.shutdown();
    h.join()
}

/// A waker timeout wakes its task at its deadline, not before; its waker can be replaced;
/// cancelled, it is dropped without waking.
fn waker_timeouts<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (m, clock) = util::manual(make)?;
    let (a, b) = (
        Arc::new(Count(AtomicUsize::new(0))),
        Arc::new(Count(AtomicUsize::new(0))),
    );
    let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
    let t = m.register_waker_at(m.now() + Duration::from_secs(1), &wa)?;
    step(&m)?;
    assert_eq!(a.0.load(Ordering::SeqCst), 0, "not before its deadline");
    assert!(m.set_timeout_waker(t, &wa), "the same task: kept");
    assert!(m.set_timeout_waker(t, &wb), "another task: replaced");
    assert_eq!(Arc::strong_count(&a), 2, "the old waker was dropped");
    clock.advance(Duration::from_secs(1));
    step(&m)?;
    assert_eq!(
        (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
        (0, 1)
    );
    assert!(!m.set_timeout_waker(t, &wa), "fired: unknown");
    let c = m.register_waker_at(m.now() + Duration::from_secs(1), &wa)?;
    assert!(m.unregister_timeout(c));
    assert_eq!(Arc::strong_count(&a), 2, "cancelled: its waker dropped");
    let cb = m.register_timeout(Duration::from_secs(1), |_| {})?;
    assert!(
        !m.set_timeout_waker(cb, &wa),
        "a callback timeout has no waker"
    );
    Ok(())
}

for_each_backend!(
    waker_timeouts,
    fire_in_order_at_deadline,
    update_and_cancel,
    zero_and_huge,
    wake_only_when_earlier,
    callbacks_may_reenter,
    blocked_loop_sees_new_timeout,
);

/// With the real clock, a timeout never fires early.
#[test]
fn real_clock_never_early() -> io::Result<()> {
    let m = util::default()?;
    let start = std::time::Instant::now();
    let fired = Arc::new(Mutex::new(None));
    let f = fired.clone();
    m.register_timeout(Duration::from_micros(1500), move |_| {
        *f.lock().unwrap() = Some(start.elapsed())
    })?;
    util::drive(&m, || fired.lock().unwrap().is_some());
    let elapsed = fired.lock().unwrap().unwrap();
    assert!(
        elapsed >= Duration::from_micros(1500),
        "fired after {elapsed:?}"
    );
    Ok(())
}
