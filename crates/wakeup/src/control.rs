//! [`Control`]: GHC's control channel, one non-blocking pipe carrying fixed-size records.
//!
//! Every message travels through a single pipe, so the loop registers a single fd:
//!
//! * `Wakeup` is coalesced by the same pending flag as [`Wakeup`](crate::Wakeup): only the
//!   sender that raises the flag writes a `WAKE` record.
//! * `Die` is an atomic flag plus a wake, so it cannot be lost to a full pipe.
//! * `Signal` is a `SIGNAL` record, written by `ControlSender::send` or by the signal
//!   handler (`crate::signal`) with one `write(2)`.
//!
//! Records are [`RECORD`] bytes, well under `PIPE_BUF`, so each write is atomic: whole or
//! not at all, never interleaved with another writer's (pipe(7)).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::signal::Signal;
use crate::sync::{AtomicBool, AtomicU64, Ordering};
use crate::sys;
use crate::wakeup::Pending;

/// Size of one record in the control pipe.
pub(crate) const RECORD: usize = 32;
const TAG_WAKE: u32 = 0x5741_4b45; // "WAKE"
const TAG_SIGNAL: u32 = 0x5349_474e; // "SIGN"

/// A message read from a [`Control`] by [`Control::drain`].
///
/// `#[non_exhaustive]`: GHC's control channel has grown messages before, so a `match` needs a
/// wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Message {
    /// Someone called [`ControlSender::wake`] (any number of wakes since the last drain
    /// count once).
    Wakeup,
    /// Someone called [`ControlSender::die`]: the loop should shut down.
    Die,
    /// A signal was delivered (forwarded by [`signal::subscribe`](crate::signal::subscribe)
    /// or sent with [`ControlSender::send`]).
    Signal(SignalInfo),
}

/// What a forwarded signal carries, copied out of its `siginfo_t`.
///
/// Read it with the accessors; fields that the kernel did not fill for this kind of signal
/// read as 0. [`SignalInfo::new`] and the `with_*` methods build one, for
/// [`ControlSender::send`] and for tests.
///
/// # Examples
///
/// ```
/// use ioman_wakeup::{Signal, SignalInfo};
///
/// let info = SignalInfo::new(Signal::USR1).with_sender(42, 1000).with_value(7);
/// assert_eq!((info.signal(), info.pid(), info.uid(), info.value()), (Signal::USR1, 42, 1000, 7));
/// assert_eq!(info.code(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignalInfo {
    signal: Signal,
    code: i32,
    pid: i32,
    uid: u32,
    value: usize,
}

impl SignalInfo {
    /// Information about `signal` with every other field 0 (a `code` of 0 is `SI_USER` on
    /// Linux, NetBSD, OpenBSD and illumos).
    pub const fn new(signal: Signal) -> SignalInfo {
        SignalInfo {
            signal,
            code: 0,
            pid: 0,
            uid: 0,
            value: 0,
        }
    }

    /// The same, with [`code`](SignalInfo::code) set.
    #[must_use]
    pub const fn with_code(self, code: i32) -> SignalInfo {
        SignalInfo { code, ..self }
    }

    /// The same, with the sender's [`pid`](SignalInfo::pid) and [`uid`](SignalInfo::uid) set.
    #[must_use]
    pub const fn with_sender(self, pid: i32, uid: u32) -> SignalInfo {
        SignalInfo { pid, uid, ..self }
    }

    /// The same, with [`value`](SignalInfo::value) set.
    #[must_use]
    pub const fn with_value(self, value: usize) -> SignalInfo {
        SignalInfo { value, ..self }
    }

    /// The signal (`si_signo`).
    pub const fn signal(&self) -> Signal {
        self.signal
    }

    /// `si_code`: [`SI_USER`](crate::signal::SI_USER) for `kill(2)`,
    /// [`SI_QUEUE`](crate::signal::SI_QUEUE) for `sigqueue(3)`, a code of the thread-directed
    /// kill behind `raise(3)`/`pthread_kill(3)` (`SI_TKILL` on Linux, `SI_LWP` on the BSDs
    /// and illumos), or a kernel code. The numbers differ between systems.
    pub const fn code(&self) -> i32 {
        self.code
    }

    /// The sending process (`si_pid`) for signals sent by a process (and `SIGCHLD`'s child);
    /// 0 otherwise.
    pub const fn pid(&self) -> i32 {
        self.pid
    }

    /// The sender's real user id (`si_uid`), under the same condition as
    /// [`pid`](SignalInfo::pid); 0 otherwise.
    pub const fn uid(&self) -> u32 {
        self.uid
    }

    /// `si_value` as an integer for `sigqueue(3)` and message-queue signals; 0 otherwise.
    pub const fn value(&self) -> usize {
        self.value
    }
}

