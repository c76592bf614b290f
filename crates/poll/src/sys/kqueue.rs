//! kqueue(2): macOS, iOS, FreeBSD, NetBSD, OpenBSD, DragonFly.
//!
//! Compiled and linted in CI for macOS (arm64, x86_64), FreeBSD, NetBSD and OpenBSD, tests
//! included, but never run: CI and the development machines run Linux only. It is written
//! against the same conformance suite (`conformance_tests!`) as `Epoll`, which runs it on
//! the first machine that has kqueue.
//!
//! One `struct kevent` per filter (`EVFILT_READ`, `EVFILT_WRITE`), `ident` = fd,
//! `udata` = key. kqueue accepts `EV_ADD` twice and has no "not registered" error for a whole
//! fd, so a small table of registrations gives `AlreadyExists` / `NotFound` and says which
//! filters to delete when the interest shrinks. Changes are submitted with `EV_RECEIPT`, so
//! each comes back with its own error instead of one error for the whole changelist.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::ptr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::sys::{timespec, Deadline};
use crate::{Backend, Capabilities, Event, Events, Interest, Mode, Readiness};

/// The kqueue backend: a kqueue fd plus the table of registrations.
///
/// Changes apply immediately from the calling thread (one `kevent` call each), so a blocked
/// `wait` sees them. `Mode::OneShot` is `EV_ONESHOT` per filter and a re-arm is one
/// `kevent` call with `EV_ADD|EV_ONESHOT`; `Mode::Edge` is `EV_CLEAR`. `EV_EOF` is reported
/// as [`Readiness::HANGUP`] and `EV_ERROR` as [`Readiness::ERROR`]. The read and write
/// filters of one fd are separate kernel events: when they come back next to each other they
/// are merged into one [`Event`], otherwise one fd can be reported twice in one wait.
///
/// Never run: CI compiles and lints it (tests included) for macOS, FreeBSD, NetBSD and
/// OpenBSD, but runs Linux only. It is written against the same conformance suite as
/// `Epoll`.
///
/// # Examples
///
/// ```
/// # #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd",
/// #           target_os = "netbsd", target_os = "openbsd", target_os = "dragonfly"))]
/// # {
/// use ioman_poll::{Backend, Events, Interest, Kqueue, Mode};
/// use std::io::Write;
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
///
/// let kq = Kqueue::new()?;
/// let (mut a, b) = UnixStream::pair()?;
/// kq.register(&b, 9, Interest::READ, Mode::Level)?;
/// a.write_all(b"ping")?;
/// let mut events = Events::default();
/// assert_eq!(kq.wait(&mut events, Some(Duration::from_secs(5)))?, 1);
/// assert_eq!(events.as_slice()[0].key(), 9);
/// kq.deregister(&b)?;
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Kqueue {
    kq: RawFd,
    /// The process that created the kqueue. A kqueue is not inherited by a forked child, so
    /// the child must not close "the same number": it may be an unrelated fd by then
    /// (GHC #24672, <https://gitlab.haskell.org/ghc/ghc/-/issues/24672>).
    pid: libc::pid_t,
    registry: Mutex<HashMap<RawFd, (u32, Interest, Mode)>>,
}

impl Kqueue {
    /// Creates a kqueue (close-on-exec).
    ///
    /// # Errors
    ///
    /// The OS error of `kqueue` or `fcntl`: `EMFILE`, `ENFILE`, `ENOMEM`.
    pub fn new() -> io::Result<Kqueue> {
        // SAFETY: `kqueue` takes no argument and returns a new fd or -1.
        let kq = unsafe { syscall!(kqueue()) }?;
        // SAFETY: `getpid` cannot fail.
        let pid = unsafe { libc::getpid() };
        let kqueue = Kqueue {
            kq,
            pid,
            registry: Mutex::new(HashMap::new()),
        };
        // kqueue1(O_CLOEXEC) is not on every target (macOS lacks it): set the flag after.
        // SAFETY: `kq` is the fd just created; F_SETFD only sets its flags.
        unsafe { syscall!(fcntl(kq, libc::F_SETFD, libc::FD_CLOEXEC)) }?;
        Ok(kqueue)
    }

    /// Submits `changes` (all with `EV_RECEIPT`) and returns the first per-change error,
    /// skipping `ENOENT` on deletes when `ignore_enoent` is set.
    fn apply(&self, changes: &mut [libc::kevent], ignore_enoent: bool) -> io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let zero = timespec(Duration::ZERO);
        let ptr = changes.as_mut_ptr();
        // SAFETY: `ptr` points to `changes.len()` initialised kevents, read as the changelist
        // and overwritten as the receipt list (allowed: kevent(2) reads all changes before
        // writing any result); `zero` outlives the call.
        unsafe {
            syscall!(kevent(
                self.kq,
                ptr,
                changes.len() as _,
                ptr,
                changes.len() as _,
                &zero
            ))
        }?;
        for ch in changes.iter() {
            // With EV_RECEIPT every change comes back with EV_ERROR set and `data` holding
            // its errno, 0 on success (kevent(2), EV_RECEIPT).
            let errno = ch.data as i32;
            if ch.flags & libc::EV_ERROR != 0
                && errno != 0
                && !(ignore_enoent && errno == libc::ENOENT)
            {
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }
}

/// One of the two filters a registration uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    Read,
    Write,
}

