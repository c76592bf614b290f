//! poll(2): every Unix, and on Linux too so that it is tested there.
//!
//! poll(2) keeps no state in the kernel, so the registrations live in a table here. Changes
//! update the table at once (so their errors are immediate: GHC's poll backend only queued
//! them and failed, if ever, inside the manager loop) and bump a version; `wait` rebuilds its
//! `pollfd` array from the table when the version moved. The table lock is never held during
//! the syscall, so a `register` never waits for a blocked `wait`; in exchange the change
//! reaches the kernel only at the next `wait` ([`Capabilities::live_modify`] is `false`).
//!
//! The backend is named `PosixPoll`, not `Poll`, so that "poll" names only the system call
//! (the crate is `ioman_poll`, the blocking call [`Backend::wait`]).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::sys::Deadline;
use crate::{Backend, Capabilities, Event, Events, Interest, Mode, Readiness};

/// The poll(2) backend: a registration table and a `pollfd` array rebuilt from it.
///
/// - `Mode::OneShot` is emulated: after reporting an fd, the entry stays registered but is
///   disarmed (left out of the array) until [`Backend::modify`] re-arms it.
/// - `Mode::Edge` is refused with [`ErrorKind::Unsupported`](io::ErrorKind::Unsupported).
/// - A change made while another thread is blocked in `wait` applies at the next call
///   ([`Capabilities::live_modify`] is `false`): wake the polling thread after a change.
/// - An fd closed while still registered is reported once as [`Readiness::ERROR`]
///   (`POLLNVAL`), then disarmed until it is modified or deregistered, so it neither goes
///   unreported (GHC hazard H3) nor makes every later `wait` return at once.
/// - Regular files are accepted: poll(2) reports them always readable and writable.
/// - With nothing registered, `wait(.., None)` blocks forever (poll(2) on an empty set is a
///   sleep).
/// - Cost: each `wait` is O(registered fds) in the kernel and in the scan of the results.
///
/// # Examples
///
/// ```
/// use ioman_poll::{Backend, Events, Interest, Mode, PosixPoll};
/// use std::io::Write;
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
///
/// let poller = PosixPoll::new()?;
/// assert!(!poller.capabilities().live_modify);
/// let (mut a, b) = UnixStream::pair()?;
/// poller.register(&b, 3, Interest::READ, Mode::OneShot)?;
/// a.write_all(b"ping")?;
///
/// let mut events = Events::default();
/// assert_eq!(poller.wait(&mut events, Some(Duration::from_secs(5)))?, 1);
/// assert_eq!(poller.wait(&mut events, Some(Duration::ZERO))?, 0); // disarmed
/// poller.modify(&b, 3, Interest::READ, Mode::OneShot)?; // re-armed
/// assert_eq!(poller.wait(&mut events, Some(Duration::ZERO))?, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct PosixPoll {
    registry: Mutex<Registry>,
    state: Mutex<PollState>,
}

/// The registrations, updated at once by `register` / `modify` / `deregister`.
#[derive(Default)]
struct Registry {
    entries: HashMap<RawFd, Entry>,
    /// Bumped at every change that alters the `pollfd` array.
    version: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    key: u32,
    interest: Interest,
    oneshot: bool,
    /// `false` once a one-shot registration fired or the fd was reported closed (`POLLNVAL`).
    armed: bool,
}

/// The polling side: the array handed to poll(2) and the key of each slot.
struct PollState {
    fds: Vec<libc::pollfd>,
    keys: Vec<u32>,
    /// The registry version `fds` was built from.
    version: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic cannot leave either table half-updated (each update is one map operation), so
    // a poisoned lock is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `fd` is open: `EBADF` for a closed or negative fd, as epoll and kqueue give.
fn check_fd(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD only reads the descriptor flags; any fd number, even invalid, is
    // acceptable to the kernel.
    unsafe { syscall!(fcntl(fd, libc::F_GETFD)) }.map(drop)
}

fn check_mode(mode: Mode) -> io::Result<bool> {
    match mode {
        Mode::Level => Ok(false),
        Mode::OneShot => Ok(true),
        Mode::Edge => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "poll(2) has no edge-triggered mode",
        )),
    }
}

fn poll_events(interest: Interest) -> libc::c_short {
    let mut e = 0;
    if interest.is_readable() {
        e |= libc::POLLIN;
    }
    if interest.is_writable() {
        e |= libc::POLLOUT;
    }
    e
}

fn readiness(revents: libc::c_short) -> Readiness {
    let mut r = Readiness::EMPTY;
    if revents & libc::POLLIN != 0 {
        r |= Readiness::READABLE;
    }
    if revents & libc::POLLOUT != 0 {
        r |= Readiness::WRITABLE;
    }
    // POLLNVAL: the fd is not open. GHC maps it to nothing, so the entry stays and every
    // poll returns at once (hazard H3); here it is an error on that fd.
    if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        r |= Readiness::ERROR;
    }
    if revents & libc::POLLHUP != 0 {
        r |= Readiness::HANGUP;
    }
    r
}

impl PosixPoll {
    /// Creates an empty poll(2) backend. No fd is opened.
    ///
    /// # Errors
    ///
    /// None today; the `io::Result` matches the other backends.
    pub fn new() -> io::Result<PosixPoll> {
        Ok(PosixPoll {
            registry: Mutex::new(Registry::default()),
            state: Mutex::new(PollState {
                fds: Vec::new(),
                keys: Vec::new(),
                // The registry starts at version 0 with nothing in it, matching the empty array.
                version: 0,
            }),
        })
    }

    /// How many fds are registered (armed or not).
    pub fn len(&self) -> usize {
        lock(&self.registry).entries.len()
    }

