//! Readiness backends — epoll, kqueue and poll(2) — behind one [`Backend`] trait, after GHC's
//! event-manager backends.
//!
//! `ioman-poll` is the bottom brick of ioman: it asks the kernel which file descriptors are
//! ready and nothing else. It is usable on its own, the way mio or polling are.
//!
//! # Main types
//!
//! - [`Backend`]: `register` / `modify` / `deregister` / `poll`, callable through `&self` from
//!   any thread (GHC's `Backend` record: `modifyFd`, `modifyFdOnce`, `poll`, `delete`).
//! - [`Interest`] (what is asked: [`READ`](Interest::READ), [`WRITE`](Interest::WRITE)),
//!   [`Mode`] (level, oneshot, edge), [`Readiness`] (what came back), [`Event`] and the reusable
//!   [`Events`] buffer.
//! - [`Capabilities`]: what a backend supports and whether a change made from another thread
//!   reaches a `poll` already blocked.
//! - Backends: `Epoll` (Linux, Android), `Kqueue` (macOS, iOS, the BSDs), [`Poll`] (poll(2),
//!   every Unix), and [`DefaultBackend`], the best one for the target.
//!
//! | target | `DefaultBackend` | also compiled |
//! |---|---|---|
//! | Linux, Android | `Epoll` | `Poll` |
//! | macOS, iOS, FreeBSD, NetBSD, OpenBSD, DragonFly | `Kqueue` | `Poll` |
//! | other Unix | `Poll` | |
//!
//! What has been run, and what only compiled: the conformance suite runs against `Epoll` and
//! `Poll` in CI on Linux x86_64 and i686 (32-bit `time_t` and `usize`). For macOS (arm64,
//! x86_64), FreeBSD, NetBSD and OpenBSD, CI type-checks and lints the crate with its tests,
//! and for illumos (`Poll` only) too, but runs nothing: **`Kqueue` has never run**. Android,
//! iOS and DragonFly are written for and not checked.
//!
//! # Keys
//!
//! Every registration carries a caller-chosen 32-bit key that comes back with each of its
//! events, so an event for a reused fd number can be told from a live one: give each
//! registration a fresh key (a generation counter) and drop events whose key is stale. The key
//! is 32 bits because epoll's 64-bit user data carries both the fd and the key, so an event
//! names its fd without any table lookup.
//!
//! # Semantics shared by every backend
//!
//! - `Mode::Oneshot`: after one event the registration is disarmed but stays known to the
//!   kernel; [`Backend::modify`] re-arms it with one syscall (`EPOLL_CTL_MOD`,
//!   `EV_ADD|EV_ONESHOT`). poll(2) emulates it by clearing the interest after reporting.
//! - `Mode::Edge`: `EPOLLET` / `EV_CLEAR`; poll(2) refuses it with
//!   [`ErrorKind::Unsupported`](std::io::ErrorKind::Unsupported).
//! - Timeouts: `None` blocks, `Some(Duration::ZERO)` never blocks, any other timeout is never
//!   cut short: sub-millisecond timeouts round up, `epoll_pwait2` gives nanosecond resolution
//!   where the kernel has it, and timeouts longer than the syscall can express are split.
//! - `EINTR` never reaches the caller: `poll` retries with the time left.
//! - Hang-up and error conditions are reported whatever the interest; a closed fd left in a
//!   poll(2) set (`POLLNVAL`) is reported as an error on that fd.
//! - Errors have documented kinds: registering an fd twice gives
//!   [`AlreadyExists`](std::io::ErrorKind::AlreadyExists); modifying or deregistering an fd
//!   that is not registered gives [`NotFound`](std::io::ErrorKind::NotFound); a closed or
//!   invalid fd gives the OS error `EBADF`; a file type the mechanism cannot watch (epoll and
//!   regular files) gives [`Unsupported`](std::io::ErrorKind::Unsupported).
//!
//! # Threading
//!
//! All methods take `&self`. Any number of threads may register, modify and deregister while
//! one thread is blocked in [`Backend::poll`]. epoll and kqueue apply changes immediately, so
//! a blocked `poll` sees them; poll(2) applies them at its next call, which
//! [`Capabilities::live_modify`] reports as `false`, so the caller knows it must wake the
//! polling thread (for example with `ioman-wakeup`). Only one thread should poll a backend at
//! a time; a second concurrent `poll` is not an error but waits for the first on poll(2).
//!
//! # Examples
//!
//! ```
//! use ioman_poll::{Backend, DefaultBackend, Events, Interest, Mode};
//! use std::io::Write;
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//!
//! let backend = DefaultBackend::new()?;
//! let (mut a, b) = UnixStream::pair()?;
//! backend.register(b.as_raw_fd(), 7, Interest::READ, Mode::Oneshot)?;
//!
//! a.write_all(b"x")?;
//! let mut events = Events::with_capacity(64);
//! let n = backend.poll(&mut events, Some(Duration::from_secs(5)))?;
//! assert_eq!(n, 1);
//! let ev = events.iter().next().unwrap();
//! assert_eq!((ev.fd(), ev.key()), (b.as_raw_fd(), 7));
//! assert!(ev.readiness().is_readable());
//!
//! // Oneshot: disarmed until re-armed, so nothing more is reported...
//! assert_eq!(backend.poll(&mut events, Some(Duration::ZERO))?, 0);
//! // ...until one `modify` re-arms it.
//! backend.modify(b.as_raw_fd(), 7, Interest::READ, Mode::Oneshot)?;
//! assert_eq!(backend.poll(&mut events, Some(Duration::ZERO))?, 1);
//! backend.deregister(b.as_raw_fd())?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::io;
use std::ops::{BitOr, BitOrAssign};
use std::os::fd::RawFd;
use std::time::Duration;

