//! Forwarding POSIX signals into [`Control`](crate::Control) channels, beside the other signal
//! users of the program.
//!
//! [`subscribe`] registers an action with [`signal-hook-registry`], the process-wide registry
//! that `tokio::signal` and `signal-hook` use too. The registry installs one handler per
//! signal (`sigaction(2)` with `SA_SIGINFO | SA_RESTART`) the first time anyone registers for
//! it, calls the handler that was installed before it (chaining), then runs every registered
//! action. Ours writes one fixed-size record per subscription into its channel with a single
//! `write(2)`, so the loop runs the Rust-side handling outside signal context, as GHC's RTS
//! does with its `generic_handler` and timer-manager control pipe.
//!
//! # Living with other signal users
//!
//! * A `tokio::signal` stream, a `signal-hook` handler or another [`Subscription`] for the
//!   same signal all see every delivery, whichever was registered first.
//! * A handler installed with plain `sigaction(2)` *before* the registry's first
//!   registration for a signal (a C library's, or `ctrlc`'s) is chained: it keeps being called
//!   while subscriptions exist and after they are dropped. One installed *after* it replaces
//!   the registry's handler and with it every registry user's; that is the rule of every
//!   registry-based crate.
//! * Dropping a [`Subscription`] removes its action, not the registry's handler, which stays
//!   installed for the rest of the process (restoring the old disposition would silence the
//!   other registry users). So a signal whose default action is to terminate the process
//!   (`SIGTERM`, `SIGINT`, `SIGUSR1`, ...) no longer does once it has been subscribed to; a
//!   program that wants to stop on it after unsubscribing exits itself, as tokio and
//!   signal-hook users do.
//!
//! # Rules
//!
//! * `SIGKILL` and `SIGSTOP` cannot be caught, and the synchronous fault signals `SIGSEGV`,
//!   `SIGBUS`, `SIGFPE` and `SIGILL` are refused too: returning from their handler
//!   re-executes the faulting instruction, so forwarding them would loop forever.
//! * The action never blocks: a record that does not fit into a full channel is counted in
//!   [`dropped`] and lost.
//! * The action preserves `errno`, allocates nothing and takes no lock.
//! * Subscriptions per signal are not limited (each is one registry action); registering and
//!   unregistering are slow operations (they copy the registry's table), meant for set-up and
//!   tear-down, not for every event.
//!
//! # Examples
//!
//! `SIGUSR1` arrives as a [`Message::Signal`](crate::Message::Signal) on the channel's fd:
//!
//! ```
//! use std::os::fd::AsRawFd;
//! use std::process::Command;
//! use ioman_wakeup::{signal, Control, Message, Signal};
//!
//! let control = Control::new()?;
//! let _sub = signal::subscribe(Signal::USR1, &control.sender())?;
//!
//! // Another process sends it: the shell's `kill` (no `unsafe` here).
//! let kill = format!("kill -USR1 {}", std::process::id());
//! assert!(Command::new("sh").args(["-c", &kill]).status()?.success());
//!
//! // The loop: wait until the channel's fd is readable, then drain it.
//! let mut pfd = libc::pollfd { fd: control.as_raw_fd(), events: libc::POLLIN, revents: 0 };
//! let mut messages = Vec::new();
//! while messages.is_empty() {
//!     // SAFETY: one valid pollfd; at most 10 s.
//!     unsafe { libc::poll(&mut pfd, 1, 10_000) };
//!     control.drain(&mut messages)?;
//! }
//! let Message::Signal(info) = messages[0] else { panic!("{messages:?}") };
//! assert_eq!(info.signal(), Signal::USR1);
//! assert_eq!(info.code(), signal::SI_USER);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`signal-hook-registry`]: https://docs.rs/signal-hook-registry

use std::fmt;
use std::io;
use std::sync::atomic::Ordering;

use crate::control::ControlSender;
use crate::sys::signal::{self as sys, Forward, DROPPED, NSIG};

/// A POSIX signal number, such as [`Signal::TERM`]: this system's number for it, taken from
/// libc (the numbers differ between systems: `SIGUSR1` is 10 on Linux, 30 on macOS and the
/// BSDs, 16 on illumos).
///
/// Every value is a number in `1..=64`: the standard signals have constants here, the
/// real-time ones (Linux, NetBSD) come from [`Signal::from_raw`]. Whether the system has a
/// given number, and lets it be caught, is checked by [`subscribe`].
///
/// `Debug` and `Display` print the name (`SIGTERM`) where there is a constant, the number
/// otherwise.
///
/// # Examples
///
/// ```
/// use ioman_wakeup::Signal;
///
/// assert_eq!(Signal::from_raw(Signal::TERM.as_raw()), Some(Signal::TERM));
/// assert_eq!(Signal::try_from(0).map_err(|e| e.kind()), Err(std::io::ErrorKind::InvalidInput));
/// assert_eq!(Signal::HUP.to_string(), "SIGHUP");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signal(i32);

