//! The process-wide signal handler and the lock-free tables it reads.
//!
//! The handler runs in signal context, so it only uses async-signal-safe operations
//! (signal-safety(7)): lock-free atomics on statics and `write(2)`. It never allocates and
//! never takes a lock; the management side (`crate::signal`) serializes itself with a mutex
//! the handler never touches.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::control::{encode_signal, SignalInfo};

/// Size of the per-signal tables: signals `1..NSIG` can be subscribed to. Covers the
/// real-time signals on Linux (up to 64) and every signal on the BSDs and macOS.
pub(crate) const NSIG: usize = 65;

/// Subscribers per signal.
pub(crate) const SLOTS: usize = 8;

/// Write ends of the subscribed control pipes, `-1` for a free slot.
pub(crate) static SUBSCRIBERS: [[AtomicI32; SLOTS]; NSIG] =
    [const { [const { AtomicI32::new(-1) }; SLOTS] }; NSIG];

/// Handlers currently running for each signal. Unsubscribing clears the slot, then waits
/// for this to drop to zero before the fd may be closed, so the handler never writes to a
/// closed (and possibly reused) fd number.
pub(crate) static ACTIVE: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];

/// Records that could not be written because a channel was full.
pub(crate) static DROPPED: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];

/// The disposition a signal had before our handler was installed.
pub(crate) struct SavedAction(libc::sigaction);

// SAFETY: `libc::sigaction` is plain data (a handler address, a mask, flags); nothing in it
// is tied to the thread that read it.
unsafe impl Send for SavedAction {}

/// Installs [`handler`] for `signo` (`SA_SIGINFO | SA_RESTART`, nothing masked), returning
/// the previous disposition.
pub(crate) fn install(signo: i32) -> io::Result<SavedAction> {
    let mut new = MaybeUninit::<libc::sigaction>::zeroed();
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    let new_ptr = new.as_mut_ptr();
    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = handler;
    // SAFETY: `new_ptr` points to a zeroed, properly aligned `sigaction` we own; writing
    // through `addr_of_mut!` creates no reference to it.
    unsafe {
        std::ptr::addr_of_mut!((*new_ptr).sa_sigaction).write(f as usize);
        std::ptr::addr_of_mut!((*new_ptr).sa_flags).write(libc::SA_SIGINFO | libc::SA_RESTART);
    }
    // SAFETY: `sa_mask` is inside the zeroed `new`; sigemptyset only writes the set.
    unsafe { syscall!(sigemptyset(std::ptr::addr_of_mut!((*new_ptr).sa_mask))) }?;
    // SAFETY: `new` is fully initialized (zeroed, then handler, flags and mask set) and
    // `old` is valid for writes; `handler` has the `SA_SIGINFO` signature and is
    // async-signal-safe.
    unsafe { syscall!(sigaction(signo, new.as_ptr(), old.as_mut_ptr())) }?;
    // SAFETY: sigaction succeeded, so it filled `old` (and it was zeroed before anyway).
    Ok(SavedAction(unsafe { old.assume_init() }))
}

/// Restores a disposition saved by [`install`].
pub(crate) fn restore(signo: i32, saved: &SavedAction) -> io::Result<()> {
    // SAFETY: `saved.0` is a disposition the kernel gave us; a null `oldact` is allowed.
    unsafe { syscall!(sigaction(signo, &saved.0, std::ptr::null_mut())) }.map(drop)
}