mod sys;

// `doc(cfg)` goes on the re-exports: rustdoc shows an inlined item with the re-export's
// attributes, so the platform note on docs.rs comes from here.
#[cfg(ioman_epoll)]
#[cfg_attr(docsrs, doc(cfg(any(target_os = "linux", target_os = "android"))))]
pub use sys::epoll::Epoll;
#[cfg(ioman_kqueue)]
#[cfg_attr(
    docsrs,
    doc(cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    )))
)]
pub use sys::kqueue::Kqueue;
pub use sys::poll::Poll;

/// The best backend for the target: here [`Epoll`], as on every Linux and Android (`Kqueue`
/// on macOS, iOS and the BSDs, [`Poll`] on other Unix systems).
#[cfg(ioman_epoll)]
pub type DefaultBackend = Epoll;
/// The best backend for the target: here [`Kqueue`], as on macOS, iOS and the BSDs (`Epoll`
/// on Linux and Android, [`Poll`] on other Unix systems).
#[cfg(ioman_kqueue)]
pub type DefaultBackend = Kqueue;
/// The best backend for the target: here [`Poll`], as on every Unix system without epoll or
/// kqueue (`Epoll` on Linux and Android, `Kqueue` on macOS, iOS and the BSDs).
#[cfg(all(unix, not(any(ioman_epoll, ioman_kqueue))))]
pub type DefaultBackend = Poll;
#[cfg(not(unix))]
compile_error!("ioman-poll supports Unix targets only (epoll, kqueue or poll(2))");

/// What a registration asks to be told about: readability, writability, or both.
///
/// Combine with `|`. An interest is never empty: hang-up and error conditions are reported
/// whatever the interest, so "nothing" is expressed by deregistering.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Readable: data (or end of file, or a pending connection) can be read.
    pub const READ: Interest = Interest(1);
    /// Writable: a write would not block.
    pub const WRITE: Interest = Interest(2);
    /// Both readable and writable.
    pub const BOTH: Interest = Interest(3);

    /// Whether readability is asked for.
    pub const fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether writability is asked for.
    pub const fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }

    /// The union of two interests.
    pub const fn add(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }

    /// The interest with `other` removed, or `None` if nothing would be left.
    pub const fn remove(self, other: Interest) -> Option<Interest> {
        let bits = self.0 & !other.0;
        if bits == 0 {
            None
        } else {
            Some(Interest(bits))
        }
    }
}

/// `|` and `|=` on a bit-set type, by its union method.
macro_rules! bit_or {
    ($t:ident, $union:ident) => {
        impl BitOr for $t {
            type Output = $t;
            fn bitor(self, rhs: $t) -> $t {
                self.$union(rhs)
            }
        }

        impl BitOrAssign for $t {
            fn bitor_assign(&mut self, rhs: $t) {
                *self = self.$union(rhs);
            }
        }
    };
}

bit_or!(Interest, add);

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_readable(), self.is_writable()) {
            (true, true) => f.write_str("READ | WRITE"),
            (true, false) => f.write_str("READ"),
            _ => f.write_str("WRITE"),
        }
    }
}

/// How long a registration stays armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Reported at every poll while the condition holds (epoll's default, poll(2)).
    Level,
    /// Reported once, then disarmed until [`Backend::modify`] re-arms it; the registration
    /// stays known to the kernel while disarmed (`EPOLLONESHOT`, `EV_ONESHOT`). GHC's
    /// `OneShot` lifetime.
    Oneshot,
    /// Reported when the condition becomes true (`EPOLLET`, `EV_CLEAR`). Not available on
    /// poll(2).
    Edge,
}

