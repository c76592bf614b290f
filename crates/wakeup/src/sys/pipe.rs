//! The portable wakeup: a non-blocking pipe, read end registered with the poller.
//!
//! A wake writes one byte; the loop drains everything. A full pipe (`EAGAIN` on write)
//! already means "readable", so a wake is pending. The control channel uses the same pipe
//! with fixed-size records: `write(2)`s of at most `PIPE_BUF` bytes are atomic (all or
//! nothing, never interleaved), see `pipe(7)`.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

/// Creates a pipe; both ends are non-blocking and close-on-exec. Returns `(read, write)`.
#[cfg(ioman_pipe2)]
pub(crate) fn new() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid `[c_int; 2]` for pipe2 to fill; flags are valid constants.
    unsafe { syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK)) }?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Creates a pipe; both ends are non-blocking and close-on-exec. Returns `(read, write)`.
///
/// Without `pipe2` the flags are set after creation, so a concurrent `fork`+`exec` in
/// another thread can inherit the fds (the same window std has on these systems).
#[cfg(not(ioman_pipe2))]
pub(crate) fn new() -> io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::AsRawFd;
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a valid `[c_int; 2]` for pipe to fill.
    unsafe { syscall!(pipe(fds.as_mut_ptr())) }?;
    // SAFETY: pipe succeeded, so both fds are open and owned by nobody else; wrapping them
    // at once closes them if setting the flags fails.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [r.as_raw_fd(), w.as_raw_fd()] {
        // SAFETY: `fd` is open (owned above); F_SETFD/F_SETFL take an integer argument.
        unsafe { syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)) }?;
        // SAFETY: as above.
        let fl = unsafe { syscall!(fcntl(fd, libc::F_GETFL)) }?;
        // SAFETY: as above.
        unsafe { syscall!(fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)) }?;
    }
    Ok((r, w))
}

/// Writes one byte. Returns `false` when the pipe is full (`EAGAIN`) and nothing was
/// written.
pub(crate) fn notify(write: BorrowedFd<'_>) -> io::Result<bool> {
    super::write(write, &[1]).map(|n| n.is_some())
}

/// Reads until the pipe is empty (`EAGAIN`) or a read comes back short.
///
/// A short read means the pipe was empty at that moment; bytes written later make the fd
/// readable again, so the loop will come back for them.
pub(crate) fn drain(read: BorrowedFd<'_>) -> io::Result<()> {
    let mut buf = [0u8; 256];
    while let Some(n) = super::read(read, &mut buf)? {
        if n < buf.len() {
            break;
        }
    }
    Ok(())
}

/// Test hook: writes bytes until the pipe is full. Returns how many bytes were written.
pub(crate) fn fill(write: BorrowedFd<'_>) -> io::Result<usize> {
    let buf = [1u8; 4096];
    let mut total = 0;
    // Keep writing single bytes after 4 KiB chunks stop fitting, so the pipe ends up
    // completely full (a write of <= PIPE_BUF bytes is all or nothing).
    for chunk in [&buf[..], &buf[..1]] {
        while let Some(n) = super::write(write, chunk)? {
            total += n;
        }
    }
    Ok(total)
}
