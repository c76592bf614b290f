//! ioman's [`EventManager`] as the reactor of any async executor: [`Async<T>`] for fds,
//! [`Timer`] and [`timeout`] for time, [`block_on`] to run a future on the calling thread.
//!
//! ```
//! use futures::io::{AsyncReadExt, AsyncWriteExt};
//! use ioman_async::{block_on, timeout, Async};
//! use std::net::{TcpListener, TcpStream};
//! use std::time::Duration;
//!
//! block_on(async {
//!     let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
//!     let addr = listener.get_ref().local_addr()?;
//!     let mut client = Async::<TcpStream>::connect(addr).await?;
//!     let (mut server, _) = listener.accept().await?;
//!
//!     client.write_all(b"ping").await?;
//!     let mut buf = [0u8; 4];
//!     timeout(Duration::from_secs(10), server.read_exact(&mut buf)).await??;
//!     assert_eq!(&buf, b"ping");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The names are async-io's where they fit, so code written for smol's reactor reads the
//! same: [`Async::new`], [`Async::get_ref`], [`Async::readable`], [`Async::read_with`],
//! [`Timer::after`], [`Timer::interval`], [`block_on`]. Everything is one reactor: the
//! `EventManager` that also serves callbacks (GHC's design), so callback code and async code
//! can share a manager.
//!
//! # Main items
//!
//! - [`Async<T>`]: owns an I/O object (anything [`AsFd`] that converts into an [`OwnedFd`]:
//!   sockets, pipes, ...), sets it non-blocking and offers [`readable`](Async::readable),
//!   [`writable`](Async::writable), [`read_with`](Async::read_with),
//!   [`write_with`](Async::write_with), and [`AsyncRead`]/[`AsyncWrite`] for streams;
//!   constructors for TCP ([`Async::<TcpListener>::bind`](Async::bind),
//!   [`accept`](Async::accept), [`Async::<TcpStream>::connect`](Async::connect)), UDP and
//!   Unix sockets.
//! - [`Timer`] (a future; a [`Stream`](futures_core::Stream) for intervals) and
//!   [`timeout`], on the manager's timer queue and clock, never early.
//! - [`block_on`] and [`block_on_with`]: run a future on the calling thread and drive the
//!   manager's loop while it waits.
//! - [`global_manager`]: the default manager, created at first use; every constructor has a
//!   `_with` twin taking an `&Arc<EventManager>` instead (a [`ManualClock`](ioman::ManualClock)
//!   one in tests, or one the program runs itself).
//!
//! # Who drives the loop
//!
//! Readiness and timers are seen by the manager's loop, so some thread must run it:
//!
//! - [`block_on`] runs it on the calling thread while its future waits (one
//!   [`EventManager::step`] per wait), so a single-threaded program (for example one running
//!   an `async-executor` inside `block_on`) has no extra thread.
//! - The global manager starts its own loop thread (named `ioman-loop`) the first time a task
//!   waits on it from a thread that is not inside `block_on` (a task of another executor:
//!   `futures::executor`, tokio, a thread pool); it then runs for the rest of the process.
//! - A manager passed to a `_with` constructor is driven by its owner: [`EventManager::spawn`],
//!   [`EventManager::run`], [`block_on_with`], or `step` calls.
//!
//! # Readiness
//!
//! Each direction (read, write) of an `Async` is either *maybe ready* or *not ready*, as in
//! tokio's `AsyncFd`: a readiness event makes it maybe ready; only an attempt that says
//! `WouldBlock` (or a short read of a stream socket, which shows it drained) makes it not
//! ready, and then the registration waits for the next event. So:
//!
//! - [`readable`](Async::readable) / [`writable`](Async::writable) complete when a read
//!   (write) would not block (async-io's meaning): at once, without a loop iteration, while
//!   the fd is ready (checked with one zero-timeout `poll(2)` unless an attempt found it not
//!   ready since the last event); otherwise at the next readiness event. Calling `readable`
//!   twice without reading completes twice.
//! - [`read_with`](Async::read_with), [`write_with`](Async::write_with), [`AsyncRead`] and
//!   [`AsyncWrite`] try the operation while the direction is maybe ready and wait only after
//!   it says `WouldBlock`; while it is not ready, `poll_read`/`poll_write` return `Pending`
//!   without a syscall.
//! - A `WouldBlock` clears the readiness only if no event came while the attempt ran (the
//!   event count is compared: tokio's readiness tick), so an edge is never lost between an
//!   attempt and its wait.
//!
//! # What each operation costs
//!
//! Each direction has one [`Lifetime::Edge`] registration, made at the first `WouldBlock` in
//! that direction. Its kernel registration (`EPOLLET`) is made once and never changed: a
//! re-arm after `WouldBlock` flips a flag in the manager and makes no syscall, whichever
//! thread runs the loop; a re-arm after an edge that came while the registration was
//! disarmed (the fd became ready again between the event and the `WouldBlock`) makes one
//! `EPOLL_CTL_MOD`, which has the kernel report the fd again if it is still ready.
//!
//! | operation | manager calls | syscalls |
//! |---|---|---|
//! | [`Async::new`] / [`with_manager`](Async::with_manager) | none | `ioctl(FIONBIO)`, `getsockopt(SO_TYPE)` (is it a stream socket?) |
//! | TCP / Unix constructors ([`accept`](Async::accept), [`connect`](Async::connect), [`pair`](Async::pair), `bind`) | none | std's, and `ioctl(FIONBIO)` for an accepted socket |
//! | first `WouldBlock` in a direction | [`register_fd`](EventManager::register_fd) | one `EPOLL_CTL_ADD` (`MOD` for the second direction) |
//! | later `WouldBlock`s (steady state) | [`rearm`](EventManager::rearm) | none (one `EPOLL_CTL_MOD` after an edge that came while disarmed) |
//! | a read/write while maybe ready | none | the `read`/`write` |
//! | a read/write while not ready | none | none: `Pending` at once |
//! | a short read of a stream socket (fewer bytes than asked) | `rearm` | the `read` only: the `read` that would return `WouldBlock` is skipped |
//! | [`readable`](Async::readable) / [`writable`](Async::writable) while maybe ready | none (`rearm` or `register_fd` when the fd is not ready) | one `poll(2)`, zero timeout |
//! | [`readable`](Async::readable) / [`writable`](Async::writable) while not ready | none | none |
//! | drop | [`close_fd`](EventManager::close_fd) | `EPOLL_CTL_DEL` (when registered), `close` |
//! | [`into_inner`](Async::into_inner) | [`unregister_fd`](EventManager::unregister_fd) per registration | `EPOLL_CTL_DEL` (when registered) |
//! | [`Timer`] first poll | [`register_timeout_at`](EventManager::register_timeout_at) | none (a wakeup write only when it is earlier than the loop's deadline, from another thread) |
//! | [`Timer::set_at`] / [`set_after`](Timer::set_after), later | none (`set_after` reads [`now`](EventManager::now)); the registration is filed again when it fires | none |
//! | [`Timer::set_at`], earlier | [`update_timeout_at`](EventManager::update_timeout_at) | none |
//! | [`Timer`] drop before firing | [`unregister_timeout`](EventManager::unregister_timeout) | none |
//! | [`block_on`] wait | [`step`](EventManager::step) | one `epoll_wait` |
//!
//! A readiness event runs the registration's callback on the loop thread, which wakes the
//! waiting tasks. With the loop on another thread than the tasks (the global manager's loop
//! thread under another executor) an echo round trip costs the same syscalls as under
//! [`block_on`]: the `read`, the `write`, and the loop's share of an `epoll_wait`. Where the
//! manager cannot be edge-triggered for an fd (it has registrations of another kind, made
//! through the manager directly), `Edge` behaves as [`Lifetime::Rearmable`] and the rules
//! above still hold; the cost is then Rearmable's: with the loop on another thread it may see
//! the fd still ready before the task has read it, and trim its kernel registration (an
//! `EPOLL_CTL_DEL`, and an `ADD` at the next wait). The `async_echo` benchmark of
//! `ioman-bench` counts both configurations.
//!
//! # Waker semantics
//!
//! - A future polled by another task or thread stores the new waker (compared with
//!   [`Waker::will_wake`](std::task::Waker::will_wake), so re-polling the same task clones
//!   nothing).
//! - [`readable`](Async::readable) and [`writable`](Async::writable) futures may wait in any
//!   number on one `Async`: each readiness event wakes them all. The `poll_*` methods
//!   ([`AsyncRead`], [`AsyncWrite`], [`poll_readable`](Async::poll_readable)) keep one waker
//!   per direction: the last task to poll is the one woken (as in async-io). That waker is
//!   kept after a wake (the task usually waits again), so a later readiness may wake a task
//!   that stopped reading: a spurious wake, never a lost one.
//! - Cancelling at any `.await` loses no readiness: an event leaves the direction maybe
//!   ready until an attempt says `WouldBlock`, so a waiter woken and dropped before it
//!   looked leaves the readiness to the next one, which completes (or reads) at once.
//! - Dropping a future removes its waker; dropping an `Async` closes its fd through the
//!   manager ([`EventManager::close_fd`]), so the fd number is never reused under a live
//!   registration.
//! - When the manager is shut down, waiting operations fail with [`ShutDown`](ioman::ShutDown),
//!   and timers never complete.
//!
//! # Platforms
//!
//! Linux (epoll, edge-triggered with `EPOLLET`; the [`PosixPoll`](ioman::poll::PosixPoll)
//! backend is not selectable here, as the manager type is `EventManager<DefaultBackend>`, so
//! the level-triggered fallback is reached only by mixing registrations on an fd), compiled
//! for macOS and the BSDs (kqueue, `EV_CLEAR`), where it has never run.
//!
//! # Unsafe code
//!
//! One private module holds the only `unsafe`: setting `O_NONBLOCK` on an arbitrary fd,
//! asking an fd's socket type and whether it is ready now (`getsockopt`, `poll(2)`), and
//! starting a non-blocking TCP connect, which std offers for none of them.
#![deny(unsafe_code)]

