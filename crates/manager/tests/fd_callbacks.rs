//! fd registrations: GHC's semantics, one test per behaviour, on every backend.

mod util;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioman::{Backend, EventManager, Interest, Lifetime, Readiness, ShutDown, State};
use util::{drive, pair};

fn build<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<EventManager<B>> {
    EventManager::builder().backend(make()?).build()
}

fn counter() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let c = Arc::new(AtomicUsize::new(0));
    (c.clone(), c)
}

/// A one-shot registration fires once and is then gone.
fn oneshot_fires_once<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let (mut a, b) = pair()?;
    let (n, n2) = counter();
    let key = m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, r| {
        assert!(r.is_readable());
        n2.fetch_add(1, Ordering::SeqCst);
    })?;
    a.write_all(b"x")?;
    drive(&m, || n.load(Ordering::SeqCst) == 1);
    // Still readable (nobody read), but the registration is gone.
    for _ in 0..3 {
        m.step(Some(Duration::ZERO))?;
    }
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(!m.unregister_fd(key)?, "a fired one-shot key is unknown");
    assert_eq!(m.live().0, 0);
    Ok(())
}

/// A multi-shot registration stays and fires at every iteration while the fd is ready.
fn multishot_stays<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let (mut a, b) = pair()?;
    let (n, n2) = counter();
    let key = m.register_fd(&b, Interest::READ, Lifetime::MultiShot, move |_, _, _| {
        n2.fetch_add(1, Ordering::SeqCst);
    })?;
    a.write_all(b"x")?;
    drive(&m, || n.load(Ordering::SeqCst) >= 3);
    assert!(m.unregister_fd(key)?);
    let before = n.load(Ordering::SeqCst);
    m.step(Some(Duration::ZERO))?;
    m.step(Some(Duration::ZERO))?;
    assert_eq!(
        n.load(Ordering::SeqCst),
        before,
        "no callback after unregister"
    );
    Ok(())
}

/// Several registrations on one fd: each gets only what it asked for.
fn several_registrations_per_fd<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let m = build(make)?;
    let (mut a, b) = pair()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    m.register_fd(&b, Interest::WRITE, Lifetime::OneShot, move |_, _, r| {
        s1.lock().unwrap().push(("w", r));
    })?;
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, r| {
        s2.lock().unwrap().push(("r", r));
    })?;
    // Writable at once; readable only after a write.
    drive(&m, || seen.lock().unwrap().len() == 1);
    assert_eq!(seen.lock().unwrap()[0], ("w", Readiness::WRITABLE));
    a.write_all(b"x")?;
    drive(&m, || seen.lock().unwrap().len() == 2);
    assert_eq!(seen.lock().unwrap()[1], ("r", Readiness::READABLE));
    Ok(())
}

/// GHC hazard H1: after a one-shot fired (the fd is disarmed in the kernel but still in
/// its set), a multi-shot registration must work, and vice versa.
fn oneshot_then_multishot<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let (mut a, mut b) = pair()?;
    let (n, n2) = counter();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, _| {
        n2.fetch_add(1, Ordering::SeqCst);
    })?;
    a.write_all(b"x")?;
    drive(&m, || n.load(Ordering::SeqCst) == 1);
    let (k, k2) = counter();
    let key = m.register_fd(&b, Interest::READ, Lifetime::MultiShot, move |_, _, _| {
        k2.fetch_add(1, Ordering::SeqCst);
    })?;
    drive(&m, || k.load(Ordering::SeqCst) >= 2);
    m.unregister_fd(key)?;
    let mut buf = [0; 8];
    let _ = b.read(&mut buf)?;
    // And back to one-shot on the same fd.
    let (o, o2) = counter();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, _| {
        o2.fetch_add(1, Ordering::SeqCst);
    })?;
    a.write_all(b"y")?;
    drive(&m, || o.load(Ordering::SeqCst) == 1);
    Ok(())
}

