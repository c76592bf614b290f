//! The thread helpers (threadWaitRead, threadWaitWrite, threadDelay, registerDelay).

mod util;

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ioman::{Backend, EventManager, ShutDown};

fn spawned<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<(Arc<EventManager<B>>, ioman::ManualClock, ioman::LoopHandle)> {
    let (m, clock) = util::manual(make)?;
    let m = Arc::new(m);
    let h = m.spawn()?;
    Ok((m, clock, h))
}

/// wait_readable returns when the fd becomes readable; wait_writable at once on a fresh
/// socket.
fn wait_returns_on_readiness<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, _clock, h) = spawned(make)?;
    let (mut a, b) = util::pair()?;
    let w = m.wait_writable(&b, None)?;
    assert!(w.is_writable());
    thread::scope(|s| {
        let waiter = s.spawn(|| m.wait_readable(&b, None));
        thread::sleep(Duration::from_millis(10));
        a.write_all(b"x").unwrap();
        let r = waiter.join().unwrap().unwrap();
        assert!(r.is_readable());
    });
    assert_eq!(m.live().0, 0, "nothing left registered");
    m.shutdown();
    h.join()
}

/// A wait with a timeout gives TimedOut when the manager's clock passes it.
fn wait_times_out<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, clock, h) = spawned(make)?;
    let (_a, b) = util::pair()?;
    thread::scope(|s| {
        let waiter = s.spawn(|| m.wait_readable(&b, Some(Duration::from_secs(30))));
        util::wait_until(|| m.live() == (1, 1));
        clock.advance(Duration::from_secs(30));
        m.wake();
        let e = waiter.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    });
    assert_eq!(m.live(), (0, 0), "both sides cleaned up");
    m.shutdown();
    h.join()
}

/// A waiter whose fd is closed through close_fd gets EBADF, not a hang.
fn close_releases_waiter<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, _clock, h) = spawned(make)?;
    let (_a, b) = util::pair()?;
    let fd = b.as_raw_fd();
    thread::scope(|s| {
        let waiter = s.spawn(|| m.wait_readable(fd, None));
        util::wait_until(|| m.live().0 == 1);
        assert_eq!(m.close_fd(b), 1);
        let e = waiter.join().unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    });
    m.shutdown();
    h.join()
}

/// Shutdown releases every blocked waiter with ShutDown.
fn shutdown_releases_waiters<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, _clock, h) = spawned(make)?;
    let (_a, b) = util::pair()?;
    thread::scope(|s| {
        let waiters: Vec<_> = (0..4)
            .map(|i| {
                let (m, b) = (&m, &b);
                s.spawn(move || {
                    if i % 2 == 0 {
                        m.wait_readable(b, None).map(drop)
                    } else {
                        m.sleep(Duration::from_secs(3600))
                    }
                })
            })
            .collect();
        util::wait_until(|| m.live() == (2, 2));
        m.shutdown();
        for w in waiters {
            let e = w.join().unwrap().unwrap_err();
            assert!(ShutDown::is(&e), "{e}");
        }
    });
    h.join()?;
    assert!(ShutDown::is(&m.sleep(Duration::ZERO).unwrap_err()));
    Ok(())
}

/// sleep and delay follow the manager's clock.
fn sleep_and_delay<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    let (m, clock, h) = spawned(make)?;
    let d = m.delay(Duration::from_secs(5))?;
    assert!(!d.is_expired());
    thread::scope(|s| {
        let sleeper = s.spawn(|| m.sleep(Duration::from_secs(10)));
        util::wait_until(|| m.live().1 == 2);
        clock.advance(Duration::from_secs(5));
        m.wake();
        util::wait_until(|| d.is_expired());
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(5));
        m.wake();
        sleeper.join().unwrap().unwrap();
    });
    m.shutdown();
    h.join()
}

/// A wait helper called on the loop thread is refused instead of deadlocking.
fn wait_on_loop_thread_is_refused<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let (m, _clock) = util::manual(make)?;
    let (tx, rx) = std::sync::mpsc::channel();
    m.register_timeout(Duration::ZERO, move |m| {
        tx.send(m.sleep(Duration::from_secs(1)).unwrap_err().kind())
            .unwrap()
    })?;
    m.step(Some(Duration::ZERO))?;
    assert_eq!(rx.try_recv().unwrap(), io::ErrorKind::Deadlock);
    Ok(())
}

for_each_backend!(
    wait_returns_on_readiness,
    wait_times_out,
    close_releases_waiter,
    shutdown_releases_waiters,
    sleep_and_delay,
    wait_on_loop_thread_is_refused,
);

/// A regular file is always ready: waiting on it returns at once on epoll (which cannot watch
/// it) as on poll(2).
#[test]
fn regular_file_is_ready() -> io::Result<()> {
    let m = Arc::new(util::default()?);
    let h = m.spawn()?;
    let f = std::fs::File::open("/proc/self/exe")?;
    assert!(m.wait_readable(&f, None)?.is_readable());
    m.shutdown();
    h.join()
}
