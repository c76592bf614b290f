//! [`block_on`]: runs a future on the calling thread, driving the manager's loop while the
//! future waits, so a single-threaded program needs no loop thread (async-io's design).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use ioman::EventManager;

use crate::global::{global_contended, Driving};
use crate::reactor::lock;

/// The waker of one `block_on`.
struct Parker {
    /// Set by a wake, cleared by the `block_on` thread before it polls.
    notified: AtomicBool,
    /// Whether the `block_on` thread is inside (or about to enter) `EventManager::step`.
    stepping: AtomicBool,
    thread: Thread,
    manager: Arc<EventManager>,
}

thread_local! {
    /// The `Parker` (its address) whose thread is this one and is inside `step`: a wake from
    /// a callback of that step needs no syscall, the step returns after its callbacks.
    static STEPPING: Cell<usize> = const { Cell::new(0) };
}

impl Wake for Parker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.notified.swap(true, Ordering::SeqCst) {
            return; // a wake is pending already: the thread will poll
        }
        if self.stepping.load(Ordering::SeqCst) {
            if STEPPING.with(|s| s.get()) != Arc::as_ptr(self) as usize {
                // Another thread: interrupt the step (one eventfd write, coalesced).
                self.manager.wake();
            }
        } else {
            self.thread.unpark();
        }
    }
}

/// Threads in `block_on` that found another thread driving their manager and park until it
/// leaves (it unparks them all, and one of them takes over).
static HANDOFF: Mutex<Vec<Thread>> = Mutex::new(Vec::new());
static HANDOFF_LEN: AtomicUsize = AtomicUsize::new(0);

fn handoff_park() {
    {
        let mut h = lock(&HANDOFF);
        h.push(thread::current());
        HANDOFF_LEN.store(h.len(), Ordering::SeqCst);
    }
}

fn handoff_leave() {
    let me = thread::current().id();
    let mut h = lock(&HANDOFF);
    if let Some(i) = h.iter().position(|t| t.id() == me) {
        h.swap_remove(i);
    }
    HANDOFF_LEN.store(h.len(), Ordering::SeqCst);
}

/// Called by a `block_on` that drove a manager, when it returns: wakes the threads waiting to
/// take the loop over.
fn handoff_release() {
    if HANDOFF_LEN.load(Ordering::SeqCst) == 0 {
        return;
    }
    for t in lock(&HANDOFF).iter() {
        t.unpark();
    }
}

/// Runs `future` to completion on the calling thread, driving the global manager's loop
/// while it waits (see [`block_on_with`]).
///
/// # Examples
///
/// ```
/// use futures::io::{AsyncReadExt, AsyncWriteExt};
/// use ioman_async::{block_on, Async};
/// use std::os::unix::net::UnixStream;
///
/// let (mut a, mut b) = Async::<UnixStream>::pair()?;
/// let n = block_on(async {
///     a.write_all(b"hi").await?;
///     let mut buf = [0u8; 8];
///     b.read(&mut buf).await
/// })?;
/// assert_eq!(n, 2);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    match crate::global_manager() {
        Ok(m) => block_on_with(&m, future),
        // Without a manager nothing can be driven; the future can still complete by other
        // wakes (a channel, another executor), so wait for those.
        Err(_) => park_on(future),
    }
}

/// Runs `future` to completion on the calling thread, driving `manager`'s loop while it
/// waits.
///
/// Each time the future returns `Pending`, the thread runs one iteration of the manager's
/// loop ([`EventManager::step`]: one `epoll_wait`, blocking until an event, the earliest
/// timeout or a wake), which runs the callbacks that wake tasks, then polls the future again
/// if it was woken. A wake from a callback of that step costs nothing more; a wake from
/// another thread interrupts the step with the manager's wakeup (one `eventfd` write,
/// coalesced).
///
/// When another thread drives the loop already (a loop thread from
/// [`EventManager::spawn`] or [`global_manager`](crate::global_manager), or another
/// `block_on`), this thread parks until its future is woken, and takes the loop over when the
/// other `block_on` returns. Two threads in `block_on` on the global manager at once start
/// its loop thread, which then serves both.
///
/// # Panics
///
/// A panic of the future propagates (after this thread stopped driving the loop).
pub fn block_on_with<F: Future>(manager: &Arc<EventManager>, future: F) -> F::Output {
    let parker = Arc::new(Parker {
        notified: AtomicBool::new(false),
        stepping: AtomicBool::new(false),
        thread: thread::current(),
        manager: Arc::clone(manager),
    });
    let waker = Waker::from(Arc::clone(&parker));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    let _driving = Driving::enter(manager);
    let _release = Release;
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        wait(&parker, manager);
    }
}

/// Wakes the threads waiting for the loop when a `block_on` leaves (also by a panic).
struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        handoff_release();
    }
}

/// Waits until the future is woken, driving the loop while nobody else does.
fn wait(parker: &Arc<Parker>, manager: &Arc<EventManager>) {
    loop {
        if parker.notified.swap(false, Ordering::SeqCst) {
            return;
        }
        if manager.state() == ioman::State::Running {
            // A loop thread (`run`, `spawn`) serves the manager until it shuts down: only
            // park, woken by the future's waker.
            thread::park();
            continue;
        }
        parker.stepping.store(true, Ordering::SeqCst);
        if parker.notified.load(Ordering::SeqCst) {
            parker.stepping.store(false, Ordering::SeqCst);
            continue;
        }
        let me = Arc::as_ptr(parker) as usize;
        let outer = STEPPING.with(|s| s.replace(me));
        let r = manager.step(None);
        STEPPING.with(|s| s.set(outer));
        parker.stepping.store(false, Ordering::SeqCst);
        match r {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                // Another thread drives the loop. Queue for the handoff first, then look
                // once more, so a driver that leaves in between is not missed.
                global_contended(manager);
                handoff_park();
                if !parker.notified.load(Ordering::SeqCst) {
                    match manager.step(Some(std::time::Duration::ZERO)) {
                        Err(e) if e.kind() == io::ErrorKind::ResourceBusy => thread::park(),
                        _ => {}
                    }
                }
                handoff_leave();
            }
            // Shut down (or a backend error, after which the manager shut itself down):
            // nothing to drive, only other wakes can come.
            Err(_) => {
                if !parker.notified.load(Ordering::SeqCst) {
                    thread::park();
                }
            }
        }
    }
}

/// `block_on` without a manager: polls at each wake, parks between.
fn park_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread, AtomicBool);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.1.store(true, Ordering::SeqCst);
            self.0.unpark();
        }
    }
    let u = Arc::new(Unpark(thread::current(), AtomicBool::new(false)));
    let waker = Waker::from(Arc::clone(&u));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        while !u.1.swap(false, Ordering::SeqCst) {
            thread::park();
        }
    }
}
