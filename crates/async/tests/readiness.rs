//! Readiness and waker semantics, driven by hand: a manager nobody else drives, futures polled
//! with counting wakers, one `step` at a time. No sleeps, no loop thread.
//!
//! The readiness model (a direction stays "maybe ready" from an event until an attempt says
//! `WouldBlock`) is tested twice: on the default backend's edge-triggered registrations, and
//! on the manager's level-triggered fallback (`Lifetime::Edge` behaves as `Rearmable` when the
//! fd has registrations of another kind, as it does on poll(2), which ioman-async cannot use:
//! its manager type is `EventManager<DefaultBackend>`).

mod util;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::task::Poll;

use futures::io::AsyncReadExt;
use ioman::{EventManager, Interest, Lifetime};
use ioman_async::Async;
use util::{kernel_calls, manager, poll, step, CountingWaker};

/// A pair on `m`: the peer, and ours as an `Async`. With `level`, ours also gets a
/// `Rearmable` registration of its own (fired once, never re-armed), which puts the fd on the
/// manager's level-triggered fallback.
fn pair(m: &Arc<EventManager>, level: bool) -> io::Result<(UnixStream, Async<UnixStream>)> {
    let (peer, ours) = UnixStream::pair()?;
    let ours = Async::with_manager(ours, m)?;
    if level {
        m.register_fd(
            ours.get_ref(),
            Interest::WRITE,
            Lifetime::Rearmable,
            |_, _, _| {},
        )?;
        step(m)?;
    }
    Ok((peer, ours))
}

/// `#[test]`s `edge` and `level` in a module named after the scenario.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn edge() -> std::io::Result<()> {
                super::$name(false)
            }
            #[test]
            fn level() -> std::io::Result<()> {
                super::$name(true)
            }
        }
    )*};
}

both_modes!(
    readable_twice_without_reading_completes_at_once_the_second_time,
    a_waiter_cancelled_after_its_wake_leaves_the_readiness_to_the_next,
    a_read_cancelled_after_its_wake_leaves_the_data_to_the_next,
    a_would_block_outside_the_reactor_makes_readable_wait_not_spin,
    an_event_during_an_attempt_is_not_cleared_by_its_would_block,
    readiness_stays_until_an_attempt_says_would_block,
);

fn readable_twice_without_reading_completes_at_once_the_second_time(level: bool) -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = pair(&m, level)?;
    let w = CountingWaker::new();
    let mut first = ours.readable();
    assert!(poll(&mut first, &w).is_pending());
    peer.write_all(b"x")?;
    step(&m)?;
    assert_eq!(w.wakes(), 1);
    assert!(matches!(poll(&mut first, &w), Poll::Ready(Ok(()))));
    drop(first);
    // Nothing was read: the fd is still ready, so the next wait ends at once, without a loop
    // iteration, a wake or a backend call.
    let (calls, iterations) = (kernel_calls(&m), m.stats().iterations);
    for _ in 0..3 {
        assert!(matches!(
            poll(&mut ours.readable(), &w),
            Poll::Ready(Ok(()))
        ));
    }
    if !level {
        assert_eq!(kernel_calls(&m), calls);
    }
    assert_eq!((m.stats().iterations, w.wakes()), (iterations, 1));
    // Read until `WouldBlock` through the reactor: from then on it waits.
    let mut byte = [0u8; 1];
    let mut ours = ours;
    let mut read = Box::pin(ours.read_with_mut(|s| s.read(&mut byte)));
    assert!(matches!(poll(&mut read, &w), Poll::Ready(Ok(1))));
    drop(read);
    let mut read = ours.read(&mut byte);
    assert!(poll(&mut read, &w).is_pending());
    drop(read);
    assert!(poll(&mut ours.readable(), &w).is_pending());
    Ok(())
}

