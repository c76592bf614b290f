//! Readiness backends — epoll, kqueue and poll(2) — behind one [`Backend`] trait, after GHC's
//! event-manager backends.
//!
//! `ioman-poll` is the bottom brick of ioman: it asks the kernel which file descriptors are
//! ready and nothing else. It is usable on its own, the way mio or polling are.
//!
//! # Examples
//!
//! ```
//! use ioman_poll::{Backend, DefaultBackend, Events, Interest, Mode};
//! use std::io::Write;
//! use std::os::fd::{AsFd, AsRawFd};
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//!
//! let poller = DefaultBackend::new()?;
//! let (mut a, b) = UnixStream::pair()?;
//! // Anything that lends a `BorrowedFd`: `&b` or `b.as_fd()`.
//! poller.register(&b, 7, Interest::READ, Mode::OneShot)?;
//!
//! a.write_all(b"x")?;
//! let mut events = Events::with_capacity(64);
//! assert_eq!(poller.wait(&mut events, Some(Duration::from_secs(5)))?, 1);
//! let ev = events.iter().next().unwrap();
//! assert_eq!((ev.fd(), ev.key()), (b.as_raw_fd(), 7));
//! assert!(ev.readiness().is_readable());
//!
//! // OneShot: disarmed until re-armed, so nothing more is reported...
//! assert_eq!(poller.wait(&mut events, Some(Duration::ZERO))?, 0);
//! // ...until one `modify` re-arms it.
//! poller.modify(b.as_fd(), 7, Interest::READ, Mode::OneShot)?;
//! assert_eq!(poller.wait(&mut events, Some(Duration::ZERO))?, 1);
//! poller.deregister(&b)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Main types
//!
//! - [`Backend`]: [`register`](Backend::register) / [`modify`](Backend::modify) /
//!   [`deregister`](Backend::deregister) / [`wait`](Backend::wait), callable through `&self`
//!   from any thread (GHC's `Backend` record: `modifyFd`, `modifyFdOnce`, `delete`, `poll`).
//! - [`Interest`] (what is asked: [`READ`](Interest::READ), [`WRITE`](Interest::WRITE)),
//!   [`Mode`] (level, one-shot, edge), [`Readiness`] (what came back), [`Event`] and the
//!   reusable [`Events`] buffer, which is the kernel's own buffer read in place.
//! - [`Capabilities`]: what a backend supports and whether a change made from another thread
//!   reaches a `wait` already blocked.
//! - Backends: `Epoll` (Linux, Android), `Kqueue` (macOS, iOS, the BSDs), [`PosixPoll`]
//!   (poll(2), every Unix), and [`DefaultBackend`], the best one for the target.
//! - With the `conformance` feature: `conformance_tests!`, the suite every backend passes,
//!   for a backend written in another crate (see [Writing a backend](#writing-a-backend)).
//!
//! | target | `DefaultBackend` | also compiled |
//! |---|---|---|
//! | Linux, Android | `Epoll` | `PosixPoll` |
//! | macOS, iOS, FreeBSD, NetBSD, OpenBSD, DragonFly | `Kqueue` | `PosixPoll` |
//! | other Unix | `PosixPoll` | |
//!
//! What has been run, and what only compiled: the conformance suite runs against `Epoll` and
//! `PosixPoll` in CI on Linux x86_64 and i686 (32-bit `time_t` and `usize`). For macOS
//! (arm64, x86_64), FreeBSD, NetBSD and OpenBSD, CI type-checks and lints the crate with its
//! tests, and for illumos (`PosixPoll` only) too, but runs nothing: **`Kqueue` has never
//! run**. Android, iOS and DragonFly are written for and not checked.
//!
//! # Names, and mio's
//!
//! "Poll" names the system call only: the crate is `ioman_poll`, the poll(2) backend is
//! [`PosixPoll`] and the blocking call is [`Backend::wait`] (polling's name for it). The
//! value types keep mio's names and mean what mio's mean: [`Interest`] is what a
//! registration asks for (mio's `Interest`), [`Readiness`] what came back, [`Event`] one
//! report with the registration's key (mio's `Event` with its `Token`), [`Events`] the
//! reusable buffer a wait fills (mio's `Events`). A program that uses both crates imports
//! one of them qualified (`use ioman_poll as iop;` then `iop::Events`), as it would for two
//! `Result`s.
//!
//! # I/O safety: one seam, two fronts
//!
//! [`Backend`] is the one trait a backend implements, and it stays usable as
//! `dyn Backend` (`Box<dyn Backend>` chosen at run time, `Arc<dyn Backend>` shared). Its
//! required methods take the fd as a number: [`register_raw`](Backend::register_raw),
//! [`modify_raw`](Backend::modify_raw), [`deregister_raw`](Backend::deregister_raw). They
//! are safe functions, and that is a decision, not an oversight:
//!
//! - Nothing here depends on the fd for memory safety. Unlike Windows IOCP, where the kernel
//!   writes into buffers owned by the registered handle, epoll, kqueue and poll(2) only
//!   report readiness; a wrong number costs a wrong or missing event, never memory.
//! - The kernel validates every number: a closed or never-opened fd is `EBADF`, and a
//!   number reused by another file is told apart by the caller's key, which comes back with
//!   each event (see [Keys](#keys)).
//! - This is mio's choice (`SourceFd` registers any `RawFd` safely), not polling's
//!   (`unsafe fn add`, because polling cannot check that the fd outlives its registration;
//!   neither can we, and it does not matter for the reasons above).
//! - An event manager that tracks fds by number needs that entry: ioman's manager is
//!   `#![forbid(unsafe_code)]` and calls the `_raw` methods.
//!
//! Users of the poller alone get the I/O-safe front, as provided methods of the same trait:
//! [`register`](Backend::register), [`modify`](Backend::modify) and
//! [`deregister`](Backend::deregister) take `impl AsFd`, so `poller.register(&listener, ..)`
//! and `poller.register(listener.as_fd(), ..)` both compile and a bare integer does not.
//! They are bounded by `where Self: Sized`, which keeps the trait dyn-compatible; they work on
//! every concrete backend and on `Box<dyn Backend>` and `Arc<dyn Backend>` through the
//! forwarding impls.
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
//! - `Mode::OneShot`: after one event the registration is disarmed but stays known to the
//!   kernel; [`Backend::modify`] re-arms it with one syscall (`EPOLL_CTL_MOD`,
//!   `EV_ADD|EV_ONESHOT`). poll(2) emulates it by clearing the interest after reporting.
//! - `Mode::Edge`: `EPOLLET` / `EV_CLEAR`; poll(2) refuses it with
//!   [`ErrorKind::Unsupported`](std::io::ErrorKind::Unsupported).
//! - Timeouts: `None` blocks, `Some(Duration::ZERO)` never blocks, any other timeout is never
//!   cut short: sub-millisecond timeouts round up, `epoll_pwait2` gives nanosecond resolution
//!   where the kernel has it, and timeouts longer than the syscall can express are split.
//! - `EINTR` never reaches the caller: `wait` retries with the time left.
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
//! one thread is blocked in [`Backend::wait`]. epoll and kqueue apply changes immediately, so
//! a blocked `wait` sees them; poll(2) applies them at its next call, which
//! [`Capabilities::live_modify`] reports as `false`, so the caller knows it must wake the
//! waiting thread (for example with `ioman-wakeup`). Only one thread should wait on a backend
//! at a time; a second concurrent `wait` is not an error but waits for the first on poll(2).
//!
//! # Writing a backend
//!
//! A backend from another crate (an illumos event-ports backend, a test double that injects
//! faults) implements the five required methods of [`Backend`], describes itself with
//! [`Capabilities::new`] and its `with_*` setters, and fills [`Events`] with
//! [`Events::push`] of [`Event::new`]. With the `conformance` feature it proves itself
//! against the suite the built-in backends pass, from its own `cargo test`:
//!
//! ```toml
//! [dev-dependencies]
//! ioman-poll = { version = "0.1", features = ["conformance"] }
//! ```
//!
//! ```
//! # #[cfg(feature = "conformance")]
//! // tests/conformance.rs: `MyBackend::new` where this says `PosixPoll::new`
//! ioman_poll::conformance_tests!(ioman_poll::PosixPoll::new);
//! ```
//!
//! The macro expands to one `#[test]` per check, so failures are reported per check; checks
//! of optional behaviour read the backend's [`capabilities`](Backend::capabilities) (a
//! backend without edge mode must refuse it, one without `live_modify` is checked to apply
//! changes at the next wait). The suite uses `libc`, which `ioman-poll` depends on already.
//!
//! # Features
//!
//! - `conformance` (off by default): the `conformance` module and the `conformance_tests!`
//!   macro.

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::io;
use std::ops::{BitOr, BitOrAssign};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

