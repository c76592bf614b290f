//! epoll(7): Linux and Android.
//!
//! Each registration's 64-bit user data carries the key in its high half and the fd in its
//! low half, so an event names both without a table (GHC stores only the fd). One-shot is
//! `EPOLLONESHOT` (level-triggered, as GHC's `modifyFdOnce`); a re-arm is one
//! `EPOLL_CTL_MOD`, never a delete and add. Timeouts use `epoll_pwait2` (Linux 5.11,
//! nanoseconds) where the kernel has it and `epoll_wait` (milliseconds, rounded up) elsewhere.
//!
//! The kernel writes its `struct epoll_event`s straight into [`Events`], whose [`Event`]s
//! are those structs (`#[repr(transparent)]`), decoded only when read: a wait costs no work
//! per event in user space (mio's `Events` is the same). `RawEvent` and the `raw_*`
//! functions below are that layout and its decoding.
//!
//! [`Event`]: crate::Event

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::sys::{Deadline, MAX_WAIT};
use crate::{Backend, Capabilities, Events, Interest, Mode, Readiness};

/// The most events one `epoll_wait` accepts: the kernel refuses `maxevents` above
/// `INT_MAX / sizeof(struct epoll_event)` with `EINVAL` (`EP_MAX_EVENTS` in fs/eventpoll.c).
const MAX_EVENTS: usize = i32::MAX as usize / std::mem::size_of::<libc::epoll_event>();

/// The timeout `epoll_pwait2` reads: the kernel's `struct __kernel_timespec`, two 64-bit
/// fields on every architecture.
///
/// It is not `libc::timespec`: on 32-bit targets (i686, armv7) that has a 32-bit `time_t`
/// and is 8 bytes, while the kernel reads 16, taking the nanoseconds for the high half of
/// the seconds and whatever follows for the nanoseconds (a garbage timeout, or `EINVAL`).
/// The syscall was added in Linux 5.11 after the y2038 work, so it only ever takes the
/// 64-bit layout, see
/// [include/uapi/linux/time_types.h](https://github.com/torvalds/linux/blob/master/include/uapi/linux/time_types.h)
/// and `SYSCALL_DEFINE6(epoll_pwait2, ...)` in
/// [fs/eventpoll.c](https://github.com/torvalds/linux/blob/master/fs/eventpoll.c).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KernelTimespec {
    /// `__kernel_time64_t tv_sec`.
    tv_sec: i64,
    /// `long long tv_nsec`.
    tv_nsec: i64,
}

impl KernelTimespec {
    /// `d`, clamped to [`MAX_WAIT`] like every other wait (longer waits are split by the
    /// caller's [`Deadline`] loop).
    fn new(d: Duration) -> KernelTimespec {
        let d = d.min(MAX_WAIT);
        KernelTimespec {
            // At most `i32::MAX / 1000` seconds, so the cast is lossless.
            tv_sec: d.as_secs() as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        }
    }
}

/// Whether the kernel has `epoll_pwait2`: not probed yet, yes, or no.
static PWAIT2: AtomicU8 = AtomicU8::new(PWAIT2_UNKNOWN);
const PWAIT2_UNKNOWN: u8 = 0;
const PWAIT2_YES: u8 = 1;
const PWAIT2_NO: u8 = 2;

/// The epoll backend: an epoll instance, closed when dropped.
///
/// Changes apply immediately, so a `wait` blocked in another thread sees them
/// ([`Capabilities::live_modify`] is `true`). Every [`Mode`] is supported. A regular file or a
/// directory cannot be watched: the kernel refuses it with `EPERM`, which `register` reports
/// as [`ErrorKind::Unsupported`](io::ErrorKind::Unsupported) (such files are always ready).
///
/// # Examples
///
/// ```
/// # #[cfg(any(target_os = "linux", target_os = "android"))]
/// # {
/// use ioman_poll::{Backend, Epoll, Events, Interest, Mode};
/// use std::io::Write;
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
///
/// let epoll = Epoll::new()?;
/// let (mut a, b) = UnixStream::pair()?;
/// epoll.register(&b, 1, Interest::READ, Mode::Edge)?;
/// a.write_all(b"ping")?;
///
/// let mut events = Events::default();
/// epoll.wait(&mut events, Some(Duration::from_secs(5)))?;
/// assert_eq!(events.as_slice()[0].key(), 1);
/// // Edge-triggered: nothing new arrived, so nothing more is reported.
/// assert_eq!(epoll.wait(&mut events, Some(Duration::ZERO))?, 0);
/// epoll.deregister(&b)?;
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Epoll {
    epfd: OwnedFd,
}

