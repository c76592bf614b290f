//! A callback that closes another fd of its batch with `close_fd` and puts a new socket on
//! the freed number at once: the new registration never gets the closed file's readiness.
//!
//! Alone in its test binary: it moves a socket onto a just-closed fd number with `dup2`,
//! which would race any other test thread opening fds in the same process.

mod util;

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioman::{Backend, EventManager, Interest, Lifetime, Readiness};
use util::pair;

type Log = Arc<Mutex<Vec<(&'static str, Readiness, bool)>>>;

fn build<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<EventManager<B>> {
    EventManager::builder().backend(make()?).build()
}

/// A callback that closes another fd of the batch and reuses its number at once (a new
/// socket on the same number, registered from the callback): the new registration is not
/// called with the closed file's readiness.
fn close_and_reuse_in_batch<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let m = build(make)?;
    let (mut a1, b1) = pair()?;
    let (mut a2, b2) = pair()?;
    let log: Log = Arc::default();
    let fds: Arc<Mutex<[Option<OwnedFd>; 2]>> = Arc::default();
    let keep: Arc<Mutex<Vec<OwnedFd>>> = Arc::default();
    for (i, name, b) in [(0, "x", &b1), (1, "y", &b2)] {
        let (log, fds, keep) = (log.clone(), fds.clone(), keep.clone());
        m.register_fd(b, Interest::READ, Lifetime::MultiShot, move |m, _, r| {
            let Some(other) = fds.lock().unwrap()[1 - i].take() else {
                log.lock().unwrap().push((name, r, false));
                return;
            };
            // Its own fd stays open (and is not closed twice): kept aside.
            let own = fds.lock().unwrap()[i].take();
            keep.lock().unwrap().extend(own);
            let number = other.as_raw_fd();
            // A fresh, idle socket, made before the close so that it does not take the
            // number itself; then moved onto the closed number.
            let (c, d) = std::os::unix::net::UnixStream::pair().unwrap();
            m.close_fd(other);
            // SAFETY: `d` is open; dup2 onto `number` (closed just above) makes `number`
            // name the same socket, owned by the new `UnixStream` below.
            let fresh = unsafe {
                assert_eq!(libc::dup2(d.as_raw_fd(), number), number);
                std::os::unix::net::UnixStream::from_raw_fd(number)
            };
            let l = log.clone();
            m.register_fd(
                &fresh,
                Interest::READ,
                Lifetime::MultiShot,
                move |_, _, r| {
                    l.lock().unwrap().push(("fresh", r, false));
                },
            )
            .unwrap();
            keep.lock()
                .unwrap()
                .extend([c.into(), d.into(), fresh.into()]);
            log.lock().unwrap().push((name, r, true));
        })?;
    }
    *fds.lock().unwrap() = [Some(b1.into()), Some(b2.into())];
    a1.write_all(b"1")?;
    a2.write_all(b"2")?;
    m.step(Some(Duration::from_secs(10)))?;
    m.step(Some(Duration::ZERO))?;
    let log = log.lock().unwrap();
    assert!(
        log.iter().all(|e| e.0 != "fresh"),
        "the fresh socket is idle: nothing may reach it: {log:?}"
    );
    let readable: Vec<_> = log.iter().filter(|e| e.1.is_readable()).collect();
    assert!(readable[0].2, "the first closed the other: {log:?}");
    assert!(
        readable.iter().all(|e| e.0 == readable[0].0),
        "the closed one got no readiness: {log:?}"
    );
    Ok(())
}

#[test]
fn close_and_reuse_in_batch_on_each_backend() -> io::Result<()> {
    close_and_reuse_in_batch(ioman::DefaultBackend::new)?;
    close_and_reuse_in_batch(ioman::poll::PosixPoll::new)
}
