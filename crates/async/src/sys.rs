//! The fd operations std does not offer safely, and the only `unsafe` in the crate: switching
//! an arbitrary [`AsFd`] to non-blocking mode, asking whether an fd is a stream socket or is
//! ready now, and starting a TCP connect without waiting for it (std's `TcpStream::connect`
//! blocks until the handshake is over).
//!
//! Both would move to a crate that owns unsafe fd code already (ioman-poll's `sys`) if it
//! exported them; then this crate could be `#![forbid(unsafe_code)]`.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Evaluates a libc call and maps its `-1` result to `io::Error::last_os_error()` (as in
/// ioman-poll; the caller's `unsafe` block states the obligations).
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        let res = libc::$fn($($arg),*);
        if res == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Sets `O_NONBLOCK` on `fd` with one `ioctl(FIONBIO)`, as std's `set_nonblocking` does.
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: the fd is valid for the call (borrowed from its owner), and `FIONBIO` reads one
    // `c_int` through the pointer, which points to a live local.
    unsafe { syscall!(ioctl(fd.as_fd().as_raw_fd(), libc::FIONBIO, &mut on)) }?;
    Ok(())
}

/// Whether `fd` is a stream socket (`SO_TYPE` is `SOCK_STREAM`: TCP, Unix stream), one
/// `getsockopt`. Anything else (`ENOTSOCK` for a pipe or a terminal) is not.
pub(crate) fn is_stream_socket(fd: impl AsFd) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the fd is valid for the call (borrowed from its owner); `SO_TYPE` writes one
    // `c_int` to `ty`, whose size `len` gives, and both point to live locals.
    let r = unsafe {
        syscall!(getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast::<libc::c_void>(),
            &mut len
        ))
    };
    r.is_ok() && ty == libc::SOCK_STREAM
}

/// Whether a read (`write` false) or a write (`write` true) on `fd` would not block now: one
/// `poll(2)` with a zero timeout. Error and hang-up count as ready (the operation reports
/// them), and so does a failed `poll` (the operation then finds out for itself).
pub(crate) fn ready_now(fd: RawFd, write: bool) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: if write { libc::POLLOUT } else { libc::POLLIN },
        revents: 0,
    };
    loop {
        // SAFETY: `p` is one live, initialised `pollfd` and `nfds` is 1; poll(2) only writes
        // its `revents`. Any fd number is sound here: an unknown one is reported as
        // `POLLNVAL`, not dereferenced.
        match unsafe { syscall!(poll(&mut p, 1, 0)) } {
            Ok(n) => return n > 0,
            // A signal before the (zero) timeout: ask again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// A TCP socket whose connect to `addr` has been started but maybe not finished: `connect(2)`
/// on a non-blocking socket, with `EINPROGRESS` taken as "under way". The caller waits for
/// writability and then reads `SO_ERROR` (std's `take_error`).
pub(crate) fn connect_nonblocking(addr: SocketAddr) -> io::Result<TcpStream> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let ty = libc::SOCK_STREAM;
    // SAFETY: `socket` takes no pointers; a non-negative result is a new fd that nothing
    // else owns, so `OwnedFd` may take it over.
    let fd = unsafe { OwnedFd::from_raw_fd(syscall!(socket(domain, ty, 0))?) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        // SAFETY: the fd is valid and owned here; `F_SETFD` takes an integer.
        unsafe { syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC)) }?;
        set_nonblocking(&fd)?;
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` is a live, initialised `sockaddr_storage` holding a `sockaddr_in` or
    // `sockaddr_in6` whose size is `len`; the kernel only reads it.
    let r = unsafe {
        syscall!(connect(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr>(),
            len
        ))
    };
    match r {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from(fd))
}

/// `addr` as the C structure `connect(2)` reads.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: `sockaddr_storage` is plain integers and byte arrays; all-zero is valid (and
    // is what the unused fields of the address families below must be).
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: as above, all-zero is a valid `sockaddr_in`.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for every address type.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, all-zero is a valid `sockaddr_in6`.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: `sockaddr_storage` is larger than and aligned for every address type.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
