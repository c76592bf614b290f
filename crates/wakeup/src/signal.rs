//! Forwarding POSIX signals into [`Control`](crate::Control) channels.
//!
//! [`subscribe`] installs one process-wide handler per signal (`sigaction(2)` with
//! `SA_SIGINFO | SA_RESTART`) when the first subscriber arrives. On delivery the handler
//! writes one fixed-size record per subscribed channel with a single `write(2)` each, so the
//! loop runs the Rust-side handling outside signal context, as GHC's RTS does with its
//! `generic_handler` and timer-manager control pipe. When the last [`Subscription`] for a
//! signal is dropped the previous disposition is restored.
//!
//! Rules:
//!
//! * At most 8 subscriptions per signal at a time.
//! * `SIGKILL` and `SIGSTOP` cannot be caught, and the synchronous fault signals `SIGSEGV`,
//!   `SIGBUS`, `SIGFPE` and `SIGILL` are refused too: returning from their handler
//!   re-executes the faulting instruction, so forwarding them would loop forever.
//! * The handler never blocks: a record that does not fit into a full channel is counted
//!   in [`dropped`] and lost.
//! * The previous handler is replaced, not chained, while subscriptions exist.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use crate::control::ControlSender;
use crate::sys::signal::{self as sys, SavedAction, ACTIVE, DROPPED, NSIG, SLOTS, SUBSCRIBERS};

/// The `si_code` of a signal sent with `kill(2)`, to compare with
/// [`SignalInfo::code`](crate::SignalInfo::code): this system's `SI_USER` (libc has it for
/// Linux only; on macOS and FreeBSD it is `0x10001`, elsewhere 0).
pub const SI_USER: i32 = sys::code::SI_USER;

/// The `si_code` of a signal sent with `sigqueue(3)` (whose value then arrives in
/// [`SignalInfo::value`](crate::SignalInfo::value)): this system's `SI_QUEUE`.
pub const SI_QUEUE: i32 = sys::code::SI_QUEUE;

/// Per-signal management state; only touched under [`MANAGER`], never by the handler.
struct State {
    subscribers: [usize; NSIG],
    saved: [Option<SavedAction>; NSIG],
}

static MANAGER: Mutex<State> = Mutex::new(State {
    subscribers: [0; NSIG],
    saved: [const { None }; NSIG],
});

/// A live subscription of one [`ControlSender`]'s channel to one signal. Dropping it
/// unsubscribes; dropping the last one for a signal restores the signal's previous
/// disposition.
#[must_use = "dropping the Subscription unsubscribes at once"]
pub struct Subscription {
    signo: i32,
    slot: usize,
    // Keeps the channel's write fd open while the handler may write to it.
    sender: ControlSender,
}

fn check_signo(signo: i32) -> io::Result<usize> {
    let refused = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
    ];
    match usize::try_from(signo) {
        Ok(idx) if idx > 0 && idx < NSIG && !refused.contains(&signo) => Ok(idx),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal {signo} cannot be subscribed to"),
        )),
    }
}

/// Forwards every delivery of `signo` to `control`'s channel as a
/// [`Message::Signal`](crate::Message::Signal), until the returned [`Subscription`] is
/// dropped.
///
/// The first subscription for a signal installs the handler. The same channel may be
/// subscribed more than once; it then gets one record per subscription.
///
/// # Errors
///
/// * `ErrorKind::InvalidInput`: `signo` is out of range, `SIGKILL`, `SIGSTOP`, one of the
///   fault signals listed in the [module docs](self), or refused by `sigaction(2)`
///   (`EINVAL`, e.g. the signals glibc reserves for itself).
/// * `ErrorKind::Other`: 8 subscriptions for this signal exist already.
/// * `ErrorKind::BrokenPipe`: the channel's [`Control`](crate::Control) was dropped.
pub fn subscribe(signo: i32, control: &ControlSender) -> io::Result<Subscription> {
    let idx = check_signo(signo)?;
    if control.is_closed() {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the Control was dropped",
        ));
    }
    let mut state = MANAGER.lock().unwrap_or_else(PoisonError::into_inner);
    let slot = SUBSCRIBERS[idx]
        .iter()
        .position(|s| s.load(Ordering::SeqCst) < 0)
        .ok_or_else(|| {
            io::Error::other(format!(
                "too many subscriptions to signal {signo} (at most {SLOTS})"
            ))
        })?;
    // Publish the fd before installing the handler, so the first delivery finds it.
    SUBSCRIBERS[idx][slot].store(control.write_fd(), Ordering::SeqCst);
    if state.subscribers[idx] == 0 {
        match sys::install(signo) {
            Ok(saved) => state.saved[idx] = Some(saved),
            Err(e) => {
                clear_slot(idx, slot);
                return Err(e);
            }
        }
    }
    state.subscribers[idx] += 1;
    Ok(Subscription {
        signo,
        slot,
        sender: control.clone(),
    })
}

/// Empties a slot and waits until no handler that might have read its fd is still running.
fn clear_slot(idx: usize, slot: usize) {
    SUBSCRIBERS[idx][slot].store(-1, Ordering::SeqCst);
    // A handler that incremented ACTIVE before our store may still hold the old fd. It runs
    // to completion in a few microseconds (one write per subscriber); if it interrupted
    // this very thread it has already finished.
    while ACTIVE[idx].load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
}

/// How many deliveries of `signo` could not be forwarded because a channel was full (one
/// per channel that missed it), since the process started. 0 for invalid numbers.
pub fn dropped(signo: i32) -> u64 {
    match usize::try_from(signo) {
        Ok(idx) if idx < NSIG => DROPPED[idx].load(Ordering::Relaxed) as u64,
        _ => 0,
    }
}

impl Subscription {
    /// The subscribed signal.
    pub fn signo(&self) -> i32 {
        self.signo
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // `signo` was validated by `subscribe`.
        let idx = self.signo as usize;
        let mut state = MANAGER.lock().unwrap_or_else(PoisonError::into_inner);
        state.subscribers[idx] = state.subscribers[idx].saturating_sub(1);
        if state.subscribers[idx] == 0 {
            if let Some(saved) = state.saved[idx].take() {
                // Restore first: from here on, deliveries go to the previous disposition.
                // Drop cannot report an error; sigaction only fails for invalid arguments,
                // and these were accepted when the handler was installed.
                let _ = sys::restore(self.signo, &saved);
            }
        }
        clear_slot(idx, self.slot);
        // `self.sender` is dropped after this, so the fd outlived every handler using it.
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("signo", &self.signo)
            .field("slot", &self.slot)
            .field("channel", &self.sender)
            .finish()
    }
}
