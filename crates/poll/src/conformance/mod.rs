//! The conformance suite: every behaviour the crate docs promise, written once over
//! `B: Backend` and instantiated per backend by `conformance_tests!` in `tests/<backend>.rs`.
//! Where backends may legitimately differ the test reads [`Capabilities`].

use std::collections::BTreeSet;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioman_poll::{Backend, Events, Interest, Mode, Readiness};

use crate::util::{self, errno, now_for, pair, poke, wait_for, PATIENCE, PROMPT};

/// Instantiates the suite for one backend: `conformance_tests!(Epoll::new; name, ...)`.
#[macro_export]
macro_rules! conformance_tests {
    ($new:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() -> std::io::Result<()> {
                conformance::$name($new)
            }
        )*
    };
}

/// Every test in the suite, for `conformance_tests!`.
#[macro_export]
macro_rules! all_conformance_tests {
    ($new:expr) => {
        conformance_tests!($new;
            readable_pipe, writable_pipe, socketpair_both_interests, tcp_accept_and_read,
            tcp_connected_is_writable, level_reports_until_drained, oneshot_reports_once_until_rearmed,
            rearm_may_change_interest, edge_reports_each_arrival_once, modify_changes_key,
            modify_changes_interest, deregister_stops_events, register_after_deregister,
            register_twice_already_exists, unregistered_not_found, invalid_fd_ebadf,
            hangup_with_write_only_interest, hangup_with_read_only_interest, pipe_writer_sees_reader_close,
            registration_while_blocked, eintr_is_retried, eintr_then_event_reported,
            timeout_never_early, zero_timeout_never_blocks, huge_timeout_with_ready_fd,
            closed_while_registered, many_fds, events_grow_when_full, capabilities_are_sane,
        );
    };
}

type New<B> = fn() -> io::Result<B>;

fn assert_only(events: &Events, fd: RawFd, key: u32) {
    assert!(
        events.iter().all(|e| e.fd() == fd && e.key() == key),
        "expected events for fd {fd} key {key} only, got {:?}",
        events.as_slice()
    );
}

pub fn readable_pipe<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (r, w) = util::pipe()?;
    b.register(r.as_raw_fd(), 11, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    assert_eq!(b.poll(&mut events, Some(Duration::ZERO))?, 0);
    util::write_fd(w.as_raw_fd(), b"x")?;
    let ev = wait_for(&b, &mut events, r.as_raw_fd())?.expect("readable pipe");
    assert_eq!(ev.key(), 11);
    assert!(ev.readiness().is_readable(), "{ev:?}");
    assert!(!ev.readiness().is_writable(), "{ev:?}");
    Ok(())
}

pub fn writable_pipe<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (_r, w) = util::pipe()?;
    b.register(w.as_raw_fd(), 12, Interest::WRITE, Mode::Level)?;
    let mut events = Events::default();
    let ev = wait_for(&b, &mut events, w.as_raw_fd())?.expect("writable pipe");
    assert_eq!(ev.key(), 12);
    assert!(
        ev.readiness().is_writable() && !ev.readiness().is_readable(),
        "{ev:?}"
    );
    Ok(())
}

pub fn socketpair_both_interests<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    b.register(
        s.as_raw_fd(),
        1,
        Interest::READ | Interest::WRITE,
        Mode::Level,
    )?;
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

pub fn tcp_accept_and_read<B: Backend>(new: New<B>) -> io::Result<()> {
    use std::io::Write;
    let b = new()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    b.register(listener.as_raw_fd(), 1, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    assert_eq!(b.poll(&mut events, Some(Duration::ZERO))?, 0);
    let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let ev = wait_for(&b, &mut events, listener.as_raw_fd())?.expect("pending connection");
    assert!(ev.readiness().is_readable());
    let (server, _) = listener.accept()?;
    server.set_nonblocking(true)?;
    b.register(server.as_raw_fd(), 2, Interest::READ, Mode::Level)?;
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

pub fn tcp_connected_is_writable<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (client, _server) = util::tcp_pair()?;
    b.register(client.as_raw_fd(), 5, Interest::WRITE, Mode::Oneshot)?;
    let mut events = Events::default();
    let ev = wait_for(&b, &mut events, client.as_raw_fd())?.expect("writable");
    assert!(ev.readiness().is_writable(), "{ev:?}");
    Ok(())
}

pub fn level_reports_until_drained<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, mut s) = pair()?;
    b.register(s.as_raw_fd(), 3, Interest::READ, Mode::Level)?;
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