impl Epoll {
    /// Creates an epoll instance (`epoll_create1(EPOLL_CLOEXEC)`).
    ///
    /// The first instance also probes once whether the kernel has `epoll_pwait2`.
    ///
    /// # Errors
    ///
    /// The OS error of `epoll_create1`: `EMFILE`/`ENFILE` (too many open files), `ENOMEM`.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: `epoll_create1` takes only flags and returns a new fd or -1.
        let fd = unsafe { syscall!(epoll_create1(libc::EPOLL_CLOEXEC)) }?;
        // SAFETY: `fd` was just returned by `epoll_create1`, is open, and nothing else owns it.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        if PWAIT2.load(Ordering::Relaxed) == PWAIT2_UNKNOWN {
            PWAIT2.store(probe_pwait2(), Ordering::Relaxed);
        }
        Ok(Epoll { epfd })
    }

    fn ctl(
        &self,
        op: libc::c_int,
        fd: RawFd,
        key: u32,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: flags(interest, mode),
            u64: (u64::from(key) << 32) | u64::from(fd as u32),
        };
        // SAFETY: `self.epfd` is an open epoll fd and `ev` a valid `epoll_event` the kernel
        // only reads; an invalid `fd` is the kernel's to refuse (EBADF).
        unsafe { syscall!(epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev)) }.map(drop)
    }

    /// One wait: `epoll_pwait2` for a finite non-zero timeout when the kernel has it,
    /// otherwise `epoll_wait`. Returns how many entries from `ptr` on it filled.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for writes of `max` `epoll_event`s, and `max <= MAX_EVENTS`.
    unsafe fn wait_once(
        &self,
        ptr: *mut libc::epoll_event,
        max: usize,
        deadline: &Deadline,
    ) -> io::Result<usize> {
        let epfd = self.epfd.as_raw_fd();
        debug_assert!(max <= MAX_EVENTS);
        let max = max as libc::c_int;
        if let Some(left) = deadline.remaining() {
            if !left.is_zero() && PWAIT2.load(Ordering::Relaxed) == PWAIT2_YES {
                let ts = KernelTimespec::new(left);
                // SAFETY: `ptr` points to `max` writable `epoll_event`s (the caller's
                // contract); `ts` has the kernel's `__kernel_timespec` layout and outlives the call; a
                // null sigmask leaves the mask alone (and makes the
                // kernel ignore the size). Every argument is passed as a `c_long`, the width
                // the variadic `syscall` reads.
                let res = unsafe {
                    syscall!(syscall(
                        libc::SYS_epoll_pwait2,
                        epfd as libc::c_long,
                        ptr as libc::c_long,
                        max as libc::c_long,
                        &ts as *const KernelTimespec as libc::c_long,
                        ptr::null::<libc::sigset_t>() as libc::c_long,
                        0 as libc::c_long,
                    ))
                };
                match res {
                    Ok(n) => return Ok(n as usize),
                    // Seccomp filters (older container runtimes) can refuse a syscall they do
                    // not know with ENOSYS or EPERM even though the probe passed; fall back.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                        PWAIT2.store(PWAIT2_NO, Ordering::Relaxed);
                    }
                    // EINVAL is not a fallback case: the timespec is always valid (built
                    // above in the kernel's layout), so it means what it means for
                    // epoll_wait (a bad `epfd` or `maxevents`) and is reported as such.
                    Err(e) => return Err(e),
                }
            }
        }
        let ms = deadline.remaining_ms();
        // SAFETY: `ptr` points to `max` writable `epoll_event`s (the caller's contract).
        let n = unsafe { syscall!(epoll_wait(epfd, ptr, max, ms)) }?;
        Ok(n as usize)
    }
}