mod sys;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

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
pub use sys::poll::PosixPoll;

/// Sets the calling thread's timer slack: how much later than asked the kernel may end this
/// thread's timed waits (`epoll_wait`, `poll`, `nanosleep`), to batch wakeups. Linux's
/// default is 50 µs, which is then most of a timer's lateness; a loop thread that wants its
/// timers on time sets a smaller one (1 ns is the least). [`Duration::ZERO`] restores the
/// thread's default (what it inherited when created); a slack above `i32::MAX` nanoseconds
/// (about 2.1 s, the most [`timer_slack`] can read back) saturates there. The setting is per thread: call it on the thread that waits
/// (`ioman::Builder::timer_slack` does it on a manager's loop thread).
///
/// # Errors
///
/// [`Unsupported`](io::ErrorKind::Unsupported) where there is no such setting (every
/// target but Linux and Android); the `prctl` error otherwise.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[cfg(target_os = "linux")] {
/// ioman_poll::set_timer_slack(Duration::from_nanos(1))?;
/// assert_eq!(ioman_poll::timer_slack()?, Duration::from_nanos(1));
/// ioman_poll::set_timer_slack(Duration::ZERO)?; // back to the default
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn set_timer_slack(slack: Duration) -> io::Result<()> {
    sys::slack::set(slack)
}

