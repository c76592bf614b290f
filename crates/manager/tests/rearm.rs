//! `Lifetime::Rearmable` and `rearm`: GHC's one-shot meaning (fires once, then waits until
//! re-armed; a re-arm on a ready fd fires at once) at no backend call per wait, counted
//! exactly in `Stats`.

mod util;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioman::{Backend, EventManager, Interest, Lifetime, Readiness, Stats};
use util::{drive, pair};

fn build<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<EventManager<B>> {
    EventManager::builder().backend(make()?).build()
}

fn calls(s: Stats) -> (u64, u64, u64) {
    (
        s.backend_registers,
        s.backend_modifies,
        s.backend_deregisters,
    )
}

fn drain(s: &mut UnixStream) {
    let mut buf = [0u8; 256];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// N request/response rounds through a callback that reads everything, answers and
/// re-arms: one `ADD` at registration, then no backend call and no wakeup per round.
fn keep_alive_costs_no_backend_call<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    const N: usize = 200;
    let m = build(make)?;
    let (mut client, server) = pair()?;
    let server = Arc::new(Mutex::new(server));
    let served = Arc::new(AtomicUsize::new(0));
    let (s2, n2) = (server.clone(), served.clone());
    m.register_fd(
        &*server.lock().unwrap(),
        Interest::READ,
        Lifetime::Rearmable,
        move |m, key, r| {
            assert!(r.is_readable());
            let mut s = s2.lock().unwrap();
            drain(&mut s);
            s.write_all(b"ok").unwrap();
            n2.fetch_add(1, Ordering::SeqCst);
            assert!(m.rearm(key, Interest::READ).unwrap());
        },
    )?;
    // Warm up one round, then count.
    client.write_all(b"req")?;
    drive(&m, || served.load(Ordering::SeqCst) == 1);
    let mut buf = [0u8; 2];
    client.read_exact(&mut buf)?;
    let before = m.stats();
    for i in 2..=N {
        client.write_all(b"req")?;
        drive(&m, || served.load(Ordering::SeqCst) == i);
        client.read_exact(&mut buf)?;
    }
    let after = m.stats();
    assert_eq!(calls(before), (1, 0, 0), "one ADD at registration");
    assert_eq!(
        calls(after),
        calls(before),
        "no backend call in {} rounds",
        N - 1
    );
    assert_eq!(after.wakeups, before.wakeups, "no wakeup");
    assert_eq!(after.fd_callbacks, N as u64);
    Ok(())
}

/// Fired and not re-armed: it does not run again while the fd stays ready, and the loop
/// does not spin on it (the kernel registration is trimmed once).
fn fired_waits_for_rearm<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let (mut a, b) = pair()?;
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let key = m.register_fd(&b, Interest::READ, Lifetime::Rearmable, move |_, _, _| {
        n2.fetch_add(1, Ordering::SeqCst);
    })?;
    a.write_all(b"x")?; // never read: stays ready
    drive(&m, || n.load(Ordering::SeqCst) == 1);
    m.step(Some(Duration::ZERO))?; // the lazy trim, at most one call
    let trimmed = m.stats();
    for _ in 0..5 {
        assert_eq!(m.step(Some(Duration::ZERO))?, 0);
    }
    assert_eq!(n.load(Ordering::SeqCst), 1, "fired once");
    assert_eq!(calls(m.stats()), calls(trimmed), "nothing more: no spin");
    assert_eq!(m.live().0, 1, "still registered");
    // Re-armed on a ready fd: fires at once.
    assert!(m.rearm(key, Interest::READ)?);
    drive(&m, || n.load(Ordering::SeqCst) == 2);
    // Unregistered: gone from the kernel too (a plain close may follow).
    assert!(m.unregister_fd(key)?);
    assert!(
        !m.rearm(key, Interest::READ)?,
        "an unregistered key is unknown"
    );
    assert_eq!(m.live().0, 0);
    Ok(())
}

/// A re-arm from another thread reaches a loop blocked in its poll (poll(2): by a wake).
fn rearm_from_another_thread<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = Arc::new(build(make)?);
    let (mut a, b) = pair()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let key = m.register_fd(&b, Interest::READ, Lifetime::Rearmable, move |_, _, r| {
        tx.send(r).unwrap();
    })?;
    let h = m.spawn()?;
    a.write_all(b"x")?;
    assert!(rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .is_readable());
    let mut b = b;
    drain(&mut b);
    std::thread::sleep(Duration::from_millis(20)); // the loop blocks (and trims, or not)
    assert!(m.rearm(key, Interest::READ)?);
    a.write_all(b"y")?;
    assert!(rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .is_readable());
    // And to another interest: writable at once.
    assert!(m.rearm(key, Interest::WRITE)?);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        Readiness::WRITABLE
    );
    m.shutdown();
    h.join()
}