mod block_on;
mod global;
mod net;
mod reactor;
#[allow(unsafe_code)]
mod sys;
mod timer;

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use futures_io::{AsyncRead, AsyncWrite};
pub use ioman::{EventManager, Lifetime};

pub use block_on::{block_on, block_on_with};
pub use global::global_manager;
pub use reactor::Ready;
pub use timer::{timeout, timeout_with, Elapsed, Timer};

use reactor::{Dir, SlotCache, Source};

/// An I/O object registered with an [`EventManager`], for use from async code.
///
/// `Async` owns the object, puts it in non-blocking mode, and waits for readiness through the
/// manager; see the [crate docs](crate) for the manager calls each operation makes and the
/// waker semantics.
///
/// The I/O object must convert into an [`OwnedFd`] (every std fd type does), because dropping
/// the `Async` closes it through the manager ([`EventManager::close_fd`]).
///
/// # Examples
///
/// ```
/// use ioman_async::{block_on, Async};
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
///
/// let (a, b) = UnixStream::pair()?;
/// let (a, b) = (Async::new(a)?, Async::new(b)?);
/// block_on(async {
///     a.write_with(|mut s| s.write(b"hello")).await?;
///     let mut buf = [0u8; 16];
///     let n = b.read_with(|mut s| s.read(&mut buf)).await?;
///     assert_eq!(&buf[..n], b"hello");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Async<T> {
    source: Source,
    /// `Some` until `into_inner` or drop takes it.
    io: Option<T>,
    into_fd: fn(T) -> OwnedFd,
    /// The wakers this `Async`'s own `poll_read` / `poll_write` stored (read, write).
    caches: [SlotCache; 2],
}