/// Unregistering an unknown or fired key says so and does nothing.
fn unregister_unknown_is_noop<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let (_a, b) = pair()?;
    let key = m.register_fd(&b, Interest::READ, Lifetime::OneShot, |_, _, _| {})?;
    assert!(m.unregister_fd(key)?);
    assert!(!m.unregister_fd(key)?);
    Ok(())
}

/// close_fd: every registration is told CLOSED exactly once, after the fd is closed, and a
/// reused fd number never receives an old registration's events.
fn close_fd_notifies_and_protects_reuse<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let m = build(make)?;
    let (mut a, b) = pair()?;
    let fd = b.as_raw_fd();
    let identity = fd_identity(fd);
    assert!(identity.is_some());
    let seen = Arc::new(Mutex::new(Vec::new()));
    for lifetime in [Lifetime::OneShot, Lifetime::MultiShot] {
        let (s, identity) = (seen.clone(), identity.clone());
        m.register_fd(fd, Interest::READ, lifetime, move |_, key, r| {
            // The fd is already closed when CLOSED is delivered: its number names nothing,
            // or (tests run in parallel) something else.
            let open = fd_identity(key.fd()) == identity;
            s.lock().unwrap().push((r, open));
        })?;
    }
    a.write_all(b"x")?; // an event may be pending in the kernel when we close
    assert_eq!(m.close_fd(b), 2);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Readiness::CLOSED, false), (Readiness::CLOSED, false)]
    );
    // Reuse the number: the old registrations must not fire for the new fd.
    let (mut c, d) = pair()?;
    let (n, n2) = counter();
    let reused = c.as_raw_fd() == fd || d.as_raw_fd() == fd;
    m.register_fd(&d, Interest::READ, Lifetime::OneShot, move |_, _, _| {
        n2.fetch_add(1, Ordering::SeqCst);
    })?;
    c.write_all(b"y")?;
    drive(&m, || n.load(Ordering::SeqCst) == 1);
    m.step(Some(Duration::ZERO))?;
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "no old callback ran (reused: {reused})"
    );
    Ok(())
}

/// What `fd` refers to (`socket:[inode]`), or `None` if it is not open.
fn fd_identity(fd: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

/// A callback may register, unregister, close and shut down.
fn callbacks_may_reenter<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let (mut a, b) = pair()?;
    let (c, d) = pair()?;
    let d_fd: OwnedFd = d.into();
    let d_raw = d_fd.as_raw_fd();
    let slot = Arc::new(Mutex::new(Some(d_fd)));
    let (n, n2) = counter();
    let s = slot.clone();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |m, _, _| {
        // register on another fd, then close it: its callback is told CLOSED.
        let n3 = n2.clone();
        m.register_fd(
            d_raw,
            Interest::READ,
            Lifetime::MultiShot,
            move |_, _, r| {
                assert!(r.is_closed());
                n3.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        let fd = s.lock().unwrap().take().unwrap();
        assert_eq!(m.close_fd(fd), 1);
        let t = m
            .register_timeout(Duration::ZERO, |m| m.shutdown())
            .unwrap();
        let _ = t;
        n2.fetch_add(10, Ordering::SeqCst);
    })?;
    a.write_all(b"x")?;
    drop(c);
    let r = std::thread::scope(|sc| sc.spawn(|| m.run()).join().unwrap());
    r?;
    assert_eq!(n.load(Ordering::SeqCst), 11);
    assert_eq!(m.state(), State::Finished);
    Ok(())
}

/// A panicking callback is reported and dropped; the loop and other registrations go on.
fn panicking_callback_is_contained<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let panics = Arc::new(Mutex::new(Vec::new()));
    let p = panics.clone();
    let m = EventManager::builder()
        .backend(make()?)
        .panic_hook(move |panic| {
            assert_eq!(panic.message(), Some("boom"));
            p.lock().unwrap().push(panic.origin());
        })
        .build()?;
    let (mut a, b) = pair()?;
    let (n, n2) = counter();
    let bad = m.register_fd(&b, Interest::READ, Lifetime::MultiShot, |_, _, _| {
        panic!("boom")
    })?;
    m.register_fd(&b, Interest::READ, Lifetime::MultiShot, move |_, _, _| {
        n2.fetch_add(1, Ordering::SeqCst);
    })?;
    let t = m.register_timeout(Duration::ZERO, |_| panic!("boom"))?;
    a.write_all(b"x")?;
    drive(&m, || n.load(Ordering::SeqCst) >= 3);
    let mut seen = panics.lock().unwrap().clone();
    seen.sort_by_key(|o| format!("{o:?}"));
    let mut want = vec![ioman::Origin::FdCallback(bad), ioman::Origin::Timeout(t)];
    want.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(seen, want, "each panicking callback once, named");
    assert_eq!(m.stats().panics, 2);
    assert_eq!(m.live().0, 1, "the panicking registration was dropped");
    Ok(())
}

