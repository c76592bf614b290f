//! The conformance suite: every behaviour the [crate docs](crate#semantics-shared-by-every-backend)
//! promise, written once over `B: Backend` and run against every backend, the built-in ones
//! and any written in another crate.
//!
//! The entry point is one macro, [`conformance_tests!`](crate::conformance_tests), called in
//! a test file with an expression that makes a fresh backend (a constructor such as
//! `MyBackend::new`, or a closure returning `io::Result<MyBackend>`):
//!
//! ```
//! // tests/conformance.rs of a crate with a backend; here the built-in default one.
//! ioman_poll::conformance_tests!(ioman_poll::DefaultBackend::new);
//! ```
//!
//! It expands to one `#[test]` per check below, named after the check, so `cargo test`
//! reports each one (and `cargo test edge` runs one). Each check makes its own backend, so
//! they run in parallel like any tests.
//!
//! # Optional behaviour
//!
//! Where backends may legitimately differ, a check reads the backend's
//! [`capabilities`](crate::Backend::capabilities) and checks the other half of the contract
//! instead, saying so on stderr: without [`edge`](crate::Capabilities::edge),
//! [`edge_reports_each_arrival_once`] checks that `Mode::Edge` is refused with
//! `Unsupported`; without [`live_modify`](crate::Capabilities::live_modify),
//! [`registration_while_blocked`] checks that a blocked wait runs its course and the next
//! one sees the change. Level and one-shot modes are not optional: every backend offers
//! them (poll(2) emulates one-shot), and [`capabilities_are_sane`] says so.
//!
//! # What the suite needs of the process
//!
//! - File descriptors: [`many_fds`] opens `IOMAN_TEST_FDS` socket pairs (default 9,000),
//!   scaled down to the open-file limit.
//! - A `SIGUSR2` handler (a counter, installed once, without `SA_RESTART`) for the `EINTR`
//!   checks, which signal the thread blocked in `wait`.
//! - A range of fd numbers near the top of the table, used by the checks of closed fds
//!   under [`util::high_fd_lock`].
//!
//! The suite uses `libc`, a dependency of `ioman-poll` already; the `conformance` feature
//! adds nothing else.

use std::collections::BTreeSet;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Backend, Events, Interest, Mode, Readiness};

pub mod util;

use util::{errno, now_for, pair, poke, wait_for, PATIENCE, PROMPT};

/// Runs the conformance suite against a backend: one `#[test]` per check of
/// [`ioman_poll::conformance`](crate::conformance), each calling the check with `$new`, an
/// expression that makes a fresh backend (`fn() -> io::Result<B>`: a constructor, or a
/// closure).
///
/// Put it in a test file of its own (or a module): the tests take the checks' names.
/// Needs the `conformance` feature.
///
/// # Examples
///
/// A backend of another crate, here a wrapper that forwards to the default backend:
///
/// ```
/// use ioman_poll::{Backend, Capabilities, DefaultBackend, Events, Interest, Mode};
/// use std::io;
/// use std::os::fd::RawFd;
/// use std::time::Duration;
///
/// struct Wrapper(DefaultBackend);
///
/// impl Backend for Wrapper {
///     fn register_raw(&self, fd: RawFd, key: u32, i: Interest, m: Mode) -> io::Result<()> {
///         self.0.register_raw(fd, key, i, m)
///     }
///     fn modify_raw(&self, fd: RawFd, key: u32, i: Interest, m: Mode) -> io::Result<()> {
///         self.0.modify_raw(fd, key, i, m)
///     }
///     fn deregister_raw(&self, fd: RawFd) -> io::Result<()> {
///         self.0.deregister_raw(fd)
///     }
///     fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
///         self.0.wait(events, timeout)
///     }
///     fn capabilities(&self) -> Capabilities {
///         self.0.capabilities()
///     }
/// }
///
/// ioman_poll::conformance_tests!(|| Ok(Wrapper(DefaultBackend::new()?)));
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
macro_rules! conformance_tests {
    (@tests $new:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() -> ::std::io::Result<()> {
                $crate::conformance::$name($new)
            }
        )*
    };
    ($new:expr $(,)?) => {
        $crate::conformance_tests!(@tests $new;
            readable_pipe, writable_pipe, socketpair_both_interests, tcp_accept_and_read,
            tcp_connected_is_writable, level_reports_until_drained,
            one_shot_reports_once_until_rearmed, rearm_may_change_interest,
            edge_reports_each_arrival_once, modify_changes_key, modify_changes_interest,
            deregister_stops_events, register_after_deregister, register_twice_already_exists,
            unregistered_not_found, invalid_fd_ebadf, hangup_with_write_only_interest,
            hangup_with_read_only_interest, pipe_writer_sees_reader_close,
            registration_while_blocked, eintr_is_retried, eintr_then_event_reported,
            timeout_never_early, zero_timeout_never_blocks, huge_timeout_with_ready_fd,
            closed_while_registered, many_fds, events_grow_when_full, capabilities_are_sane,
        );
    };
}

