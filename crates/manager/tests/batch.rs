//! Within one batch of events, a registration that an earlier callback unregistered or
//! closed is not called with readiness; a closed one is told `CLOSED` exactly once, last.
//!
//! The kernel decides the order of a batch, so each test makes two registrations that are
//! ready in the same batch act on each other: whichever runs first removes the other, so
//! exactly one runs, and the removal it made is honoured.

mod util;

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioman::{Backend, EventManager, FdKey, Interest, Lifetime, Readiness};
use util::pair;

type Log = Arc<Mutex<Vec<(&'static str, Readiness, bool)>>>;

fn build<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<EventManager<B>> {
    EventManager::builder().backend(make()?).build()
}

/// Two registrations, each unregistering the other when it runs. `same_fd`: both on one fd
/// (one event), otherwise on two fds (two events of one batch).
fn unregister_in_batch<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
    same_fd: bool,
    lifetime: Lifetime,
) -> io::Result<()> {
    let m = build(make)?;
    let (mut a1, b1) = pair()?;
    let (mut a2, b2) = pair()?;
    let log: Log = Arc::default();
    let keys: Arc<Mutex<[Option<FdKey>; 2]>> = Arc::default();
    let mut mine = Vec::new();
    for (i, name) in [(0, "x"), (1, "y")] {
        let (log, keys) = (log.clone(), keys.clone());
        let fd = if same_fd || i == 0 { &b1 } else { &b2 };
        let key = m.register_fd(fd, Interest::READ, lifetime, move |m, _, r| {
            let other = keys.lock().unwrap()[1 - i];
            let removed = m.unregister_fd(other.unwrap()).unwrap();
            log.lock().unwrap().push((name, r, removed));
        })?;
        mine.push(key);
    }
    *keys.lock().unwrap() = [Some(mine[0]), Some(mine[1])];
    a1.write_all(b"1")?;
    a2.write_all(b"2")?;
    // Both fds are readable before the loop looks: one poll reports both.
    m.step(Some(Duration::from_secs(10)))?;
    m.step(Some(Duration::ZERO))?;
    // (A multi-shot survivor runs again at the second step: it was not read.)
    let log = log.lock().unwrap();
    assert!(!log.is_empty());
    assert!(
        log.iter().all(|e| e.0 == log[0].0),
        "only one of the two ever ran: {log:?}"
    );
    assert!(log[0].2, "the one that ran removed the other: {log:?}");
    assert!(log[0].1.is_readable());
    Ok(())
}

fn unregister_other_fd_multishot<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    unregister_in_batch(make, false, Lifetime::MultiShot)
}

fn unregister_other_fd_oneshot<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    unregister_in_batch(make, false, Lifetime::OneShot)
}

fn unregister_same_fd_multishot<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    unregister_in_batch(make, true, Lifetime::MultiShot)
}

fn unregister_same_fd_oneshot<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    unregister_in_batch(make, true, Lifetime::OneShot)
}

/// Two fds ready in one batch, each callback closing the other's fd with `close_fd`: the one
/// that runs second is told only `CLOSED`, never `READABLE` for its closed fd.
fn close_in_batch<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
    lifetime: Lifetime,
) -> io::Result<()> {
    let m = build(make)?;
    let (mut a1, b1) = pair()?;
    let (mut a2, b2) = pair()?;
    let log: Log = Arc::default();
    let fds: Arc<Mutex<[Option<OwnedFd>; 2]>> = Arc::default();
    for (i, name, b) in [(0, "x", &b1), (1, "y", &b2)] {
        let (log, fds) = (log.clone(), fds.clone());
        m.register_fd(b, Interest::READ, lifetime, move |m, _, r| {
            if r.is_closed() {
                log.lock().unwrap().push((name, r, false));
                return;
            }
            let other = fds.lock().unwrap()[1 - i].take();
            let told = other.map(|fd| m.close_fd(fd));
            log.lock().unwrap().push((name, r, told == Some(1)));
        })?;
    }
    *fds.lock().unwrap() = [Some(b1.into()), Some(b2.into())];
    a1.write_all(b"1")?;
    a2.write_all(b"2")?;
    m.step(Some(Duration::from_secs(10)))?;
    m.step(Some(Duration::ZERO))?;
    let log = log.lock().unwrap();
    let readable: Vec<_> = log.iter().filter(|e| e.1.is_readable()).collect();
    let closed: Vec<_> = log.iter().filter(|e| e.1.is_closed()).collect();
    assert!(!readable.is_empty(), "one ran with readiness: {log:?}");
    assert!(readable[0].2, "and its close told the other once: {log:?}");
    assert_eq!(closed.len(), 1, "the other was told CLOSED once: {log:?}");
    assert!(
        readable
            .iter()
            .all(|e| e.0 == readable[0].0 && e.0 != closed[0].0),
        "the closed one never got readiness: {log:?}"
    );
    let closed_at = log.iter().position(|e| e.1.is_closed()).unwrap();
    // close_fd tells CLOSED on its calling thread, inside the first callback (which logs
    // itself after close_fd returns); nothing comes after for the closed one.
    assert_eq!(
        closed_at, 0,
        "CLOSED came during the first callback: {log:?}"
    );
    Ok(())
}

fn close_other_fd_multishot<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    close_in_batch(make, Lifetime::MultiShot)
}

fn close_other_fd_oneshot<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    close_in_batch(make, Lifetime::OneShot)
}

for_each_backend!(
    unregister_other_fd_multishot,
    unregister_other_fd_oneshot,
    unregister_same_fd_multishot,
    unregister_same_fd_oneshot,
    close_other_fd_multishot,
    close_other_fd_oneshot,
);