/// Encodes a signal record. Async-signal-safe: no allocation, no locks.
pub(crate) fn encode_signal(info: &SignalInfo) -> [u8; RECORD] {
    let mut rec = [0u8; RECORD];
    rec[0..4].copy_from_slice(&TAG_SIGNAL.to_ne_bytes());
    rec[4..8].copy_from_slice(&info.signal.as_raw().to_ne_bytes());
    rec[8..12].copy_from_slice(&info.code.to_ne_bytes());
    rec[12..16].copy_from_slice(&info.pid.to_ne_bytes());
    rec[16..20].copy_from_slice(&info.uid.to_ne_bytes());
    rec[24..32].copy_from_slice(&(info.value as u64).to_ne_bytes());
    rec
}

fn encode_wake() -> [u8; RECORD] {
    let mut rec = [0u8; RECORD];
    rec[0..4].copy_from_slice(&TAG_WAKE.to_ne_bytes());
    rec
}

/// Decodes one record: `None` for a wake, `Some(info)` for a signal.
fn decode(rec: &[u8]) -> io::Result<Option<SignalInfo>> {
    let field = |at: usize| -> [u8; 4] {
        let mut b = [0u8; 4];
        b.copy_from_slice(&rec[at..at + 4]);
        b
    };
    match u32::from_ne_bytes(field(0)) {
        TAG_WAKE => Ok(None),
        TAG_SIGNAL => {
            let mut value = [0u8; 8];
            value.copy_from_slice(&rec[24..32]);
            let signo = i32::from_ne_bytes(field(4));
            let signal = Signal::from_raw(signo).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("control record for signal number {signo}"),
                )
            })?;
            Ok(Some(SignalInfo {
                signal,
                code: i32::from_ne_bytes(field(8)),
                pid: i32::from_ne_bytes(field(12)),
                uid: u32::from_ne_bytes(field(16)),
                // Written from a usize on this machine, so it fits.
                value: u64::from_ne_bytes(value) as usize,
            }))
        }
        tag => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown control record tag {tag:#x}"),
        )),
    }
}

/// State shared by the loop side and every sender (and every signal subscription).
///
/// Both pipe ends live here, so a sender never writes to a pipe without a reader (no
/// `SIGPIPE`/`EPIPE`), and the write end stays open while any sender or subscription exists.
struct Shared {
    read: OwnedFd,
    write: OwnedFd,
    pending: Pending,
    die: AtomicBool,
    closed: AtomicBool,
    syscalls: AtomicU64,
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the Control was dropped")
}

/// The loop side of GHC's control channel: one readable fd (register it for
/// level-triggered read interest) and [`drain`](Control::drain).
///
/// Senders ([`ControlSender`], from [`sender`](Control::sender)) never block:
///
/// | Message  | When the pipe is full                                               |
/// |----------|---------------------------------------------------------------------|
/// | `Wakeup` | success: a full pipe is readable, so the loop will wake anyway      |
/// | `Die`    | success: the die flag is set first, and the full pipe wakes the loop |
/// | `Signal` | `send` fails with `WouldBlock`; the signal handler counts it in [`signal::dropped`](crate::signal::dropped) |
///
/// The pipe holds 64 KiB on Linux by default, 2048 records.
pub struct Control {
    shared: Arc<Shared>,
}

/// The sending side of a [`Control`]: cheap to clone, usable from any thread.
///
/// After the [`Control`] is dropped every method fails with `ErrorKind::BrokenPipe`.
#[derive(Clone)]
pub struct ControlSender {
    shared: Arc<Shared>,
}

impl Control {
    /// Creates a control channel: a non-blocking, close-on-exec pipe.
    ///
    /// # Errors
    ///
    /// The OS error of `pipe2(2)`: `EMFILE`/`ENFILE` (no stable `ErrorKind`: check `raw_os_error()`).
    pub fn new() -> io::Result<Control> {
        let (read, write) = sys::pipe::new()?;
        Ok(Control {
            shared: Arc::new(Shared {
                read,
                write,
                pending: Pending::new(false),
                die: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                syscalls: AtomicU64::new(0),
            }),
        })
    }

