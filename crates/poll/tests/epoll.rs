//! The conformance suite against [`Epoll`], through the entry point any backend uses, plus
//! what is specific to epoll.
// `conformance` is on through the crate's dev-dependency on itself; a packaged copy of
// the crate runs these with `cargo test --features conformance`.
#![cfg(all(ioman_epoll, feature = "conformance"))]

use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::time::Duration;

use ioman_poll::conformance::util;
use ioman_poll::{Backend, Epoll, Events, Interest, Mode};

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Epoll>();
};

ioman_poll::conformance_tests!(Epoll::new);

#[test]
fn capabilities() -> io::Result<()> {
    let caps = Epoll::new()?.capabilities();
    assert!(caps.level && caps.one_shot && caps.edge && caps.live_modify);
    // Nanoseconds with epoll_pwait2 (Linux 5.11+), milliseconds without.
    eprintln!("epoll timeout resolution: {:?}", caps.timeout_resolution);
    assert!(
        caps.timeout_resolution == Duration::from_nanos(1)
            || caps.timeout_resolution == Duration::from_millis(1)
    );
    Ok(())
}

#[test]
fn regular_file_unsupported() -> io::Result<()> {
    let b = Epoll::new()?;
    let file = std::fs::File::open(std::env::current_exe()?)?;
    let e = b
        .register(&file, 1, Interest::READ, Mode::Level)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let dir = std::fs::File::open("/")?;
    let e = b
        .register(&dir, 1, Interest::READ, Mode::Level)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    Ok(())
}

/// Closing the last reference removes the fd from the epoll set: no event, and
/// `deregister` gives `EBADF`.
#[test]
fn closed_fd_is_forgotten() -> io::Result<()> {
    let b = Epoll::new()?;
    let _guard = util::high_fd_lock();
    let (mut a, s) = util::pair()?;
    let high = util::dup_high(&s)?;
    let fd = high.as_raw_fd();
    drop(s);
    b.register(&high, 4, Interest::READ, Mode::Level)?;
    // Readable, so epoll would report it if closing had not removed it.
    util::poke(&mut a)?;
    drop(high);
    let mut events = Events::default();
    assert_eq!(b.wait(&mut events, Some(Duration::from_millis(20)))?, 0);
    assert_eq!(util::errno(b.deregister_raw(fd)), Some(libc::EBADF));
    Ok(())
}

#[test]
fn debug_and_as_fd() -> io::Result<()> {
    let b = Epoll::new()?;
    assert!(b.as_raw_fd() >= 0);
    assert!(format!("{b:?}").starts_with("Epoll"));
    Ok(())
}

/// `Event` is the kernel's `struct epoll_event`, read in place: same size, and what the
/// kernel wrote (`EPOLLIN | EPOLLRDHUP`, key << 32 | fd) decodes to the registration.
#[test]
fn events_are_the_kernels_entries() -> io::Result<()> {
    assert_eq!(
        std::mem::size_of::<ioman_poll::Event>(),
        std::mem::size_of::<libc::epoll_event>()
    );
    let b = Epoll::new()?;
    let (a, s) = util::pair()?;
    b.register(&s, u32::MAX - 1, Interest::READ, Mode::Level)?;
    drop(a);
    let mut events = Events::default();
    assert_eq!(b.wait(&mut events, Some(util::PATIENCE))?, 1);
    let ev = events.as_slice()[0];
    assert_eq!((ev.fd(), ev.key()), (s.as_raw_fd(), u32::MAX - 1));
    assert!(
        ev.readiness().is_readable() && ev.readiness().is_hangup(),
        "{ev:?}"
    );
    assert!(
        !ev.readiness().is_writable() && !ev.readiness().is_error(),
        "{ev:?}"
    );
    Ok(())
}