/// Whether the kernel has `epoll_pwait2` (Linux 5.11): a call on fd -1 fails with `EBADF`
/// if it does and `ENOSYS` if it does not (or `EPERM` under some seccomp filters).
fn probe_pwait2() -> u8 {
    // SAFETY: no pointer is dereferenced: the kernel checks `epfd` (-1) and fails with EBADF
    // before touching the null event buffer; null timeout and sigmask are allowed.
    let res = unsafe {
        syscall!(syscall(
            libc::SYS_epoll_pwait2,
            -1 as libc::c_long,
            ptr::null_mut::<libc::epoll_event>() as libc::c_long,
            1 as libc::c_long,
            ptr::null::<KernelTimespec>() as libc::c_long,
            ptr::null::<libc::sigset_t>() as libc::c_long,
            0 as libc::c_long,
        ))
    };
    match res {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => PWAIT2_YES,
        _ => PWAIT2_NO,
    }
}

/// The `epoll_event.events` mask for a registration. `EPOLLRDHUP` rides with read interest
/// only: a level-triggered half-close would otherwise wake a writer at every wait.
fn flags(interest: Interest, mode: Mode) -> u32 {
    let mut f = 0;
    if interest.is_readable() {
        f |= libc::EPOLLIN | libc::EPOLLRDHUP;
    }
    if interest.is_writable() {
        f |= libc::EPOLLOUT;
    }
    f |= match mode {
        Mode::Level => 0,
        Mode::OneShot => libc::EPOLLONESHOT,
        Mode::Edge => libc::EPOLLET,
    };
    f as u32
}

/// An entry of [`Events`]: the kernel's `struct epoll_event` as `epoll_wait` wrote it. Its
/// data is the registration's key << 32 | fd (see [`Epoll::ctl`]).
pub(crate) type RawEvent = libc::epoll_event;

/// The bit that stands for [`Readiness::CLOSED`] in an entry built by `Event::new` (an
/// event manager's own report). The kernel never sets it: the readiness bits it reports
/// end at `EPOLLRDHUP` (0x2000) and the flags from bit 26 up are registration flags
/// (`EPOLLEXCLUSIVE`, `EPOLLWAKEUP`, `EPOLLONESHOT`, `EPOLLET`), see
/// [include/uapi/linux/eventpoll.h](https://github.com/torvalds/linux/blob/master/include/uapi/linux/eventpoll.h).
const EPOLL_CLOSED: u32 = 1 << 16;

// The shifts in `raw_event` and `raw_readiness` rely on these values, the same on every
// architecture (eventpoll.h defines them once).
const _: () = assert!(
    libc::EPOLLIN == 0x1
        && libc::EPOLLOUT == 0x4
        && libc::EPOLLERR == 0x8
        && libc::EPOLLHUP == 0x10
        && libc::EPOLLRDHUP == 0x2000
        && EPOLL_CLOSED == 0x1_0000
);
const _: () = assert!(
    Readiness::READABLE.bits() == 1
        && Readiness::WRITABLE.bits() == 2
        && Readiness::ERROR.bits() == 4
        && Readiness::HANGUP.bits() == 8
        && Readiness::CLOSED.bits() == 16
);

/// The entry for `data` and `readiness`: readable is `EPOLLIN`, writable `EPOLLOUT`, error
/// `EPOLLERR`, hang-up `EPOLLHUP`, closed [`EPOLL_CLOSED`].
#[inline]
pub(crate) const fn raw_event(data: u64, readiness: Readiness) -> RawEvent {
    let r = readiness.bits() as u32;
    libc::epoll_event {
        events: (r & 1) | ((r & 0b1110) << 1) | ((r & 0b1_0000) << 12),
        u64: data,
    }
}

