//! The Linux/Android wakeup: an `eventfd(2)` counter.
//!
//! Any number of `write`s of 1 make the fd readable once; one 8-byte `read` resets the
//! counter to zero (without `EFD_SEMAPHORE`). See `eventfd(2)`.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

/// Creates a non-blocking, close-on-exec eventfd with counter 0.
///
/// `EFD_CLOEXEC | EFD_NONBLOCK` need Linux 2.6.27 (`eventfd2`); an older kernel answers
/// `EINVAL` or `ENOSYS`, which [`crate::Wakeup::new`] takes as "use a pipe instead".
pub(crate) fn new() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the flags are valid constants.
    let fd = unsafe { syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)) }?;
    // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to the counter, making the fd readable. Returns `false` when the counter is at
/// its maximum (`u64::MAX - 1`, `EAGAIN`) and nothing was written.
pub(crate) fn notify(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match super::write(fd, &1u64.to_ne_bytes())? {
        Some(8) => Ok(true),
        None => Ok(false),
        // eventfd writes are all-or-nothing 8 bytes (eventfd(2)); anything else is a bug
        // in the kernel interface we rely on.
        Some(n) => Err(io::Error::other(format!(
            "short write of {n} bytes to eventfd"
        ))),
    }
}

/// Resets the counter to zero. A counter already at zero (`EAGAIN`) is not an error.
pub(crate) fn drain(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut buf = [0u8; 8];
    super::read(fd, &mut buf).map(drop)
}

/// Test hook: sets the counter to its maximum so that the next write fails with `EAGAIN`.
pub(crate) fn fill(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // The largest value a counter can hold is u64::MAX - 1 (eventfd(2)).
    let max = u64::MAX - 1;
    super::write(fd, &max.to_ne_bytes()).map(|n| n.unwrap_or(0))
}
