//! `Builder::timer_slack` and `PoolBuilder::timer_slack`: set on the thread that runs the
//! loop (read from a callback there), not on the thread that built the manager.

#![cfg(any(target_os = "linux", target_os = "android"))]

use std::io;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use ioman::{EventManager, Pool};
use ioman_poll::timer_slack;

fn slack_seen_by_a_timeout<B: ioman::Backend + 'static>(
    m: &EventManager<B>,
) -> io::Result<mpsc::Receiver<Duration>> {
    let (tx, rx) = mpsc::channel();
    m.register_timeout(Duration::ZERO, move |_| {
        tx.send(timer_slack().unwrap()).unwrap();
    })?;
    Ok(rx)
}

#[test]
fn spawned_loop_thread_gets_the_slack() -> io::Result<()> {
    let before = timer_slack()?;
    let m = Arc::new(
        EventManager::builder()
            .timer_slack(Duration::from_nanos(1))
            .build()?,
    );
    assert_eq!(
        timer_slack()?,
        before,
        "build does not touch the caller's slack"
    );
    let handle = m.spawn()?;
    let rx = slack_seen_by_a_timeout(&m)?;
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).unwrap(),
        Duration::from_nanos(1)
    );
    drop(handle);
    // Without the option, the loop thread keeps what it inherited.
    let plain = Arc::new(EventManager::new()?);
    let _h = plain.spawn()?;
    let rx = slack_seen_by_a_timeout(&plain)?;
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), before);
    Ok(())
}

#[test]
fn run_sets_it_on_the_calling_thread() -> io::Result<()> {
    std::thread::spawn(|| -> io::Result<()> {
        let m = EventManager::builder()
            .timer_slack(Duration::from_micros(3))
            .build()?;
        let rx = slack_seen_by_a_timeout(&m)?;
        m.register_timeout(Duration::from_millis(1), |m| m.shutdown())?;
        m.run()?;
        assert_eq!(rx.try_recv().unwrap(), Duration::from_micros(3));
        assert_eq!(
            timer_slack()?,
            Duration::from_micros(3),
            "run's thread keeps it"
        );
        Ok(())
    })
    .join()
    .unwrap()
}

#[test]
fn every_pool_thread_gets_the_slack() -> io::Result<()> {
    let pool = Pool::builder()
        .threads(3)
        .timer_slack(Duration::from_nanos(2))
        .build()?;
    for m in pool.managers() {
        let rx = slack_seen_by_a_timeout(m)?;
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(20)).unwrap(),
            Duration::from_nanos(2)
        );
    }
    Ok(())
}