/// The calling thread's timer slack (see [`set_timer_slack`]).
///
/// # Errors
///
/// [`Unsupported`](io::ErrorKind::Unsupported) on every target but Linux and Android.
pub fn timer_slack() -> io::Result<Duration> {
    sys::slack::get()
}

/// The best backend for the target: here [`Epoll`], as on every Linux and Android (`Kqueue`
/// on macOS, iOS and the BSDs, [`PosixPoll`] on other Unix systems).
#[cfg(ioman_epoll)]
pub type DefaultBackend = Epoll;
/// The best backend for the target: here [`Kqueue`], as on macOS, iOS and the BSDs (`Epoll`
/// on Linux and Android, [`PosixPoll`] on other Unix systems).
#[cfg(ioman_kqueue)]
pub type DefaultBackend = Kqueue;
/// The best backend for the target: here [`PosixPoll`], as on every Unix system without
/// epoll or kqueue (`Epoll` on Linux and Android, `Kqueue` on macOS, iOS and the BSDs).
#[cfg(all(unix, not(any(ioman_epoll, ioman_kqueue))))]
pub type DefaultBackend = PosixPoll;
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
///
/// `#[non_exhaustive]`: more modes may come (kqueue's `EV_DISPATCH`, epoll's
/// `EPOLLEXCLUSIVE`), so a `match` on a mode needs a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Reported at every wait while the condition holds (epoll's default, poll(2)).
    Level,
    /// Reported once, then disarmed until [`Backend::modify`] re-arms it; the registration
    /// stays known to the kernel while disarmed (`EPOLLONESHOT`, `EV_ONESHOT`). GHC's
    /// `OneShot` lifetime.
    OneShot,
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
///
/// An `Event` is an entry of the kernel's own event buffer, read in place: on Linux it is a
/// `struct epoll_event` exactly as `epoll_wait` wrote it (`#[repr(transparent)]`), and
/// [`fd`](Event::fd), [`key`](Event::key) and [`readiness`](Event::readiness) decode it when
/// called. Nothing is copied or converted per event when the buffer is filled. Other
/// backends write entries of the same layout ([`Event::new`]).
///
/// Equality and hashing compare what the accessors return.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Event(sys::RawEvent);

