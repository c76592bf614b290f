//! Wake an event loop from any thread with one readable file descriptor, and carry GHC's
//! control messages (wakeup, die, POSIX signals) to it.
//!
//! ```
//! use std::os::fd::AsRawFd;
//! use ioman_wakeup::{signal, Control, Message, Signal};
//!
//! // The loop's side: one fd that carries wakeups, shutdown and signals.
//! let control = Control::new()?;
//! let sender = control.sender();
//! // SIGHUP now arrives as a message, handled outside signal context.
//! let _hup = signal::subscribe(Signal::HUP, &sender)?;
//!
//! // Any thread: ask the loop to stop.
//! std::thread::spawn(move || sender.die()).join().expect("sender")?;
//!
//! let mut pfd = libc::pollfd { fd: control.as_raw_fd(), events: libc::POLLIN, revents: 0 };
//! let mut messages = Vec::new();
//! 'run: loop {
//!     // SAFETY: one valid pollfd.
//!     unsafe { libc::poll(&mut pfd, 1, -1) };
//!     messages.clear();
//!     control.drain(&mut messages)?;
//!     for m in &messages {
//!         match m {
//!             Message::Signal(info) => println!("{} from pid {}", info.signal(), info.pid()),
//!             Message::Die => break 'run,
//!             _ => {} // Wakeup: look at the work other threads published
//!         }
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! This is the wakeup part of ioman, a Rust rebuild of GHC's event manager (`Control.hs` and
//! the RTS's `MIO.c`/`Signals.c`). It depends on `libc` and `signal-hook-registry` (the
//! signal registry tokio and signal-hook share) only.
//!
//! # Main types
//!
//! * [`Wakeup`]: a readable fd that another thread makes ready with [`Wakeup::wake`]; the
//!   loop calls [`Wakeup::reset`] after its poller reports the fd readable. Wakes coalesce:
//!   while one is pending, `wake` is a single atomic swap and no syscall, which GHC's
//!   control channel never did (its 2010 `TODO` asked for exactly this flag).
//! * [`Control`] and [`ControlSender`]: GHC's control channel. [`Message::Wakeup`] (coalesced),
//!   [`Message::Die`] (never lost) and [`Message::Signal`] all arrive through one pipe, so
//!   the loop registers one fd and reads everything with [`Control::drain`].
//! * [`signal::subscribe`]: forwards a POSIX [`Signal`] (a typed number: `Signal::TERM`)
//!   into one or more `Control`s from an async-signal-safe action, so the loop handles it
//!   outside signal context. It coexists with `tokio::signal`, `signal-hook` and handlers
//!   installed before it: they all see every delivery.
//!
//! # Platforms
//!
//! | Platform            | [`Wakeup::new`]                                   | [`Control`]   |
//! |---------------------|---------------------------------------------------|---------------|
//! | Linux, Android      | `eventfd(2)`, falling back to a pipe at run time  | `pipe2(2)`    |
//! | FreeBSD, NetBSD, OpenBSD, DragonFly, illumos | `pipe2(2)`               | `pipe2(2)`    |
//! | macOS, iOS          | `pipe(2)` + `fcntl` (not atomic with `exec`)      | same          |
//!
//! [`Wakeup::pipe`] exists everywhere, so the pipe path is tested on Linux too. Every fd is
//! non-blocking and close-on-exec.
//!
//! The tests run in CI on Linux x86_64 and i686. For macOS (arm64, x86_64), FreeBSD,
//! NetBSD, OpenBSD and illumos CI type-checks and lints the crate with its tests, but runs
//! nothing there; Android, iOS and DragonFly are written for and not checked. The `si_code`
//! numbers and the `errno` accessor of each system come from its headers (`build.rs` names
//! which), since libc has the `SI_*` constants for Linux only; the numbers behind
//! [`Signal`]'s constants are libc's for the target.
//!
//! # Threading rules
//!
//! * [`Wakeup`], [`Control`] and [`ControlSender`] are `Send + Sync`. `wake`, `die` and
//!   `send` may be called from any thread at any time and never block.
//! * `reset` and `drain` belong to the loop: call them after the poller reported the fd
//!   readable (level-triggered read interest), *then* look at the work other threads
//!   published. Every wake that returned before is then visible, or the fd is readable
//!   again ([`Wakeup::reset`] states the contract). Calling them from several threads at
//!   once is memory-safe but makes no sense.
//! * Signal subscriptions are process-wide state, shared with the program's other signal
//!   users through the registry; see [`signal`].
//!
//! The pending-flag protocol is model-checked with loom:
//! `RUSTFLAGS="--cfg loom" cargo test -p ioman-wakeup --release --lib --features loom`
//! (the `loom` feature only brings in the dependency; it does nothing without `--cfg loom`).
//!
//! # Examples
//!
//! A loop thread blocked in `poll(2)` woken by another thread:
//!
//! ```
//! use std::os::fd::AsRawFd;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use ioman_wakeup::Wakeup;
//!
//! let wakeup = Arc::new(Wakeup::new()?);
//! let work = Arc::new(AtomicUsize::new(0));
//!
//! let (w, q) = (Arc::clone(&wakeup), Arc::clone(&work));
//! let waker = std::thread::spawn(move || {
//!     q.fetch_add(1, Ordering::Relaxed); // publish work, then wake
//!     w.wake()
//! });
//!
//! let mut pfd = libc::pollfd { fd: wakeup.as_raw_fd(), events: libc::POLLIN, revents: 0 };
//! while work.load(Ordering::Relaxed) == 0 {
//!     // SAFETY: one valid pollfd.
//!     unsafe { libc::poll(&mut pfd, 1, -1) };
//!     wakeup.reset()?; // drain, clear the flag, then look at the work
//! }
//! waker.join().expect("waker thread")?;
//! assert_eq!(work.load(Ordering::Relaxed), 1);
//! # Ok::<(), std::io::Error>(())
//! ```

#![cfg(unix)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod control;
pub mod signal;
mod sync;
mod sys;
mod wakeup;

pub use control::{Control, ControlSender, Message, SignalInfo};
pub use signal::Signal;
pub use wakeup::{Wakeup, WakeupKind};

/// Compile-time check that the public handles can cross and be shared between threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Wakeup>();
    assert_send_sync::<Control>();
    assert_send_sync::<ControlSender>();
    assert_send_sync::<signal::Subscription>();
    assert_send_sync::<Signal>();
    assert_send_sync::<SignalInfo>();
};

#[cfg(all(test, loom))]
mod loom_tests;

/// The README's examples, compiled and run as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
