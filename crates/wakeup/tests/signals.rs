//! Real POSIX signals forwarded into Controls. Signals are process-wide state, so every test
//! here holds `SERIAL`, and only SIGUSR1/SIGUSR2 are used. (Living beside other signal users
//! is in `coexist.rs`.)

mod util;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use ioman_wakeup::signal::{self, Subscription};
use ioman_wakeup::{Control, Message, Signal, SignalInfo};
use util::{fail, is_readable, poll_readable};

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

fn raise(signal: Signal) -> io::Result<()> {
    // SAFETY: raising a signal we are subscribed to runs our handler; no memory involved.
    if unsafe { libc::raise(signal.as_raw()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Fills `c`'s pipe with records until a send would block.
fn fill(c: &Control, filler: SignalInfo) -> io::Result<()> {
    let tx = c.sender();
    loop {
        match tx.send(Message::Signal(filler)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn raised_signal_reaches_the_control() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let sub: Subscription = signal::subscribe(Signal::USR1, &c.sender())?;
    assert_eq!(sub.signal(), Signal::USR1);
    raise(Signal::USR1)?;
    let info = next_signal(&c)?;
    assert_eq!(info.signal(), Signal::USR1);
    assert_eq!(info.pid(), getpid());
    #[cfg(ioman_si_codes = "linux")]
    assert_eq!(info.code(), libc::SI_TKILL);
    drop(sub);
    Ok(())
}

#[test]
fn signal_sent_from_another_thread_reaches_the_control() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let _sub = signal::subscribe(Signal::USR2, &c.sender())?;
    let pid = getpid();
    let sender = thread::spawn(move || {
        // SAFETY: sending SIGUSR2 to our own process, which has our handler installed.
        unsafe { libc::kill(pid, libc::SIGUSR2) }
    });
    let info = next_signal(&c)?;
    if sender.join().map_err(|_| fail("sender panicked"))? != 0 {
        return Err(io::Error::last_os_error());
    }
    assert_eq!(info.signal(), Signal::USR2);
    assert_eq!(info.code(), signal::SI_USER);
    assert_eq!(info.pid(), pid);
    // SAFETY: getuid has no preconditions.
    assert_eq!(info.uid(), unsafe { libc::getuid() });
    assert_eq!(info.value(), 0);
    Ok(())
}

#[cfg(ioman_sigqueue)]
#[test]
fn sigqueue_value_is_forwarded() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let _sub = signal::subscribe(Signal::USR1, &c.sender())?;
    let value = libc::sigval {
        sival_ptr: 0x1234 as *mut libc::c_void,
    };
    // SAFETY: queueing SIGUSR1 to ourselves with an integer payload.
    if unsafe { libc::sigqueue(getpid(), libc::SIGUSR1, value) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let info = next_signal(&c)?;
    assert_eq!(info.code(), signal::SI_QUEUE);
    assert_eq!(info.value(), 0x1234);
    assert_eq!(info.pid(), getpid());
    Ok(())
}

#[test]
fn two_subscribers_both_get_the_signal() -> io::Result<()> {
    let _g = serial();
    let (a, b) = (Control::new()?, Control::new()?);
    let _sa = signal::subscribe(Signal::USR1, &a.sender())?;
    let _sb = signal::subscribe(Signal::USR1, &b.sender())?;
    raise(Signal::USR1)?;
    assert_eq!(next_signal(&a)?.signal(), Signal::USR1);
    assert_eq!(next_signal(&b)?.signal(), Signal::USR1);
    Ok(())
}

/// There is no limit of 8 any more: each subscription is one registry action, and each gets
/// one record per delivery.
#[test]
fn many_subscriptions_each_get_one_record() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let subs = (0..32)
        .map(|_| signal::subscribe(Signal::USR1, &c.sender()))
        .collect::<io::Result<Vec<_>>>()?;
    raise(Signal::USR1)?;
    let mut out = Vec::new();
    while out.len() < subs.len() {
        if !poll_readable(&c, 10_000)? {
            return Err(fail(format!("only {} of 32 records arrived", out.len())));
        }
        c.drain(&mut out)?;
    }
    assert_eq!(out.len(), 32);
    assert!(out
        .iter()
        .all(|m| matches!(m, Message::Signal(i) if i.signal() == Signal::USR1)));
    Ok(())
}

#[test]
fn dropping_a_subscription_stops_its_records_only() -> io::Result<()> {
    let _g = serial();
    let (a, b) = (Control::new()?, Control::new()?);
    let sa = signal::subscribe(Signal::USR2, &a.sender())?;
    let _sb = signal::subscribe(Signal::USR2, &b.sender())?;
    drop(sa);
    raise(Signal::USR2)?;
    assert_eq!(next_signal(&b)?.signal(), Signal::USR2);
    assert!(
        !poll_readable(&a, 50)?,
        "a dropped subscription still forwards"
    );
    Ok(())
}

/// The registry's handler stays installed after the last subscription goes (restoring the
/// old disposition would remove other registry users' handlers): the default action, here
/// "terminate", no longer happens, and nothing is forwarded.
#[test]
fn after_the_last_subscription_the_signal_is_harmless_and_forwarded_nowhere() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    drop(signal::subscribe(Signal::USR2, &c.sender())?);
    raise(Signal::USR2)?; // would kill the test process under SIG_DFL
    assert!(!poll_readable(&c, 50)?);
    Ok(())
}

#[test]
fn uncatchable_and_fault_signals_are_refused() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    for signal in [
        Signal::KILL,
        Signal::STOP,
        Signal::SEGV,
        Signal::BUS,
        Signal::FPE,
        Signal::ILL,
    ] {
        match signal::subscribe(signal, &c.sender()) {
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {}
            other => return Err(fail(format!("{signal}: {other:?}"))),
        }
    }
    Ok(())
}

#[test]
fn numbers_outside_the_signal_range_are_not_signals() {
    for raw in [0, -1, 65, 1000, i32::MIN, i32::MAX] {
        assert_eq!(Signal::from_raw(raw), None, "{raw}");
        assert_eq!(
            Signal::try_from(raw).map_err(|e| e.kind()),
            Err(io::ErrorKind::InvalidInput)
        );
    }
    for raw in 1..=64 {
        let signal = Signal::from_raw(raw).expect("in range");
        assert_eq!(signal.as_raw(), raw);
        assert_eq!(i32::from(signal), raw);
    }
}

#[test]
fn signals_print_their_names() {
    assert_eq!(Signal::TERM.to_string(), "SIGTERM");
    assert_eq!(format!("{:?}", Signal::WINCH), "SIGWINCH");
    assert_eq!(Signal::from_raw(libc::SIGINT), Some(Signal::INT));
    // A number without a constant (a real-time signal on Linux, unused elsewhere).
    let high = Signal::from_raw(64).expect("in range");
    assert_eq!(format!("{high:?}"), "Signal(64)");
    assert_eq!(high.to_string(), "signal 64");
}

/// A number the system refuses is an error, not a panic (glibc reserves 32 and 33 for its
/// threads; elsewhere 64 is not a signal at all, or not one the C library lets us have).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn numbers_the_system_refuses_are_invalid_input() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let reserved = Signal::from_raw(32).expect("in range");
    match signal::subscribe(reserved, &c.sender()) {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => Err(fail(format!("{other:?}"))),
    }
}

