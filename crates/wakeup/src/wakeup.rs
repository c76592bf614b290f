//! [`Wakeup`]: a readable fd that any thread can make ready, with coalescing.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::sync::{AtomicBool, AtomicU64, Ordering};
use crate::sys;

/// The pending flag that coalesces wakes: the protocol shared by [`Wakeup`] and
/// [`Control`](crate::Control), model-checked under `cfg(loom)`.
///
/// * Waker: `raise()`; if it returns `true`, write the fd.
/// * Loop: drain the fd, *then* `clear()`, then look at the work.
///
/// Both `raise` and `clear` are read-modify-writes with `AcqRel`, so they sit in one total
/// modification order of the flag. A `raise` ordered before the `clear` returned `false`
/// (no write) or wrote before the flag could be cleared; either way the `clear` reads its
/// value (or a later one in its release sequence) and therefore *synchronizes with* it: all
/// work the waker did before `raise` is visible to the loop after `clear`. A `raise` ordered
/// after the `clear` reads `false` and writes the fd again. A plain `load` fast path would
/// break this (store/load reordering of the waker's work and the flag check, the Dekker
/// pattern), so the fast path is one `swap`.
#[derive(Debug)]
pub(crate) struct Pending {
    flag: AtomicBool,
}

impl Pending {
    pub(crate) fn new(set: bool) -> Pending {
        Pending {
            flag: AtomicBool::new(set),
        }
    }

    /// Marks a wake pending. Returns `true` if it was not pending, i.e. the caller must
    /// make the fd readable.
    #[inline]
    pub(crate) fn raise(&self) -> bool {
        !self.flag.swap(true, Ordering::AcqRel)
    }

    /// Clears the flag; call only after draining the fd. Returns whether it was set.
    #[inline]
    pub(crate) fn clear(&self) -> bool {
        self.flag.swap(false, Ordering::AcqRel)
    }

    /// Whether a wake is pending (a snapshot, for diagnostics and tests).
    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// The OS mechanism under a [`Wakeup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WakeupKind {
    /// A Linux/Android `eventfd(2)`: one fd, an 8-byte counter.
    EventFd,
    /// A non-blocking `pipe(2)`: two fds, the read end is registered.
    Pipe,
}

enum Fds {
    #[cfg(ioman_eventfd)]
    EventFd(OwnedFd),
    Pipe {
        read: OwnedFd,
        write: OwnedFd,
    },
}

/// A readable fd that any thread can make ready: register [`as_fd`](AsFd::as_fd) with a
/// poller for level-triggered read interest, call [`wake`](Wakeup::wake) from anywhere and
/// [`reset`](Wakeup::reset) on the loop after the fd was reported readable.
///
/// `wake` is one atomic swap when a wake is already pending, and one `write(2)` otherwise:
/// one syscall per batch of wakes, not per wake ([`syscalls`](Wakeup::syscalls) counts
/// them).
///
/// The fd is non-blocking and close-on-exec (both ends of a pipe). Dropping the `Wakeup`
/// closes it; deregister it from the poller first.
pub struct Wakeup {
    pending: Pending,
    syscalls: AtomicU64,
    fds: Fds,
}

impl Wakeup {
    /// Creates the platform's preferred wakeup: an eventfd on Linux/Android, a pipe
    /// elsewhere.
    ///
    /// On Linux/Android the pipe is also the run-time fallback when the kernel refuses
    /// eventfd as *unsupported or forbidden*: `ENOSYS` (no `eventfd2`), `EINVAL` (flags not
    /// understood by a pre-2.6.27 kernel) or `EPERM` (a seccomp filter). Resource errors
    /// (`EMFILE`, `ENFILE`, `ENOMEM`) are returned as they are: a pipe needs two fds and
    /// would fail the same way.
    ///
    /// # Errors
    ///
    /// The OS error of `eventfd(2)` (not one of the fallback cases) or `pipe2(2)`: for
    /// example `EMFILE`/`ENFILE` (too many open files: std has no stable `ErrorKind` for
    /// these, so match on `raw_os_error()`) or `ENOMEM` (kind `OutOfMemory`).
    pub fn new() -> io::Result<Wakeup> {
        #[cfg(ioman_eventfd)]
        {
            Wakeup::new_with_eventfd(sys::eventfd::new)
        }
        #[cfg(not(ioman_eventfd))]
        {
            Wakeup::pipe()
        }
    }

