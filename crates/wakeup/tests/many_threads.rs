//! Stress: many threads wake one loop; no increment published before a wake is ever lost.

mod util;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use ioman_wakeup::{Control, Message};
use util::{fail, for_each_kind, poll_readable};

const WAKERS: usize = 8;
const WAKES: usize = 100_000;

/// Each waker increments a shared counter (relaxed: the wakeup protocol must provide the
/// ordering), then wakes. The loop blocks in poll, resets, and reads the counter; if a wake
/// were lost, the loop would sleep with increments unseen and poll would time out.
#[test]
fn eight_threads_waking_lose_nothing() -> io::Result<()> {
    for_each_kind(|w| {
        let w = Arc::new(w);
        let counter = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(WAKERS));
        let wakers: Vec<_> = (0..WAKERS)
            .map(|_| {
                let (w, counter, start) = (w.clone(), counter.clone(), start.clone());
                thread::spawn(move || -> io::Result<()> {
                    start.wait();
                    for _ in 0..WAKES {
                        counter.fetch_add(1, Ordering::Relaxed);
                        w.wake()?;
                    }
                    Ok(())
                })
            })
            .collect();
        let total = WAKERS * WAKES;
        let mut iterations = 0u64;
        loop {
            if !poll_readable(&*w, 10_000)? {
                return Err(fail(format!(
                    "lost wakeup: loop asleep with {} of {total} increments seen",
                    counter.load(Ordering::Relaxed)
                )));
            }
            w.reset()?;
            iterations += 1;
            if counter.load(Ordering::Relaxed) == total {
                break;
            }
        }
        for t in wakers {
            t.join().map_err(|_| fail("waker panicked"))??;
        }
        let syscalls = w.syscalls();
        assert!(syscalls >= 1 && syscalls <= total as u64);
        eprintln!(
            "{:?}: {total} wakes, {syscalls} syscalls, {iterations} loop iterations",
            w.kind()
        );
        Ok(())
    })
}

/// The same through a Control: every wake before the final Die is followed by a drain that
/// sees the published work, and Die arrives.
#[test]
fn eight_threads_waking_a_control_lose_nothing() -> io::Result<()> {
    let control = Control::new()?;
    let counter = Arc::new(AtomicUsize::new(0));
    let wakers: Vec<_> = (0..WAKERS)
        .map(|_| {
            let (tx, counter) = (control.sender(), counter.clone());
            thread::spawn(move || -> io::Result<()> {
                for _ in 0..WAKES / 4 {
                    counter.fetch_add(1, Ordering::Relaxed);
                    tx.wake()?;
                }
                Ok(())
            })
        })
        .collect();
    let total = WAKERS * (WAKES / 4);
    let mut msgs = Vec::new();
    while counter.load(Ordering::Relaxed) != total {
        if !poll_readable(&control, 10_000)? {
            return Err(fail("lost wakeup through Control"));
        }
        msgs.clear();
        control.drain(&mut msgs)?;
    }
    for t in wakers {
        t.join().map_err(|_| fail("waker panicked"))??;
    }
    control.sender().die()?;
    let mut got_die = false;
    while !got_die {
        if !poll_readable(&control, 10_000)? {
            return Err(fail("Die lost"));
        }
        msgs.clear();
        control.drain(&mut msgs)?;
        got_die = msgs.contains(&Message::Die);
    }
    Ok(())
}
