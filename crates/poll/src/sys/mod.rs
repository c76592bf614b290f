//! OS mechanisms, one file each, plus what they share: the `syscall!` macro and the timeout
//! arithmetic (a timeout becomes a deadline once, then integer ticks rounded up at each wait).
//!
//! This is the only place in the backends with `unsafe`. The other is the `conformance`
//! feature's test helpers (`conformance/util.rs`: pipes, fd duplication, a signal handler),
//! which are not part of any backend.

use std::time::{Duration, Instant};

/// Evaluates a libc call and maps its `-1` result to `io::Error::last_os_error()`.
///
/// The macro adds no `unsafe`: the caller wraps it in an `unsafe` block whose `// SAFETY:`
/// comment covers the call, so every obligation is stated where the arguments are built.
///
/// ```text
/// // SAFETY: `fd` is a valid descriptor owned by `self`.
/// let flags = unsafe { syscall!(fcntl(fd, libc::F_GETFD)) }?;
/// ```
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        let res = libc::$fn($($arg),*);
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

#[cfg(ioman_epoll)]
pub(crate) mod epoll;
#[cfg(ioman_kqueue)]
pub(crate) mod kqueue;
pub(crate) mod poll;
pub(crate) mod slack;

// The entries of `Events`, as the kernel writes them: `struct epoll_event` on Linux (read in
// place by `Event`'s accessors), the same shape elsewhere, where the backends translate
// (poll(2), kqueue).
#[cfg(ioman_epoll)]
pub(crate) use epoll::{raw_data, raw_event, raw_readiness, RawEvent};

/// An entry of [`Events`](crate::Events) where there is no epoll: epoll's shape (64-bit
/// data carrying key and fd, 32 bits of readiness), the readiness in
/// [`Readiness::bits`](crate::Readiness::bits) form, since no kernel writes it.
#[cfg(not(ioman_epoll))]
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct RawEvent {
    events: u32,
    data: u64,
}

/// The entry for `data` (key << 32 | fd) and `readiness`.
#[cfg(not(ioman_epoll))]
#[inline]
pub(crate) const fn raw_event(data: u64, readiness: crate::Readiness) -> RawEvent {
    RawEvent {
        events: readiness.bits() as u32,
        data,
    }
}

/// The entry's data: key << 32 | fd.
#[cfg(not(ioman_epoll))]
#[inline]
pub(crate) const fn raw_data(ev: &RawEvent) -> u64 {
    ev.data
}

/// The entry's readiness.
#[cfg(not(ioman_epoll))]
#[inline]
pub(crate) const fn raw_readiness(ev: &RawEvent) -> crate::Readiness {
    crate::Readiness::from_bits(ev.events as u8)
}

/// The longest single wait handed to the kernel. Longer waits are split (see [`Deadline`]):
/// `i32::MAX` milliseconds (about 24.8 days) is the most a `c_int` millisecond timeout can
/// say, and the same bound keeps a `timespec` valid even where `time_t` is 32 bits.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(i32::MAX as u64);

/// A duration in whole milliseconds, rounded up (0.3 ms waits 1 ms, never 0 ms, which would
/// be a busy loop) and clamped to [`MAX_WAIT`].
pub(crate) fn ms_ceil(d: Duration) -> libc::c_int {
    let d = d.min(MAX_WAIT);
    // `d <= MAX_WAIT`, so the sum fits a `c_int`; in `u64`, not the `u128` of `as_nanos`
    // (a library division call at every wait).
    let ms = d.as_secs() * 1000 + u64::from(d.subsec_nanos().div_ceil(1_000_000));
    ms as libc::c_int
}

/// A duration as a `timespec`, clamped to [`MAX_WAIT`] so it is valid for every `time_t`.
///
/// For `kevent(2)`, whose timeout is the C library's `struct timespec`. `epoll_pwait2` takes
/// the kernel's 64-bit layout instead (`KernelTimespec` in `epoll.rs`), which differs from
/// this one on 32-bit Linux. Compiled everywhere so that its test runs on Linux.
#[cfg_attr(not(ioman_kqueue), allow(dead_code))]
pub(crate) fn timespec(d: Duration) -> libc::timespec {
    let d = d.min(MAX_WAIT);
    // SAFETY: `timespec` is plain integers (some targets add private padding fields, which is
    // why it is not built with a struct literal); all-zero is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // Both fit: seconds are at most `i32::MAX / 1000`, nanoseconds below 10^9.
    ts.tv_sec = d.as_secs() as libc::time_t;
    ts.tv_nsec = d.subsec_nanos() as _;
    ts
}