fn assert_only(events: &Events, fd: RawFd, key: u32) {
    assert!(
        events.iter().all(|e| e.fd() == fd && e.key() == key),
        "expected events for fd {fd} key {key} only, got {:?}",
        events.as_slice()
    );
}

/// A pipe's read end registered for `READ`: nothing until a write, then readable (not
/// writable) with its key.
pub fn readable_pipe<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let (r, w) = util::pipe()?;
    b.register(&r, 11, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    assert_eq!(b.wait(&mut events, Some(Duration::ZERO))?, 0);
    util::write_fd(&w, b"x")?;
    let ev = wait_for(&b, &mut events, r.as_raw_fd())?.expect("readable pipe");
    assert_eq!(ev.key(), 11);
    assert!(ev.readiness().is_readable(), "{ev:?}");
    assert!(!ev.readiness().is_writable(), "{ev:?}");
    Ok(())
}

/// A pipe's write end registered for `WRITE`: writable (not readable) at once.
pub fn writable_pipe<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let (_r, w) = util::pipe()?;
    b.register(&w, 12, Interest::WRITE, Mode::Level)?;
    let mut events = Events::default();
    let ev = wait_for(&b, &mut events, w.as_raw_fd())?.expect("writable pipe");
    assert_eq!(ev.key(), 12);
    assert!(
        ev.readiness().is_writable() && !ev.readiness().is_readable(),
        "{ev:?}"
    );
    Ok(())
}

/// `READ | WRITE` on a socket: writable first, then readable and writable in one event per
/// fd.
pub fn socketpair_both_interests<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    b.register(&s, 1, Interest::READ | Interest::WRITE, Mode::Level)?;
    let mut events = Events::default();
    let ev = wait_for(&b, &mut events, s.as_raw_fd())?.expect("writable");
    assert!(
        ev.readiness().is_writable() && !ev.readiness().is_readable(),
        "{ev:?}"
    );
    poke(&mut a)?;
    let ev = wait_for(&b, &mut events, s.as_raw_fd())?.expect("readable");
    assert!(
        ev.readiness().is_writable() && ev.readiness().is_readable(),
        "{ev:?}"
    );
    assert_eq!(
        events.iter().filter(|e| e.fd() == s.as_raw_fd()).count(),
        1,
        "one event per fd"
    );
    Ok(())
}

/// A TCP listener is readable when a connection is pending; the accepted socket when data
/// arrives, without hang-up.
pub fn tcp_accept_and_read<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    use std::io::Write;
    let b = new()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    b.register(&listener, 1, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    assert_eq!(b.wait(&mut events, Some(Duration::ZERO))?, 0);
    let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let ev = wait_for(&b, &mut events, listener.as_raw_fd())?.expect("pending connection");
    assert!(ev.readiness().is_readable());
    let (server, _) = listener.accept()?;
    server.set_nonblocking(true)?;
    b.register(&server, 2, Interest::READ, Mode::Level)?;
    assert!(now_for(&b, &mut events, server.as_raw_fd())?.is_empty());
    client.write_all(b"hello")?;
    let ev = wait_for(&b, &mut events, server.as_raw_fd())?.expect("data");
    assert_eq!(ev.key(), 2);
    assert!(
        ev.readiness().is_readable() && !ev.readiness().is_hangup(),
        "{ev:?}"
    );
    Ok(())
}