// `Async` never pins its I/O object.
impl<T> Unpin for Async<T> {}

impl<T: AsFd + Into<OwnedFd>> Async<T> {
    /// Registers `io` with the [global manager](global_manager), after putting it in
    /// non-blocking mode (one `ioctl(FIONBIO)`) and asking whether it is a stream socket
    /// (one `getsockopt`: then a short read shows it drained). Nothing is registered with
    /// the kernel until the first wait.
    ///
    /// # Errors
    ///
    /// When the fd cannot be put in non-blocking mode (`EBADF`), or the global manager
    /// cannot be created.
    pub fn new(io: T) -> io::Result<Async<T>> {
        Async::with_manager(io, &global_manager()?)
    }

    /// [`new`](Self::new) on `manager`.
    ///
    /// # Errors
    ///
    /// When the fd cannot be put in non-blocking mode (`EBADF`).
    pub fn with_manager(io: T, manager: &Arc<EventManager>) -> io::Result<Async<T>> {
        sys::set_nonblocking(io.as_fd())?;
        let stream = sys::is_stream_socket(io.as_fd());
        Ok(Async::from_nonblocking(io, manager, stream))
    }

    /// `io` is non-blocking already; `stream`: it is a stream socket, so a short read shows
    /// it drained.
    pub(crate) fn from_nonblocking(io: T, manager: &Arc<EventManager>, stream: bool) -> Async<T> {
        let fd = io.as_fd().as_raw_fd();
        Async {
            source: Source::new(Arc::clone(manager), fd, stream),
            io: Some(io),
            into_fd: Into::into,
            caches: Default::default(),
        }
    }
}