#[test]
fn full_channel_drops_and_counts_the_signal() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let _sub = signal::subscribe(Signal::USR1, &c.sender())?;
    let filler = SignalInfo::new(Signal::HUP).with_code(-42);
    fill(&c, filler)?;
    let before = signal::dropped(Signal::USR1);
    raise(Signal::USR1)?; // the handler must not block on the full pipe
    assert_eq!(signal::dropped(Signal::USR1), before + 1);
    let mut out = Vec::new();
    c.drain(&mut out)?;
    assert!(out.iter().all(|m| *m == Message::Signal(filler)));
    Ok(())
}

/// The action's failed write (`EAGAIN` on the full pipe) does not leak into the errno of
/// the code it interrupted.
#[cfg(ioman_errno = "__errno_location")]
#[test]
fn errno_is_preserved_across_the_handler() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let _sub = signal::subscribe(Signal::USR1, &c.sender())?;
    fill(&c, SignalInfo::new(Signal::HUP))?;
    const MAGIC: i32 = 4242;
    // SAFETY: `__errno_location` returns this thread's errno slot, valid and writable.
    unsafe { *libc::__errno_location() = MAGIC };
    // SAFETY: as in `raise`; the return value is checked after errno is read.
    let rc = unsafe { libc::raise(libc::SIGUSR1) };
    let errno = io::Error::last_os_error().raw_os_error();
    assert_eq!(rc, 0);
    assert_eq!(errno, Some(MAGIC), "the handler changed errno");
    Ok(())
}

#[test]
fn subscribing_to_a_dropped_control_fails() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let tx = c.sender();
    drop(c);
    match signal::subscribe(Signal::USR1, &tx) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Err(fail(format!("{other:?}"))),
    }
}

/// Subscribe, unsubscribe and close the channel while another thread keeps signalling; then
/// open a fresh, unsubscribed pipe, which gets the same fd numbers: no record may reach it.
#[test]
fn no_record_reaches_a_reused_fd_after_unsubscribing() -> io::Result<()> {
    let _g = serial();
    // Keeps the handler installed (and so SIGUSR2 harmless) while the storm runs.
    let keep = Control::new()?;
    let _keep = signal::subscribe(Signal::USR2, &keep.sender())?;
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let stop = Arc::clone(&stop);
        let pid = getpid();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: SIGUSR2 to our own process, whose handler is installed.
                unsafe { libc::kill(pid, libc::SIGUSR2) };
                thread::sleep(Duration::from_micros(50));
            }
        })
    };
    let mut result = Ok(());
    for round in 0..200 {
        let c = Control::new()?;
        let sub = signal::subscribe(Signal::USR2, &c.sender())?;
        drop(sub);
        drop(c); // the last handle: both pipe ends are closed here
        let probe = Control::new()?;
        thread::sleep(Duration::from_micros(200));
        if is_readable(&probe)? {
            result = Err(fail(format!("round {round}: a record reached a reused fd")));
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    storm.join().map_err(|_| fail("storm panicked"))?;
    result
}

/// A loop that handles signals until Die, the way the manager uses the channel.
#[test]
fn loop_handles_signals_then_dies() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let tx = c.sender();
    let sub = signal::subscribe(Signal::USR1, &tx)?;
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
                    _ => {}
                }
            }
        }
    });
    for _ in 0..3 {
        raise(Signal::USR1)?;
    }
    drop(sub);
    tx.die()?;
    let signals = lp.join().map_err(|_| fail("loop panicked"))??;
    assert_eq!(signals, 3);
    Ok(())
}
