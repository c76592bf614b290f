//! The control channel: wakeups, Die, signal records, full pipes, and shutdown.

mod util;

use std::io;
use std::thread;
use std::time::Duration;

use ioman_wakeup::{Control, ControlSender, Message, Signal, SignalInfo, Wakeup};
use util::{fail, is_readable, poll_readable};

fn info(signal: Signal, value: usize) -> SignalInfo {
    SignalInfo::new(signal)
        .with_code(-1)
        .with_sender(42, 7)
        .with_value(value)
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Wakeup>();
    check::<Control>();
    check::<ControlSender>();
    fn clone<T: Clone>() {}
    clone::<ControlSender>();
}

#[test]
fn empty_drain_returns_nothing() -> io::Result<()> {
    let c = Control::new()?;
    let mut out = Vec::new();
    assert_eq!(c.drain(&mut out)?, 0);
    assert!(out.is_empty());
    assert!(!is_readable(&c)?);
    Ok(())
}

#[test]
fn wakes_coalesce_into_one_message_and_one_syscall() -> io::Result<()> {
    let c = Control::new()?;
    let tx = c.sender();
    for _ in 0..100 {
        tx.wake()?;
        tx.send(Message::Wakeup)?;
    }
    assert_eq!(tx.syscalls(), 1);
    assert!(is_readable(&c)?);
    let mut out = Vec::new();
    assert_eq!(c.drain(&mut out)?, 1);
    assert_eq!(out, [Message::Wakeup]);
    assert!(!is_readable(&c)?);
    out.clear();
    assert_eq!(c.drain(&mut out)?, 0);
    Ok(())
}

#[test]
fn signal_records_arrive_in_order_before_wakeup() -> io::Result<()> {
    let c = Control::new()?;
    let tx = c.sender();
    tx.send(Message::Signal(info(Signal::USR1, 1)))?;
    tx.wake()?;
    tx.send(Message::Signal(info(Signal::USR2, usize::MAX)))?;
    let mut out = Vec::new();
    assert_eq!(c.drain(&mut out)?, 3);
    assert_eq!(
        out,
        [
            Message::Signal(info(Signal::USR1, 1)),
            Message::Signal(info(Signal::USR2, usize::MAX)),
            Message::Wakeup
        ]
    );
    Ok(())
}

#[test]
fn die_is_reported_once_and_replaces_wakeup() -> io::Result<()> {
    let c = Control::new()?;
    let tx = c.sender();
    tx.wake()?;
    tx.die()?;
    tx.send(Message::Die)?;
    let mut out = Vec::new();
    c.drain(&mut out)?;
    assert_eq!(out, [Message::Die]);
    out.clear();
    assert_eq!(c.drain(&mut out)?, 0);
    Ok(())
}

#[test]
fn full_channel_never_blocks_and_keeps_die() -> io::Result<()> {
    let c = Control::new()?;
    let tx = c.sender();
    let mut sent = 0usize;
    loop {
        match tx.send(Message::Signal(info(Signal::USR1, sent))) {
            Ok(()) => sent += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
        if sent > 1 << 20 {
            return Err(fail("pipe never filled"));
        }
    }
    assert!(sent > 0);
    // Full: wake and die still succeed without blocking.
    tx.wake()?;
    tx.die()?;
    let mut out = Vec::new();
    c.drain(&mut out)?;
    let signals: Vec<_> = out
        .iter()
        .filter_map(|m| match m {
            Message::Signal(i) => Some(i.value()),
            _ => None,
        })
        .collect();
    assert_eq!(
        signals,
        (0..sent).collect::<Vec<_>>(),
        "signals lost or reordered"
    );
    assert_eq!(
        out.last(),
        Some(&Message::Die),
        "Die lost in a full channel"
    );
    Ok(())
}

#[test]
fn die_shuts_down_a_loop_blocked_in_poll() -> io::Result<()> {
    let c = Control::new()?;
    let tx = c.sender();
    let lp = thread::spawn(move || -> io::Result<usize> {
        let mut wakeups = 0;
        let mut out = Vec::new();
        loop {
            if !poll_readable(&c, 10_000)? {
                return Err(fail("loop never got Die"));
            }
            out.clear();
            c.drain(&mut out)?;
            for m in &out {
                match m {
                    Message::Wakeup => wakeups += 1,
                    Message::Die => return Ok(wakeups),
                    _ => {}
                }
            }
        }
    });
    thread::sleep(Duration::from_millis(20));
    tx.wake()?;
    thread::sleep(Duration::from_millis(20));
    tx.die()?;
    let wakeups = lp.join().map_err(|_| fail("loop panicked"))??;
    assert!(wakeups <= 1);
    // The Control is gone with the loop: senders get BrokenPipe, not a hang or SIGPIPE.
    assert_eq!(
        tx.wake().map_err(|e| e.kind()),
        Err(io::ErrorKind::BrokenPipe)
    );
    assert_eq!(
        tx.die().map_err(|e| e.kind()),
        Err(io::ErrorKind::BrokenPipe)
    );
    Ok(())
}

#[test]
fn control_fd_is_nonblocking_and_cloexec() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let c = Control::new()?;
    let fd = c.as_raw_fd();
    // SAFETY: `fd` is open for the lifetime of `c`; F_GETFL/F_GETFD take no argument.
    let (fl, fdfl) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
        )
    };
    assert!(fl & libc::O_NONBLOCK != 0);
    assert!(fdfl & libc::FD_CLOEXEC != 0);
    Ok(())
}
