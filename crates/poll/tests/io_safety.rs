//! The I/O-safe front: `register`, `modify` and `deregister` take anything that lends a
//! `BorrowedFd` (`&listener`, `listener.as_fd()`, `&OwnedFd`), on concrete backends and on
//! `Box<dyn Backend>` / `Arc<dyn Backend>`; the `_raw` methods take numbers.
// `conformance` (for its helpers) is on through the crate's dev-dependency on itself.
#![cfg(feature = "conformance")]

use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use ioman_poll::conformance::util;
use ioman_poll::{Backend, DefaultBackend, Events, Interest, Mode, PosixPoll};

/// Registers a listener both ways, sees a connection, and deregisters it both ways.
fn listener_both_forms<B: Backend>(poller: B) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    poller.register(listener.as_fd(), 1, Interest::READ, Mode::Level)?;
    let _client = TcpStream::connect(listener.local_addr()?)?;
    let ev = util::wait_for(&poller, &mut Events::default(), listener.as_raw_fd())?
        .expect("pending connection");
    assert_eq!(ev.key(), 1);
    poller.deregister(listener.as_fd())?;

    poller.register(&listener, 2, Interest::READ, Mode::OneShot)?;
    let ev = util::wait_for(&poller, &mut Events::default(), listener.as_raw_fd())?
        .expect("still pending");
    assert_eq!(ev.key(), 2);
    poller.modify(&listener, 3, Interest::READ, Mode::OneShot)?;
    let ev =
        util::wait_for(&poller, &mut Events::default(), listener.as_raw_fd())?.expect("re-armed");
    assert_eq!(ev.key(), 3);
    poller.deregister(&listener)
}

#[test]
fn default_backend_takes_borrowed_fds() -> io::Result<()> {
    listener_both_forms(DefaultBackend::new()?)
}

#[test]
fn posix_poll_takes_borrowed_fds() -> io::Result<()> {
    listener_both_forms(PosixPoll::new()?)
}

#[test]
fn box_dyn_backend_takes_borrowed_fds() -> io::Result<()> {
    let b: Box<dyn Backend> = Box::new(DefaultBackend::new()?);
    listener_both_forms(b)?;
    let b: Box<dyn Backend> = Box::new(PosixPoll::new()?);
    listener_both_forms(b)
}

#[test]
fn arc_dyn_backend_takes_borrowed_fds() -> io::Result<()> {
    let b: Arc<dyn Backend> = Arc::new(DefaultBackend::new()?);
    listener_both_forms(Arc::clone(&b))?;
    // Called on the Arc itself, shared with another thread.
    let (mut a, s) = UnixStream::pair()?;
    b.register(&s, 9, Interest::READ, Mode::Level)?;
    let waiter = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || -> io::Result<usize> {
            b.wait(&mut Events::default(), Some(util::PATIENCE))
        })
    };
    a.write_all(b"x")?;
    assert_eq!(waiter.join().expect("waiter")?, 1);
    b.deregister(&s)
}

/// An `OwnedFd` lends itself too, and the raw front takes its number.
#[test]
fn owned_fd_and_raw_number() -> io::Result<()> {
    let b = DefaultBackend::new()?;
    let (r, w): (OwnedFd, OwnedFd) = util::pipe()?;
    b.register(&r, 1, Interest::READ, Mode::Level)?;
    util::write_fd(&w, b"x")?;
    let mut events = Events::default();
    assert_eq!(b.wait(&mut events, Some(util::PATIENCE))?, 1);
    b.modify_raw(r.as_raw_fd(), 2, Interest::READ, Mode::Level)?;
    assert_eq!(b.wait(&mut events, Some(Duration::ZERO))?, 1);
    assert_eq!(events.as_slice()[0].key(), 2);
    b.deregister_raw(r.as_raw_fd())?;
    b.register_raw(w.as_raw_fd(), 3, Interest::WRITE, Mode::Level)?;
    b.deregister(&w)
}