/// What a backend reported for one fd: any combination of readable, writable, error and
/// hang-up.
///
/// [`CLOSED`](Readiness::CLOSED) is never produced by a backend: it is what an event manager
/// delivers to the registrations of an fd it closed (GHC's `evtClose`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Readiness(u8);

impl Readiness {
    /// Nothing.
    pub const EMPTY: Readiness = Readiness(0);
    /// The fd is readable (data, end of file, or a pending connection).
    pub const READABLE: Readiness = Readiness(1);
    /// The fd is writable.
    pub const WRITABLE: Readiness = Readiness(2);
    /// An error condition (`EPOLLERR`, `POLLERR`, `POLLNVAL` for a closed fd, `EV_ERROR`).
    pub const ERROR: Readiness = Readiness(4);
    /// Hang-up: the peer closed its end (`EPOLLHUP`, `EPOLLRDHUP`, `POLLHUP`, `EV_EOF`).
    pub const HANGUP: Readiness = Readiness(8);
    /// The fd was closed by its event manager; never produced by a backend.
    pub const CLOSED: Readiness = Readiness(16);

    /// Builds a readiness from its raw bits (as returned by [`Readiness::bits`]); unknown bits
    /// are dropped.
    pub const fn from_bits(bits: u8) -> Readiness {
        Readiness(bits & 31)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether nothing is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the fd is readable.
    pub const fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether the fd is writable.
    pub const fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }

    /// Whether an error condition was reported.
    pub const fn is_error(self) -> bool {
        self.0 & 4 != 0
    }

    /// Whether a hang-up was reported.
    pub const fn is_hangup(self) -> bool {
        self.0 & 8 != 0
    }

    /// Whether the fd was closed by its event manager.
    pub const fn is_closed(self) -> bool {
        self.0 & 16 != 0
    }

    /// Whether this readiness should wake a registration with `interest`: it intersects the
    /// interest, or it is an error, hang-up or close (which wake every registration).
    pub const fn satisfies(self, interest: Interest) -> bool {
        (self.0 & 28 != 0)
            || (interest.is_readable() && self.is_readable())
            || (interest.is_writable() && self.is_writable())
    }

    /// The union of two readinesses.
    pub const fn union(self, other: Readiness) -> Readiness {
        Readiness(self.0 | other.0)
    }
}

bit_or!(Readiness, union);

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 5] = ["READABLE", "WRITABLE", "ERROR", "HANGUP", "CLOSED"];
        if self.0 == 0 {
            return f.write_str("EMPTY");
        }
        let mut first = true;
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// One readiness report: which fd, the key it was registered with, and what it is ready for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    fd: RawFd,
    key: u32,
    readiness: Readiness,
}

impl Event {
    /// Builds an event (for backends written outside this crate, and for tests).
    pub const fn new(fd: RawFd, key: u32, readiness: Readiness) -> Event {
        Event { fd, key, readiness }
    }

    /// The fd the event is about.
    pub const fn fd(&self) -> RawFd {
        self.fd
    }

    /// The key given when the fd was registered or last modified.
    pub const fn key(&self) -> u32 {
        self.key
    }

    /// What the fd is ready for.
    pub const fn readiness(&self) -> Readiness {
        self.readiness
    }
}

/// A reusable buffer of events, filled by [`Backend::poll`].
///
/// Each `poll` replaces the previous contents. The buffer starts at the capacity it was
/// created with (at least 1) and doubles, up to [`Events::MAX_CAPACITY`], after a poll that
/// filled it, so the next poll can return more (GHC's event array does the same).
#[derive(Debug, Clone)]
pub struct Events {
    list: Vec<Event>,
    capacity: usize,
    #[cfg(ioman_epoll)]
    pub(crate) epoll: Vec<libc::epoll_event>,
    #[cfg(ioman_kqueue)]
    pub(crate) kevents: sys::kqueue::KeventBuf,
}

impl Events {
    /// The largest capacity the buffer grows to on its own.
    pub const MAX_CAPACITY: usize = 1 << 16;