pub fn oneshot_reports_once_until_rearmed<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(fd, 4, Interest::READ, Mode::Oneshot)?;
    poke(&mut a)?;
    let mut events = Events::default();
    wait_for(&b, &mut events, fd)?.expect("readable");
    assert!(
        now_for(&b, &mut events, fd)?.is_empty(),
        "oneshot: disarmed"
    );
    poke(&mut a)?;
    assert!(
        b.poll(&mut events, Some(Duration::from_millis(20)))? == 0,
        "still disarmed"
    );
    for round in 0..3 {
        b.modify(fd, 4, Interest::READ, Mode::Oneshot)?;
        let got = now_for(&b, &mut events, fd)?;
        assert_eq!(got.len(), 1, "round {round}: re-armed");
        assert!(
            now_for(&b, &mut events, fd)?.is_empty(),
            "round {round}: disarmed again"
        );
    }
    // A disarmed registration is still registered.
    assert_eq!(
        b.register(fd, 4, Interest::READ, Mode::Oneshot)
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    b.deregister(fd)?;
    Ok(())
}

pub fn rearm_may_change_interest<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(fd, 1, Interest::WRITE, Mode::Oneshot)?;
    let mut events = Events::default();
    wait_for(&b, &mut events, fd)?.expect("writable");
    assert!(now_for(&b, &mut events, fd)?.is_empty());
    b.modify(fd, 2, Interest::READ, Mode::Oneshot)?;
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

pub fn edge_reports_each_arrival_once<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    if !b.capabilities().edge {
        let e = b.register(fd, 1, Interest::READ, Mode::Edge).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        b.register(fd, 1, Interest::READ, Mode::Level)?;
        let e = b.modify(fd, 1, Interest::READ, Mode::Edge).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        return Ok(());
    }
    b.register(fd, 1, Interest::READ, Mode::Edge)?;
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

pub fn modify_changes_key<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(fd, 1, Interest::READ, Mode::Level)?;
    b.modify(fd, u32::MAX, Interest::READ, Mode::Level)?;
    poke(&mut a)?;
    let mut events = Events::default();
    let ev = wait_for(&b, &mut events, fd)?.expect("readable");
    assert_eq!(ev.key(), u32::MAX);
    assert_only(&events, fd, u32::MAX);
    Ok(())
}

pub fn modify_changes_interest<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(fd, 1, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    assert!(now_for(&b, &mut events, fd)?.is_empty());
    b.modify(fd, 1, Interest::WRITE, Mode::Level)?;
    let ev = wait_for(&b, &mut events, fd)?.expect("writable");
    assert!(ev.readiness().is_writable());
    b.modify(fd, 1, Interest::READ, Mode::Level)?;
    assert!(now_for(&b, &mut events, fd)?.is_empty());
    Ok(())
}

pub fn deregister_stops_events<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(fd, 1, Interest::READ, Mode::Level)?;
    poke(&mut a)?;
    let mut events = Events::default();
    wait_for(&b, &mut events, fd)?.expect("readable");
    b.deregister(fd)?;
    assert!(now_for(&b, &mut events, fd)?.is_empty());
    assert_eq!(b.poll(&mut events, Some(Duration::from_millis(10)))?, 0);
    Ok(())
}

pub fn register_after_deregister<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(fd, 1, Interest::READ, Mode::Level)?;
    b.deregister(fd)?;
    b.register(fd, 2, Interest::READ, Mode::Level)?;
    poke(&mut a)?;
    let mut events = Events::default();
    assert_eq!(wait_for(&b, &mut events, fd)?.expect("readable").key(), 2);
    Ok(())
}

pub fn register_twice_already_exists<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    b.register(s.as_raw_fd(), 1, Interest::READ, Mode::Level)?;
    for mode in [Mode::Level, Mode::Oneshot] {
        let e = b
            .register(s.as_raw_fd(), 2, Interest::WRITE, mode)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    }
    Ok(())
}

pub fn unregistered_not_found<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    let fd = s.as_raw_fd();
    assert_eq!(
        b.modify(fd, 1, Interest::READ, Mode::Level)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(b.deregister(fd).unwrap_err().kind(), ErrorKind::NotFound);
    b.register(fd, 1, Interest::READ, Mode::Level)?;
    b.deregister(fd)?;
    assert_eq!(
        b.deregister(fd).unwrap_err().kind(),
        ErrorKind::NotFound,
        "deregistered twice"
    );
    Ok(())
}

pub fn invalid_fd_ebadf<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    assert_eq!(
        errno(b.register(-1, 1, Interest::READ, Mode::Level)),
        Some(libc::EBADF)
    );
    let _guard = util::high_fd_lock();
    let closed = util::closed_fd()?;
    assert_eq!(
        errno(b.register(closed, 1, Interest::READ, Mode::Level)),
        Some(libc::EBADF)
    );
    assert_eq!(
        errno(b.register(closed, 1, Interest::WRITE, Mode::Oneshot)),
        Some(libc::EBADF)
    );
    let e = b
        .modify(closed, 1, Interest::READ, Mode::Level)
        .unwrap_err();
    assert!(
        e.raw_os_error() == Some(libc::EBADF) || e.kind() == ErrorKind::NotFound,
        "{e}"
    );
    Ok(())
}