/// The signal handler: one `write(2)` of a fixed-size record per subscriber.
extern "C" fn handler(signo: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // write(2) may set errno; the interrupted code must not see it change.
    let saved_errno = errno::get();
    let idx = match usize::try_from(signo) {
        Ok(i) if i < NSIG => i,
        _ => return,
    };
    ACTIVE[idx].fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel passes either null or a valid `siginfo_t` for an `SA_SIGINFO`
    // handler, alive for the duration of the handler.
    let info = unsafe { signal_info(signo, info) };
    let record = encode_signal(&info);
    for slot in &SUBSCRIBERS[idx] {
        let fd = slot.load(Ordering::SeqCst);
        if fd < 0 {
            continue;
        }
        // SAFETY: an fd stays open while it is in a slot and for as long as a handler that
        // may have loaded it is running: `crate::signal` clears the slot, then waits for
        // `ACTIVE[idx]` to reach zero, and only then lets the owning channel (and its fd)
        // go. The SeqCst increment above and load here pair with its SeqCst clear and load.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // One write of a record <= PIPE_BUF into a non-blocking pipe: atomic, never blocks.
        match super::write(fd, &record) {
            Ok(Some(n)) if n == record.len() => {}
            _ => {
                DROPPED[idx].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    ACTIVE[idx].fetch_sub(1, Ordering::SeqCst);
    errno::set(saved_errno);
}

/// Copies what we forward out of a `siginfo_t`.
///
/// # Safety
///
/// `info` is null or points to a valid `siginfo_t` for signal `signo`.
unsafe fn signal_info(signo: i32, info: *const libc::siginfo_t) -> SignalInfo {
    let mut out = SignalInfo {
        signo,
        code: 0,
        pid: 0,
        uid: 0,
        value: 0,
    };
    // Some systems pass a null siginfo (GHC #3790 on Solaris): forward zeros.
    // SAFETY: the caller guarantees `info` is null or valid.
    let Some(info) = (unsafe { info.as_ref() }) else {
        return out;
    };
    out.code = info.si_code;
    let sent = code::SENT.contains(&info.si_code);
    // Which union member is valid depends on the code: sender pid/uid for signals sent by a
    // process (and SIGCHLD, whose child pid/uid sit in the same place), the value only for
    // sigqueue(3) and message queues. Anything else reads as 0.
    if sent || signo == libc::SIGCHLD {
        // SAFETY: for these codes the kernel filled the pid/uid member of the union.
        unsafe {
            out.pid = info.si_pid();
            out.uid = info.si_uid();
        }
    }
    if code::WITH_VALUE.contains(&info.si_code) {
        // SAFETY: for these codes the kernel filled the sigval member of the union.
        out.value = unsafe { info.si_value() }.sival_ptr as usize;
    }
    out
}

/// The `si_code` values this module needs, per numbering (`cfg(ioman_si_codes)`, named by
/// `build.rs`). libc defines the `SI_*` constants for Linux only; the others are copied
/// from each system's header, linked at each block.
pub(crate) mod code {
    #[cfg(ioman_si_codes = "linux")]
    mod values {
        pub(crate) const SI_USER: libc::c_int = libc::SI_USER;
        pub(crate) const SI_QUEUE: libc::c_int = libc::SI_QUEUE;
        /// Codes that say a process sent the signal, so `si_pid`/`si_uid` are filled:
        /// `kill(2)`, `sigqueue(3)`, `tgkill(2)` (`raise(3)`, `pthread_kill(3)`) and POSIX
        /// message queues.
        pub(crate) const SENT: [libc::c_int; 4] = [
            libc::SI_USER,
            libc::SI_QUEUE,
            libc::SI_TKILL,
            libc::SI_MESGQ,
        ];
        /// Codes for which `si_value` is filled.
        pub(crate) const WITH_VALUE: [libc::c_int; 2] = [libc::SI_QUEUE, libc::SI_MESGQ];
    }

    /// FreeBSD and DragonFly
    /// ([sys/sys/signal.h](https://github.com/freebsd/freebsd-src/blob/main/sys/sys/signal.h)),
    /// and Apple's systems, which took the same numbers
    /// ([bsd/sys/signal.h](https://github.com/apple-oss-distributions/xnu/blob/main/bsd/sys/signal.h)).
    #[cfg(ioman_si_codes = "freebsd")]
    mod values {
        pub(crate) const SI_USER: libc::c_int = 0x10001;
        pub(crate) const SI_QUEUE: libc::c_int = 0x10002;
        const SI_MESGQ: libc::c_int = 0x10005;
        /// FreeBSD's `thr_kill(2)` (`raise(3)`, `pthread_kill(3)`); no other system of this
        /// numbering uses the value.
        const SI_LWP: libc::c_int = 0x10007;
        pub(crate) const SENT: [libc::c_int; 4] = [SI_USER, SI_QUEUE, SI_LWP, SI_MESGQ];
        pub(crate) const WITH_VALUE: [libc::c_int; 2] = [SI_QUEUE, SI_MESGQ];
    }

    /// NetBSD ([sys/sys/siginfo.h](https://github.com/NetBSD/src/blob/trunk/sys/sys/siginfo.h)).
    #[cfg(ioman_si_codes = "netbsd")]
    mod values {
        pub(crate) const SI_USER: libc::c_int = 0;
        pub(crate) const SI_QUEUE: libc::c_int = -1;
        const SI_MESGQ: libc::c_int = -4;
        /// `_lwp_kill(2)` (`raise(3)`, `pthread_kill(3)`).
        const SI_LWP: libc::c_int = -5;
        pub(crate) const SENT: [libc::c_int; 4] = [SI_USER, SI_QUEUE, SI_LWP, SI_MESGQ];
        pub(crate) const WITH_VALUE: [libc::c_int; 2] = [SI_QUEUE, SI_MESGQ];
    }

    /// System V's numbering: illumos and Solaris
    /// ([uts/common/sys/siginfo.h](https://github.com/illumos/illumos-gate/blob/master/usr/src/uts/common/sys/siginfo.h)),
    /// and OpenBSD, which copied it
    /// ([sys/sys/siginfo.h](https://github.com/openbsd/src/blob/master/sys/sys/siginfo.h);
    /// it has no `sigqueue(3)` or message queues, so it never sends the last two).
    #[cfg(ioman_si_codes = "svr4")]
    mod values {
        pub(crate) const SI_USER: libc::c_int = 0;
        /// `lwp_kill(2)` / `thrkill(2)` (`raise(3)`, `pthread_kill(3)`).
        const SI_LWP: libc::c_int = -1;
        pub(crate) const SI_QUEUE: libc::c_int = -2;
        const SI_MESGQ: libc::c_int = -5;
        pub(crate) const SENT: [libc::c_int; 4] = [SI_USER, SI_LWP, SI_QUEUE, SI_MESGQ];
        pub(crate) const WITH_VALUE: [libc::c_int; 2] = [SI_QUEUE, SI_MESGQ];
    }

    pub(crate) use values::{SENT, SI_QUEUE, SI_USER, WITH_VALUE};
}

/// Reading and restoring `errno`, which has no portable accessor: the C library's function
/// returning this thread's `errno` slot is named per system (`cfg(ioman_errno)`, named by
/// `build.rs`).
mod errno {
    /// illumos and Solaris.
    #[cfg(ioman_errno = "___errno")]
    use libc::___errno as location;
    #[cfg(ioman_errno = "__errno")]
    use libc::__errno as location;
    #[cfg(ioman_errno = "__errno_location")]
    use libc::__errno_location as location;
    #[cfg(ioman_errno = "__error")]
    use libc::__error as location;

    // These accessors never fail (they return this thread's errno slot), so they do not go
    // through `syscall!`, which is for calls that report failure as -1.

    pub(super) fn get() -> libc::c_int {
        // SAFETY: `location()` returns a valid pointer to this thread's errno.
        unsafe { *location() }
    }

    pub(super) fn set(value: libc::c_int) {
        // SAFETY: as in `get`; the slot is writable and only this thread uses it.
        unsafe { *location() = value }
    }
}