impl Signal {
    /// `SIGHUP`: the controlling terminal hung up; by convention, "reload the configuration".
    pub const HUP: Signal = Signal(libc::SIGHUP);
    /// `SIGINT`: interrupt from the keyboard (Ctrl-C).
    pub const INT: Signal = Signal(libc::SIGINT);
    /// `SIGQUIT`: quit from the keyboard (Ctrl-\\).
    pub const QUIT: Signal = Signal(libc::SIGQUIT);
    /// `SIGILL`: illegal instruction (a fault signal: [`subscribe`] refuses it).
    pub const ILL: Signal = Signal(libc::SIGILL);
    /// `SIGTRAP`: trace or breakpoint trap.
    pub const TRAP: Signal = Signal(libc::SIGTRAP);
    /// `SIGABRT`: `abort(3)`.
    pub const ABRT: Signal = Signal(libc::SIGABRT);
    /// `SIGBUS`: bus error (a fault signal: [`subscribe`] refuses it).
    pub const BUS: Signal = Signal(libc::SIGBUS);
    /// `SIGFPE`: arithmetic exception (a fault signal: [`subscribe`] refuses it).
    pub const FPE: Signal = Signal(libc::SIGFPE);
    /// `SIGKILL`: cannot be caught ([`subscribe`] refuses it).
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// `SIGUSR1`: user-defined signal 1.
    pub const USR1: Signal = Signal(libc::SIGUSR1);
    /// `SIGSEGV`: invalid memory reference (a fault signal: [`subscribe`] refuses it).
    pub const SEGV: Signal = Signal(libc::SIGSEGV);
    /// `SIGUSR2`: user-defined signal 2.
    pub const USR2: Signal = Signal(libc::SIGUSR2);
    /// `SIGPIPE`: write to a pipe or socket with no reader.
    pub const PIPE: Signal = Signal(libc::SIGPIPE);
    /// `SIGALRM`: a timer set by `alarm(2)` or `setitimer(2)` expired.
    pub const ALRM: Signal = Signal(libc::SIGALRM);
    /// `SIGTERM`: termination request, what `kill` sends by default.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// `SIGCHLD`: a child process stopped or terminated.
    pub const CHLD: Signal = Signal(libc::SIGCHLD);
    /// `SIGCONT`: continue if stopped.
    pub const CONT: Signal = Signal(libc::SIGCONT);
    /// `SIGSTOP`: stop the process; cannot be caught ([`subscribe`] refuses it).
    pub const STOP: Signal = Signal(libc::SIGSTOP);
    /// `SIGTSTP`: stop typed at the terminal (Ctrl-Z).
    pub const TSTP: Signal = Signal(libc::SIGTSTP);
    /// `SIGTTIN`: terminal input for a background process.
    pub const TTIN: Signal = Signal(libc::SIGTTIN);
    /// `SIGTTOU`: terminal output for a background process.
    pub const TTOU: Signal = Signal(libc::SIGTTOU);
    /// `SIGURG`: urgent data on a socket.
    pub const URG: Signal = Signal(libc::SIGURG);
    /// `SIGXCPU`: CPU time limit exceeded.
    pub const XCPU: Signal = Signal(libc::SIGXCPU);
    /// `SIGXFSZ`: file size limit exceeded.
    pub const XFSZ: Signal = Signal(libc::SIGXFSZ);
    /// `SIGVTALRM`: virtual timer expired.
    pub const VTALRM: Signal = Signal(libc::SIGVTALRM);
    /// `SIGPROF`: profiling timer expired.
    pub const PROF: Signal = Signal(libc::SIGPROF);
    /// `SIGWINCH`: the terminal window changed size.
    pub const WINCH: Signal = Signal(libc::SIGWINCH);
    /// `SIGIO`: I/O is possible on a descriptor set up with `O_ASYNC` (`SIGPOLL` on System V).
    pub const IO: Signal = Signal(libc::SIGIO);
    /// `SIGSYS`: bad system call (also what a seccomp filter sends).
    pub const SYS: Signal = Signal(libc::SIGSYS);