/// The entry's data, as given to `epoll_ctl`.
#[inline]
pub(crate) const fn raw_data(ev: &RawEvent) -> u64 {
    // A copy of the field (the struct is packed on x86_64, so no reference is taken).
    ev.u64
}

/// What the kernel reported, as a [`Readiness`], in a few shifts and masks:
/// `EPOLLIN` → readable, `EPOLLOUT` → writable, `EPOLLERR` → error, `EPOLLHUP` or
/// `EPOLLRDHUP` → hang-up. Error and hang-up stay what they are: who they wake is the
/// caller's decision ([`Readiness::satisfies`]), not folded into readable/writable as GHC's
/// `toEvent` does.
#[inline]
pub(crate) const fn raw_readiness(ev: &RawEvent) -> Readiness {
    let e = ev.events;
    let bits = (e & 1) // EPOLLIN
        | ((e >> 1) & 0b1110) // EPOLLOUT, EPOLLERR, EPOLLHUP
        | ((e >> 10) & 0b1000) // EPOLLRDHUP
        | ((e & EPOLL_CLOSED) >> 12);
    Readiness::from_bits(bits as u8)
}

impl Backend for Epoll {
    /// `EPOLL_CTL_ADD`.
    ///
    /// # Errors
    ///
    /// `EEXIST` ([`AlreadyExists`](io::ErrorKind::AlreadyExists)) if already registered;
    /// `EBADF`; [`Unsupported`](io::ErrorKind::Unsupported) for a regular file or a
    /// directory (the kernel's `EPERM`); [`InvalidInput`](io::ErrorKind::InvalidInput) for
    /// the epoll fd itself; `ENOMEM`, `ENOSPC` (`max_user_watches`).
    fn register_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        if fd == self.epfd.as_raw_fd() {
            // The kernel says EINVAL; say why (a stale fd number that names the poller).
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an epoll instance cannot watch its own fd",
            ));
        }
        self.ctl(libc::EPOLL_CTL_ADD, fd, key, interest, mode).map_err(|e| {
            // epoll_ctl(2): "EPERM The target file fd does not support epoll. This error
            // can occur if fd refers to, for example, a regular file or a directory."
            if e.raw_os_error() == Some(libc::EPERM) {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "epoll cannot watch this file type (EPERM): regular files and directories are always ready",
                )
            } else {
                e
            }
        })
    }

    /// `EPOLL_CTL_MOD`, which also re-arms a fired oneshot registration.
    ///
    /// # Errors
    ///
    /// `ENOENT` ([`NotFound`](io::ErrorKind::NotFound)) if not registered; `EBADF`.
    fn modify_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, key, interest, mode)
    }

    /// `EPOLL_CTL_DEL`.
    ///
    /// # Errors
    ///
    /// `ENOENT` ([`NotFound`](io::ErrorKind::NotFound)) if not registered; `EBADF` if `fd`
    /// is closed (closing the last reference already removed it from the set).
    fn deregister_raw(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: `self.epfd` is an open epoll fd; EPOLL_CTL_DEL ignores the event pointer,
        // which may be null since Linux 2.6.9 (epoll_ctl(2), BUGS).
        unsafe {
            syscall!(epoll_ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                ptr::null_mut()
            ))
        }
        .map(drop)
    }

    /// `epoll_pwait2` or `epoll_wait` straight into `events`: the kernel writes the entries
    /// that [`Event`](crate::Event) reads in place, so nothing is done per event here.
    fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let deadline = Deadline::new(timeout);
        let cap = events.capacity.min(MAX_EVENTS);
        // The kernel writes into the Vec's spare capacity; its length stays 0 until the
        // kernel says how many entries it wrote, so nothing is zeroed or read uninitialised.
        // (`Event` is `Copy`: `clear` only resets the length; `reserve` is a comparison
        // once the buffer has its size.)
        events.list.clear();
        events.list.reserve(cap);
        let ptr = events.list.as_mut_ptr().cast::<libc::epoll_event>();
        let n = loop {
            // SAFETY: `ptr` is the start of the Vec's buffer, which has room for `cap`
            // entries (reserved above), and an `Event` is a `#[repr(transparent)]`
            // `epoll_event`; `cap <= MAX_EVENTS`.
            match unsafe { self.wait_once(ptr, cap, &deadline) } {
                // Never cut short: a wait that ended empty before the deadline (a slice of
                // a wait longer than MAX_WAIT) waits again for the time left.
                Ok(0) if deadline.has_time_left() => continue,
                Ok(n) => break n,
                // epoll_wait(2): interrupted by a signal handler "before either any of the
                // requested events occurred or the timeout expired". Retry with the time left.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if deadline.has_time_left() {
                        continue;
                    }
                    break 0;
                }
                Err(e) => return Err(e),
            }
        };
        debug_assert!(n <= cap, "epoll returned {n} events for {cap} slots");
        // SAFETY: the kernel initialised the first `n` entries, and `n <= cap <= capacity`
        // because it never returns more than `maxevents`.
        unsafe { events.list.set_len(n.min(cap)) };
        events.grow_if_full();
        Ok(n)
    }

    fn capabilities(&self) -> Capabilities {
        let ns = PWAIT2.load(Ordering::Relaxed) == PWAIT2_YES;
        Capabilities::new()
            .with_edge(true)
            .with_live_modify(true)
            .with_timeout_resolution(if ns {
                Duration::from_nanos(1)
            } else {
                Duration::from_millis(1)
            })
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.epfd.as_raw_fd()
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epfd.as_fd()
    }
}