    /// A new sender for this channel.
    pub fn sender(&self) -> ControlSender {
        ControlSender {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Reads every pending message into `out` without blocking, and returns how many it
    /// appended.
    ///
    /// Order: signals in arrival order, then at most one `Wakeup` (all wakes since the last
    /// drain coalesced), then `Die` if [`die`](ControlSender::die) was called since the last
    /// drain. `Die` implies a wakeup, so a drain that reports `Die` does not also report
    /// `Wakeup`.
    ///
    /// Like [`Wakeup::reset`](crate::Wakeup::reset), it empties the pipe before clearing
    /// the wake flag, so the work of every wake that returned before is visible after
    /// `drain`, or the fd is readable again. Call it when the fd is reported readable (any
    /// other time is harmless and returns `Ok(0)` if nothing is pending).
    ///
    /// # Errors
    ///
    /// `ErrorKind::InvalidData` if the pipe holds something that is not a record (only
    /// possible if someone else wrote to its fd); otherwise an unexpected `read(2)` error.
    /// Messages decoded before the error are already in `out`.
    pub fn drain(&self, out: &mut Vec<Message>) -> io::Result<usize> {
        let start = out.len();
        let fd = self.shared.read.as_fd();
        let mut wake = false;
        let mut buf = [0u8; RECORD * 64];
        while let Some(mut n) = sys::read(fd, &mut buf)? {
            // Writes are whole records and Linux reads return whole multiples of them, but
            // POSIX does not promise it: finish a torn record, whose rest is already in the
            // pipe because its write was atomic.
            while n % RECORD != 0 {
                let end = n + (RECORD - n % RECORD);
                match sys::read(fd, &mut buf[n..end])? {
                    Some(m) if m > 0 => n += m,
                    _ => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "torn record in control pipe",
                        ))
                    }
                }
            }
            for rec in buf[..n].chunks_exact(RECORD) {
                match decode(rec)? {
                    None => wake = true,
                    Some(info) => out.push(Message::Signal(info)),
                }
            }
            // A short read means the pipe was empty; a later write makes it readable again.
            if n < buf.len() {
                break;
            }
        }
        // Drain first, then clear: see `Wakeup::reset`.
        wake |= self.shared.pending.clear();
        if self.shared.die.swap(false, Ordering::AcqRel) {
            out.push(Message::Die);
        } else if wake {
            out.push(Message::Wakeup);
        }
        Ok(out.len() - start)
    }
}

impl ControlSender {
    /// Wakes the loop: `Message::Wakeup`, coalesced with every other wake pending since the
    /// last [`drain`](Control::drain) (one atomic swap and no syscall when one is pending).
    ///
    /// # Errors
    ///
    /// `ErrorKind::BrokenPipe` if the [`Control`] was dropped; otherwise only an unexpected
    /// `write(2)` error. A full pipe is success (the loop will wake).
    pub fn wake(&self) -> io::Result<()> {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        if !shared.pending.raise() {
            return Ok(());
        }
        shared.syscalls.fetch_add(1, Ordering::Relaxed);
        // `None` is a full pipe: readable already, so the wake is delivered.
        match sys::write(shared.write.as_fd(), &encode_wake()) {
            Ok(_) => Ok(()),
            Err(e) => {
                shared.pending.clear();
                Err(e)
            }
        }
    }

    /// Asks the loop to shut down: `Message::Die`. Never lost, even with a full pipe: it
    /// sets a flag, then wakes. Several `die`s before a drain are reported once.
    ///
    /// # Errors
    ///
    /// As [`wake`](ControlSender::wake).
    pub fn die(&self) -> io::Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        // Set before the wake's swap, so the drain that clears the wake flag sees it.
        self.shared.die.store(true, Ordering::Release);
        self.wake()
    }

    /// Sends any message: `Wakeup` and `Die` as [`wake`](ControlSender::wake) and
    /// [`die`](ControlSender::die); `Signal` as one record.
    ///
    /// # Errors
    ///
    /// `ErrorKind::WouldBlock` if the pipe is full and the message is a `Signal` (it was not
    /// sent); `ErrorKind::BrokenPipe` if the [`Control`] was dropped; otherwise an
    /// unexpected `write(2)` error.
    pub fn send(&self, m: Message) -> io::Result<()> {
        match m {
            Message::Wakeup => self.wake(),
            Message::Die => self.die(),
            Message::Signal(info) => {
                if self.shared.closed.load(Ordering::Acquire) {
                    return Err(closed_error());
                }
                match sys::write(self.shared.write.as_fd(), &encode_signal(&info))? {
                    Some(_) => Ok(()),
                    None => Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "control channel full, signal message not sent",
                    )),
                }
            }
        }
    }

    /// How many `write(2)` calls wakes (and dies) made so far, for tests of coalescing.
    pub fn syscalls(&self) -> u64 {
        self.shared.syscalls.load(Ordering::Relaxed)
    }

    /// Whether the [`Control`] was dropped.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The write end, for the signal action. Valid while `self` (or a clone) lives.
    pub(crate) fn write_fd(&self) -> RawFd {
        self.shared.write.as_raw_fd()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl AsFd for Control {
    /// The read end of the control pipe.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.read.as_fd()
    }
}

impl AsRawFd for Control {
    fn as_raw_fd(&self) -> RawFd {
        self.shared.read.as_raw_fd()
    }
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("fd", &self.shared.read.as_raw_fd())
            .field("write_fd", &self.shared.write.as_raw_fd())
            .field("pending", &self.shared.pending.is_set())
            .finish()
    }
}

impl fmt::Debug for ControlSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlSender")
            .field("write_fd", &self.shared.write.as_raw_fd())
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}
