//! The conformance suite against [`PosixPoll`] (poll(2)), through the entry point any
//! backend uses, plus what is specific to poll(2).
// `conformance` is on through the crate's dev-dependency on itself.
#![cfg(feature = "conformance")]

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ioman_poll::conformance::util;
use ioman_poll::{Backend, Events, Interest, Mode, PosixPoll};

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<PosixPoll>();
};

ioman_poll::conformance_tests!(PosixPoll::new);

#[test]
fn capabilities() -> io::Result<()> {
    let caps = PosixPoll::new()?.capabilities();
    assert!(caps.level && caps.one_shot && !caps.edge && !caps.live_modify);
    assert_eq!(caps.timeout_resolution, Duration::from_millis(1));
    assert_eq!(
        caps,
        ioman_poll::Capabilities::new(),
        "the least a backend offers"
    );
    Ok(())
}

#[test]
fn regular_file_is_always_ready() -> io::Result<()> {
    let b = PosixPoll::new()?;
    let file = std::fs::File::open(std::env::current_exe()?)?;
    b.register(&file, 1, Interest::BOTH, Mode::Level)?;
    let mut events = Events::default();
    assert_eq!(b.wait(&mut events, Some(Duration::ZERO))?, 1);
    let r = events.as_slice()[0].readiness();
    assert!(r.is_readable() && r.is_writable(), "{r:?}");
    Ok(())
}

/// POLLNVAL is reported once as an error, then the entry is disarmed until modified.
#[test]
fn closed_fd_reported_once_then_rearmed_by_modify() -> io::Result<()> {
    let b = PosixPoll::new()?;
    let _guard = util::high_fd_lock();
    let (_a, s) = util::pair()?;
    let high = util::dup_high(&s)?;
    let fd = high.as_raw_fd();
    b.register(&high, 4, Interest::READ, Mode::Level)?;
    drop(high);
    let mut events = Events::default();
    assert_eq!(b.wait(&mut events, Some(Duration::from_secs(5)))?, 1);
    let ev = events.as_slice()[0];
    assert_eq!((ev.fd(), ev.key()), (fd, 4));
    assert!(ev.readiness().is_error(), "{ev:?}");
    let start = Instant::now();
    assert_eq!(
        b.wait(&mut events, Some(Duration::from_millis(30)))?,
        0,
        "no busy loop"
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    // modify checks the fd first: it is closed.
    assert_eq!(
        util::errno(b.modify_raw(fd, 4, Interest::READ, Mode::Level)),
        Some(libc::EBADF)
    );
    b.deregister_raw(fd)?;
    assert_eq!(b.wait(&mut events, Some(Duration::ZERO))?, 0);
    Ok(())
}

/// A modify made while a wait is blocked takes effect at the next call.
#[test]
fn modify_while_blocked_applies_next_call() -> io::Result<()> {
    let b = std::sync::Arc::new(PosixPoll::new()?);
    let (mut a, s) = util::pair()?;
    b.register(&s, 1, Interest::WRITE, Mode::OneShot)?;
    let mut events = Events::default();
    assert_eq!(b.wait(&mut events, Some(Duration::ZERO))?, 1);
    a.write_all(b"x")?;
    let poller = {
        let b = b.clone();
        std::thread::spawn(move || -> io::Result<usize> {
            let mut events = Events::default();
            b.wait(&mut events, Some(Duration::from_millis(200)))
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    b.modify(&s, 2, Interest::READ, Mode::OneShot)?;
    assert_eq!(
        poller.join().expect("poller")?,
        0,
        "the blocked wait does not see it"
    );
    assert_eq!(
        b.wait(&mut events, Some(Duration::ZERO))?,
        1,
        "the next one does"
    );
    assert_eq!(events.as_slice()[0].key(), 2);
    Ok(())
}

#[test]
fn deregister_closed_fd_succeeds() -> io::Result<()> {
    let b = PosixPoll::new()?;
    let _guard = util::high_fd_lock();
    let (_a, s) = util::pair()?;
    let high = util::dup_high(&s)?;
    let fd = high.as_raw_fd();
    b.register(&high, 4, Interest::READ, Mode::Level)?;
    drop(high);
    b.deregister_raw(fd)?;
    Ok(())
}

#[test]
fn len_counts_registrations() -> io::Result<()> {
    let b = PosixPoll::new()?;
    assert!(b.is_empty());
    let (_a, s) = util::pair()?;
    b.register(&s, 1, Interest::READ, Mode::OneShot)?;
    assert_eq!(b.len(), 1);
    assert!(format!("{b:?}").contains("PosixPoll { registered: 1 }"));
    Ok(())
}
