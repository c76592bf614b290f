//! Subscriptions beside the program's other signal users: a `signal-hook` handler (which goes
//! through the same registry, as `tokio::signal` does) and a plain `sigaction(2)` handler
//! installed before (a C library's, or `ctrlc`'s). Each test uses its own signal, so that
//! what one installs cannot hide another's result; all of them hold `SERIAL` anyway.

mod util;

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ioman_wakeup::signal;
use ioman_wakeup::{Control, Message, Signal};
use util::{fail, poll_readable};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn raise(signal: Signal) -> io::Result<()> {
    // SAFETY: every signal raised here has a handler installed; no memory involved.
    if unsafe { libc::raise(signal.as_raw()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `c` received exactly one record of `signal` (waiting up to 10 s for it).
fn received_one(c: &Control, signal: Signal) -> io::Result<bool> {
    if !poll_readable(c, 10_000)? {
        return Ok(false);
    }
    let mut out = Vec::new();
    c.drain(&mut out)?;
    Ok(matches!(out[..], [Message::Signal(info)] if info.signal() == signal))
}

/// Whether the signal-hook flag was raised since the last look; clears it.
fn saw(flag: &AtomicBool) -> bool {
    flag.swap(false, Ordering::SeqCst)
}

#[test]
fn a_signal_hook_handler_beside_a_subscription_both_see_it() -> io::Result<()> {
    let _g = serial();
    let c = Control::new()?;
    let sub = signal::subscribe(Signal::USR1, &c.sender())?;
    let flag = Arc::new(AtomicBool::new(false));
    let hook = signal_hook::flag::register(Signal::USR1.as_raw(), Arc::clone(&flag))?;

    raise(Signal::USR1)?;
    assert!(
        received_one(&c, Signal::USR1)?,
        "the subscription missed it"
    );
    assert!(saw(&flag), "signal-hook missed it");

    // Either can leave without taking the signal from the other.
    assert!(signal_hook::low_level::unregister(hook));
    raise(Signal::USR1)?;
    assert!(
        received_one(&c, Signal::USR1)?,
        "lost after signal-hook left"
    );
    assert!(!saw(&flag));
    drop(sub);
    Ok(())
}

#[test]
fn a_signal_hook_handler_installed_before_sees_it_while_and_after_a_subscription() -> io::Result<()>
{
    let _g = serial();
    let flag = Arc::new(AtomicBool::new(false));
    let hook = signal_hook::flag::register(Signal::USR2.as_raw(), Arc::clone(&flag))?;

    let c = Control::new()?;
    let sub = signal::subscribe(Signal::USR2, &c.sender())?;
    raise(Signal::USR2)?;
    assert!(
        received_one(&c, Signal::USR2)?,
        "the subscription missed it"
    );
    assert!(saw(&flag), "signal-hook missed it while subscribed");

    drop(sub);
    raise(Signal::USR2)?;
    assert!(
        saw(&flag),
        "signal-hook missed it after the subscription was dropped"
    );
    assert!(
        !poll_readable(&c, 50)?,
        "forwarded after the subscription was dropped"
    );
    signal_hook::low_level::unregister(hook);
    Ok(())
}

/// Deliveries seen by the plain handler below.
static PLAIN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn plain_handler(_signo: libc::c_int) {
    PLAIN.fetch_add(1, Ordering::SeqCst);
}

/// Installs `plain_handler` for `signal` with `sigaction(2)`, as a C library would.
fn install_plain(signal: Signal) -> io::Result<()> {
    let mut act = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: `act` is zeroed (no flags: a one-argument handler), we set the handler and an
    // empty mask; the handler only touches an atomic, which is async-signal-safe.
    let rc = unsafe {
        let p = act.as_mut_ptr();
        (*p).sa_sigaction = plain_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut (*p).sa_mask);
        libc::sigaction(signal.as_raw(), p, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SIGWINCH` is used by this test only, so the plain handler comes before the registry's
/// first registration for it in this process: the registry then chains to it.
#[test]
fn a_plain_handler_installed_before_is_chained_while_and_after_a_subscription() -> io::Result<()> {
    let _g = serial();
    install_plain(Signal::WINCH)?;
    raise(Signal::WINCH)?;
    assert_eq!(PLAIN.load(Ordering::SeqCst), 1);

    let c = Control::new()?;
    let sub = signal::subscribe(Signal::WINCH, &c.sender())?;
    raise(Signal::WINCH)?;
    assert!(
        received_one(&c, Signal::WINCH)?,
        "the subscription missed it"
    );
    assert_eq!(
        PLAIN.load(Ordering::SeqCst),
        2,
        "not chained while subscribed"
    );

    drop(sub);
    raise(Signal::WINCH)?;
    assert_eq!(
        PLAIN.load(Ordering::SeqCst),
        3,
        "not chained after unsubscribing"
    );
    if poll_readable(&c, 50)? {
        return Err(fail("forwarded after the subscription was dropped"));
    }
    Ok(())
}