fn a_waiter_cancelled_after_its_wake_leaves_the_readiness_to_the_next(
    level: bool,
) -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = pair(&m, level)?;
    let (a, b) = (CountingWaker::new(), CountingWaker::new());
    let mut first = ours.readable();
    assert!(poll(&mut first, &a).is_pending());
    peer.write_all(b"x")?;
    step(&m)?;
    assert_eq!(a.wakes(), 1);
    drop(first); // woken, never looked: the readiness must reach the next waiter

    // The next waiter finds it at once (no new edge will come for the byte already there).
    let mut second = ours.readable();
    assert!(matches!(poll(&mut second, &b), Poll::Ready(Ok(()))));
    let mut byte = [0u8; 1];
    assert_eq!(ours.get_ref().read(&mut byte)?, 1);
    Ok(())
}

fn a_read_cancelled_after_its_wake_leaves_the_data_to_the_next(level: bool) -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = pair(&m, level)?;
    let mut ours = ours;
    let (a, b) = (CountingWaker::new(), CountingWaker::new());
    let mut buf = [0u8; 8];
    assert!(poll(&mut ours.read(&mut buf), &a).is_pending());
    peer.write_all(b"late")?;
    step(&m)?;
    assert_eq!(a.wakes(), 1);
    // The woken read was dropped (its task gave up); another task's read gets the data at
    // once, from another thread.
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                poll(&mut ours.read(&mut buf), &b),
                Poll::Ready(Ok(4))
            ))
        });
    });
    assert_eq!(&buf[..4], b"late");
    Ok(())
}

fn a_would_block_outside_the_reactor_makes_readable_wait_not_spin(level: bool) -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = pair(&m, level)?;
    let w = CountingWaker::new();
    peer.write_all(b"abc")?;
    // async-io's pattern: wait, then read through `get_ref` until `WouldBlock`, wait again.
    let mut byte = [0u8; 1];
    for _ in 0..3 {
        assert!(matches!(
            poll(&mut ours.readable(), &w),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(ours.get_ref().read(&mut byte)?, 1);
    }
    let e = ours.get_ref().read(&mut byte).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    // The reactor did not see that `WouldBlock`, but `readable` asks the fd: it waits.
    let mut readable = ours.readable();
    assert!(poll(&mut readable, &w).is_pending());
    step(&m)?;
    assert_eq!(w.wakes(), 0);
    peer.write_all(b"d")?;
    step(&m)?;
    assert_eq!(w.wakes(), 1);
    assert!(matches!(poll(&mut readable, &w), Poll::Ready(Ok(()))));
    Ok(())
}

fn an_event_during_an_attempt_is_not_cleared_by_its_would_block(level: bool) -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = pair(&m, level)?;
    let w = CountingWaker::new();
    // Waiting for the next edge.
    assert!(poll(&mut ours.readable(), &w).is_pending());
    // An attempt that says `WouldBlock` although, while it ran, data came and its edge was
    // delivered: the wait after it must not clear that readiness (no new edge would come).
    let mut first = true;
    let mut byte = [0u8; 1];
    let mut read = Box::pin(ours.read_with(|mut s| {
        if std::mem::take(&mut first) {
            peer.write_all(b"x")?;
            step(&m)?;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        s.read(&mut byte)
    }));
    assert!(
        matches!(poll(&mut read, &w), Poll::Ready(Ok(1))),
        "the edge that came during the attempt was lost"
    );
    Ok(())
}

fn readiness_stays_until_an_attempt_says_would_block(level: bool) -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = pair(&m, level)?;
    let mut ours = ours;
    let w = CountingWaker::new();
    let mut buf = [0u8; 4];
    assert!(poll(&mut ours.read(&mut buf), &w).is_pending());
    peer.write_all(b"01234567")?;
    step(&m)?;
    // Full reads (not short: the fd may hold more) leave it "maybe ready"; only the attempt
    // that says `WouldBlock` makes it wait.
    assert!(matches!(
        poll(&mut ours.read(&mut buf), &w),
        Poll::Ready(Ok(4))
    ));
    assert_eq!(&buf, b"0123");
    assert!(matches!(
        poll(&mut ours.readable(), &w),
        Poll::Ready(Ok(()))
    ));
    assert!(matches!(
        poll(&mut ours.read(&mut buf), &w),
        Poll::Ready(Ok(4))
    ));
    assert_eq!(&buf, b"4567");
    assert!(poll(&mut ours.read(&mut buf), &w).is_pending());
    assert!(poll(&mut ours.readable(), &w).is_pending());
    peer.write_all(b"8")?;
    step(&m)?;
    assert!(matches!(
        poll(&mut ours.read(&mut buf), &w),
        Poll::Ready(Ok(1))
    ));
    Ok(())
}

