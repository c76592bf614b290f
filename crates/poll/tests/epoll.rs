//! The conformance suite against [`Epoll`], plus what is specific to it.
#![cfg(ioman_epoll)]

mod conformance;
mod util;

use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::time::Duration;

use ioman_poll::{Backend, Epoll, Events, Interest, Mode};

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Epoll>();
};

all_conformance_tests!(Epoll::new);

#[test]
fn capabilities() -> io::Result<()> {
    let caps = Epoll::new()?.capabilities();
    assert!(caps.level && caps.oneshot && caps.edge && caps.live_modify);
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
        .register(file.as_raw_fd(), 1, Interest::READ, Mode::Level)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let dir = std::fs::File::open("/")?;
    let e = b
        .register(dir.as_raw_fd(), 1, Interest::READ, Mode::Level)
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
    let high = util::dup_high(s.as_raw_fd())?;
    let fd = high.as_raw_fd();
    drop(s);
    b.register(fd, 4, Interest::READ, Mode::Level)?;
    // Readable, so epoll would report it if closing had not removed it.
    util::poke(&mut a)?;
    drop(high);
    let mut events = Events::default();
    assert_eq!(b.poll(&mut events, Some(Duration::from_millis(20)))?, 0);
    assert_eq!(util::errno(b.deregister(fd)), Some(libc::EBADF));
    Ok(())
}

#[test]
fn debug_and_as_fd() -> io::Result<()> {
    let b = Epoll::new()?;
    assert!(b.as_raw_fd() >= 0);
    assert!(format!("{b:?}").starts_with("Epoll"));
    Ok(())
}