impl<T> Async<T> {
    /// The I/O object.
    pub fn get_ref(&self) -> &T {
        match &self.io {
            Some(io) => io,
            // `io` is taken only by `into_inner` and `drop`, which consume `self`.
            None => unreachable!("Async's I/O object is present until into_inner or drop"),
        }
    }

    /// The I/O object, mutably. Do not replace it (with `std::mem::swap` and the like): the
    /// registrations follow the fd number it had when the `Async` was made.
    pub fn get_mut(&mut self) -> &mut T {
        match &mut self.io {
            Some(io) => io,
            None => unreachable!("Async's I/O object is present until into_inner or drop"),
        }
    }

    /// The manager this `Async` is registered with.
    pub fn manager(&self) -> &Arc<EventManager> {
        self.source.manager()
    }

    /// Unregisters the I/O object from the manager and returns it, still in non-blocking
    /// mode. Calls [`EventManager::unregister_fd`] for each direction that was registered
    /// (one `EPOLL_CTL_DEL` when the kernel still watches the fd).
    ///
    /// # Errors
    ///
    /// When the manager cannot remove the kernel registration (`ENOMEM`); the object is then
    /// closed through the manager as by a drop.
    pub fn into_inner(mut self) -> io::Result<T> {
        for key in self.source.take_keys().into_iter().flatten() {
            self.source.manager().unregister_fd(key)?;
        }
        match self.io.take() {
            Some(io) => Ok(io),
            None => unreachable!("Async's I/O object is present until into_inner or drop"),
        }
    }

    /// Waits until the I/O object is readable, that is until a read would not block: at once
    /// while it is readable (one zero-timeout `poll(2)` asks, unless an attempt found it not
    /// readable since the last readiness event), else at the next readiness event. Reading
    /// nothing and calling it again completes again. See [`Ready`] and the
    /// [crate docs](crate#readiness).
    ///
    /// # Errors
    ///
    /// The future fails when the manager was shut down ([`ShutDown`](ioman::ShutDown)) or
    /// refuses the registration (see [`EventManager::register_fd`]).
    pub fn readable(&self) -> Ready<'_> {
        Ready::new(&self.source, Dir::Read)
    }

    /// Waits until the I/O object is writable; as [`readable`](Self::readable).
    ///
    /// # Errors
    ///
    /// As [`readable`](Self::readable).
    pub fn writable(&self) -> Ready<'_> {
        Ready::new(&self.source, Dir::Write)
    }

    /// Polls for readability: `Ready` once a readiness event arrived since the last call
    /// that returned `Pending`, or when a read would not block now (asked as by
    /// [`readable`](Self::readable)). Only the last task to call it is woken; for several
    /// waiters use [`readable`](Self::readable).
    ///
    /// # Errors
    ///
    /// As [`readable`](Self::readable).
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.source.poll_ready(Dir::Read, cx)
    }

    /// Polls for writability; as [`poll_readable`](Self::poll_readable).
    ///
    /// # Errors
    ///
    /// As [`readable`](Self::readable).
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.source.poll_ready(Dir::Write, cx)
    }

    /// Runs `op` until it does not fail with [`WouldBlock`](io::ErrorKind::WouldBlock),
    /// waiting for readability between attempts: a `WouldBlock` makes the read direction
    /// wait for the next readiness event (unless one came while `op` ran: then `op` runs
    /// again at once), without the `poll(2)` of [`readable`](Self::readable).
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`, and the errors of
    /// [`readable`](Self::readable).
    pub async fn read_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            let tick = self.source.tick(Dir::Read);
            match op(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Ready::after_would_block(&self.source, Dir::Read, tick).await?
                }
                r => return r,
            }
        }
    }

    /// [`read_with`](Self::read_with) with a mutable reference to the I/O object.
    ///
    /// # Errors
    ///
    /// As [`read_with`](Self::read_with).
    pub async fn read_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            let tick = self.source.tick(Dir::Read);
            match op(self.get_mut()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Ready::after_would_block(&self.source, Dir::Read, tick).await?
                }
                r => return r,
            }
        }
    }

    /// Runs `op` until it does not fail with [`WouldBlock`](io::ErrorKind::WouldBlock),
    /// waiting for writability between attempts; as [`read_with`](Self::read_with).
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`, and the errors of
    /// [`writable`](Self::writable).
    pub async fn write_with<R>(&self, mut op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            let tick = self.source.tick(Dir::Write);
            match op(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Ready::after_would_block(&self.source, Dir::Write, tick).await?
                }
                r => return r,
            }
        }
    }

    /// [`write_with`](Self::write_with) with a mutable reference to the I/O object.
    ///
    /// # Errors
    ///
    /// As [`write_with`](Self::write_with).
    pub async fn write_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            let tick = self.source.tick(Dir::Write);
            match op(self.get_mut()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Ready::after_would_block(&self.source, Dir::Write, tick).await?
                }
                r => return r,
            }
        }
    }
}