/// Errors: nothing stays registered, the error says what went wrong.
fn registration_errors<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let e = m
        .register_fd(-1, Interest::READ, Lifetime::OneShot, |_, _, _| {})
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    // A closed fd number.
    let closed = util::closed_fd();
    let e = m
        .register_fd(closed, Interest::READ, Lifetime::OneShot, |_, _, _| {})
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    assert_eq!(m.live().0, 0);
    Ok(())
}

/// After shutdown, registrations fail with ShutDown and the loop does not run.
fn shutdown_refuses_new_work<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    assert_eq!(m.state(), State::Created);
    let (_a, b) = pair()?;
    m.register_fd(&b, Interest::READ, Lifetime::MultiShot, |_, _, _| {})?;
    m.shutdown();
    assert_eq!(m.state(), State::Finished);
    assert_eq!(m.live(), (0, 0), "registrations dropped");
    let e = m
        .register_fd(&b, Interest::READ, Lifetime::OneShot, |_, _, _| {})
        .unwrap_err();
    assert!(ShutDown::is(&e), "{e}");
    assert!(ShutDown::is(
        &m.register_timeout(Duration::ZERO, |_| {}).unwrap_err()
    ));
    assert!(ShutDown::is(&m.run().unwrap_err()));
    assert!(ShutDown::is(&m.step(Some(Duration::ZERO)).unwrap_err()));
    m.shutdown(); // idempotent
    Ok(())
}

/// A second concurrent run is a clear error; states go Created → Running → Finished.
fn one_loop_at_a_time<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = Arc::new(build(make)?);
    let h = m.spawn()?;
    assert_eq!(m.state(), State::Running);
    util::wait_until(|| m.stats().iterations > 0);
    let e = m.run().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
    assert_eq!(
        m.step(Some(Duration::ZERO)).unwrap_err().kind(),
        io::ErrorKind::ResourceBusy
    );
    m.shutdown();
    h.join()?;
    assert_eq!(m.state(), State::Finished);
    Ok(())
}

/// Registration from another thread reaches a loop that is already blocked.
fn registration_reaches_blocked_loop<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let m = Arc::new(build(make)?);
    let h = m.spawn()?;
    util::wait_until(|| m.state() == State::Running);
    std::thread::sleep(Duration::from_millis(20)); // let it block
    let (mut a, b) = pair()?;
    a.write_all(b"x")?;
    let (tx, rx) = std::sync::mpsc::channel();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, r| {
        tx.send(r).unwrap()
    })?;
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("callback ran");
    assert!(r.is_readable());
    m.shutdown();
    h.join()
}

/// Hang-up wakes a reader and a writer; callbacks see HANGUP.
fn hangup_reaches_every_registration<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let m = build(make)?;
    let (a, b) = pair()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, r| {
        s.lock().unwrap().push(r)
    })?;
    drop(a);
    drive(&m, || !seen.lock().unwrap().is_empty());
    let r = seen.lock().unwrap()[0];
    assert!(r.is_hangup() || r.is_readable(), "{r:?}");
    assert!(!r.is_writable(), "a reader is not told writable: {r:?}");
    Ok(())
}