    /// The fallback decision of [`Wakeup::new`] with an injectable eventfd constructor, so
    /// tests can exercise the real fallback path. Not part of the stable API.
    #[doc(hidden)]
    #[cfg(ioman_eventfd)]
    pub fn new_with_eventfd(create: impl FnOnce() -> io::Result<OwnedFd>) -> io::Result<Wakeup> {
        match create() {
            Ok(fd) => Ok(Wakeup::from_fds(Fds::EventFd(fd))),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EINVAL | libc::EPERM)
                ) =>
            {
                Wakeup::pipe()
            }
            Err(e) => Err(e),
        }
    }

    /// Creates an eventfd wakeup, with no fallback.
    ///
    /// # Errors
    ///
    /// The OS error of `eventfd(2)`: `EMFILE`/`ENFILE` (no stable `ErrorKind`: check `raw_os_error()`), `ENOMEM` (kind
    /// `OutOfMemory`), `ENOSYS` (kind `Unsupported`) or `EINVAL` (kind `InvalidInput`) on
    /// kernels before 2.6.27.
    #[cfg(ioman_eventfd)]
    #[cfg_attr(docsrs, doc(cfg(any(target_os = "linux", target_os = "android"))))]
    pub fn eventfd() -> io::Result<Wakeup> {
        sys::eventfd::new().map(|fd| Wakeup::from_fds(Fds::EventFd(fd)))
    }

    /// Creates a pipe wakeup (available everywhere, so it can be tested on Linux too).
    ///
    /// # Errors
    ///
    /// The OS error of `pipe2(2)` (or `pipe`/`fcntl`): `EMFILE`/`ENFILE` (no stable `ErrorKind`: check `raw_os_error()`).
    pub fn pipe() -> io::Result<Wakeup> {
        let (read, write) = sys::pipe::new()?;
        Ok(Wakeup::from_fds(Fds::Pipe { read, write }))
    }

    fn from_fds(fds: Fds) -> Wakeup {
        Wakeup {
            pending: Pending::new(false),
            syscalls: AtomicU64::new(0),
            fds,
        }
    }

    /// The mechanism in use.
    pub fn kind(&self) -> WakeupKind {
        match self.fds {
            #[cfg(ioman_eventfd)]
            Fds::EventFd(_) => WakeupKind::EventFd,
            Fds::Pipe { .. } => WakeupKind::Pipe,
        }
    }

    fn write_fd(&self) -> BorrowedFd<'_> {
        match &self.fds {
            #[cfg(ioman_eventfd)]
            Fds::EventFd(fd) => fd.as_fd(),
            Fds::Pipe { write, .. } => write.as_fd(),
        }
    }

    /// Makes the fd readable, from any thread.
    ///
    /// When a wake is already pending this is one atomic swap and no syscall. Otherwise it
    /// is one `write(2)`: `EINTR` is retried, and a full fd (`EAGAIN`: eventfd counter at its
    /// maximum, or a full pipe, which only a writer outside this type can cause) is drained
    /// and written again, as mio's waker does, so the write that makes the fd readable is
    /// this wake's own.
    ///
    /// Guarantee: all memory effects of the calling thread before `wake` are visible to the
    /// loop after its next [`reset`](Wakeup::reset) that follows this wake, or else the fd
    /// is (or becomes) readable again, so the loop will wake and reset once more.
    ///
    /// # Errors
    ///
    /// Only an unexpected `write(2)` or `read(2)` failure (none is known to be possible on
    /// an fd this value owns). The flag is then cleared so that the next `wake` retries the
    /// write; a wake that raced with the failed one may have been coalesced into it and
    /// lost.
    #[inline]
    pub fn wake(&self) -> io::Result<()> {
        if !self.pending.raise() {
            return Ok(());
        }
        let res = self.write_fd_once().and_then(|written| {
            if written {
                return Ok(());
            }
            // Full: drain, then write again. A second `EAGAIN` means another writer filled
            // the fd in between; it is readable then, which is all a wake needs.
            self.drain_fd()?;
            self.write_fd_once().map(drop)
        });
        if res.is_err() {
            self.pending.clear();
        }
        res
    }

    /// One write to the fd; `false` if it was full. Counted in [`syscalls`](Self::syscalls).
    fn write_fd_once(&self) -> io::Result<bool> {
        self.syscalls.fetch_add(1, Ordering::Relaxed);
        match &self.fds {
            #[cfg(ioman_eventfd)]
            Fds::EventFd(fd) => sys::eventfd::notify(fd.as_fd()),
            Fds::Pipe { write, .. } => sys::pipe::notify(write.as_fd()),
        }
    }

    fn drain_fd(&self) -> io::Result<()> {
        match &self.fds {
            #[cfg(ioman_eventfd)]
            Fds::EventFd(fd) => sys::eventfd::drain(fd.as_fd()),
            Fds::Pipe { read, .. } => sys::pipe::drain(read.as_fd()),
        }
    }

    /// Loop side: drains the fd, **then** clears the pending flag.
    ///
    /// Call it after the poller reported the fd readable (calling it at any other time is
    /// harmless), and *before* looking at the work the wakers published. Contract: for every
    /// [`wake`](Wakeup::wake) call W, either
    ///
    /// * W's swap of the flag came before this reset's clear, and then everything the waking
    ///   thread did before W happens-before everything the loop does after `reset` returns;
    ///   or
    /// * W came after the clear, saw the flag clear and writes the fd, which is then (or
    ///   soon) readable again, so the poller reports it on the next iteration.
    ///
    /// Draining first is what makes this hold: clearing first would let a wake set the flag
    /// and write between the clear and the drain, the drain would eat that write, and every
    /// later wake would see the flag set and skip its write, leaving the loop asleep.
    ///
    /// A wake can make the fd readable after its work was already seen (it wrote just
    /// before the clear): the loop then has one spurious iteration, never a missed one.
    ///
    /// # Errors
    ///
    /// Only an unexpected `read(2)` failure; the flag is left set and the fd stays readable,
    /// so the loop retries on its next iteration.
    pub fn reset(&self) -> io::Result<()> {
        self.drain_fd()?;
        self.pending.clear();
        Ok(())
    }

    /// Whether `fd` is one of this wakeup's own fds (the readable end, and the write end of
    /// a pipe), so that an event manager can refuse a stale fd number that names one.
    pub fn owns_fd(&self, fd: RawFd) -> bool {
        match &self.fds {
            #[cfg(ioman_eventfd)]
            Fds::EventFd(e) => e.as_raw_fd() == fd,
            Fds::Pipe { read, write } => read.as_raw_fd() == fd || write.as_raw_fd() == fd,
        }
    }

    /// Whether a wake is pending: set by [`wake`](Wakeup::wake), cleared by
    /// [`reset`](Wakeup::reset). A snapshot; other threads may change it at once.
    pub fn is_pending(&self) -> bool {
        self.pending.is_set()
    }

    /// How many `write(2)` calls [`wake`](Wakeup::wake) has made so far (a relaxed counter,
    /// for tests and benchmarks of coalescing).
    pub fn syscalls(&self) -> u64 {
        self.syscalls.load(Ordering::Relaxed)
    }

    /// Test hook: fills the fd (eventfd counter at its maximum, or pipe buffer full) without
    /// touching the pending flag, so the next uncoalesced `wake` meets `EAGAIN`. Returns the
    /// number of bytes written. Not part of the stable API.
    #[doc(hidden)]
    pub fn fill_for_test(&self) -> io::Result<usize> {
        match &self.fds {
            #[cfg(ioman_eventfd)]
            Fds::EventFd(fd) => sys::eventfd::fill(fd.as_fd()),
            Fds::Pipe { write, .. } => sys::pipe::fill(write.as_fd()),
        }
    }
}

impl AsFd for Wakeup {
    /// The readable end: the eventfd, or the read end of the pipe.
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.fds {
            #[cfg(ioman_eventfd)]
            Fds::EventFd(fd) => fd.as_fd(),
            Fds::Pipe { read, .. } => read.as_fd(),
        }
    }
}

impl AsRawFd for Wakeup {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wakeup")
            .field("kind", &self.kind())
            .field("fd", &self.as_raw_fd())
            .field("write_fd", &self.write_fd().as_raw_fd())
            .field("pending", &self.is_pending())
            .field("syscalls", &self.syscalls())
            .finish()
    }
}
