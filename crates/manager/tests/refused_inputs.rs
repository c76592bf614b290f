//! Numbers that name no file, or the manager's own fds, are refused with a clear error and
//! cost nothing. (One test in its binary: it reads the process's memory size and its open
//! fds, which other test threads would move.)

mod util;

use std::collections::BTreeSet;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ioman::{Backend, EventManager, Interest, Lifetime};

/// The open fds, without the one `read_dir` used to list them.
fn open_fds() -> BTreeSet<RawFd> {
    let listed: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    listed
        .into_iter()
        .filter(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok())
        .collect()
}

/// The process's virtual size in KiB (`VmSize` in `/proc/self/status`).
fn vm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn numbers_that_name_nothing<B: Backend + 'static>(m: &EventManager<B>) {
    let before = vm_kib();
    for fd in [i32::MAX, i32::MAX - 31, 1 << 24, util::closed_fd()] {
        let e = m
            .register_fd(fd, Interest::READ, Lifetime::OneShot, |_, _, _| {})
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "fd {fd}: {e}");
        let e = m.wait_readable(fd, Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "fd {fd}: {e}");
    }
    let grown = vm_kib().saturating_sub(before);
    // A table grown to fd i32::MAX would be gigabytes.
    assert!(
        grown < 64 * 1024,
        "registering bad numbers grew the process by {grown} KiB"
    );
    assert_eq!(m.live(), (0, 0));
}

/// Every fd the manager opened for itself is refused, and the manager still works after.
fn own_fds_refused<B: Backend + 'static>(
    build: impl FnOnce() -> io::Result<EventManager<B>>,
) -> io::Result<()> {
    let before = open_fds();
    let m = build()?;
    let own: Vec<RawFd> = open_fds().difference(&before).copied().collect();
    assert!(!own.is_empty());
    for &fd in &own {
        for interest in [Interest::READ, Interest::WRITE] {
            let r = m.register_fd(fd, interest, Lifetime::MultiShot, |_, _, _| {});
            let e = r.expect_err("an own fd was accepted");
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::InvalidInput
                ),
                "fd {fd}: {e}"
            );
        }
    }
    assert_eq!(m.live().0, 0);
    // The wakeup still works: a timer registered from another thread wakes a blocked step.
    let m = Arc::new(m);
    let fired = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| -> io::Result<()> {
        let (m2, f) = (m.clone(), fired.clone());
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            m2.register_timeout(Duration::ZERO, move |_| f.store(true, Ordering::SeqCst))
                .unwrap();
        });
        util::drive(&m, || fired.load(Ordering::SeqCst));
        Ok(())
    })?;
    m.shutdown();
    Ok(())
}

#[test]
fn refused_inputs() -> io::Result<()> {
    numbers_that_name_nothing(&util::default()?);
    numbers_that_name_nothing(&util::poll()?);
    own_fds_refused(|| EventManager::builder().build())?;
    own_fds_refused(|| {
        EventManager::builder()
            .backend(ioman::poll::PosixPoll::new()?)
            .wakeup(ioman::wakeup::Wakeup::pipe()?)
            .build()
    })?;
    own_fds_refused(|| {
        EventManager::builder()
            .wakeup(ioman::wakeup::Wakeup::pipe()?)
            .build()
    })
}
