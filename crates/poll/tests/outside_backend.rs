//! A backend written outside the crate, as another crate would write one: it builds its
//! `Capabilities` with the public constructor, fills `Events` itself with `Event::new` and
//! `Events::push`, and passes the exported conformance suite through the one entry point.
//!
//! `Outside` wraps another backend. It forwards registrations, but refuses `Mode::Edge` and
//! says so in its capabilities (so the suite checks the refusal instead of edge events), and
//! copies every event through its own buffer. It can also inject one failure into the next
//! call of a kind, for the tests of fault handling below the suite.

// `conformance` is on through the crate's dev-dependency on itself.
#![cfg(feature = "conformance")]

use std::io::{self, ErrorKind};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use ioman_poll::conformance::util;
use ioman_poll::{Backend, Capabilities, DefaultBackend, Event, Events, Interest, Mode};

/// A backend of "another crate": the inner backend's registrations, its own event buffer.
struct Outside<B> {
    inner: B,
    /// An errno the next `register_raw` fails with (0: none).
    fail_register: AtomicI32,
    waits: AtomicUsize,
}

impl<B: Backend> Outside<B> {
    fn new(inner: B) -> Outside<B> {
        Outside {
            inner,
            fail_register: AtomicI32::new(0),
            waits: AtomicUsize::new(0),
        }
    }

    fn refuse_edge(mode: Mode) -> io::Result<()> {
        if mode == Mode::Edge {
            return Err(io::Error::new(
                ErrorKind::Unsupported,
                "Outside has no edge mode",
            ));
        }
        Ok(())
    }
}

impl<B: Backend> Backend for Outside<B> {
    fn register_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        Self::refuse_edge(mode)?;
        match self.fail_register.swap(0, Ordering::SeqCst) {
            0 => self.inner.register_raw(fd, key, interest, mode),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    fn modify_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        Self::refuse_edge(mode)?;
        self.inner.modify_raw(fd, key, interest, mode)
    }

    fn deregister_raw(&self, fd: RawFd) -> io::Result<()> {
        self.inner.deregister_raw(fd)
    }

    fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        self.waits.fetch_add(1, Ordering::Relaxed);
        // Wait into a buffer of our own, then fill the caller's as an outside backend must:
        // `Event::new` and `Events::push`, then `grow_if_full`.
        let mut own = Events::with_capacity(events.capacity());
        self.inner.wait(&mut own, timeout)?;
        events.clear();
        for ev in &own {
            let copy = Event::new(ev.fd(), ev.key(), ev.readiness());
            assert!(events.push(copy), "same capacity as the inner buffer");
        }
        events.grow_if_full();
        Ok(events.len())
    }

    fn capabilities(&self) -> Capabilities {
        let inner = self.inner.capabilities();
        Capabilities::new()
            .with_live_modify(inner.live_modify)
            .with_timeout_resolution(inner.timeout_resolution)
    }
}

fn outside() -> io::Result<Outside<DefaultBackend>> {
    Ok(Outside::new(DefaultBackend::new()?))
}

ioman_poll::conformance_tests!(outside);

#[test]
fn capabilities_from_outside() -> io::Result<()> {
    let caps = outside()?.capabilities();
    assert!(caps.level && caps.one_shot && !caps.edge);
    assert!(caps.live_modify, "DefaultBackend here is epoll or kqueue");
    Ok(())
}

/// An injected failure reaches the caller as it is, and leaves nothing registered.
#[test]
fn injected_failure_reaches_the_caller() -> io::Result<()> {
    let b = outside()?;
    let (mut a, s) = util::pair()?;
    b.fail_register.store(libc::ENOMEM, Ordering::SeqCst);
    let e = b.register(&s, 1, Interest::READ, Mode::Level).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
    util::poke(&mut a)?;
    let mut events = Events::default();
    assert_eq!(b.wait(&mut events, Some(Duration::from_millis(10)))?, 0);
    b.register(&s, 2, Interest::READ, Mode::Level)?;
    assert_eq!(b.wait(&mut events, Some(util::PATIENCE))?, 1);
    assert_eq!(events.as_slice()[0].key(), 2);
    assert_eq!(b.waits.load(Ordering::Relaxed), 2);
    Ok(())
}

/// The suite's own view of an outside backend through `dyn`: `Box<dyn Backend>` is a
/// backend too.
mod boxed {
    use super::*;

    fn boxed() -> io::Result<Box<dyn Backend>> {
        Ok(Box::new(outside()?))
    }

    #[test]
    fn one_shot_reports_once_until_rearmed() -> io::Result<()> {
        ioman_poll::conformance::one_shot_reports_once_until_rearmed(boxed)
    }

    #[test]
    fn edge_refused() -> io::Result<()> {
        ioman_poll::conformance::edge_reports_each_arrival_once(boxed)
    }
}