impl Event {
    /// Builds an event (for backends written outside this crate, and for tests).
    ///
    /// # Examples
    ///
    /// ```
    /// use ioman_poll::{Event, Readiness};
    ///
    /// let ev = Event::new(5, 42, Readiness::READABLE | Readiness::HANGUP);
    /// assert_eq!((ev.fd(), ev.key()), (5, 42));
    /// assert_eq!(ev.readiness(), Readiness::READABLE | Readiness::HANGUP);
    /// ```
    #[inline]
    pub const fn new(fd: RawFd, key: u32, readiness: Readiness) -> Event {
        Event(sys::raw_event(
            ((key as u64) << 32) | fd as u32 as u64,
            readiness,
        ))
    }

    /// The fd the event is about.
    #[inline]
    pub const fn fd(&self) -> RawFd {
        sys::raw_data(&self.0) as u32 as RawFd
    }

    /// The key given when the fd was registered or last modified.
    #[inline]
    pub const fn key(&self) -> u32 {
        (sys::raw_data(&self.0) >> 32) as u32
    }

    /// What the fd is ready for.
    #[inline]
    pub const fn readiness(&self) -> Readiness {
        sys::raw_readiness(&self.0)
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        (self.fd(), self.key(), self.readiness()) == (other.fd(), other.key(), other.readiness())
    }
}

impl Eq for Event {}

impl std::hash::Hash for Event {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.fd(), self.key(), self.readiness()).hash(state);
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("fd", &self.fd())
            .field("key", &self.key())
            .field("readiness", &self.readiness())
            .finish()
    }
}

/// A reusable buffer of events, filled by [`Backend::wait`].
///
/// It is the buffer the kernel writes into (epoll), read in place through [`Event`]; poll(2)
/// and kqueue translate their results into it. Each wait replaces the previous contents.
/// The buffer starts at the capacity it was created with (at least 1) and doubles, up to
/// [`Events::MAX_CAPACITY`], after a wait that filled it, so the next wait can return more
/// (GHC's event array does the same).
#[derive(Debug, Clone)]
pub struct Events {
    /// The entries. On epoll the kernel writes into the spare capacity, which
    /// `Epoll::wait` reserves (at least `capacity`) before each wait.
    list: Vec<Event>,
    capacity: usize,
    #[cfg(ioman_kqueue)]
    kevents: sys::kqueue::KeventBuf,
}

impl Events {
    /// The largest capacity the buffer grows to on its own.
    pub const MAX_CAPACITY: usize = 1 << 16;

    /// A buffer for up to `capacity` events per wait (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        let capacity = capacity.clamp(1, i32::MAX as usize);
        Events {
            list: Vec::with_capacity(capacity),
            capacity,
            #[cfg(ioman_kqueue)]
            kevents: Default::default(),
        }
    }

    /// How many events the next wait may return.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many events the last wait returned.
    #[inline]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the last wait returned no event.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The events of the last wait, in the order the kernel reported them.
    #[inline]
    pub fn iter(&self) -> std::slice::Iter<'_, Event> {
        self.list.iter()
    }

    /// The events of the last wait as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[Event] {
        &self.list
    }

    /// Removes every event (the capacity stays).
    #[inline]
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// Appends an event; for backends written outside this crate (the built-in ones let the
    /// kernel write the buffer, or push as this does). Returns `false` (and drops the
    /// event) when the buffer is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use ioman_poll::{Event, Events, Readiness};
    ///
    /// let mut events = Events::with_capacity(1);
    /// assert!(events.push(Event::new(3, 1, Readiness::WRITABLE)));
    /// assert!(!events.push(Event::new(4, 2, Readiness::WRITABLE)), "full");
    /// events.grow_if_full();
    /// assert_eq!(events.capacity(), 2);
    /// ```
    pub fn push(&mut self, event: Event) -> bool {
        if self.list.len() >= self.capacity {
            return false;
        }
        self.list.push(event);
        true
    }

    /// Called by a backend after a wait: doubles the capacity if the wait filled the buffer.
    #[inline]
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
    #[inline]
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// What a backend supports.
///
/// `#[non_exhaustive]`, so it is built with [`Capabilities::new`] (the least any backend
/// offers) and the `with_*` setters, from any crate:
///
/// ```
/// use ioman_poll::Capabilities;
/// use std::time::Duration;
///
/// // An epoll-like backend: every mode, changes seen by a blocked wait, nanosecond timeouts.
/// const CAPS: Capabilities = Capabilities::new()
///     .with_edge(true)
///     .with_live_modify(true)
///     .with_timeout_resolution(Duration::from_nanos(1));
/// assert!(CAPS.level && CAPS.one_shot && CAPS.edge && CAPS.live_modify);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// `Mode::Level` is supported.
    pub level: bool,
    /// `Mode::OneShot` is supported (natively or emulated).
    pub one_shot: bool,
    /// `Mode::Edge` is supported.
    pub edge: bool,
    /// A `register`, `modify` or `deregister` made from another thread reaches a `wait` that
    /// is already blocked. `false` for poll(2): its caller must wake the waiting thread.
    pub live_modify: bool,
    /// The finest timeout the backend honours (timeouts are rounded up to it).
    pub timeout_resolution: Duration,
}