    /// A buffer for up to `capacity` events per poll (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        let capacity = capacity.clamp(1, i32::MAX as usize);
        Events {
            list: Vec::with_capacity(capacity),
            capacity,
            #[cfg(ioman_epoll)]
            epoll: Vec::new(),
            #[cfg(ioman_kqueue)]
            kevents: Default::default(),
        }
    }

    /// How many events the next poll may return.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many events the last poll returned.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the last poll returned no event.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The events of the last poll, in the order the kernel reported them.
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.list.iter()
    }

    /// The events of the last poll as a slice.
    pub fn as_slice(&self) -> &[Event] {
        &self.list
    }

    /// Removes every event (the capacity stays).
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// Appends an event; for backends. Returns `false` (and drops the event) when the buffer
    /// is full.
    pub fn push(&mut self, event: Event) -> bool {
        if self.list.len() >= self.capacity {
            return false;
        }
        self.list.push(event);
        true
    }

    /// Called by a backend after a poll: doubles the capacity if the poll filled the buffer.
    pub fn grow_if_full(&mut self) {
        if self.list.len() >= self.capacity && self.capacity < Self::MAX_CAPACITY {
            self.capacity = (self.capacity * 2).min(Self::MAX_CAPACITY);
            self.list.reserve(self.capacity - self.list.len());
        }
    }
}

impl Default for Events {
    /// A buffer of 64 events, GHC's initial size.
    fn default() -> Events {
        Events::with_capacity(64)
    }
}

impl<'a> IntoIterator for &'a Events {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// What a backend supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `Mode::Level` is supported.
    pub level: bool,
    /// `Mode::Oneshot` is supported (natively or emulated).
    pub oneshot: bool,
    /// `Mode::Edge` is supported.
    pub edge: bool,
    /// A `register`, `modify` or `deregister` made from another thread reaches a `poll` that is
    /// already blocked. `false` for poll(2): its caller must wake the polling thread.
    pub live_modify: bool,
    /// The finest timeout the backend honours (timeouts are rounded up to it).
    pub timeout_resolution: Duration,
}

impl Capabilities {
    /// Whether `mode` is supported.
    pub const fn supports(&self, mode: Mode) -> bool {
        match mode {
            Mode::Level => self.level,
            Mode::Oneshot => self.oneshot,
            Mode::Edge => self.edge,
        }
    }
}

/// A readiness backend: GHC's `Backend` record as a trait.
///
/// See the [crate docs](crate) for the semantics every implementation shares; the conformance
/// suite in `crates/poll/tests/` checks them for each backend.
pub trait Backend: Send + Sync {
    /// Starts watching `fd` for `interest` in `mode`; events carry `key`.
    ///
    /// # Errors
    ///
    /// [`AlreadyExists`](io::ErrorKind::AlreadyExists) if `fd` is already registered;
    /// `EBADF` (raw OS error) for a closed or invalid fd; [`Unsupported`](io::ErrorKind::Unsupported)
    /// for a mode the backend lacks or a file type it cannot watch; other OS errors
    /// (`ENOMEM`, `ENOSPC`) as they come.
    fn register(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()>;

    /// Changes the interest, mode or key of a registered fd; re-arms a disarmed oneshot
    /// registration. One syscall on epoll and kqueue.
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) if `fd` is not registered; otherwise as
    /// [`register`](Backend::register).
    fn modify(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()>;

    /// Stops watching `fd`. Call it before closing the fd.
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) if `fd` is not registered; `EBADF` (raw OS error)
    /// if it is no longer open on epoll and kqueue (closing an fd removes it from their sets
    /// already; poll(2) drops the entry and succeeds).
    fn deregister(&self, fd: RawFd) -> io::Result<()>;

    /// Waits until at least one registered fd is ready or `timeout` passes, and fills `events`
    /// (replacing its contents). Returns the number of events.
    ///
    /// `None` blocks until an event; `Some(Duration::ZERO)` returns at once; any other timeout
    /// is never cut short (rounded up to the backend's resolution). An interrupted wait
    /// (`EINTR`) is retried with the time left.
    ///
    /// # Errors
    ///
    /// Only unexpected OS errors (`EBADF` on the poller itself, `EFAULT`); never `EINTR`.
    fn poll(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize>;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;
}

/// `Backend` for smart pointers to a backend, so one can be shared (`Arc<Epoll>`) or chosen
/// at run time (`Box<dyn Backend>`).
macro_rules! forward_backend {
    ($($ptr:ident)::+) => {
        impl<B: Backend + ?Sized> Backend for $($ptr)::+<B> {
            fn register(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
                (**self).register(fd, key, interest, mode)
            }
            fn modify(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
                (**self).modify(fd, key, interest, mode)
            }
            fn deregister(&self, fd: RawFd) -> io::Result<()> {
                (**self).deregister(fd)
            }
            fn poll(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
                (**self).poll(events, timeout)
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
        }
    };
}

forward_backend!(std::sync::Arc);
forward_backend!(Box);

/// The README's examples, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