/// The filters an interest needs.
fn filters(interest: Interest) -> impl Iterator<Item = Filter> {
    let read = interest.is_readable().then_some(Filter::Read);
    let write = interest.is_writable().then_some(Filter::Write);
    read.into_iter().chain(write)
}

/// A change record: add `filter` in `mode`, or delete it when `mode` is `None`.
fn change(fd: RawFd, filter: Filter, mode: Option<Mode>, key: u32) -> libc::kevent {
    // SAFETY: `kevent` is plain integers and a pointer; all-zero is valid (and fills the
    // FreeBSD 12+ `ext` array and any padding).
    let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
    ev.ident = fd as _;
    // The field types differ between the BSDs (NetBSD uses u32); the libc constants have the
    // matching type on each, so no cast is needed.
    ev.filter = match filter {
        Filter::Read => libc::EVFILT_READ,
        Filter::Write => libc::EVFILT_WRITE,
    };
    ev.flags = libc::EV_RECEIPT
        | match mode {
            None => libc::EV_DELETE,
            Some(Mode::Level) => libc::EV_ADD,
            Some(Mode::OneShot) => libc::EV_ADD | libc::EV_ONESHOT,
            Some(Mode::Edge) => libc::EV_ADD | libc::EV_CLEAR,
        };
    // `udata` is a pointer on most targets and an `intptr_t` on NetBSD; it carries the key.
    ev.udata = key as usize as _;
    ev
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each update is one map operation, so a poisoned table is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// At most four changes: delete two filters, add two.
type Changes = ([libc::kevent; 4], usize);

fn push(changes: &mut Changes, ev: libc::kevent) {
    changes.0[changes.1] = ev;
    changes.1 += 1;
}

fn empty_changes() -> Changes {
    // SAFETY: as in `change`, all-zero kevents are valid; only the first `.1` are submitted.
    (unsafe { std::mem::zeroed() }, 0)
}

impl Backend for Kqueue {
    /// `EV_ADD` for each filter of `interest`.
    ///
    /// # Errors
    ///
    /// [`AlreadyExists`](io::ErrorKind::AlreadyExists) if registered; `EBADF`;
    /// `EINVAL`/`ENOTSUP` for a file type kqueue cannot watch; `ENOMEM`.
    fn register_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        if fd == self.kq {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a kqueue cannot watch its own fd",
            ));
        }
        let mut reg = lock(&self.registry);
        if reg.contains_key(&fd) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let mut ch = empty_changes();
        for f in filters(interest) {
            push(&mut ch, change(fd, f, Some(mode), key));
        }
        if let Err(e) = self.apply(&mut ch.0[..ch.1], false) {
            // Undo a half-applied registration (the read filter added, the write one
            // refused) so the table and the kernel agree; ENOENT here is expected.
            let mut undo = empty_changes();
            for f in filters(interest) {
                push(&mut undo, change(fd, f, None, key));
            }
            let _ = self.apply(&mut undo.0[..undo.1], true);
            return Err(e);
        }
        reg.insert(fd, (key, interest, mode));
        Ok(())
    }

    /// One `kevent` call: `EV_DELETE` for filters no longer wanted (and for all of them when
    /// the mode changes, so no `EV_CLEAR`/`EV_ONESHOT` flag lingers), then `EV_ADD` for the
    /// new interest, which also re-arms a fired one-shot filter.
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) if not registered; otherwise as `register`.
    fn modify_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        let mut reg = lock(&self.registry);
        let Some(&(_, old_interest, old_mode)) = reg.get(&fd) else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        let mut ch = empty_changes();
        for f in filters(old_interest) {
            if old_mode != mode || !filters(interest).any(|g| g == f) {
                push(&mut ch, change(fd, f, None, key));
            }
        }
        for f in filters(interest) {
            push(&mut ch, change(fd, f, Some(mode), key));
        }
        // ENOENT on a delete: a fired EV_ONESHOT filter is already gone (GHC hazard H2).
        self.apply(&mut ch.0[..ch.1], true)?;
        reg.insert(fd, (key, interest, mode));
        Ok(())
    }

    /// `EV_DELETE` for each filter.
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) if not registered; `EBADF` if `fd` was closed
    /// (closing it already removed its filters; the entry is dropped all the same).
    fn deregister_raw(&self, fd: RawFd) -> io::Result<()> {
        let mut reg = lock(&self.registry);
        let Some((key, interest, _)) = reg.remove(&fd) else {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        };
        let mut ch = empty_changes();
        for f in filters(interest) {
            push(&mut ch, change(fd, f, None, key));
        }
        // ENOENT: a fired EV_ONESHOT filter is already gone (GHC hazard H2).
        self.apply(&mut ch.0[..ch.1], true)
    }

    /// `kevent` into a scratch list of kevents, then one entry of `events` per fd: the read
    /// and write filters of one fd, adjacent in the list, are merged into one event.
    fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = Deadline::new(timeout);
        let cap = events.capacity().min(i32::MAX as usize);
        let mut buf = std::mem::take(&mut events.kevents.0);
        buf.clear();
        buf.reserve(cap);
        let res = loop {
            let ts = deadline.remaining().map(timespec);
            let tsp = ts
                .as_ref()
                .map_or(ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `buf` has room for `cap` kevents (its capacity); no changelist; `tsp`
            // is null (wait forever) or points to `ts`, which outlives the call.
            let r = unsafe {
                syscall!(kevent(
                    self.kq,
                    ptr::null(),
                    0,
                    buf.as_mut_ptr(),
                    cap as _,
                    tsp
                ))
            };
            match r {
                // A slice of a wait longer than MAX_WAIT ended: wait for the time left.
                Ok(0) if deadline.has_time_left() => continue,
                Ok(n) => break Ok(n as usize),
                // kevent(2): EINTR "A signal was delivered before the timeout expired and
                // before any events were placed on the kqueue for return". Retry.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if deadline.has_time_left() {
                        continue;
                    }
                    break Ok(0);
                }
                Err(e) => break Err(e),
            }
        };
        events.clear();
        if let Ok(n) = res {
            // SAFETY: the kernel initialised the first `n <= cap` entries.
            unsafe { buf.set_len(n.min(buf.capacity())) };
            for ev in &buf {
                let fd = ev.ident as RawFd;
                let key = ev.udata as usize as u32;
                let mut r = Readiness::EMPTY;
                if ev.filter == libc::EVFILT_READ {
                    r |= Readiness::READABLE;
                } else if ev.filter == libc::EVFILT_WRITE {
                    r |= Readiness::WRITABLE;
                }
                if ev.flags & libc::EV_EOF != 0 {
                    r |= Readiness::HANGUP;
                }
                if ev.flags & libc::EV_ERROR != 0 {
                    r |= Readiness::ERROR;
                }
                // The read and write filters of one fd arrive as two kevents: merge them
                // when adjacent.
                match events.list.last_mut() {
                    Some(last) if last.fd() == fd && last.key() == key => {
                        *last = Event::new(fd, key, last.readiness() | r);
                    }
                    _ => {
                        events.push(Event::new(fd, key, r));
                    }
                }
            }
            events.grow_if_full();
        }
        events.kevents.0 = buf;
        res.map(|_| events.len())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_edge(true)
            .with_live_modify(true)
            .with_timeout_resolution(Duration::from_nanos(1))
    }
}