/// A callback may own something whose drop calls the manager: the manager never drops a
/// callback while holding one of its locks (a failed registration, an unregister, a fired
/// one-shot, close and shutdown all drop it outside).
fn callback_drop_may_call_manager<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    struct CallsManager<B: Backend + 'static>(Arc<EventManager<B>>, Arc<AtomicUsize>);
    impl<B: Backend + 'static> Drop for CallsManager<B> {
        fn drop(&mut self) {
            let _ = self.0.live(); // takes every stripe lock and the timer lock
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let m = Arc::new(build(make)?);
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = || CallsManager(m.clone(), drops.clone());

    // Refused registration (a closed fd).
    let closed = util::closed_fd();
    let g = guard();
    let r = m.register_fd(closed, Interest::READ, Lifetime::OneShot, move |_, _, _| {
        let _ = &g;
    });
    assert!(r.is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    // Unregister, fired one-shot, close_fd, and a cancelled timeout.
    let (mut a, b) = pair()?;
    let g = guard();
    let k = m.register_fd(&b, Interest::READ, Lifetime::MultiShot, move |_, _, _| {
        let _ = &g;
    })?;
    assert!(m.unregister_fd(k)?);
    let g = guard();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, _| {
        let _ = &g;
    })?;
    a.write_all(b"x")?;
    drive(&m, || drops.load(Ordering::SeqCst) == 3);
    let g = guard();
    m.register_fd(&b, Interest::WRITE, Lifetime::MultiShot, move |_, _, _| {
        let _ = &g;
    })?;
    m.close_fd(b);
    let g = guard();
    let t = m.register_timeout(Duration::from_secs(60), move |_| {
        let _ = &g;
    })?;
    assert!(m.unregister_timeout(t));
    assert_eq!(drops.load(Ordering::SeqCst), 5);

    // Shutdown drops what is left.
    let (_c, d) = pair()?;
    let g = guard();
    m.register_fd(&d, Interest::READ, Lifetime::MultiShot, move |_, _, _| {
        let _ = &g;
    })?;
    m.shutdown();
    assert_eq!(drops.load(Ordering::SeqCst), 6);
    Ok(())
}

for_each_backend!(
    callback_drop_may_call_manager,
    oneshot_fires_once,
    multishot_stays,
    several_registrations_per_fd,
    oneshot_then_multishot,
    unregister_unknown_is_noop,
    close_fd_notifies_and_protects_reuse,
    callbacks_may_reenter,
    panicking_callback_is_contained,
    registration_errors,
    shutdown_refuses_new_work,
    one_loop_at_a_time,
    registration_reaches_blocked_loop,
    hangup_reaches_every_registration,
);

/// epoll cannot watch a regular file: a clear error, and wait helpers treat it as ready.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn regular_file_on_epoll() -> io::Result<()> {
    let m = util::default()?;
    let f = std::fs::File::open("/proc/self/exe")?;
    let e = m
        .register_fd(&f, Interest::READ, Lifetime::OneShot, |_, _, _| {})
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    assert_eq!(m.live().0, 0);
    Ok(())
}

/// Registration from another thread costs no wakeup syscall on epoll (and kqueue); poll(2)
/// needs one.
#[test]
fn registration_wakes_only_poll2() -> io::Result<()> {
    let m = util::default()?;
    let (_a, b) = pair()?;
    let before = m.stats().wakeups;
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..10 {
                let k = m
                    .register_fd(&b, Interest::READ, Lifetime::OneShot, |_, _, _| {})
                    .unwrap();
                m.unregister_fd(k).unwrap();
            }
        });
    });
    assert_eq!(m.stats().wakeups, before);

    let m = util::poll()?;
    let before = m.stats().wakeups;
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, |_, _, _| {})?;
    assert_eq!(m.stats().wakeups, before + 1);
    Ok(())
}
