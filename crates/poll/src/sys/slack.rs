//! The calling thread's timer slack (Linux's `PR_SET_TIMERSLACK`): how late the kernel may
//! end a timed wait of this thread to batch it with other wakeups.

use std::io;
use std::time::Duration;

/// The largest slack set: what `PR_GET_TIMERSLACK`, answering in a C `int`, can read back.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MAX_NS: libc::c_ulong = i32::MAX as libc::c_ulong;

/// Sets the calling thread's timer slack; [`Duration::ZERO`] restores the thread's default
/// (the slack it inherited when it was created). Saturates at [`MAX_NS`].
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn set(slack: Duration) -> io::Result<()> {
    let ns = libc::c_ulong::try_from(slack.as_nanos()).map_or(MAX_NS, |ns| ns.min(MAX_NS));
    let (zero, zero2, zero3): (libc::c_ulong, libc::c_ulong, libc::c_ulong) = (0, 0, 0);
    // SAFETY: PR_SET_TIMERSLACK takes its value by value and no pointer; it changes the
    // calling thread's timer slack and nothing else.
    unsafe { syscall!(prctl(libc::PR_SET_TIMERSLACK, ns, zero, zero2, zero3)) }.map(|_| ())
}

/// The calling thread's timer slack.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn get() -> io::Result<Duration> {
    let zero: libc::c_ulong = 0;
    // SAFETY: PR_GET_TIMERSLACK takes no pointer; it returns the calling thread's slack.
    let ns = unsafe { syscall!(prctl(libc::PR_GET_TIMERSLACK, zero, zero, zero, zero)) }?;
    Ok(Duration::from_nanos(u64::try_from(ns).unwrap_or(0)))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "timer slack is a Linux setting (prctl PR_SET_TIMERSLACK)",
    )
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn set(_slack: Duration) -> io::Result<()> {
    Err(unsupported())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn get() -> io::Result<Duration> {
    Err(unsupported())
}