impl Capabilities {
    /// What every backend offers, and no more: `Mode::Level` and `Mode::OneShot` (which the
    /// conformance suite requires), no `Mode::Edge`, changes applied at the next wait only
    /// (`live_modify: false`), millisecond timeouts. poll(2)'s capabilities; a backend that
    /// does more says so with the `with_*` setters.
    pub const fn new() -> Capabilities {
        Capabilities {
            level: true,
            one_shot: true,
            edge: false,
            live_modify: false,
            timeout_resolution: Duration::from_millis(1),
        }
    }

    /// Sets [`level`](Capabilities::level).
    pub const fn with_level(mut self, yes: bool) -> Capabilities {
        self.level = yes;
        self
    }

    /// Sets [`one_shot`](Capabilities::one_shot).
    pub const fn with_one_shot(mut self, yes: bool) -> Capabilities {
        self.one_shot = yes;
        self
    }

    /// Sets [`edge`](Capabilities::edge).
    pub const fn with_edge(mut self, yes: bool) -> Capabilities {
        self.edge = yes;
        self
    }

    /// Sets [`live_modify`](Capabilities::live_modify).
    pub const fn with_live_modify(mut self, yes: bool) -> Capabilities {
        self.live_modify = yes;
        self
    }

    /// Sets [`timeout_resolution`](Capabilities::timeout_resolution).
    pub const fn with_timeout_resolution(mut self, resolution: Duration) -> Capabilities {
        self.timeout_resolution = resolution;
        self
    }

    /// Whether `mode` is supported.
    pub const fn supports(&self, mode: Mode) -> bool {
        match mode {
            Mode::Level => self.level,
            Mode::OneShot => self.one_shot,
            Mode::Edge => self.edge,
        }
    }
}

impl Default for Capabilities {
    /// [`Capabilities::new`].
    fn default() -> Capabilities {
        Capabilities::new()
    }
}

