//! Closing an fd with a plain `close()` (dropping its stream) and the reuse of its number.
//!
//! After its registrations ended (a one-shot fired, a wait returned) that is normal use: a
//! new registration on the reused number reaches the kernel and fires. While a
//! registration is still live it is misuse, but a new registration still reaches the
//! kernel (the old one then hears the new file's events, as documented).
//!
//! Alone in its binary: it moves sockets onto just-closed numbers with `dup2`.

mod util;

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ioman::{Backend, EventManager, Interest, Lifetime};
use util::{drive, pair};

/// Closes `old` with a plain close and puts a fresh socket pair's end on its number.
/// Returns (writer, reader-on-the-old-number).
fn reuse_number(old: UnixStream) -> io::Result<(UnixStream, UnixStream)> {
    let number: RawFd = old.as_raw_fd();
    let (c, d) = pair()?; // before the close, so neither takes the number
    drop(old);
    // SAFETY: `d` is open and `number` was closed just above (nothing else in this
    // single-test binary can take it meanwhile); the new `UnixStream` owns the copy.
    let moved = unsafe {
        assert_eq!(libc::dup2(d.as_raw_fd(), number), number);
        UnixStream::from_raw_fd(number)
    };
    drop(d);
    Ok((c, moved))
}

fn counter() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let c = Arc::new(AtomicUsize::new(0));
    (c.clone(), c)
}

fn fires<B: Backend + 'static>(
    m: &EventManager<B>,
    fd: &UnixStream,
    w: &mut UnixStream,
) -> io::Result<()> {
    let (n, n2) = counter();
    m.register_fd(fd, Interest::READ, Lifetime::OneShot, move |_, _, _| {
        n2.fetch_add(1, Ordering::SeqCst);
    })?;
    w.write_all(b"x")?;
    drive(m, || n.load(Ordering::SeqCst) == 1);
    Ok(())
}

fn plain_close<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let m = Arc::new(EventManager::builder().backend(make()?).build()?);

    // A fired one-shot, then a plain close and reuse.
    let (mut a, b) = pair()?;
    fires(&m, &b, &mut a)?;
    let (mut c, d) = reuse_number(b)?;
    fires(&m, &d, &mut c)?;

    // A returned wait, then a plain close and reuse.
    let h = m.spawn()?;
    let (mut e, f) = pair()?;
    e.write_all(b"y")?;
    assert!(m
        .wait_readable(&f, Some(Duration::from_secs(20)))?
        .is_readable());
    drop(h); // (shuts this manager down; a fresh one goes on)
    let m = EventManager::builder().backend(make()?).build()?;
    let (mut g, h) = reuse_number(f)?;
    fires(&m, &h, &mut g)?;

    // Misuse: closed while a registration is live. A new registration with the same
    // interest on the reused number still reaches the kernel and fires.
    let (_i, j) = pair()?;
    let (_old, old2) = counter();
    m.register_fd(&j, Interest::READ, Lifetime::MultiShot, move |_, _, r| {
        if r.is_readable() {
            old2.fetch_add(1, Ordering::SeqCst);
        }
    })?;
    let (mut k, l) = reuse_number(j)?;
    fires(&m, &l, &mut k)?;
    Ok(())
}

#[test]
fn plain_close_then_reuse_on_each_backend() -> io::Result<()> {
    plain_close(ioman::DefaultBackend::new)?;
    plain_close(ioman::poll::PosixPoll::new)
}