impl fmt::Debug for Epoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Epoll")
            .field("epfd", &self.epfd.as_raw_fd())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// `struct __kernel_timespec` is 16 bytes with `tv_nsec` at offset 8 on every target,
    /// 32-bit ones included (where `libc::timespec` is 8 bytes).
    #[test]
    fn kernel_timespec_has_the_kernel_layout() {
        assert_eq!(size_of::<KernelTimespec>(), 16);
        assert_eq!(offset_of!(KernelTimespec, tv_sec), 0);
        assert_eq!(offset_of!(KernelTimespec, tv_nsec), 8);
    }

    /// Every bit the kernel reports decodes as the previous per-event `match` mapped it;
    /// the bits nobody asked for (`EPOLLPRI`, `EPOLLRDNORM`, ...) decode to nothing.
    #[test]
    fn kernel_bits_decode() {
        let decode = |bits: libc::c_int| {
            raw_readiness(&libc::epoll_event {
                events: bits as u32,
                u64: 0,
            })
        };
        assert_eq!(decode(libc::EPOLLIN), Readiness::READABLE);
        assert_eq!(decode(libc::EPOLLOUT), Readiness::WRITABLE);
        assert_eq!(decode(libc::EPOLLERR), Readiness::ERROR);
        assert_eq!(decode(libc::EPOLLHUP), Readiness::HANGUP);
        assert_eq!(decode(libc::EPOLLRDHUP), Readiness::HANGUP);
        assert_eq!(
            decode(libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP),
            Readiness::READABLE | Readiness::WRITABLE | Readiness::ERROR | Readiness::HANGUP
        );
        let unasked = libc::EPOLLPRI
            | libc::EPOLLRDNORM
            | libc::EPOLLRDBAND
            | libc::EPOLLWRNORM
            | libc::EPOLLWRBAND
            | libc::EPOLLMSG;
        assert_eq!(decode(unasked), Readiness::EMPTY);
    }

    #[test]
    fn kernel_timespec_clamps_like_every_wait() {
        let ts = KernelTimespec::new(Duration::new(3, 5));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 5));
        let ts = KernelTimespec::new(Duration::MAX);
        assert_eq!(ts.tv_sec as u64, MAX_WAIT.as_secs());
        assert!(ts.tv_nsec < 1_000_000_000);
    }
}