/// A readiness backend: GHC's `Backend` record as a trait.
///
/// The one seam of the crate, usable as `dyn Backend`. A backend implements the five
/// required methods, which take fds as numbers ([`register_raw`](Backend::register_raw),
/// [`modify_raw`](Backend::modify_raw), [`deregister_raw`](Backend::deregister_raw),
/// [`wait`](Backend::wait), [`capabilities`](Backend::capabilities)); users call the
/// I/O-safe [`register`](Backend::register), [`modify`](Backend::modify) and
/// [`deregister`](Backend::deregister), which take anything that lends a `BorrowedFd`. See
/// the [crate docs](crate#io-safety-one-seam-two-fronts) for why the raw methods are safe,
/// and for the semantics every implementation shares, which the `conformance` feature's
/// suite checks.
///
/// # Examples
///
/// A backend chosen at run time:
///
/// ```
/// use ioman_poll::{Backend, Events, Interest, Mode, PosixPoll};
/// use std::net::TcpListener;
///
/// let poller: Box<dyn Backend> = if std::env::var_os("USE_POLL").is_some() {
///     Box::new(PosixPoll::new()?)
/// } else {
///     Box::new(ioman_poll::DefaultBackend::new()?)
/// };
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// poller.register(&listener, 0, Interest::READ, Mode::Level)?;
/// let mut events = Events::default();
/// assert_eq!(poller.wait(&mut events, Some(std::time::Duration::ZERO))?, 0);
/// poller.deregister(&listener)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Backend: Send + Sync {
    /// Starts watching fd number `fd` for `interest` in `mode`; events carry `key`.
    ///
    /// Safe for any number: the kernel refuses one that is not open, and a number that
    /// names another file than the caller thinks costs events, not memory (see the
    /// [crate docs](crate#io-safety-one-seam-two-fronts)). Users holding the fd call
    /// [`register`](Backend::register).
    ///
    /// # Errors
    ///
    /// [`AlreadyExists`](io::ErrorKind::AlreadyExists) if `fd` is already registered;
    /// `EBADF` (raw OS error) for a closed or invalid fd; [`Unsupported`](io::ErrorKind::Unsupported)
    /// for a mode the backend lacks or a file type it cannot watch; other OS errors
    /// (`ENOMEM`, `ENOSPC`) as they come.
    fn register_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()>;

    /// Changes the interest, mode or key of registered fd number `fd`; re-arms a disarmed
    /// one-shot registration. One syscall on epoll and kqueue.
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) if `fd` is not registered; otherwise as
    /// [`register_raw`](Backend::register_raw).
    fn modify_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()>;

    /// Stops watching fd number `fd`. Call it before closing the fd.
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) if `fd` is not registered; `EBADF` (raw OS error)
    /// if it is no longer open on epoll and kqueue (closing an fd removes it from their sets
    /// already; poll(2) drops the entry and succeeds).
    fn deregister_raw(&self, fd: RawFd) -> io::Result<()>;

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
    fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize>;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Starts watching `fd` (anything that lends a `BorrowedFd`: `&TcpStream`,
    /// `stream.as_fd()`, `&OwnedFd`) for `interest` in `mode`; events carry `key`.
    ///
    /// [`register_raw`](Backend::register_raw) with the fd's number. The registration does
    /// not keep the borrow: [`deregister`](Backend::deregister) it before the fd is closed.
    ///
    /// # Errors
    ///
    /// As [`register_raw`](Backend::register_raw).
    ///
    /// # Examples
    ///
    /// ```
    /// use ioman_poll::{Backend, DefaultBackend, Interest, Mode};
    /// use std::net::TcpListener;
    /// use std::os::fd::AsFd;
    ///
    /// let poller = DefaultBackend::new()?;
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// poller.register(&listener, 1, Interest::READ, Mode::Level)?;
    /// poller.modify(listener.as_fd(), 2, Interest::READ, Mode::OneShot)?;
    /// poller.deregister(&listener)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// A bare number is not an fd here (that is [`register_raw`](Backend::register_raw)):
    ///
    /// ```compile_fail
    /// use ioman_poll::{Backend, DefaultBackend, Interest, Mode};
    ///
    /// let poller = DefaultBackend::new()?;
    /// poller.register(0, 1, Interest::READ, Mode::Level)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[inline]
    fn register(&self, fd: impl AsFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()>
    where
        Self: Sized,
    {
        self.register_raw(fd.as_fd().as_raw_fd(), key, interest, mode)
    }

    /// Changes the interest, mode or key of a registered fd; re-arms a disarmed one-shot
    /// registration. [`modify_raw`](Backend::modify_raw) with the fd's number.
    ///
    /// # Errors
    ///
    /// As [`modify_raw`](Backend::modify_raw).
    #[inline]
    fn modify(&self, fd: impl AsFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()>
    where
        Self: Sized,
    {
        self.modify_raw(fd.as_fd().as_raw_fd(), key, interest, mode)
    }

    /// Stops watching `fd`. [`deregister_raw`](Backend::deregister_raw) with the fd's number.
    ///
    /// # Errors
    ///
    /// As [`deregister_raw`](Backend::deregister_raw).
    #[inline]
    fn deregister(&self, fd: impl AsFd) -> io::Result<()>
    where
        Self: Sized,
    {
        self.deregister_raw(fd.as_fd().as_raw_fd())
    }
}

/// `Backend` for pointers to a backend, so one can be shared (`Arc<Epoll>`), chosen at run
/// time (`Box<dyn Backend>`, `Arc<dyn Backend>`, with the I/O-safe front) or lent (`&Epoll`
/// where a `B: Backend` is wanted).
macro_rules! forward_backend {
    ($($ptr:tt)+) => {
        impl<B: Backend + ?Sized> Backend for $($ptr)+ {
            #[inline]
            fn register_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
                (**self).register_raw(fd, key, interest, mode)
            }
            #[inline]
            fn modify_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
                (**self).modify_raw(fd, key, interest, mode)
            }
            #[inline]
            fn deregister_raw(&self, fd: RawFd) -> io::Result<()> {
                (**self).deregister_raw(fd)
            }
            #[inline]
            fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
                (**self).wait(events, timeout)
            }
            #[inline]
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
        }
    };
}

