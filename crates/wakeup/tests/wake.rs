//! Waking a loop: before it blocks, while it blocks, coalescing, full fds, for both kinds.

mod util;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ioman_wakeup::{Wakeup, WakeupKind};
use util::{fail, for_each_kind, is_readable, poll_readable};

#[test]
fn new_prefers_eventfd_on_linux() -> io::Result<()> {
    let w = Wakeup::new()?;
    #[cfg(ioman_eventfd)]
    assert_eq!(w.kind(), WakeupKind::EventFd);
    #[cfg(not(ioman_eventfd))]
    assert_eq!(w.kind(), WakeupKind::Pipe);
    Ok(())
}

#[test]
fn fresh_wakeup_is_not_readable() -> io::Result<()> {
    for_each_kind(|w| {
        assert!(!is_readable(&w)?);
        assert!(!w.is_pending());
        assert_eq!(w.syscalls(), 0);
        Ok(())
    })
}

#[test]
fn wake_before_the_loop_blocks_is_seen() -> io::Result<()> {
    for_each_kind(|w| {
        w.wake()?;
        assert!(w.is_pending());
        if !poll_readable(&w, 5_000)? {
            return Err(fail("not readable after wake"));
        }
        w.reset()?;
        assert!(!w.is_pending());
        assert!(!is_readable(&w)?, "still readable after reset");
        Ok(())
    })
}

#[test]
fn wake_while_the_loop_blocks_in_poll_unblocks_it() -> io::Result<()> {
    for_each_kind(|w| {
        let w = Arc::new(w);
        let published = Arc::new(AtomicBool::new(false));
        let (w2, p2) = (Arc::clone(&w), Arc::clone(&published));
        let waker = thread::spawn(move || -> io::Result<()> {
            // Give the loop time to block in poll(2).
            thread::sleep(Duration::from_millis(50));
            p2.store(true, Ordering::Relaxed);
            w2.wake()
        });
        let woke = poll_readable(&*w, 10_000)?;
        waker.join().map_err(|_| fail("waker panicked"))??;
        if !woke {
            return Err(fail("poll timed out: wake lost"));
        }
        w.reset()?;
        assert!(
            published.load(Ordering::Relaxed),
            "work not visible after reset"
        );
        Ok(())
    })
}

#[test]
fn many_wakes_without_reset_make_one_syscall() -> io::Result<()> {
    for_each_kind(|w| {
        for _ in 0..1000 {
            w.wake()?;
        }
        assert_eq!(w.syscalls(), 1, "wakes were not coalesced");
        assert!(is_readable(&w)?);
        w.reset()?;
        assert!(!is_readable(&w)?);
        // After a reset the next wake writes again, and only once.
        for _ in 0..10 {
            w.wake()?;
        }
        assert_eq!(w.syscalls(), 2);
        Ok(())
    })
}

#[test]
fn wake_after_reset_writes_again() -> io::Result<()> {
    for_each_kind(|w| {
        for i in 1..=100u64 {
            w.wake()?;
            assert!(is_readable(&w)?);
            w.reset()?;
            assert!(!is_readable(&w)?);
            assert_eq!(w.syscalls(), i);
        }
        Ok(())
    })
}

#[test]
fn reset_without_wake_is_harmless() -> io::Result<()> {
    for_each_kind(|w| {
        w.reset()?;
        w.reset()?;
        assert!(!is_readable(&w)?);
        w.wake()?;
        assert!(is_readable(&w)?);
        Ok(())
    })
}

#[test]
fn full_fd_is_drained_and_written_again() -> io::Result<()> {
    for_each_kind(|w| {
        let filled = w.fill_for_test()?;
        assert!(filled > 0);
        assert!(is_readable(&w)?);
        // The flag is clear, so this wake writes, meets EAGAIN, drains and writes again:
        // two writes, and what is left in the fd is this wake's own write.
        w.wake()?;
        assert_eq!(w.syscalls(), 2);
        assert!(w.is_pending());
        assert!(is_readable(&w)?);
        w.reset()?;
        assert!(!is_readable(&w)?, "reset did not drain the fd");
        assert!(!w.is_pending());
        w.wake()?;
        assert_eq!(w.syscalls(), 3);
        assert!(is_readable(&w)?);
        Ok(())
    })
}

#[test]
fn owns_exactly_its_fds() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    for_each_kind(|w| {
        assert!(w.owns_fd(w.as_raw_fd()));
        assert!(!w.owns_fd(-1));
        let other = std::fs::File::open("/dev/null")?;
        assert!(!w.owns_fd(other.as_raw_fd()));
        // A pipe's write end is the wakeup's too: the fd next to the read end.
        if w.kind() == ioman_wakeup::WakeupKind::Pipe {
            let n = (0..4096).filter(|&fd| w.owns_fd(fd)).count();
            assert_eq!(n, 2, "read and write end");
        }
        Ok(())
    })
}

#[test]
fn fd_is_nonblocking_and_cloexec() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    for_each_kind(|w| {
        let fd = w.as_raw_fd();
        // SAFETY: `fd` is open for the lifetime of `w`; F_GETFL/F_GETFD take no argument.
        let (fl, fdfl) = unsafe {
            (
                libc::fcntl(fd, libc::F_GETFL),
                libc::fcntl(fd, libc::F_GETFD),
            )
        };
        assert!(fl & libc::O_NONBLOCK != 0, "not non-blocking");
        assert!(fdfl & libc::FD_CLOEXEC != 0, "not close-on-exec");
        Ok(())
    })
}

#[test]
fn debug_shows_kind_and_fd() -> io::Result<()> {
    for_each_kind(|w| {
        let s = format!("{w:?}");
        assert!(s.contains("kind") && s.contains("fd"), "{s}");
        Ok(())
    })
}
