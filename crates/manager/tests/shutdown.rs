//! After `shutdown()` returns nothing the manager owns blocks, whoever drives it, and user
//! code that panics while being dropped cannot stop it.

mod util;

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use ioman::{Backend, EventManager, Interest, Lifetime, ShutDown, State};
use util::pair;

fn build<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<Arc<EventManager<B>>> {
    Ok(Arc::new(EventManager::builder().backend(make()?).build()?))
}

/// A thread blocked in `step(None)` on a manager no `run` drives is released by `shutdown`
/// with `ShutDown`.
fn shutdown_releases_blocked_step<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let m = build(make)?;
    assert_eq!(m.state(), State::Created);
    let (tx, rx) = mpsc::channel();
    let m2 = m.clone();
    let stepper = thread::spawn(move || {
        tx.send(()).unwrap();
        m2.step(None)
    });
    rx.recv().unwrap();
    util::wait_until(|| m.state() == State::Created); // (Created: only step drives it)
    thread::sleep(Duration::from_millis(20)); // let it block in the kernel
    m.shutdown();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stepper.is_finished() {
        assert!(
            Instant::now() < deadline,
            "step(None) still blocked after shutdown"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let e = stepper.join().unwrap().unwrap_err();
    assert!(ShutDown::is(&e), "{e}");
    assert_eq!(m.state(), State::Finished);
    assert!(ShutDown::is(&m.step(None).unwrap_err()));
    Ok(())
}

/// Something a callback captured panics when dropped.
struct PanicOnDrop(Arc<AtomicUsize>);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("drop boom");
    }
}

/// A callback whose captured state panics on drop, at every place a callback is dropped:
/// after a one-shot fired, at `unregister_fd`, at `unregister_timeout`, for a refused
/// registration, and at shutdown. The loop survives, the panics are reported, and shutdown
/// still releases a waiter.
fn panicking_drops_are_contained<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let reported = Arc::new(AtomicUsize::new(0));
    let r = reported.clone();
    let m = Arc::new(
        EventManager::builder()
            .backend(make()?)
            .panic_hook(move |p| {
                assert_eq!(p.message(), Some("drop boom"));
                r.fetch_add(1, Ordering::SeqCst);
            })
            .build()?,
    );
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut a, b) = pair()?;
    let bomb = || PanicOnDrop(drops.clone());

    // A one-shot that fires on the spawned loop, then is dropped there.
    let h = m.spawn()?;
    let (fired_tx, fired_rx) = mpsc::channel();
    let d = bomb();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, _| {
        let _keep = &d;
        fired_tx.send(()).unwrap();
    })?;
    a.write_all(b"x")?;
    fired_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    util::wait_until(|| drops.load(Ordering::SeqCst) == 1);

    // The loop is still alive: a timeout still fires.
    let (tx, rx) = mpsc::channel();
    m.register_timeout(Duration::ZERO, move |_| tx.send(()).unwrap())?;
    rx.recv_timeout(Duration::from_secs(20)).unwrap();

    // Dropped on this thread by unregister_fd and unregister_timeout: no panic here.
    let d = bomb();
    let k = m.register_fd(&b, Interest::WRITE, Lifetime::OneShot, move |_, _, _| {
        let _keep = &d;
    });
    if let Ok(k) = k {
        let _ = m.unregister_fd(k)?;
    }
    let d = bomb();
    let t = m.register_timeout(Duration::from_secs(3600), move |_| drop(d))?;
    assert!(m.unregister_timeout(t));
    // Refused (a negative fd): dropped before register_fd returns its error.
    let d = bomb();
    let e = m
        .register_fd(-1, Interest::READ, Lifetime::OneShot, move |_, _, _| {
            let _keep = &d;
        })
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

    // Still registered at shutdown, with a waiter blocked.
    let d = bomb();
    m.register_fd(&b, Interest::READ, Lifetime::MultiShot, move |_, _, _| {
        let _keep = &d;
    })?;
    let d = bomb();
    m.register_timeout(Duration::from_secs(3600), move |_| drop(d))?;
    let (_c, idle) = pair()?;
    let waiter = {
        let m = m.clone();
        thread::spawn(move || m.wait_readable(&idle, None))
    };
    util::wait_until(|| m.live().0 >= 1);
    thread::sleep(Duration::from_millis(20));
    m.shutdown();
    let e = waiter.join().unwrap().unwrap_err();
    assert!(ShutDown::is(&e), "{e}");
    h.join()?;
    let n = drops.load(Ordering::SeqCst);
    assert!(n >= 5, "every bomb went off: {n}");
    assert_eq!(reported.load(Ordering::SeqCst), n, "each one reported");
    assert_eq!(m.stats().panics as usize, n);
    Ok(())
}

/// Waits never hang silently: with a timeout they return by it without a loop; without
/// one, on a manager no thread drives, they fail at once.
fn waits_without_a_loop<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let (_a, b) = pair()?;
    let start = Instant::now();
    let e = m
        .wait_readable(&b, Some(Duration::from_millis(100)))
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100), "never early: {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "returned by its timeout: {took:?}"
    );
    let e = m.wait_readable(&b, None).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
    let e = m.wait_writable(&b, None).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
    let start = Instant::now();
    m.sleep(Duration::from_millis(50))?;
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(m.live(), (0, 0), "nothing left behind");
    Ok(())
}

/// A manager's keys act on nothing in another manager.
fn foreign_keys_act_on_nothing<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let m1 = build(make)?;
    let m2 = build(make)?;
    let (_a, b) = pair()?;
    // The same fd, registered in both: the first registration of each manager.
    let k1 = m1.register_fd(&b, Interest::READ, Lifetime::MultiShot, |_, _, _| {})?;
    let k2 = m2.register_fd(&b, Interest::READ, Lifetime::MultiShot, |_, _, _| {})?;
    assert!(!m2.unregister_fd(k1)?, "m1's key is unknown to m2");
    assert_eq!(m2.live().0, 1, "m2's own registration is untouched");
    let t1 = m1.register_timeout(Duration::from_secs(60), |_| {})?;
    let t2 = m2.register_timeout(Duration::from_secs(60), |_| {})?;
    assert!(!m2.update_timeout(t1, Duration::ZERO));
    assert!(!m2.unregister_timeout(t1));
    assert_eq!(m2.live().1, 1);
    assert!(m2.unregister_fd(k2)? && m2.unregister_timeout(t2));
    assert!(m1.unregister_fd(k1)? && m1.unregister_timeout(t1));
    Ok(())
}

for_each_backend!(
    shutdown_releases_blocked_step,
    panicking_drops_are_contained,
    waits_without_a_loop,
    foreign_keys_act_on_nothing,
);
