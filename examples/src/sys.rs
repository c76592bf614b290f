//! The one OS call std does not offer: the process's open-file limit.

use std::io;

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit and returns the
/// limit in force, so the demo runs under the common `ulimit -n 1024` soft limit when the hard
/// one allows more.
///
/// # Errors
///
/// The OS error of `getrlimit(2)` or `setrlimit(2)`.
pub fn raise_fd_limit() -> io::Result<u64> {
    // SAFETY: an all-zero `rlimit` is valid (two integers); `getrlimit` writes into it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == -1 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid `rlimit` the kernel only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
        // A refused raise (macOS caps at OPEN_MAX) leaves the soft limit in force.
    }
    // `rlim_t` is 64 bits on most targets and 32 on some (i686 glibc): convert either way.
    #[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
    Ok(u64::try_from(lim.rlim_cur).unwrap_or(u64::MAX))
}

/// Sets the soft limit on open files (for tests that run at the fd limit); the hard limit
/// stays.
///
/// # Errors
///
/// The OS error of `getrlimit(2)` or `setrlimit(2)` (`EINVAL` above the hard limit).
pub fn set_soft_fd_limit(soft: u64) -> io::Result<()> {
    // SAFETY: an all-zero `rlimit` is valid (two integers); `getrlimit` writes into it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == -1 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
    let soft = libc::rlim_t::try_from(soft).unwrap_or(libc::RLIM_INFINITY);
    lim.rlim_cur = soft;
    // SAFETY: `lim` is a valid `rlimit` the kernel only reads.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