    /// Whether no fd is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rebuilds the `pollfd` array from the table if the table changed since.
    fn rebuild(&self, state: &mut PollState) {
        let reg = lock(&self.registry);
        if reg.version == state.version {
            return;
        }
        state.fds.clear();
        state.keys.clear();
        for (&fd, e) in reg.entries.iter().filter(|(_, e)| e.armed) {
            state.fds.push(libc::pollfd {
                fd,
                events: poll_events(e.interest),
                revents: 0,
            });
            state.keys.push(e.key);
        }
        state.version = reg.version;
    }

    /// Turns the `n` slots poll(2) marked into events, dropping stale ones, and disarms what
    /// was reported in one-shot mode or found closed.
    fn report(&self, state: &PollState, mut n: usize, events: &mut Events) {
        let mut reg = lock(&self.registry);
        let mut disarmed = false;
        for (pfd, &key) in state.fds.iter().zip(&state.keys) {
            if pfd.revents == 0 {
                continue;
            }
            n -= 1;
            // A registration changed or removed while poll(2) was blocked makes this result
            // stale: drop it (the next wait sees the new registration).
            if let Some(entry) = reg.entries.get_mut(&pfd.fd) {
                if entry.key == key && entry.armed {
                    let mut r = readiness(pfd.revents);
                    // Keep only what the current interest asks for, plus error and hang-up.
                    if !entry.interest.is_readable() {
                        r = Readiness::from_bits(r.bits() & !Readiness::READABLE.bits());
                    }
                    if !entry.interest.is_writable() {
                        r = Readiness::from_bits(r.bits() & !Readiness::WRITABLE.bits());
                    }
                    if !r.is_empty() {
                        if !events.push(Event::new(pfd.fd, key, r)) {
                            // Full: the rest stay armed and are reported by the next wait.
                            break;
                        }
                        if entry.oneshot || pfd.revents & libc::POLLNVAL != 0 {
                            entry.armed = false;
                            disarmed = true;
                        }
                    }
                }
            }
            if n == 0 {
                break;
            }
        }
        if disarmed {
            reg.version += 1;
        }
    }

    fn wait_once(fds: &mut [libc::pollfd], deadline: &Deadline) -> io::Result<usize> {
        loop {
            let ms = deadline.remaining_ms();
            // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfds.
            let res = unsafe { syscall!(poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms)) };
            match res {
                // Never cut short: a wait that ended empty before the deadline (a slice of a
                // wait longer than MAX_WAIT) waits again for the time left.
                Ok(0) if deadline.has_time_left() => continue,
                Ok(n) => return Ok(n as usize),
                // poll(2): "EINTR A signal occurred before any requested event". Retry with
                // the time left (never restarted by SA_RESTART, see signal(7)).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if !deadline.has_time_left() {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Backend for PosixPoll {
    /// Adds `fd` to the table; the next `wait` watches it.
    ///
    /// # Errors
    ///
    /// [`AlreadyExists`](io::ErrorKind::AlreadyExists) if registered; `EBADF` if `fd` is
    /// not open; [`Unsupported`](io::ErrorKind::Unsupported) for `Mode::Edge`.
    fn register_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        let oneshot = check_mode(mode)?;
        check_fd(fd)?;
        let mut reg = lock(&self.registry);
        if reg.entries.contains_key(&fd) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        reg.entries.insert(
            fd,
            Entry {
                key,
                interest,
                oneshot,
                armed: true,
            },
        );
        reg.version += 1;
        Ok(())
    }

    /// Replaces the entry of `fd` and arms it.
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) if not registered; `EBADF` if `fd` is not
    /// open; [`Unsupported`](io::ErrorKind::Unsupported) for `Mode::Edge`.
    fn modify_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        let oneshot = check_mode(mode)?;
        check_fd(fd)?;
        let mut reg = lock(&self.registry);
        match reg.entries.get_mut(&fd) {
            Some(e) => {
                *e = Entry {
                    key,
                    interest,
                    oneshot,
                    armed: true,
                }
            }
            None => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
        reg.version += 1;
        Ok(())
    }

    /// Removes `fd` from the table; succeeds even if `fd` was closed meanwhile.
    ///
    /// # Errors
    ///
    /// [`NotFound`](io::ErrorKind::NotFound) if not registered.
    fn deregister_raw(&self, fd: RawFd) -> io::Result<()> {
        let mut reg = lock(&self.registry);
        if reg.entries.remove(&fd).is_none() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        reg.version += 1;
        Ok(())
    }

    /// poll(2) on the array (rebuilt if the table changed), then one entry of `events` per
    /// reported fd, written in the layout `Epoll` gets from the kernel.
    fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = Deadline::new(timeout);
        events.clear();
        // Held through the syscall: a second concurrent wait waits for the first.
        let mut state = lock(&self.state);
        loop {
            self.rebuild(&mut state);
            let n = Self::wait_once(&mut state.fds, &deadline)?;
            if n > 0 {
                self.report(&state, n, events);
            }
            // Every result may have been stale (changed while poll(2) was blocked): then wait
            // again for the time left rather than return early with nothing.
            if !events.is_empty() || !deadline.has_time_left() {
                break;
            }
        }
        events.grow_if_full();
        Ok(events.len())
    }

    fn capabilities(&self) -> Capabilities {
        // Exactly what `Capabilities::new` describes: level and one-shot, changes seen at
        // the next wait, milliseconds.
        Capabilities::new()
    }
}

impl fmt::Debug for PosixPoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PosixPoll")
            .field("registered", &self.len())
            .finish()
    }
}
