//! The action that forwards a signal into a control pipe, and what it reads from `siginfo_t`.
//!
//! The process-wide handler itself belongs to `signal-hook-registry`, the registry that tokio
//! and signal-hook share: it installs one handler per signal, chains to the handler that was
//! there before it, and runs every registered action from it. This module registers one
//! action per subscription. An action runs in signal context, so it only uses
//! async-signal-safe operations (signal-safety(7)): it reads the `siginfo_t`, encodes a
//! record on the stack, makes one `write(2)` and bumps an atomic counter. It never allocates
//! and never takes a lock; neither does the registry's handler around it (its table is read
//! through a lock-free read side, see its `half_lock.rs`).

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use signal_hook_registry::SigId;

use crate::control::{encode_signal, ControlSender, SignalInfo};
use crate::signal::Signal;

/// Size of the per-signal table: signals `1..NSIG` can be represented. Covers every standard
/// signal, the real-time signals of Linux (up to 64) and NetBSD, and every signal of macOS
/// and OpenBSD.
pub(crate) const NSIG: usize = 65;

/// Records that could not be written because a channel was full, per signal.
pub(crate) static DROPPED: [AtomicUsize; NSIG] = [const { AtomicUsize::new(0) }; NSIG];

/// One subscription's action in the registry; dropping it unregisters the action.
pub(crate) struct Forward {
    id: SigId,
}

/// Registers an action that writes one record into `sender`'s channel per delivery of
/// `signal`. The action owns `sender`, so the channel's write end is open for as long as the
/// action exists.
///
/// `signal` must not be one of the registry's forbidden signals (`SIGKILL`, `SIGSTOP`,
/// `SIGILL`, `SIGFPE`, `SIGSEGV`): the registry panics on those. `crate::signal` refuses
/// them (and more) before calling this.
///
/// # Errors
///
/// What the registry's `sigaction(2)` returns for the first action of a signal: `EINVAL`
/// (kind `InvalidInput`) for a number the system does not have or reserves for itself.
pub(crate) fn forward(signal: Signal, sender: ControlSender) -> io::Result<Forward> {
    let signo = signal.as_raw();
    // `Signal` only holds numbers in `1..NSIG`, so this cannot fail; looked up here, outside
    // signal context, so that the action has no bounds check that could panic.
    let dropped = DROPPED.get(signo as usize).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signo} out of range"),
        )
    })?;
    let action = move |info: &libc::siginfo_t| {
        // write(2) may set errno; the interrupted code must not see it change. (The registry's
        // handler restores it too; this action does not rely on that.)
        let saved_errno = errno::get();
        // SAFETY: the registry passes the kernel's `siginfo_t` for this very signal (it aborts
        // on a null one rather than calling actions), valid for the handler's duration.
        let record = encode_signal(&unsafe { signal_info(signal, info) });
        // SAFETY: the fd is the write end owned by `sender`, which this closure owns: it is
        // open for as long as the closure exists, and the registry only runs a closure that
        // exists (it drops a removed action only after every handler that may still run it
        // has returned: the write barrier of `unregister`).
        let fd = unsafe { BorrowedFd::borrow_raw(sender.write_fd()) };
        // One write of a record <= PIPE_BUF into a non-blocking pipe: atomic, never blocks.
        match super::write(fd, &record) {
            Ok(Some(n)) if n == record.len() => {}
            _ => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        errno::set(saved_errno);
    };
    // SAFETY: the action is async-signal-safe: it reads `errno` through the C library's
    // accessor, reads the `siginfo_t`, encodes on the stack, calls write(2) (retrying EINTR)
    // and increments an atomic; it allocates nothing and locks nothing. It cannot panic (a
    // panic would abort at the registry's `extern "C"` handler): no unwrap, and its only
    // slicing is of constant ranges of the fixed-size record. What it captures (a
    // `ControlSender`, a `Signal`, a `&'static AtomicUsize`) is `Send + Sync`.
    let id = unsafe { signal_hook_registry::register_sigaction(signo, action) }?;
    Ok(Forward { id })
}

impl Drop for Forward {
    fn drop(&mut self) {
        // Returns once no handler can still be running the action, and drops it (and with it
        // the `ControlSender` it owns). `false` would mean "already removed": impossible, as
        // only this drop removes it.
        signal_hook_registry::unregister(self.id);
    }
}

impl fmt::Debug for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forward").field("id", &self.id).finish()
    }
}

/// Copies what we forward out of a `siginfo_t`.
///
/// # Safety
///
/// `info` is the `siginfo_t` the kernel passed to a handler of `signal`.
unsafe fn signal_info(signal: Signal, info: &libc::siginfo_t) -> SignalInfo {
    let mut out = SignalInfo::new(signal).with_code(info.si_code);
    let sent = code::SENT.contains(&info.si_code);
    // Which union member is valid depends on the code: sender pid/uid for signals sent by a
    // process (and SIGCHLD, whose child pid/uid sit in the same place), the value only for
    // sigqueue(3) and message queues. Anything else reads as 0.
    if sent || signal == Signal::CHLD {
        // SAFETY: for these codes the kernel filled the pid/uid member of the union.
        out = unsafe { out.with_sender(info.si_pid(), info.si_uid()) };
    }
    if code::WITH_VALUE.contains(&info.si_code) {
        // SAFETY: for these codes the kernel filled the sigval member of the union.
        out = out.with_value(unsafe { info.si_value() }.sival_ptr as usize);
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