/// A connected TCP socket registered one-shot for `WRITE` is writable.
pub fn tcp_connected_is_writable<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (client, _server) = util::tcp_pair()?;
    b.register(&client, 5, Interest::WRITE, Mode::OneShot)?;
    let mut events = Events::default();
    let ev = wait_for(&b, &mut events, client.as_raw_fd())?.expect("writable");
    assert!(ev.readiness().is_writable(), "{ev:?}");
    Ok(())
}

/// Level mode reports at every wait until the data is read.
pub fn level_reports_until_drained<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (mut a, mut s) = pair()?;
    b.register(&s, 3, Interest::READ, Mode::Level)?;
    poke(&mut a)?;
    let mut events = Events::default();
    wait_for(&b, &mut events, s.as_raw_fd())?.expect("readable");
    assert_eq!(
        now_for(&b, &mut events, s.as_raw_fd())?.len(),
        1,
        "level: reported again"
    );
    assert_eq!(
        now_for(&b, &mut events, s.as_raw_fd())?.len(),
        1,
        "level: and again"
    );
    util::drain(&mut s)?;
    assert!(
        now_for(&b, &mut events, s.as_raw_fd())?.is_empty(),
        "drained"
    );
    Ok(())
}

/// One-shot mode reports once, stays registered while disarmed, and each `modify` re-arms
/// it for one more report.
pub fn one_shot_reports_once_until_rearmed<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(&s, 4, Interest::READ, Mode::OneShot)?;
    poke(&mut a)?;
    let mut events = Events::default();
    wait_for(&b, &mut events, fd)?.expect("readable");
    assert!(
        now_for(&b, &mut events, fd)?.is_empty(),
        "oneshot: disarmed"
    );
    poke(&mut a)?;
    assert!(
        b.wait(&mut events, Some(Duration::from_millis(20)))? == 0,
        "still disarmed"
    );
    for round in 0..3 {
        b.modify(&s, 4, Interest::READ, Mode::OneShot)?;
        let got = now_for(&b, &mut events, fd)?;
        assert_eq!(got.len(), 1, "round {round}: re-armed");
        assert!(
            now_for(&b, &mut events, fd)?.is_empty(),
            "round {round}: disarmed again"
        );
    }
    // A disarmed registration is still registered.
    assert_eq!(
        b.register(&s, 4, Interest::READ, Mode::OneShot)
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    b.deregister(&s)?;
    Ok(())
}

/// A one-shot re-arm may change the interest and the key.
pub fn rearm_may_change_interest<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(&s, 1, Interest::WRITE, Mode::OneShot)?;
    let mut events = Events::default();
    wait_for(&b, &mut events, fd)?.expect("writable");
    assert!(now_for(&b, &mut events, fd)?.is_empty());
    b.modify(&s, 2, Interest::READ, Mode::OneShot)?;
    assert!(now_for(&b, &mut events, fd)?.is_empty(), "not readable yet");
    poke(&mut a)?;
    let ev = wait_for(&b, &mut events, fd)?.expect("readable");
    assert_eq!(ev.key(), 2);
    assert!(
        ev.readiness().is_readable() && !ev.readiness().is_writable(),
        "{ev:?}"
    );
    Ok(())
}

/// Edge mode reports each arrival once; a backend without edge mode (`capabilities().edge`
/// false) refuses it with `Unsupported` in `register` and `modify`.
pub fn edge_reports_each_arrival_once<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    if !b.capabilities().edge {
        eprintln!("no edge mode (capabilities): checking that Mode::Edge is refused instead");
        let e = b.register(&s, 1, Interest::READ, Mode::Edge).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        b.register(&s, 1, Interest::READ, Mode::Level)?;
        let e = b.modify(&s, 1, Interest::READ, Mode::Edge).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        return Ok(());
    }
    b.register(&s, 1, Interest::READ, Mode::Edge)?;
    let mut events = Events::default();
    for round in 0..3 {
        poke(&mut a)?;
        let ev =
            wait_for(&b, &mut events, fd)?.unwrap_or_else(|| panic!("round {round}: new data"));
        assert!(ev.readiness().is_readable());
        assert!(
            now_for(&b, &mut events, fd)?.is_empty(),
            "round {round}: edge reported once"
        );
    }
    Ok(())
}

