//! OS mechanisms: the eventfd and pipe wakeups, and the signal action.
//!
//! All `unsafe` code of the crate lives under this module. Every libc call goes through
//! [`syscall!`], which maps the C convention "`-1` and `errno`" to
//! `Err(io::Error::last_os_error())`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Calls `libc::$fn(args..)` and maps a `-1` result to `Err(io::Error::last_os_error())`.
///
/// The macro itself contains no `unsafe`: the caller wraps it in an `unsafe` block with a
/// `// SAFETY:` comment about the call's arguments. Reading `errno` (done by
/// `io::Error::last_os_error`) is async-signal-safe, so the macro is usable in the signal
/// action too.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        let res = libc::$fn($($arg),*);
        if res == -1 {
            Err(::std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

// `build.rs` names what each OS it knows has (eventfd, pipe2, the errno accessor, the
// numbering of `si_code`); an OS it does not know would fail below with less helpful errors.
#[cfg(not(ioman_known_os))]
compile_error!("ioman-wakeup does not know this OS: add it to crates/wakeup/build.rs");

#[cfg(ioman_eventfd)]
pub(crate) mod eventfd;
pub(crate) mod pipe;
pub(crate) mod signal;

/// `write(2)` of `buf` to `fd`, retrying `EINTR`.
///
/// Returns `Ok(None)` for `EAGAIN`/`EWOULDBLOCK` (a full non-blocking fd) and the number of
/// bytes written otherwise. Async-signal-safe: no allocation, no locks.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is a live slice, so `buf.as_ptr()` is valid for reads of `buf.len()`
        // bytes; `fd` is a borrowed, hence open, descriptor.
        let res = unsafe { syscall!(write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len())) };
        match res {
            // `res` is non-negative here, so the cast is lossless.
            Ok(n) => return Ok(Some(n as usize)),
            // A signal arrived before anything was written: try again (signal(7)).
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// `read(2)` from `fd` into `buf`, retrying `EINTR`.
///
/// Returns `Ok(None)` for `EAGAIN`/`EWOULDBLOCK` (nothing to read on a non-blocking fd) and
/// the number of bytes read otherwise.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is a live, exclusively borrowed slice, valid for writes of
        // `buf.len()` bytes; `fd` is a borrowed, hence open, descriptor.
        let res = unsafe { syscall!(read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())) };
        match res {
            // `res` is non-negative here, so the cast is lossless.
            Ok(n) => return Ok(Some(n as usize)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