/// A `wait` timeout turned into a deadline once, so that a retried wait (after `EINTR`, or
/// the next slice of a wait longer than [`MAX_WAIT`]) asks only for the time left.
///
/// `None` and `Some(ZERO)` never read the clock, so the hot non-blocking and blocking paths
/// cost no `Instant::now()`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deadline {
    /// Wait until an event.
    Forever,
    /// Do not wait.
    Now,
    /// Wait until this instant.
    At(Instant),
}

impl Deadline {
    /// The deadline for `timeout`, counted from now. A timeout too far away for `Instant`
    /// (such as `Duration::MAX`) waits forever, which no caller can tell apart.
    pub(crate) fn new(timeout: Option<Duration>) -> Deadline {
        match timeout {
            None => Deadline::Forever,
            Some(d) if d.is_zero() => Deadline::Now,
            Some(d) => Instant::now()
                .checked_add(d)
                .map_or(Deadline::Forever, Deadline::At),
        }
    }

    /// The time left: `None` for forever, `Some(ZERO)` once the deadline has passed. (For
    /// the `timespec` waits of epoll and kqueue; poll(2) only needs `remaining_ms`.)
    #[cfg_attr(not(any(ioman_epoll, ioman_kqueue)), allow(dead_code))]
    pub(crate) fn remaining(&self) -> Option<Duration> {
        match self {
            Deadline::Forever => None,
            Deadline::Now => Some(Duration::ZERO),
            Deadline::At(end) => Some(end.saturating_duration_since(Instant::now())),
        }
    }

    /// Whether a wait that came back empty (or interrupted) should wait again.
    pub(crate) fn has_time_left(&self) -> bool {
        match self {
            Deadline::Forever => true,
            Deadline::Now => false,
            Deadline::At(end) => Instant::now() < *end,
        }
    }

    /// The time left in milliseconds for a `c_int` timeout API: `-1` forever, `0` now,
    /// otherwise rounded up and clamped to [`MAX_WAIT`].
    pub(crate) fn remaining_ms(&self) -> libc::c_int {
        match self {
            Deadline::Forever => -1,
            Deadline::Now => 0,
            Deadline::At(end) => ms_ceil(end.saturating_duration_since(Instant::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_rounds_up_and_clamps() {
        assert_eq!(ms_ceil(Duration::ZERO), 0);
        assert_eq!(ms_ceil(Duration::from_nanos(1)), 1);
        assert_eq!(ms_ceil(Duration::from_micros(300)), 1);
        assert_eq!(ms_ceil(Duration::from_millis(1)), 1);
        assert_eq!(ms_ceil(Duration::from_micros(1500)), 2);
        assert_eq!(ms_ceil(Duration::from_millis(i32::MAX as u64)), i32::MAX);
        assert_eq!(ms_ceil(MAX_WAIT - Duration::from_nanos(1)), i32::MAX);
        assert_eq!(ms_ceil(Duration::new(2, 1)), 2001);
        assert_eq!(ms_ceil(Duration::MAX), i32::MAX);
    }

    #[test]
    fn timespec_clamps() {
        let ts = timespec(Duration::new(3, 5));
        assert_eq!((ts.tv_sec, ts.tv_nsec), (3, 5));
        let ts = timespec(Duration::MAX);
        assert_eq!(ts.tv_sec as u64, MAX_WAIT.as_secs());
    }

    #[test]
    fn deadlines() {
        assert_eq!(Deadline::new(None).remaining_ms(), -1);
        assert_eq!(Deadline::new(Some(Duration::ZERO)).remaining_ms(), 0);
        assert!(!Deadline::new(Some(Duration::ZERO)).has_time_left());
        assert_eq!(Deadline::new(Some(Duration::MAX)).remaining_ms(), -1);
        let d = Deadline::new(Some(Duration::from_secs(60)));
        assert!(d.has_time_left());
        assert!((59_000..=60_000).contains(&d.remaining_ms()));
    }
}
