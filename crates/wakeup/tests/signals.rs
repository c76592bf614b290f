//! Real POSIX signals forwarded into Controls. Signals are process-wide state, so every test
//! here holds `SERIAL`, and only SIGUSR1/SIGUSR2 are used.

mod util;

use std::io;
use std::mem::MaybeUninit;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use ioman_wakeup::signal::{self, Subscription};
use ioman_wakeup::{Control, Message, SignalInfo};
use util::{fail, poll_readable};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits for the next signal message on `c`.
fn next_signal(c: &Control) -> io::Result<SignalInfo> {
    let mut out = Vec::new();
    loop {
        if !poll_readable(c, 10_000)? {
            return Err(fail("signal never reached the Control"));
        }
        out.clear();
        c.drain(&mut out)?;
        if let Some(Message::Signal(info)) = out.first() {
            return Ok(*info);
        }
    }
}

/// The current handler address (`sa_sigaction`) of `signo`.
fn current_handler(signo: i32) -> io::Result<usize> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null `act` only queries; `old` is valid for writes.
    if unsafe { libc::sigaction(signo, std::ptr::null(), old.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sigaction succeeded and filled `old` (zeroed before anyway).
    Ok(unsafe { old.assume_init() }.sa_sigaction)
}

fn set_handler(signo: i32, handler: libc::sighandler_t) -> io::Result<()> {
    let mut act = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: `act` is zeroed (empty mask, no flags); we set the handler field only.
    let act = unsafe {
        (*act.as_mut_ptr()).sa_sigaction = handler;
        act.assume_init()
    };
    // SAFETY: `act` is a valid sigaction; a null `oldact` is allowed.
    if unsafe { libc::sigaction(signo, &act, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn raise(signo: i32) -> io::Result<()> {
    // SAFETY: raising a signal we are subscribed to runs our handler; no memory involved.
    if unsafe { libc::raise(signo) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

#[test]
fn raised_signal_reaches_the_control() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let sub: Subscription = signal::subscribe(libc::SIGUSR1, &c.sender())?;
    assert_eq!(sub.signo(), libc::SIGUSR1);
    raise(libc::SIGUSR1)?;
    let info = next_signal(&c)?;
    assert_eq!(info.signo, libc::SIGUSR1);
    assert_eq!(info.pid, getpid());
    #[cfg(ioman_si_codes = "linux")]
    assert_eq!(info.code, libc::SI_TKILL);
    drop(sub);
    Ok(())
}

#[test]
fn signal_sent_from_another_thread_reaches_the_control() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let _sub = signal::subscribe(libc::SIGUSR2, &c.sender())?;
    let pid = getpid();
    let sender = thread::spawn(move || {
        // SAFETY: sending SIGUSR2 to our own process, which has our handler installed.
        unsafe { libc::kill(pid, libc::SIGUSR2) }
    });
    let info = next_signal(&c)?;
    if sender.join().map_err(|_| fail("sender panicked"))? != 0 {
        return Err(io::Error::last_os_error());
    }
    assert_eq!(info.signo, libc::SIGUSR2);
    assert_eq!(info.code, signal::SI_USER);
    assert_eq!(info.pid, pid);
    // SAFETY: getuid has no preconditions.
    assert_eq!(info.uid, unsafe { libc::getuid() });
    Ok(())
}

#[cfg(ioman_sigqueue)]
#[test]
fn sigqueue_value_is_forwarded() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let _sub = signal::subscribe(libc::SIGUSR1, &c.sender())?;
    let value = libc::sigval {
        sival_ptr: 0x1234 as *mut libc::c_void,
    };
    // SAFETY: queueing SIGUSR1 to ourselves with an integer payload.
    if unsafe { libc::sigqueue(getpid(), libc::SIGUSR1, value) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let info = next_signal(&c)?;
    assert_eq!(info.code, signal::SI_QUEUE);
    assert_eq!(info.value, 0x1234);
    Ok(())
}

#[test]
fn two_subscribers_both_get_the_signal() -> io::Result<()> {
    let _g = serial();
    let (a, b) = (Control::new()?, Control::new()?);
    let _sa = signal::subscribe(libc::SIGUSR1, &a.sender())?;
    let _sb = signal::subscribe(libc::SIGUSR1, &b.sender())?;
    raise(libc::SIGUSR1)?;
    assert_eq!(next_signal(&a)?.signo, libc::SIGUSR1);
    assert_eq!(next_signal(&b)?.signo, libc::SIGUSR1);
    Ok(())
}

#[test]
fn dropping_the_last_subscription_restores_the_previous_disposition() -> io::Result<()> {
    let _g = serial();
    set_handler(libc::SIGUSR2, libc::SIG_IGN)?;
    let c = Control::new()?;
    let first = signal::subscribe(libc::SIGUSR2, &c.sender())?;
    let second = signal::subscribe(libc::SIGUSR2, &c.sender())?;
    let ours = current_handler(libc::SIGUSR2)?;
    assert_ne!(ours, libc::SIG_IGN, "handler not installed");
    drop(first);
    assert_eq!(current_handler(libc::SIGUSR2)?, ours, "restored too early");
    // The remaining subscription still forwards.
    raise(libc::SIGUSR2)?;
    assert_eq!(next_signal(&c)?.signo, libc::SIGUSR2);
    drop(second);
    assert_eq!(
        current_handler(libc::SIGUSR2)?,
        libc::SIG_IGN,
        "not restored"
    );
    // Ignored again: raising is harmless and forwards nothing.
    raise(libc::SIGUSR2)?;
    assert!(!poll_readable(&c, 50)?);
    set_handler(libc::SIGUSR2, libc::SIG_DFL)?;
    Ok(())
}

#[test]
fn uncatchable_and_out_of_range_signals_are_refused() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    for signo in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, 0, -1, 65, 1000] {
        match signal::subscribe(signo, &c.sender()) {
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {}
            other => return Err(fail(format!("signal {signo}: {other:?}"))),
        }
    }
    Ok(())
}

#[test]
fn at_most_eight_subscriptions_per_signal() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let subs = (0..8)
        .map(|_| signal::subscribe(libc::SIGUSR1, &c.sender()))
        .collect::<io::Result<Vec<_>>>()?;
    assert!(signal::subscribe(libc::SIGUSR1, &c.sender()).is_err());
    drop(subs);
    drop(signal::subscribe(libc::SIGUSR1, &c.sender())?);
    Ok(())
}

#[test]
fn full_channel_drops_and_counts_the_signal() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let tx = c.sender();
    let _sub = signal::subscribe(libc::SIGUSR1, &tx)?;
    let filler = SignalInfo {
        signo: 0,
        code: 0,
        pid: 0,
        uid: 0,
        value: 0,
    };
    loop {
        match tx.send(Message::Signal(filler)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    let before = signal::dropped(libc::SIGUSR1);
    raise(libc::SIGUSR1)?; // the handler must not block on the full pipe
    assert_eq!(signal::dropped(libc::SIGUSR1), before + 1);
    let mut out = Vec::new();
    c.drain(&mut out)?;
    assert!(out.iter().all(|m| *m == Message::Signal(filler)));
    Ok(())
}

#[test]
fn subscribing_to_a_dropped_control_fails() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let tx = c.sender();
    drop(c);
    match signal::subscribe(libc::SIGUSR1, &tx) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Err(fail(format!("{other:?}"))),
    }
}

/// A loop that handles signals until Die, the way the manager uses the channel.
#[test]
fn loop_handles_signals_then_dies() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let tx = c.sender();
    let sub = signal::subscribe(libc::SIGUSR1, &tx)?;
    let lp = thread::spawn(move || -> io::Result<usize> {
        let mut signals = 0;
        let mut out = Vec::new();
        loop {
            if !poll_readable(&c, 10_000)? {
                return Err(fail("loop never got Die"));
            }
            out.clear();
            c.drain(&mut out)?;
            for m in &out {
                match m {
                    Message::Signal(_) => signals += 1,
                    Message::Die => return Ok(signals),
                    Message::Wakeup => {}
                }
            }
        }
    });
    for _ in 0..3 {
        raise(libc::SIGUSR1)?;
    }
    drop(sub);
    tx.die()?;
    let signals = lp.join().map_err(|_| fail("loop panicked"))??;
    assert_eq!(signals, 3);
    Ok(())
}