#[test]
fn a_pending_read_makes_no_wake_and_no_kernel_call_until_data_comes() -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = UnixStream::pair()?;
    let mut ours = Async::with_manager(ours, &m)?;
    let w = CountingWaker::new();
    let mut buf = [0u8; 16];
    {
        let mut read = ours.read(&mut buf);
        assert!(poll(&mut read, &w).is_pending());
        let calls = kernel_calls(&m);
        let callbacks = m.stats().fd_callbacks;
        for _ in 0..20 {
            step(&m)?;
        }
        assert_eq!(w.wakes(), 0, "woken with nothing to read");
        assert_eq!(kernel_calls(&m), calls, "kernel calls while idle");
        assert_eq!(m.stats().fd_callbacks, callbacks, "callbacks while idle");
        // Polled again without a wake (a spurious poll): still pending, no read attempted.
        assert!(poll(&mut read, &w).is_pending());

        peer.write_all(b"ping")?;
        step(&m)?;
        assert_eq!(w.wakes(), 1, "one event, one wake");
        assert!(matches!(poll(&mut read, &w), Poll::Ready(Ok(4))));
    }
    assert_eq!(&buf[..4], b"ping");
    Ok(())
}

#[test]
fn steady_state_round_trips_make_no_kernel_calls() -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = UnixStream::pair()?;
    let mut ours = Async::with_manager(ours, &m)?;
    let w = CountingWaker::new();
    let mut buf = [0u8; 64];
    // The first wait registers.
    assert!(poll(&mut ours.read(&mut buf), &w).is_pending());
    let calls = kernel_calls(&m);
    for i in 0..1000 {
        peer.write_all(&[i as u8; 8])?;
        step(&m)?;
        let mut read = ours.read(&mut buf);
        assert!(
            matches!(poll(&mut read, &w), Poll::Ready(Ok(8))),
            "round {i}"
        );
        // Short read: armed at once, so the next poll is pending without a read.
        assert!(poll(&mut ours.read(&mut buf), &w).is_pending());
    }
    assert_eq!(w.wakes(), 1000);
    assert_eq!(kernel_calls(&m), calls, "re-arms made kernel calls");
    Ok(())
}

#[test]
fn a_future_polled_by_another_task_wakes_the_new_one() -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = UnixStream::pair()?;
    let ours = Async::with_manager(ours, &m)?;
    let (a, b) = (CountingWaker::new(), CountingWaker::new());
    let mut readable = ours.readable();
    assert!(poll(&mut readable, &a).is_pending());
    assert!(poll(&mut readable, &b).is_pending());
    peer.write_all(b"x")?;
    step(&m)?;
    assert_eq!((a.wakes(), b.wakes()), (0, 1));
    assert!(matches!(poll(&mut readable, &b), Poll::Ready(Ok(()))));
    drop(readable);

    // The same for the poll_read slot, moved to another thread's waker.
    let mut ours = ours;
    let mut buf = [0u8; 4];
    assert!(matches!(
        poll(&mut ours.read(&mut buf), &a),
        Poll::Ready(Ok(1))
    ));
    let (c, d) = (CountingWaker::new(), CountingWaker::new());
    assert!(poll(&mut ours.read(&mut buf), &c).is_pending());
    std::thread::scope(|s| {
        s.spawn(|| assert!(poll(&mut ours.read(&mut buf), &d).is_pending()));
    });
    peer.write_all(b"y")?;
    step(&m)?;
    assert_eq!((c.wakes(), d.wakes()), (0, 1));
    Ok(())
}