pub fn hangup_with_write_only_interest<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(fd, 1, Interest::WRITE, Mode::Oneshot)?;
    let mut events = Events::default();
    wait_for(&b, &mut events, fd)?.expect("writable first");
    drop(a);
    b.modify(fd, 1, Interest::WRITE, Mode::Oneshot)?;
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

pub fn hangup_with_read_only_interest<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (a, s) = pair()?;
    let fd = s.as_raw_fd();
    b.register(fd, 1, Interest::READ, Mode::Level)?;
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

pub fn pipe_writer_sees_reader_close<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (r, w) = util::pipe()?;
    // Fill the pipe so that only the close can make the writer ready.
    while util::write_fd(w.as_raw_fd(), &[0u8; 4096]).is_ok() {}
    b.register(w.as_raw_fd(), 1, Interest::WRITE, Mode::Level)?;
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

/// A registration made while another thread is blocked in `poll`: seen by that poll when
/// `live_modify`, otherwise by the next poll.
pub fn registration_while_blocked<B: Backend + 'static>(new: New<B>) -> io::Result<()> {
    let b = Arc::new(new()?);
    let (mut a, s) = pair()?;
    poke(&mut a)?;
    let fd = s.as_raw_fd();
    let live = b.capabilities().live_modify;
    let wait = if live {
        PATIENCE
    } else {
        Duration::from_millis(300)
    };
    let poller = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || -> io::Result<(Vec<ioman_poll::Event>, Duration)> {
            let mut events = Events::default();
            let start = Instant::now();
            b.poll(&mut events, Some(wait))?;
            Ok((events.as_slice().to_vec(), start.elapsed()))
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    b.register(fd, 77, Interest::READ, Mode::Level)?;
    let (got, elapsed) = poller.join().expect("poller panicked")?;
    let mut events = Events::default();
    if live {
        assert!(
            got.iter().any(|e| e.fd() == fd && e.key() == 77),
            "blocked poll saw it: {got:?}"
        );
        assert!(elapsed < PROMPT, "{elapsed:?}");
    } else {
        assert!(
            got.is_empty(),
            "not live: the blocked poll ran its course: {got:?}"
        );
        assert!(elapsed >= wait, "{elapsed:?}");
        assert_eq!(
            now_for(&*b, &mut events, fd)?.len(),
            1,
            "the next poll sees it"
        );
    }
    // The same for a modify and a deregister.
    b.deregister(fd)?;
    assert!(now_for(&*b, &mut events, fd)?.is_empty());
    Ok(())
}

fn blocked_poll_with_signal<B: Backend + 'static>(
    new: New<B>,
    write_after_signal: bool,
) -> io::Result<(usize, Duration)> {
    util::install_sigusr2();
    let b = Arc::new(new()?);
    let (mut a, s) = pair()?;
    b.register(s.as_raw_fd(), 5, Interest::READ, Mode::Level)?;
    let timeout = Duration::from_millis(300);
    let poller = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || -> io::Result<(usize, Duration)> {
            let mut events = Events::default();
            let start = Instant::now();
            let n = b.poll(&mut events, Some(timeout))?;
            Ok((n, start.elapsed()))
        })
    };
    let before = util::SIGNALS.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    // The poller cannot have left its 300 ms poll yet (nothing is ready), so it is alive.
    util::signal_thread(poller.as_pthread_t())?;
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

pub fn eintr_is_retried<B: Backend + 'static>(new: New<B>) -> io::Result<()> {
    let (n, elapsed) = blocked_poll_with_signal(new, false)?;
    assert_eq!(n, 0);
    assert!(
        elapsed >= Duration::from_millis(300),
        "cut short by the signal: {elapsed:?}"
    );
    assert!(elapsed < PROMPT + Duration::from_millis(300), "{elapsed:?}");
    Ok(())
}

pub fn eintr_then_event_reported<B: Backend + 'static>(new: New<B>) -> io::Result<()> {
    let (n, elapsed) = blocked_poll_with_signal(new, true)?;
    assert_eq!(
        n, 1,
        "the write after the signal is reported by the same poll"
    );
    assert!(elapsed < Duration::from_millis(300) + PROMPT, "{elapsed:?}");
    Ok(())
}

