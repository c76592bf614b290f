//! Loom model of the pending-flag protocol shared by `Wakeup` and `Control`.
//!
//! The fd is modelled as an atomic counter: a wake's `write` adds 1, the loop's drain swaps
//! it to 0, and "readable" means non-zero. The waker publishes work (a relaxed store), then
//! wakes; the loop does one iteration (readable? → drain → clear → look at the work). No
//! lost wakeup means: at the end, the loop saw the work, or the fd is readable (so a real
//! loop would run again).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p ioman-wakeup --release --lib`.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use crate::wakeup::Pending;

/// The real wake path: raise the flag, write only if it was clear.
fn wake(pending: &Pending, fd: &AtomicUsize) {
    if pending.raise() {
        fd.fetch_add(1, Ordering::SeqCst);
    }
}

/// The real reset path: drain, then clear.
fn reset(pending: &Pending, fd: &AtomicUsize) {
    fd.swap(0, Ordering::SeqCst);
    pending.clear();
}

fn one_loop_iteration(
    pending: &Pending,
    fd: &AtomicUsize,
    work: &[Arc<AtomicUsize>],
) -> Vec<usize> {
    if fd.load(Ordering::SeqCst) == 0 {
        // Not readable: the real loop would block in poll; nothing seen.
        return vec![0; work.len()];
    }
    reset(pending, fd);
    work.iter().map(|w| w.load(Ordering::Relaxed)).collect()
}

/// Starts from "a wake is pending and the fd is readable", so the waker takes the
/// coalesced, syscall-free path whenever it runs before the loop's clear.
#[test]
fn coalesced_wake_is_never_lost() {
    loom::model(|| {
        let pending = Arc::new(Pending::new(true));
        let fd = Arc::new(AtomicUsize::new(1));
        let work = Arc::new(AtomicUsize::new(0));

        let waker = {
            let (pending, fd, work) = (pending.clone(), fd.clone(), work.clone());
            thread::spawn(move || {
                work.store(1, Ordering::Relaxed);
                wake(&pending, &fd);
            })
        };
        let seen = one_loop_iteration(&pending, &fd, std::slice::from_ref(&work));
        waker.join().expect("waker");
        assert!(
            seen[0] == 1 || fd.load(Ordering::SeqCst) > 0,
            "lost wakeup: work not seen and fd not readable"
        );
    });
}

/// Two wakers racing each other and the loop, from an idle state.
#[test]
fn two_wakers_are_never_lost() {
    loom::model(|| {
        let pending = Arc::new(Pending::new(false));
        let fd = Arc::new(AtomicUsize::new(0));
        let works = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];

        let wakers: Vec<_> = works
            .iter()
            .map(|work| {
                let (pending, fd, work) = (pending.clone(), fd.clone(), work.clone());
                thread::spawn(move || {
                    work.store(1, Ordering::Relaxed);
                    wake(&pending, &fd);
                })
            })
            .collect();
        let seen = one_loop_iteration(&pending, &fd, &works);
        for w in wakers {
            w.join().expect("waker");
        }
        let readable = fd.load(Ordering::SeqCst) > 0;
        for (i, s) in seen.iter().enumerate() {
            assert!(*s == 1 || readable, "lost wakeup of waker {i}");
        }
    });
}

/// A waker that wakes, publishes, and wakes again while a wake is pending and the loop
/// resets: with `drain_first == false` this is the broken order (clear, then drain).
fn wake_publish_wake(drain_first: bool) {
    let pending = Arc::new(Pending::new(true));
    let fd = Arc::new(AtomicUsize::new(1));
    let work = Arc::new(AtomicUsize::new(0));
    let waker = {
        let (pending, fd, work) = (pending.clone(), fd.clone(), work.clone());
        thread::spawn(move || {
            wake(&pending, &fd);
            work.store(1, Ordering::Relaxed);
            wake(&pending, &fd);
        })
    };
    let mut seen = 0;
    if fd.load(Ordering::SeqCst) > 0 {
        if drain_first {
            reset(&pending, &fd);
        } else {
            pending.clear();
            fd.swap(0, Ordering::SeqCst);
        }
        seen = work.load(Ordering::Relaxed);
    }
    waker.join().expect("waker");
    let readable = fd.load(Ordering::SeqCst) > 0;
    assert!(seen == 1 || readable, "lost wakeup");
}

#[test]
fn wake_publish_wake_is_never_lost() {
    loom::model(|| wake_publish_wake(true));
}

/// The model is strong enough to catch the bug `reset`'s order prevents: clearing the flag
/// before draining loses a wake.
#[test]
fn clear_then_drain_loses_wakes() {
    let result = std::panic::catch_unwind(|| loom::model(|| wake_publish_wake(false)));
    assert!(result.is_err(), "loom should find the lost wakeup");
}

/// A full fd (an eventfd counter at its maximum, a full pipe): here one write fills it.
const CAP: usize = 1;

/// A write that fails with `EAGAIN` on a full fd.
fn try_write(fd: &AtomicUsize) -> bool {
    fd.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        (v < CAP).then_some(v + 1)
    })
    .is_ok()
}

/// The real wake path on a bounded fd: raise the flag; write; on `EAGAIN` drain and write
/// again (a second `EAGAIN` leaves the fd full, hence readable).
fn wake_bounded(pending: &Pending, fd: &AtomicUsize) {
    if pending.raise() && !try_write(fd) {
        fd.swap(0, Ordering::SeqCst);
        let _ = try_write(fd);
    }
}

/// The fd was filled behind the flag's back (the state in which a write meets `EAGAIN`);
/// two wakers race the loop. No wake is lost.
#[test]
fn wake_on_full_fd_is_never_lost() {
    loom::model(|| {
        let pending = Arc::new(Pending::new(false));
        let fd = Arc::new(AtomicUsize::new(CAP));
        let works = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
        let wakers: Vec<_> = works
            .iter()
            .map(|work| {
                let (pending, fd, work) = (pending.clone(), fd.clone(), work.clone());
                thread::spawn(move || {
                    work.store(1, Ordering::Relaxed);
                    wake_bounded(&pending, &fd);
                })
            })
            .collect();
        let seen = one_loop_iteration(&pending, &fd, &works);
        for w in wakers {
            w.join().expect("waker");
        }
        let readable = fd.load(Ordering::SeqCst) > 0;
        for (i, s) in seen.iter().enumerate() {
            assert!(*s == 1 || readable, "lost wakeup of waker {i}");
        }
    });
}