impl<T: AsFd> AsFd for Async<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<T: AsRawFd> AsRawFd for Async<T> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.get_ref().as_raw_fd()
    }
}

impl<T> Drop for Async<T> {
    /// Closes the I/O object through the manager ([`EventManager::close_fd`]: its
    /// registrations are removed and the fd closed under the manager's lock for that fd).
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            self.source.manager().close_fd((self.into_fd)(io));
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Async<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async").field("io", &self.io).finish()
    }
}

/// Whether a read of `n` bytes into room for `len` shows the fd drained (a short read).
fn short(n: usize, len: usize) -> bool {
    n > 0 && n < len
}

fn total(bufs: &[IoSliceMut<'_>]) -> usize {
    bufs.iter().map(|b| b.len()).sum()
}

impl<T: Read> AsyncRead for Async<T> {
    /// Reads what is there; when nothing is (`WouldBlock`), waits for the next readiness.
    /// While the read direction is known not ready it returns `Pending` without a syscall;
    /// after a short read of a stream socket it is known not ready at once, so the next call
    /// skips the `read` that would only say `WouldBlock`.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = buf.len();
        let Async {
            source, io, caches, ..
        } = this;
        let Some(io) = io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let cache = Some(&mut caches[Dir::Read as usize]);
        source.poll_io(Dir::Read, cx, cache, || io.read(buf), |&n| short(n, len))
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = total(bufs);
        let Async {
            source, io, caches, ..
        } = this;
        let Some(io) = io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let cache = Some(&mut caches[Dir::Read as usize]);
        source.poll_io(
            Dir::Read,
            cx,
            cache,
            || io.read_vectored(bufs),
            |&n| short(n, len),
        )
    }
}

impl<T> AsyncRead for &Async<T>
where
    for<'a> &'a T: Read,
{
    /// As for `Async<T>`; several tasks may read through shared references, but only the
    /// last one to wait is woken (use [`Async::readable`] to wait in several tasks).
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this: &Async<T> = *self;
        let len = buf.len();
        let mut io = this.get_ref();
        this.source
            .poll_io(Dir::Read, cx, None, || io.read(buf), |&n| short(n, len))
    }
}

impl<T: Write> AsyncWrite for Async<T> {
    /// Writes what fits; when nothing does (`WouldBlock`), waits for writability.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Async {
            source, io, caches, ..
        } = self.get_mut();
        let Some(io) = io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let cache = Some(&mut caches[Dir::Write as usize]);
        source.poll_io(Dir::Write, cx, cache, || io.write(buf), |_| false)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Async {
            source, io, caches, ..
        } = self.get_mut();
        let Some(io) = io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let cache = Some(&mut caches[Dir::Write as usize]);
        source.poll_io(Dir::Write, cx, cache, || io.write_vectored(bufs), |_| false)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Async {
            source, io, caches, ..
        } = self.get_mut();
        let Some(io) = io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let cache = Some(&mut caches[Dir::Write as usize]);
        source.poll_io(Dir::Write, cx, cache, || io.flush(), |_| false)
    }

    /// Flushes. The object is closed when the `Async` is dropped; to half-close a socket,
    /// call its `shutdown` through [`get_ref`](Async::get_ref).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl<T> AsyncWrite for &Async<T>
where
    for<'a> &'a T: Write,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this: &Async<T> = *self;
        let mut io = this.get_ref();
        this.source
            .poll_io(Dir::Write, cx, None, || io.write(buf), |_| false)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this: &Async<T> = *self;
        let mut io = this.get_ref();
        this.source
            .poll_io(Dir::Write, cx, None, || io.flush(), |_| false)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Async<std::net::TcpStream>>();
        assert::<Timer>();
        assert::<Ready<'static>>();
        assert::<Elapsed>();
    }
}