#[test]
fn every_waiter_is_woken_by_one_event() -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = UnixStream::pair()?;
    let ours = Async::with_manager(ours, &m)?;
    let wakers: Vec<_> = (0..100).map(|_| CountingWaker::new()).collect();
    let mut futures: Vec<_> = (0..100).map(|_| ours.readable()).collect();
    for (f, w) in futures.iter_mut().zip(&wakers) {
        assert!(poll(f, w).is_pending());
    }
    // Half of them give up before the event.
    futures.truncate(50);
    peer.write_all(b"x")?;
    step(&m)?;
    assert_eq!(m.stats().fd_callbacks, 1);
    for (f, w) in futures.iter_mut().zip(&wakers) {
        assert_eq!(w.wakes(), 1);
        assert!(matches!(poll(f, w), Poll::Ready(Ok(()))));
    }
    for w in &wakers[50..] {
        assert_eq!(w.wakes(), 0, "a dropped waiter was woken");
    }
    Ok(())
}

#[test]
fn a_read_cancelled_before_the_event_loses_nothing() -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = UnixStream::pair()?;
    let mut ours = Async::with_manager(ours, &m)?;
    let w = CountingWaker::new();
    let mut buf = [0u8; 8];
    // A read with a timeout that expired: the read future is dropped while armed.
    drop(poll(&mut ours.read(&mut buf), &w));
    peer.write_all(b"late")?;
    step(&m)?;
    let w2 = CountingWaker::new();
    let mut read = ours.read(&mut buf);
    match poll(&mut read, &w2) {
        Poll::Ready(r) => assert_eq!(r?, 4),
        Poll::Pending => {
            step(&m)?;
            assert_eq!(w2.wakes(), 1);
            assert_eq!(futures::executor::block_on(read)?, 4);
        }
    }
    Ok(())
}

#[test]
fn a_shut_down_manager_fails_its_waiters() -> io::Result<()> {
    let m = manager()?;
    let (_peer, ours) = UnixStream::pair()?;
    let ours = Async::with_manager(ours, &m)?;
    let w = CountingWaker::new();
    let mut readable = ours.readable();
    assert!(poll(&mut readable, &w).is_pending());
    m.shutdown();
    assert_eq!(w.wakes(), 1);
    match poll(&mut readable, &w) {
        Poll::Ready(Err(e)) => assert!(ioman::ShutDown::is(&e), "{e}"),
        other => panic!("{other:?}"),
    }
    // Later waits fail at once.
    match poll(&mut ours.writable(), &w) {
        Poll::Ready(Err(e)) => assert!(ioman::ShutDown::is(&e), "{e}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn write_readiness_wakes_a_blocked_writer() -> io::Result<()> {
    let m = manager()?;
    let (mut peer, ours) = UnixStream::pair()?;
    let ours = Async::with_manager(ours, &m)?;
    // Fill the socket buffer.
    let chunk = [0u8; 65536];
    let mut sent = 0usize;
    loop {
        match ours.get_ref().write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    let w = CountingWaker::new();
    let mut shared = &ours;
    let mut write = futures::io::AsyncWriteExt::write(&mut shared, &chunk);
    assert!(poll(&mut write, &w).is_pending());
    step(&m)?;
    assert_eq!(w.wakes(), 0);
    // Drain it from the other side.
    let mut sink = vec![0u8; sent];
    peer.read_exact(&mut sink)?;
    step(&m)?;
    assert_eq!(w.wakes(), 1);
    assert!(matches!(poll(&mut write, &w), Poll::Ready(Ok(n)) if n > 0));
    Ok(())
}

#[test]
fn connect_reports_a_refused_connection() -> io::Result<()> {
    let m = manager()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    // The listener is closed: nothing listens on the port any more.
    let r = ioman_async::block_on_with(&m, Async::<std::net::TcpStream>::connect_with(&m, port));
    assert_eq!(
        r.err().map(|e| e.kind()),
        Some(io::ErrorKind::ConnectionRefused)
    );
    Ok(())
}