pub fn timeout_never_early<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    b.register(s.as_raw_fd(), 1, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    for t in [
        Duration::from_millis(1),
        Duration::from_micros(1500),
        Duration::from_micros(300),
        Duration::from_nanos(1),
        Duration::from_millis(20),
    ] {
        let start = Instant::now();
        assert_eq!(b.poll(&mut events, Some(t))?, 0);
        let elapsed = start.elapsed();
        assert!(elapsed >= t, "{t:?} timeout returned after {elapsed:?}");
        assert!(elapsed < PROMPT, "{t:?} timeout returned after {elapsed:?}");
    }
    Ok(())
}

pub fn zero_timeout_never_blocks<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (_a, s) = pair()?;
    b.register(s.as_raw_fd(), 1, Interest::READ, Mode::Level)?;
    let mut events = Events::default();
    let start = Instant::now();
    for _ in 0..100 {
        assert_eq!(b.poll(&mut events, Some(Duration::ZERO))?, 0);
    }
    assert!(start.elapsed() < PROMPT, "{:?}", start.elapsed());
    Ok(())
}

pub fn huge_timeout_with_ready_fd<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let (mut a, s) = pair()?;
    b.register(s.as_raw_fd(), 1, Interest::READ, Mode::Level)?;
    poke(&mut a)?;
    let mut events = Events::default();
    for t in [
        Duration::MAX,
        Duration::from_secs(30 * 24 * 3600),
        Duration::from_millis(i32::MAX as u64 + 1),
    ] {
        let start = Instant::now();
        assert_eq!(b.poll(&mut events, Some(t))?, 1, "{t:?}");
        assert!(start.elapsed() < PROMPT, "{t:?}");
    }
    let start = Instant::now();
    assert_eq!(b.poll(&mut events, None)?, 1);
    assert!(start.elapsed() < PROMPT);
    Ok(())
}

/// An fd closed while registered: never a busy loop, at most one report (an error), and
/// `deregister` afterwards gives `Ok`, `EBADF` or `NotFound`.
pub fn closed_while_registered<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let _guard = util::high_fd_lock();
    let (_a, s) = pair()?;
    let high = util::dup_high(s.as_raw_fd())?;
    let fd = high.as_raw_fd();
    drop(s); // `high` is now the only reference to the socket.
    b.register(fd, 9, Interest::READ, Mode::Level)?;
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
        b.poll(&mut events, Some(Duration::from_millis(20)))?,
        0,
        "no busy loop"
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
    match b.deregister(fd) {
        Ok(()) => {}
        Err(e) => assert!(
            e.raw_os_error() == Some(libc::EBADF) || e.kind() == ErrorKind::NotFound,
            "{e}"
        ),
    }
    Ok(())
}

pub fn many_fds<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let count = util::many_pairs_count();
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let (a, s) = pair()?;
        b.register(s.as_raw_fd(), i as u32, Interest::READ, Mode::Level)?;
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
        b.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in &events {
            assert!(expected.contains(&ev.key()), "unexpected {ev:?}");
            assert_eq!(ev.fd(), pairs[ev.key() as usize].1.as_raw_fd());
            assert!(ev.readiness().is_readable());
            seen.insert(ev.key());
            util::drain(&mut pairs[ev.key() as usize].1)?;
        }
    }
    assert_eq!(seen, expected, "{count} pairs");
    assert_eq!(b.poll(&mut events, Some(Duration::ZERO))?, 0, "all drained");
    Ok(())
}

pub fn events_grow_when_full<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let mut pairs = Vec::new();
    for i in 0..3 {
        let (mut a, s) = pair()?;
        poke(&mut a)?;
        b.register(s.as_raw_fd(), i, Interest::READ, Mode::Level)?;
        pairs.push((a, s));
    }
    let mut events = Events::with_capacity(1);
    assert_eq!(events.capacity(), 1);
    assert_eq!(b.poll(&mut events, Some(PATIENCE))?, 1);
    assert_eq!(events.capacity(), 2, "grew after a full poll");
    assert_eq!(b.poll(&mut events, Some(PATIENCE))?, 2);
    assert_eq!(events.capacity(), 4);
    assert_eq!(b.poll(&mut events, Some(PATIENCE))?, 3);
    assert_eq!(events.capacity(), 4, "not full: no growth");
    let keys: BTreeSet<u32> = events.iter().map(|e| e.key()).collect();
    assert_eq!(keys, BTreeSet::from([0, 1, 2]));
    Ok(())
}

pub fn capabilities_are_sane<B: Backend>(new: New<B>) -> io::Result<()> {
    let b = new()?;
    let caps = b.capabilities();
    assert!(caps.supports(Mode::Level) && caps.supports(Mode::Oneshot));
    assert!(caps.timeout_resolution > Duration::ZERO);
    assert!(caps.timeout_resolution <= Duration::from_millis(1));
    let _ = Readiness::EMPTY;
    Ok(())
}
