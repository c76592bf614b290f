//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use ioman_wakeup::{Wakeup, WakeupKind};

/// Waits up to `timeout_ms` (-1: forever) for `fd` to be readable, with `poll(2)`.
/// `EINTR` (e.g. a forwarded test signal) is retried.
pub fn poll_readable(fd: &impl AsRawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid, exclusively borrowed pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n >= 0 {
            return Ok(n == 1 && pfd.revents & libc::POLLIN != 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether `fd` is readable right now.
pub fn is_readable(fd: &impl AsRawFd) -> io::Result<bool> {
    poll_readable(fd, 0)
}

/// One wakeup of each kind this platform has: eventfd (Linux/Android) and pipe.
pub fn every_kind() -> io::Result<Vec<Wakeup>> {
    Ok(vec![
        #[cfg(ioman_eventfd)]
        Wakeup::eventfd()?,
        Wakeup::pipe()?,
    ])
}

/// Runs `test` once per kind, labelling a failure with the kind.
pub fn for_each_kind(test: impl Fn(Wakeup) -> io::Result<()>) -> io::Result<()> {
    for w in every_kind()? {
        let kind: WakeupKind = w.kind();
        test(w).map_err(|e| io::Error::new(e.kind(), format!("{kind:?}: {e}")))?;
    }
    Ok(())
}

/// An error for a failed expectation.
pub fn fail(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// An error from a raw OS errno, for the fallback tests.
pub fn os_error(errno: i32) -> io::Result<OwnedFd> {
    Err(io::Error::from_raw_os_error(errno))
}
