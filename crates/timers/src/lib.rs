//! A priority search queue and a timer queue with an injectable clock, after the timer
//! manager of GHC's event manager.
//!
//! The main types:
//!
//! - [`Psq`] — a priority search queue: a min-priority queue whose entries are also
//!   reachable by the [`Key`] handed out on insert, to read, re-prioritise (earlier or
//!   later) or remove them in O(log n), plus GHC's `atMost` as
//!   [`pop_at_most`](Psq::pop_at_most). Keys are generation-checked: a key whose entry
//!   is gone never reaches a later entry.
//! - [`TimerQueue`] — timers: [`register_at`](TimerQueue::register_at) an instant or
//!   [`register_after`](TimerQueue::register_after) a duration, with a value;
//!   [`update_at`](TimerQueue::update_at) / [`update_after`](TimerQueue::update_after) or
//!   [`cancel`](TimerQueue::cancel) it by [`TimerKey`], ask
//!   [`timeout`](TimerQueue::timeout) how long a poller may block, and
//!   [`expire`](TimerQueue::expire) the due timers in deadline order. Registering is
//!   O(1) (a push onto a timing-wheel bucket), cancelling and moving a timer later are
//!   O(1) (lazy: the old entry is dropped when it surfaces), each expired timer costs
//!   O(log k) for the k timers of its millisecond; measured against a hand-rolled
//!   `BinaryHeap` in `ioman-bench`'s `timers` benchmark.
//! - [`Clock`] — the one place a `TimerQueue` reads time: [`MonotonicClock`] in
//!   production, [`ManualClock`] in tests, so no test sleeps to see a timer fire. The
//!   queue owns its clock and no method takes a "now" argument, so a caller cannot hand
//!   it a time from another clock.
//!
//! The crate has no dependencies, touches no file descriptor and contains no `unsafe`.
//!
//! # Precision
//!
//! A `TimerQueue` converts each `Instant` it is given, once, into a `u64` of nanoseconds
//! since the queue's creation, and keeps those ticks everywhere inside: the unit of
//! `Instant` itself on Linux, macOS and the BSDs, so nothing is rounded.
//! [`TimerQueue::timeout`] never returns less than the time to the earliest deadline,
//! so a poller that rounds its timeout up never wakes early. A timer never fires before
//! its deadline and fires at the first [`expire`](TimerQueue::expire) at or after it.
//! The wheel's millisecond buckets only group timers; the order within a bucket is exact
//! to the nanosecond, equal deadlines in registration order.
//!
//! # Threading
//!
//! `Psq` and `TimerQueue` are plain single-owner data structures (`Send` and `Sync` when
//! their contents are); share one behind a lock. Clocks are `Send + Sync`, and
//! `ManualClock` clones share one time, so a test can advance the clock of a queue owned
//! by another thread.
//!
//! # Examples
//!
//! An idle timeout pushed back on activity, a write timeout that fires, and the
//! poll timeout in between:
//!
//! ```
//! use ioman_timers::{Clock, ManualClock, TimerQueue};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let mut timers = TimerQueue::with_clock(clock.clone());
//!
//! let idle = timers.register_after(Duration::from_secs(30), "close idle connection");
//! let write = timers.register_after(Duration::from_secs(5), "write timed out");
//! timers.register_after(Duration::from_secs(5), "flush");
//!
//! // A poller would block this long.
//! assert_eq!(timers.timeout(), Some(Duration::from_secs(5)));
//!
//! // Activity on the connection: push the idle timeout later (O(1)).
//! clock.advance(Duration::from_secs(2));
//! assert!(timers.update_after(idle, Duration::from_secs(30)));
//!
//! // Five seconds in, both 5 s timers fire, in registration order.
//! clock.advance(Duration::from_secs(3));
//! let fired: Vec<_> = timers.expire().map(|(_, _, what)| what).collect();
//! assert_eq!(fired, ["write timed out", "flush"]);
//!
//! // A fired timer's key is stale.
//! assert_eq!(timers.cancel(write), None);
//!
//! // The idle timeout now fires at 32 s: 27 s from now.
//! assert_eq!(timers.timeout(), Some(Duration::from_secs(27)));
//! assert_eq!(timers.cancel(idle), Some("close idle connection"));
//! assert_eq!(timers.timeout(), None);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod clock;
mod heap;
mod psq;
mod tick;
mod timer;
mod wheel;

pub use crate::clock::{Clock, ManualClock, MonotonicClock};
pub use crate::psq::{Iter, Key, PopAtMost, Psq};
pub use crate::timer::{Expire, TimerKey, TimerQueue};