/// `modify` changes the key events carry (to `u32::MAX`, the top bit included).
pub fn modify_changes_key<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    b.modify(&s, u32::MAX, Interest::READ, Mode::Level)?;
    poke(&mut a)?;
    let mut events = Events::default();
    let ev = wait_for(&b, &mut events, fd)?.expect("readable");
    assert_eq!(ev.key(), u32::MAX);
    assert_only(&events, fd, u32::MAX);
    Ok(())
}

/// `modify` changes the interest: from `READ` to `WRITE` and back.
pub fn modify_changes_interest<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    assert!(now_for(&b, &mut events, fd)?.is_empty());
    b.modify(&s, 1, Interest::WRITE, Mode::Level)?;
    let ev = wait_for(&b, &mut events, fd)?.expect("writable");
    assert!(ev.readiness().is_writable());
    b.modify(&s, 1, Interest::READ, Mode::Level)?;
    assert!(now_for(&b, &mut events, fd)?.is_empty());
    Ok(())
}

/// No event after `deregister`, even for a readable fd.
pub fn deregister_stops_events<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    poke(&mut a)?;
    let mut events = Events::default();
    wait_for(&b, &mut events, fd)?.expect("readable");
    b.deregister(&s)?;
    assert!(now_for(&b, &mut events, fd)?.is_empty());
    assert_eq!(b.wait(&mut events, Some(Duration::from_millis(10)))?, 0);
    Ok(())
}

/// An fd can be registered again after `deregister`, with a new key.
pub fn register_after_deregister<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    b.deregister(&s)?;
    b.register(&s, 2, Interest::READ, Mode::Level)?;
    poke(&mut a)?;
    let mut events = Events::default();
    assert_eq!(wait_for(&b, &mut events, fd)?.expect("readable").key(), 2);
    Ok(())
}

/// Registering an fd twice is `AlreadyExists`, in every mode.
pub fn register_twice_already_exists<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    for mode in [Mode::Level, Mode::OneShot] {
        let e = b.register(&s, 2, Interest::WRITE, mode).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    }
    Ok(())
}

/// `modify` and `deregister` of an fd that is not registered (never, or no more) are
/// `NotFound`.
pub fn unregistered_not_found<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    // Both fronts: by number and by borrowed fd.
    let fd = s.as_raw_fd();
    assert_eq!(
        b.modify_raw(fd, 1, Interest::READ, Mode::Level)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        b.deregister_raw(fd).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        b.modify(&s, 1, Interest::READ, Mode::Level)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(b.deregister(&s).unwrap_err().kind(), ErrorKind::NotFound);
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    b.deregister(&s)?;
    assert_eq!(
        b.deregister(&s).unwrap_err().kind(),
        ErrorKind::NotFound,
        "deregistered twice"
    );
    Ok(())
}

/// `-1` and a closed fd number are `EBADF` for `register_raw`; `modify_raw` of a closed
/// number is `EBADF` or `NotFound`.
pub fn invalid_fd_ebadf<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    assert_eq!(
        errno(b.register_raw(-1, 1, Interest::READ, Mode::Level)),
        Some(libc::EBADF)
    );
    let _guard = util::high_fd_lock();
    let closed = util::closed_fd()?;
    assert_eq!(
        errno(b.register_raw(closed, 1, Interest::READ, Mode::Level)),
        Some(libc::EBADF)
    );
    assert_eq!(
        errno(b.register_raw(closed, 1, Interest::WRITE, Mode::OneShot)),
        Some(libc::EBADF)
    );
    let e = b
        .modify_raw(closed, 1, Interest::READ, Mode::Level)
        .unwrap_err();
    assert!(
        e.raw_os_error() == Some(libc::EBADF) || e.kind() == ErrorKind::NotFound,
        "{e}"
    );
    Ok(())
}

