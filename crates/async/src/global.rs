//! The global manager and its lazily started loop thread, and which thread drives a manager
//! (the thread-local mark [`block_on`](crate::block_on) sets).

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ioman::{EventManager, LoopHandle};

use crate::reactor::lock;

struct Global {
    manager: Arc<EventManager>,
    /// The loop thread, started by the first wait made outside [`block_on`](crate::block_on).
    /// Kept for the rest of the process (a `static` is never dropped).
    thread: Mutex<Option<LoopHandle>>,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// Serialises the creation of the global manager, so that a failed attempt (no fd left) is
/// retried by the next caller instead of being remembered.
static GLOBAL_INIT: Mutex<()> = Mutex::new(());

fn global() -> io::Result<&'static Global> {
    if let Some(g) = GLOBAL.get() {
        return Ok(g);
    }
    let _init = lock(&GLOBAL_INIT);
    if let Some(g) = GLOBAL.get() {
        return Ok(g);
    }
    let manager = Arc::new(EventManager::new()?);
    Ok(GLOBAL.get_or_init(|| Global {
        manager,
        thread: Mutex::new(None),
    }))
}

/// The process-wide manager that [`Async::new`](crate::Async::new),
/// [`Timer::after`](crate::Timer::after) and [`block_on`](crate::block_on) use, created at
/// the first call.
///
/// No thread runs its loop at first: [`block_on`](crate::block_on) drives it on the calling
/// thread while its future waits. The first time a task waits for it on a thread that is
/// not inside `block_on` (a task of another executor), a loop thread named `ioman-loop` is
/// started, and runs for the rest of the process; from then on `block_on` only parks.
///
/// # Errors
///
/// When the manager cannot be created (no fd left: `EMFILE`); the next call tries again.
pub fn global_manager() -> io::Result<Arc<EventManager>> {
    global().map(|g| Arc::clone(&g.manager))
}

thread_local! {
    /// The manager the `block_on` running on this thread drives (its address), 0 if none.
    static DRIVING: Cell<usize> = const { Cell::new(0) };
}

pub(crate) fn manager_id(m: &Arc<EventManager>) -> usize {
    Arc::as_ptr(m) as usize
}

/// Marks the current thread as driving `m` until dropped (restoring the outer value, for a
/// `block_on` nested in a future of another).
pub(crate) struct Driving(usize);

impl Driving {
    pub(crate) fn enter(m: &Arc<EventManager>) -> Driving {
        Driving(DRIVING.with(|d| d.replace(manager_id(m))))
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        DRIVING.with(|d| d.set(self.0));
    }
}

/// Called before a task waits on `m`: when `m` is the global manager, no loop thread runs it
/// yet and this thread is not inside a `block_on` that drives it, starts the loop thread.
/// Costs a thread-local read and an atomic load once the thread exists.
pub(crate) fn ensure_driven(m: &Arc<EventManager>) {
    if GLOBAL_LOOP.load(Ordering::Relaxed) {
        return;
    }
    let Some(g) = GLOBAL.get() else { return };
    if !Arc::ptr_eq(&g.manager, m) || DRIVING.with(|d| d.get()) == manager_id(m) {
        return;
    }
    start_global_loop(g);
}

/// Whether the global loop thread was started (so `ensure_driven` is one load from then on).
static GLOBAL_LOOP: AtomicBool = AtomicBool::new(false);

/// Starts the global loop thread (once). Also used by a `block_on` that finds another thread
/// already driving the global manager.
fn start_global_loop(g: &'static Global) {
    let mut thread = lock(&g.thread);
    if thread.is_none() {
        // A spawn that fails (no thread can be created now) is tried again by the next
        // wait: until then `block_on` still drives the manager.
        *thread = g.manager.spawn().ok();
    }
    if thread.is_some() {
        GLOBAL_LOOP.store(true, Ordering::Relaxed);
    }
}

/// For `block_on`: when two threads want to drive the global manager at once, a loop thread
/// serves both.
pub(crate) fn global_contended(m: &Arc<EventManager>) {
    if let Some(g) = GLOBAL.get() {
        if Arc::ptr_eq(&g.manager, m) {
            start_global_loop(g);
        }
    }
}
