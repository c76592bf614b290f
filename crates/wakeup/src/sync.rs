//! Atomics from `std`, or from `loom` under `cfg(loom)` so the pending-flag protocol can be
//! model-checked.
//!
//! The signal handler's tables (in `sys::signal`) use `std` atomics directly: they are
//! process-wide statics touched from signal context, which loom does not model.

#[cfg(all(loom, not(feature = "loom")))]
compile_error!("`--cfg loom` needs the loom dependency: add `--features loom`");

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