/// A peer's close is reported to a `WRITE`-only registration, as a hang-up or an error that
/// wakes readers too.
pub fn hangup_with_write_only_interest<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(&s, 1, Interest::WRITE, Mode::OneShot)?;
    let mut events = Events::default();
    wait_for(&b, &mut events, fd)?.expect("writable first");
    drop(a);
    b.modify(&s, 1, Interest::WRITE, Mode::OneShot)?;
    let ev = wait_for(&b, &mut events, fd)?.expect("hang-up");
    assert!(
        ev.readiness().is_hangup() || ev.readiness().is_error(),
        "{ev:?}"
    );
    assert!(
        ev.readiness().satisfies(Interest::READ),
        "a hang-up wakes readers too"
    );
    Ok(())
}

/// A peer's close is reported to a `READ`-only registration as a hang-up that wakes writers
/// too.
pub fn hangup_with_read_only_interest<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    assert!(now_for(&b, &mut events, fd)?.is_empty());
    drop(a);
    let ev = wait_for(&b, &mut events, fd)?.expect("hang-up");
    assert!(ev.readiness().is_hangup(), "{ev:?}");
    assert!(
        ev.readiness().satisfies(Interest::WRITE),
        "a hang-up wakes writers too"
    );
    Ok(())
}

/// The write end of a full pipe is reported (error or hang-up) when the read end closes.
pub fn pipe_writer_sees_reader_close<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (r, w) = util::pipe()?;
    // Fill the pipe so that only the close can make the writer ready.
    while util::write_fd(&w, &[0u8; 4096]).is_ok() {}
    b.register(&w, 1, Interest::WRITE, Mode::Level)?;
    let mut events = Events::default();
    assert!(
        now_for(&b, &mut events, w.as_raw_fd())?.is_empty(),
        "full pipe"
    );
    drop(r);
    let ev = wait_for(&b, &mut events, w.as_raw_fd())?.expect("reader closed");
    assert!(
        ev.readiness().is_error() || ev.readiness().is_hangup(),
        "{ev:?}"
    );
    Ok(())
}

/// A registration made while another thread is blocked in `wait`: seen by that wait when
/// `capabilities().live_modify`, otherwise by the next wait.
pub fn registration_while_blocked<B: Backend + 'static>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = Arc::new(new()?);
    let (mut a, s) = pair()?;
    poke(&mut a)?;
    let fd = s.as_raw_fd();
    let live = b.capabilities().live_modify;
    if !live {
        eprintln!("no live_modify (capabilities): checking that the next wait sees the change");
    }
    let wait = if live {
        PATIENCE
    } else {
        Duration::from_millis(300)
    };
    let poller = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || -> io::Result<(Vec<crate::Event>, Duration)> {
            let mut events = Events::default();
            let start = Instant::now();
            b.wait(&mut events, Some(wait))?;
            Ok((events.as_slice().to_vec(), start.elapsed()))
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    b.register(&s, 77, Interest::READ, Mode::Level)?;
    let (got, elapsed) = poller.join().expect("poller panicked")?;
    let mut events = Events::default();
    if live {
        assert!(
            got.iter().any(|e| e.fd() == fd && e.key() == 77),
            "blocked wait saw it: {got:?}"
        );
        assert!(elapsed < PROMPT, "{elapsed:?}");
    } else {
        assert!(
            got.is_empty(),
            "not live: the blocked wait ran its course: {got:?}"
        );
        assert!(elapsed >= wait, "{elapsed:?}");
        assert_eq!(
            now_for(&*b, &mut events, fd)?.len(),
            1,
            "the next wait sees it"
        );
    }
    // The same for a modify and a deregister.
    b.deregister(&s)?;
    assert!(now_for(&*b, &mut events, fd)?.is_empty());
    Ok(())
}

