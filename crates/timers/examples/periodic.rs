//! `ioman-timers` alone, with no poller: a thread that runs periodic jobs at fixed rates
//! without drift (each next deadline is the last deadline plus the period, not "now" plus
//! the period), cancels one of them halfway and stops at an overall deadline, sleeping
//! exactly as long as [`TimerQueue::timeout`] says in between.
//!
//! ```text
//! cargo run -p ioman-timers --example periodic
//! ```

use ioman_timers::TimerQueue;
use std::time::Duration;

enum Job {
    Tick {
        name: &'static str,
        period: Duration,
    },
    StopFast,
    End,
}

fn main() {
    let mut timers = TimerQueue::new();
    let (ms, start) = (Duration::from_millis, timers.now());
    let fast = timers.register_at(
        start + ms(10),
        Job::Tick {
            name: "fast",
            period: ms(10),
        },
    );
    timers.register_at(
        start + ms(25),
        Job::Tick {
            name: "slow",
            period: ms(25),
        },
    );
    // Equal deadlines fire in registration order: these two come before the ticks due at
    // the same instant, so "fast" last runs at 90 ms and "slow" at 175 ms.
    timers.register_at(start + ms(100), Job::StopFast);
    timers.register_at(start + ms(200), Job::End);
    let mut fast_key = Some(fast);
    let mut ran = Vec::new();
    'run: loop {
        std::thread::sleep(timers.timeout().unwrap_or_default());
        // One due timer at a time, so a job sees the cancellations of the ones before it.
        while let Some((_, deadline, job)) = timers.expire().next() {
            match job {
                Job::Tick { name, period } => {
                    let late = timers.now() - deadline;
                    ran.push((name, deadline - start, late));
                    let key = timers.register_at(deadline + period, Job::Tick { name, period });
                    if name == "fast" {
                        fast_key = Some(key);
                    }
                }
                Job::StopFast => drop(fast_key.take().and_then(|k| timers.cancel(k))),
                Job::End => break 'run,
            }
        }
    }
    for (name, at, late) in &ran {
        println!("{name:>4} due at {at:>9.1?}, ran {late:>8.1?} late");
    }
    let count = |n| ran.iter().filter(|r| r.0 == n).count();
    println!(
        "fast ran {} times (10 ms, stopped at 100 ms), slow {} (25 ms, to 200 ms)",
        count("fast"),
        count("slow")
    );
    assert_eq!(
        (count("fast"), count("slow")),
        (9, 7),
        "a tick lost, drifted, or run after its cancel"
    );
}