/// close_fd tells a rearmable registration CLOSED, armed or not; a re-arm of a closed key
/// is unknown.
fn close_fd_ends_it<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let (mut a, b) = pair()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let key = m.register_fd(&b, Interest::READ, Lifetime::Rearmable, move |_, _, r| {
        s.lock().unwrap().push(r);
    })?;
    a.write_all(b"x")?;
    drive(&m, || seen.lock().unwrap().len() == 1);
    assert_eq!(m.close_fd(b), 1);
    assert_eq!(
        *seen.lock().unwrap(),
        [Readiness::READABLE, Readiness::CLOSED]
    );
    assert!(!m.rearm(key, Interest::READ)?);
    Ok(())
}

/// rearm on live one-shot and multi-shot registrations changes their interest.
fn rearm_changes_interest<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = build(make)?;
    let (_a, b) = pair()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let key = m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, r| {
        s.lock().unwrap().push(r);
    })?;
    m.step(Some(Duration::ZERO))?;
    assert!(seen.lock().unwrap().is_empty(), "nothing to read");
    assert!(m.rearm(key, Interest::WRITE)?);
    drive(&m, || seen.lock().unwrap().len() == 1);
    assert_eq!(seen.lock().unwrap()[0], Readiness::WRITABLE);
    assert!(!m.rearm(key, Interest::WRITE)?, "a fired one-shot is gone");
    Ok(())
}

/// `Edge`: read until `WouldBlock`, then re-arm. With the loop on its own thread and the
/// re-arm made on another (an async reactor's case), no backend call per round where the
/// backend has edge mode; a missed edge (data that came while disarmed) fires at the
/// re-arm; a re-arm with no new edge waits for one.
fn edge_rounds_across_threads<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    const N: usize = 200;
    let m = Arc::new(build(make)?);
    let edge = m.capabilities().edge;
    let (mut client, mut server) = pair()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let key = m.register_fd(&server, Interest::READ, Lifetime::Edge, move |_, _, r| {
        tx.send(r).unwrap();
    })?;
    let h = m.spawn()?;
    let wait = |rx: &std::sync::mpsc::Receiver<Readiness>| {
        rx.recv_timeout(Duration::from_secs(20)).expect("fired")
    };
    client.write_all(b"warm")?;
    assert!(wait(&rx).is_readable());
    drain(&mut server);
    assert!(m.rearm(key, Interest::READ)?);
    let before = m.stats();
    for _ in 0..N {
        client.write_all(b"req")?;
        assert!(wait(&rx).is_readable());
        std::thread::sleep(Duration::from_micros(50)); // the loop polls again meanwhile
        drain(&mut server); // until WouldBlock
        assert!(m.rearm(key, Interest::READ)?);
    }
    if edge {
        assert_eq!(
            calls(m.stats()),
            calls(before),
            "no backend call in {N} rounds"
        );
    }
    // A missed edge: data comes while disarmed; the re-arm fires at once.
    client.write_all(b"a")?;
    assert!(wait(&rx).is_readable());
    client.write_all(b"b")?; // disarmed: remembered (edge) or still ready (level)
    std::thread::sleep(Duration::from_millis(20));
    assert!(rx.try_recv().is_err(), "disarmed: not called");
    assert!(m.rearm(key, Interest::READ)?);
    assert!(
        wait(&rx).is_readable(),
        "the missed edge fires at the re-arm"
    );
    if edge {
        // Left ready, no new edge: a re-arm waits for the next one (the contract is to
        // re-arm after WouldBlock).
        assert!(m.rearm(key, Interest::READ)?);
        std::thread::sleep(Duration::from_millis(20));
        assert!(rx.try_recv().is_err(), "no new edge: waits");
        client.write_all(b"c")?;
        assert!(wait(&rx).is_readable(), "the next edge fires");
    }
    m.shutdown();
    h.join()
}

/// The HTTP server's write path: a callback that reads, meets a full send buffer and
/// re-arms for `WRITE` from inside the callback, then, flushed, for `READ` again. Each
/// fires; the kernel is told at most once per change (the lazy disarm widens the kernel's
/// set once and then leaves it).
fn rearm_to_another_interest_in_the_callback<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let m = build(make)?;
    let (mut client, server) = pair()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut server = server;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&server);
    let key = m.register_fd(fd, Interest::READ, Lifetime::Rearmable, move |m, key, r| {
        s.lock().unwrap().push(r);
        let next = if r.is_readable() {
            drain(&mut server);
            Interest::WRITE
        } else {
            Interest::READ
        };
        assert!(m.rearm(key, next).unwrap());
    })?;
    let before = calls(m.stats());
    for round in 1..=3 {
        client.write_all(b"request")?;
        drive(&m, || seen.lock().unwrap().len() == 2 * round);
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [Readiness::READABLE, Readiness::WRITABLE].repeat(3),
        "each re-arm to the other interest fires"
    );
    let (_, modifies, _) = calls(m.stats());
    assert!(
        (1..=6).contains(&(modifies - before.1)),
        "{} modifies for 6 changes of interest",
        modifies - before.1
    );
    assert!(m.unregister_fd(key)?);
    Ok(())
}

for_each_backend!(
    rearm_to_another_interest_in_the_callback,
    keep_alive_costs_no_backend_call,
    fired_waits_for_rearm,
    rearm_from_another_thread,
    close_fd_ends_it,
    rearm_changes_interest,
    edge_rounds_across_threads,
);