fn blocked_wait_with_signal<B: Backend + 'static>(
    new: impl FnOnce() -> io::Result<B>,
    write_after_signal: bool,
) -> io::Result<(usize, Duration)> {
    util::install_sigusr2();
    let b = Arc::new(new()?);
    let (mut a, s) = pair()?;
    b.register(&s, 5, Interest::READ, Mode::Level)?;
    let timeout = Duration::from_millis(300);
    let poller = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || -> io::Result<(usize, Duration)> {
            let mut events = Events::default();
            let start = Instant::now();
            let n = b.wait(&mut events, Some(timeout))?;
            Ok((n, start.elapsed()))
        })
    };
    let before = util::SIGNALS.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: the waiting thread cannot have left its 300 ms wait yet (nothing is ready),
    // so it is alive.
    unsafe { util::signal_thread(poller.as_pthread_t()) }?;
    if write_after_signal {
        std::thread::sleep(Duration::from_millis(50));
        poke(&mut a)?;
    }
    let (n, elapsed) = poller.join().expect("poller panicked")?;
    assert!(
        util::SIGNALS.load(Ordering::SeqCst) > before,
        "the signal was delivered"
    );
    Ok((n, elapsed))
}

/// A signal interrupting a blocked wait is not an error and does not cut the timeout short.
pub fn eintr_is_retried<B: Backend + 'static>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let (n, elapsed) = blocked_wait_with_signal(new, false)?;
    assert_eq!(n, 0);
    assert!(
        elapsed >= Duration::from_millis(300),
        "cut short by the signal: {elapsed:?}"
    );
    assert!(elapsed < PROMPT + Duration::from_millis(300), "{elapsed:?}");
    Ok(())
}

/// After a signal, the same wait still reports an event that comes later.
pub fn eintr_then_event_reported<B: Backend + 'static>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let (n, elapsed) = blocked_wait_with_signal(new, true)?;
    assert_eq!(
        n, 1,
        "the write after the signal is reported by the same wait"
    );
    assert!(elapsed < Duration::from_millis(300) + PROMPT, "{elapsed:?}");
    Ok(())
}

/// Timeouts of 1 ns to 20 ms are never cut short (sub-millisecond ones round up) and end
/// promptly.
pub fn timeout_never_early<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    for t in [
        Duration::from_millis(1),
        Duration::from_micros(1500),
        Duration::from_micros(300),
        Duration::from_nanos(1),
        Duration::from_millis(20),
    ] {
        let start = Instant::now();
        assert_eq!(b.wait(&mut events, Some(t))?, 0);
        let elapsed = start.elapsed();
        assert!(elapsed >= t, "{t:?} timeout returned after {elapsed:?}");
        assert!(elapsed < PROMPT, "{t:?} timeout returned after {elapsed:?}");
    }
    Ok(())
}

/// A zero timeout never blocks.
pub fn zero_timeout_never_blocks<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    let start = Instant::now();
    for _ in 0..100 {
        assert_eq!(b.wait(&mut events, Some(Duration::ZERO))?, 0);
    }
    assert!(start.elapsed() < PROMPT, "{:?}", start.elapsed());
    Ok(())
}

/// Timeouts too long for the syscall (`Duration::MAX`, 30 days, just over `i32::MAX` ms)
/// and `None` still return at once when an fd is ready.
pub fn huge_timeout_with_ready_fd<B: Backend>(
    new: impl FnOnce() -> io::Result<B>,
) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    b.register(&s, 1, Interest::READ, Mode::Level)?;
    poke(&mut a)?;
    let mut events = Events::default();
    for t in [
        Duration::MAX,
        Duration::from_secs(30 * 24 * 3600),
        Duration::from_millis(i32::MAX as u64 + 1),
    ] {
        let start = Instant::now();
        assert_eq!(b.wait(&mut events, Some(t))?, 1, "{t:?}");
        assert!(start.elapsed() < PROMPT, "{t:?}");
    }
    let start = Instant::now();
    assert_eq!(b.wait(&mut events, None)?, 1);
    assert!(start.elapsed() < PROMPT);
    Ok(())
}

