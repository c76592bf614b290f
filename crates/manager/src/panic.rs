//! Containing user code: every call of a callback and every drop of one runs under
//! `catch_unwind`, and a panic is reported to the panic hook with what panicked.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use ioman_poll::Backend;

use crate::{EventManager, FdKey, TimeoutKey};

/// Which user code panicked; see [`Panic::origin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// The callback of this fd registration, while it ran.
    FdCallback(FdKey),
    /// The callback of this fd registration, while it was dropped (something it captured
    /// panicked in its `Drop`).
    FdCallbackDrop(FdKey),
    /// The callback of this timeout, while it ran (a panic in the `Drop` of what it
    /// captured happens during the call, as it is `FnOnce`).
    Timeout(TimeoutKey),
    /// The callback of this timeout, dropped without running (cancelled or shut down).
    TimeoutDrop(TimeoutKey),
    /// A callback whose registration was refused (the error went to the caller), dropped.
    Refused,
}

/// What the panic hook is told: which callback panicked, and the panic's payload.
pub struct Panic<'a> {
    origin: Origin,
    payload: &'a (dyn Any + Send),
}

impl Panic<'_> {
    /// Which callback panicked.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The value the callback panicked with (`&str` or `String` for `panic!` with a message).
    pub fn payload(&self) -> &(dyn Any + Send) {
        self.payload
    }

    /// The panic message, when the payload is a `&str` or a `String`.
    pub fn message(&self) -> Option<&str> {
        self.payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| self.payload.downcast_ref::<String>().map(String::as_str))
    }
}

impl fmt::Debug for Panic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panic")
            .field("origin", &self.origin)
            .field("message", &self.message())
            .finish()
    }
}

/// Called with every contained panic; see [`Builder::panic_hook`](crate::Builder::panic_hook).
pub type PanicHook = Arc<dyn Fn(&Panic<'_>) + Send + Sync>;

/// The default panic hook: one line on stderr.
pub(crate) fn default_panic_hook(p: &Panic<'_>) {
    let msg = p.message().unwrap_or("(non-string panic payload)");
    eprintln!("ioman: a callback panicked ({:?}): {msg}", p.origin);
}

impl<B: Backend + 'static> EventManager<B> {
    /// Runs `f`, reporting a panic as coming from `origin`. Returns whether `f` returned.
    pub(crate) fn contain(&self, origin: Origin, f: impl FnOnce()) -> bool {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => true,
            Err(payload) => {
                self.counters.bump_panics();
                let hook = &self.panic_hook;
                let report = Panic {
                    origin,
                    payload: &*payload,
                };
                crate::trace::event!(ERROR, "panic", origin = ?origin, what = report.message());
                // A panicking hook must not take the loop down either; its payload is
                // dropped under the same guard (a payload can panic in its `Drop` too).
                let _ = catch_unwind(AssertUnwindSafe(|| hook(&report)));
                let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
                false
            }
        }
    }

    /// Drops user code (a callback and what it captured) under [`contain`](Self::contain).
    pub(crate) fn drop_contained<T>(&self, origin: Origin, value: T) {
        self.contain(origin, move || drop(value));
    }
}