forward_backend!(std::sync::Arc<B>);
forward_backend!(Box<B>);
forward_backend!(&B);

#[cfg(test)]
mod tests {
    use super::*;

    const _: () = {
        const fn send_sync<T: Send + Sync>() {}
        send_sync::<Event>();
        send_sync::<Events>();
        send_sync::<Box<dyn Backend>>();
    };

    #[test]
    fn event_round_trips_every_readiness() {
        for bits in 0..32u8 {
            let r = Readiness::from_bits(bits);
            for (fd, key) in [(0, 0), (7, 42), (RawFd::MAX, u32::MAX), (-1, 1)] {
                let ev = Event::new(fd, key, r);
                assert_eq!((ev.fd(), ev.key(), ev.readiness()), (fd, key, r));
            }
        }
    }

    #[test]
    fn events_push_and_grow() {
        let mut events = Events::with_capacity(0);
        assert_eq!(events.capacity(), 1);
        assert!(events.push(Event::new(1, 1, Readiness::READABLE)));
        assert!(!events.push(Event::new(2, 2, Readiness::READABLE)));
        events.grow_if_full();
        assert_eq!(events.capacity(), 2);
        assert!(events.push(Event::new(2, 2, Readiness::READABLE)));
        let copy = events.clone();
        assert_eq!(copy.as_slice(), events.as_slice());
        events.clear();
        assert!(events.is_empty());
        assert_eq!(events.capacity(), 2);
    }

    #[test]
    fn capabilities_builder() {
        let c = Capabilities::new();
        assert_eq!(c, Capabilities::default());
        assert!(c.supports(Mode::Level) && c.supports(Mode::OneShot) && !c.supports(Mode::Edge));
        let c = c.with_level(false).with_one_shot(false).with_edge(true);
        assert!(!c.supports(Mode::Level) && !c.supports(Mode::OneShot) && c.supports(Mode::Edge));
    }

    /// The trait stays dyn-compatible, and the I/O-safe front works through every pointer.
    #[test]
    fn dyn_backend_has_the_io_safe_front() -> io::Result<()> {
        let (_a, b) = std::os::unix::net::UnixStream::pair()?;
        let boxed: Box<dyn Backend> = Box::new(PosixPoll::new()?);
        boxed.register(&b, 1, Interest::READ, Mode::Level)?;
        boxed.modify(b.as_fd(), 2, Interest::WRITE, Mode::Level)?;
        // A lent backend is a backend too.
        fn lend<B: Backend>(b: B) -> B {
            b
        }
        lend(&boxed).modify(&b, 3, Interest::READ, Mode::Level)?;
        let shared: std::sync::Arc<dyn Backend> = std::sync::Arc::new(PosixPoll::new()?);
        shared.register(&b, 3, Interest::READ, Mode::OneShot)?;
        shared.deregister(&b)?;
        boxed.deregister(&b)
    }
}

/// The README's examples, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