/// An fd closed while registered: never a busy loop, at most one report (an error), and
/// `deregister` afterwards gives `Ok`, `EBADF` or `NotFound`.
pub fn closed_while_registered<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let _guard = util::high_fd_lock();
    let (_a, s) = pair()?;
    let high = util::dup_high(&s)?;
    let fd = high.as_raw_fd();
    drop(s); // `high` is now the only reference to the socket.
    b.register(&high, 9, Interest::READ, Mode::Level)?;
    drop(high);
    let mut events = Events::default();
    let first = now_for(&b, &mut events, fd)?;
    assert!(first.len() <= 1, "{first:?}");
    if let Some(ev) = first.first() {
        assert!(ev.readiness().is_error(), "a closed fd is an error: {ev:?}");
        assert!(ev.readiness().satisfies(Interest::READ));
    }
    let start = Instant::now();
    assert_eq!(
        b.wait(&mut events, Some(Duration::from_millis(20)))?,
        0,
        "no busy loop"
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    match b.deregister_raw(fd) {
        Ok(()) => {}
        Err(e) => assert!(
            e.raw_os_error() == Some(libc::EBADF) || e.kind() == ErrorKind::NotFound,
            "{e}"
        ),
    }
    Ok(())
}

/// Thousands of registrations (see `IOMAN_TEST_FDS`): exactly the written ones are
/// reported, with their fds and keys, through a buffer that starts small.
pub fn many_fds<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let count = util::many_pairs_count();
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let (a, s) = pair()?;
        b.register(&s, i as u32, Interest::READ, Mode::Level)?;
        pairs.push((a, s));
    }
    let expected: BTreeSet<u32> = (0..count as u32)
        .filter(|i| i % 97 == 3 || *i == count as u32 - 1)
        .collect();
    for &i in &expected {
        poke(&mut pairs[i as usize].0)?;
    }
    let mut events = Events::with_capacity(16);
    let mut seen = BTreeSet::new();
    let end = Instant::now() + PATIENCE;
    while seen != expected && Instant::now() < end {
        b.wait(&mut events, Some(Duration::from_millis(100)))?;
        for ev in &events {
            assert!(expected.contains(&ev.key()), "unexpected {ev:?}");
            assert_eq!(ev.fd(), pairs[ev.key() as usize].1.as_raw_fd());
            assert!(ev.readiness().is_readable());
            seen.insert(ev.key());
            util::drain(&mut pairs[ev.key() as usize].1)?;
        }
    }
    assert_eq!(seen, expected, "{count} pairs");
    assert_eq!(b.wait(&mut events, Some(Duration::ZERO))?, 0, "all drained");
    Ok(())
}

/// `Events` doubles after a wait that filled it, and only then.
pub fn events_grow_when_full<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let mut pairs = Vec::new();
    for i in 0..3 {
        let (mut a, s) = pair()?;
        poke(&mut a)?;
        b.register(&s, i, Interest::READ, Mode::Level)?;
        pairs.push((a, s));
    }
    let mut events = Events::with_capacity(1);
    assert_eq!(events.capacity(), 1);
    assert_eq!(b.wait(&mut events, Some(PATIENCE))?, 1);
    assert_eq!(events.capacity(), 2, "grew after a full wait");
    assert_eq!(b.wait(&mut events, Some(PATIENCE))?, 2);
    assert_eq!(events.capacity(), 4);
    assert_eq!(b.wait(&mut events, Some(PATIENCE))?, 3);
    assert_eq!(events.capacity(), 4, "not full: no growth");
    let keys: BTreeSet<u32> = events.iter().map(|e| e.key()).collect();
    assert_eq!(keys, BTreeSet::from([0, 1, 2]));
    Ok(())
}

/// Level and one-shot modes are supported and the timeout resolution is between 1 ns and 1
/// ms.
pub fn capabilities_are_sane<B: Backend>(new: impl FnOnce() -> io::Result<B>) -> io::Result<()> {
    let b = new()?;
    let caps = b.capabilities();
    assert!(caps.supports(Mode::Level) && caps.supports(Mode::OneShot));
    assert!(caps.timeout_resolution > Duration::ZERO);
    assert!(caps.timeout_resolution <= Duration::from_millis(1));
    let _ = Readiness::EMPTY;
    Ok(())
}