    /// The signals that have a constant, with their names, for `Debug` and `Display`.
    const NAMED: [(Signal, &'static str); 29] = [
        (Signal::HUP, "SIGHUP"),
        (Signal::INT, "SIGINT"),
        (Signal::QUIT, "SIGQUIT"),
        (Signal::ILL, "SIGILL"),
        (Signal::TRAP, "SIGTRAP"),
        (Signal::ABRT, "SIGABRT"),
        (Signal::BUS, "SIGBUS"),
        (Signal::FPE, "SIGFPE"),
        (Signal::KILL, "SIGKILL"),
        (Signal::USR1, "SIGUSR1"),
        (Signal::SEGV, "SIGSEGV"),
        (Signal::USR2, "SIGUSR2"),
        (Signal::PIPE, "SIGPIPE"),
        (Signal::ALRM, "SIGALRM"),
        (Signal::TERM, "SIGTERM"),
        (Signal::CHLD, "SIGCHLD"),
        (Signal::CONT, "SIGCONT"),
        (Signal::STOP, "SIGSTOP"),
        (Signal::TSTP, "SIGTSTP"),
        (Signal::TTIN, "SIGTTIN"),
        (Signal::TTOU, "SIGTTOU"),
        (Signal::URG, "SIGURG"),
        (Signal::XCPU, "SIGXCPU"),
        (Signal::XFSZ, "SIGXFSZ"),
        (Signal::VTALRM, "SIGVTALRM"),
        (Signal::PROF, "SIGPROF"),
        (Signal::WINCH, "SIGWINCH"),
        (Signal::IO, "SIGIO"),
        (Signal::SYS, "SIGSYS"),
    ];

    /// Never forwarded: uncatchable, or faults whose handler would return into the faulting
    /// instruction.
    const REFUSED: [Signal; 6] = [
        Signal::KILL,
        Signal::STOP,
        Signal::SEGV,
        Signal::BUS,
        Signal::FPE,
        Signal::ILL,
    ];

    /// The signal with this system's number `raw`, or `None` outside `1..=64`.
    ///
    /// Use it for the real-time signals (`libc::SIGRTMIN()` and up on Linux) and for numbers
    /// read from elsewhere; it does not ask the system whether the number exists.
    pub const fn from_raw(raw: i32) -> Option<Signal> {
        if raw > 0 && (raw as usize) < NSIG {
            Some(Signal(raw))
        } else {
            None
        }
    }

    /// This system's number for the signal, for a libc call such as `kill(2)`.
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// The name, such as `"SIGTERM"`, for the signals that have a constant.
    fn name(self) -> Option<&'static str> {
        Signal::NAMED
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, name)| *name)
    }
}

impl TryFrom<i32> for Signal {
    type Error = io::Error;

    /// As [`Signal::from_raw`], with an `ErrorKind::InvalidInput` error outside `1..=64`.
    fn try_from(raw: i32) -> io::Result<Signal> {
        Signal::from_raw(raw).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{raw} is not a signal number"),
            )
        })
    }
}

impl From<Signal> for i32 {
    fn from(signal: Signal) -> i32 {
        signal.as_raw()
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => f.debug_tuple("Signal").field(&self.0).finish(),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// The `si_code` of a signal sent with `kill(2)`, to compare with
/// [`SignalInfo::code`](crate::SignalInfo::code): this system's `SI_USER` (libc has it for
/// Linux only; on macOS and FreeBSD it is `0x10001`, elsewhere 0).
pub const SI_USER: i32 = sys::code::SI_USER;

/// The `si_code` of a signal sent with `sigqueue(3)` (whose value then arrives in
/// [`SignalInfo::value`](crate::SignalInfo::value)): this system's `SI_QUEUE`.
pub const SI_QUEUE: i32 = sys::code::SI_QUEUE;

/// A live subscription of one [`ControlSender`]'s channel to one signal. Dropping it
/// unsubscribes: once `drop` returns, the channel gets no more records from it (the
/// registry's handler stays installed, see the [module docs](self)).
#[must_use = "dropping the Subscription unsubscribes at once"]
pub struct Subscription {
    signal: Signal,
    // Owns the channel's write end for as long as the registry may run the action.
    forward: Forward,
}

/// Forwards every delivery of `signal` to `control`'s channel as a
/// [`Message::Signal`](crate::Message::Signal), until the returned [`Subscription`] is
/// dropped.
///
/// The same channel may be subscribed more than once; it then gets one record per
/// subscription. Other users of the signal (tokio, signal-hook, a handler installed before)
/// keep seeing it: see the [module docs](self).
///
/// # Errors
///
/// * `ErrorKind::InvalidInput`: `SIGKILL`, `SIGSTOP`, one of the fault signals listed in the
///   [module docs](self), or a number `sigaction(2)` refuses (`EINVAL`: one this system does
///   not have, or one the C library reserves for itself, such as glibc's real-time signals
///   32 and 33).
/// * `ErrorKind::BrokenPipe`: the channel's [`Control`](crate::Control) was dropped.
///
/// # Examples
///
/// See the [module docs](self).
pub fn subscribe(signal: Signal, control: &ControlSender) -> io::Result<Subscription> {
    if Signal::REFUSED.contains(&signal) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{signal} cannot be subscribed to"),
        ));
    }
    if control.is_closed() {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the Control was dropped",
        ));
    }
    let forward = sys::forward(signal, control.clone())?;
    Ok(Subscription { signal, forward })
}

/// How many deliveries of `signal` could not be forwarded because a channel was full (one
/// per channel that missed it), since the process started.
pub fn dropped(signal: Signal) -> u64 {
    DROPPED
        .get(signal.as_raw() as usize)
        .map_or(0, |n| n.load(Ordering::Relaxed) as u64)
}

impl Subscription {
    /// The subscribed signal.
    pub fn signal(&self) -> Signal {
        self.signal
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("signal", &self.signal)
            .field("action", &self.forward)
            .finish()
    }
}