impl Drop for Kqueue {
    fn drop(&mut self) {
        // SAFETY: `getpid` cannot fail.
        if unsafe { libc::getpid() } == self.pid {
            // SAFETY: `self.kq` is the kqueue this process created and nothing else closes
            // it. A failing close has nothing left to clean up.
            let _ = unsafe { syscall!(close(self.kq)) };
        }
    }
}

impl AsRawFd for Kqueue {
    fn as_raw_fd(&self) -> RawFd {
        self.kq
    }
}

impl AsFd for Kqueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `self.kq` stays open as long as `self` lives (closed only in Drop).
        unsafe { BorrowedFd::borrow_raw(self.kq) }
    }
}

impl fmt::Debug for Kqueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kqueue")
            .field("kq", &self.kq)
            .field("pid", &self.pid)
            .finish()
    }
}

/// The kevent scratch buffer kept in [`Events`]. `libc::kevent` holds a raw `udata` pointer,
/// which would make `Events` neither `Send` nor `Sync`; this backend only ever stores integer
/// keys there.
#[derive(Default, Clone)]
pub(crate) struct KeventBuf(pub(crate) Vec<libc::kevent>);

// SAFETY: the only pointer inside is `udata`, which holds an integer key and is never
// dereferenced, so moving or sharing the buffer between threads is sound.
unsafe impl Send for KeventBuf {}
// SAFETY: as above; `&KeventBuf` gives no access that could race.
unsafe impl Sync for KeventBuf {}

impl std::fmt::Debug for KeventBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeventBuf({} entries)", self.0.len())
    }
}
