//! `set_timer_slack` / `timer_slack`: the calling thread's setting, read back as set,
//! restored by zero, saturated instead of wrapped; `Unsupported` where there is none.

use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn set_read_back_restore_saturate() -> std::io::Result<()> {
    use ioman_poll::{set_timer_slack, timer_slack};
    // A thread of its own, so no other test's thread has its slack changed.
    std::thread::spawn(|| -> std::io::Result<()> {
        let default = timer_slack()?;
        // A thread made now, which asks after this one changed its own.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            wait.recv().unwrap();
            timer_slack()
        });
        set_timer_slack(Duration::from_nanos(1))?;
        assert_eq!(timer_slack()?, Duration::from_nanos(1));
        set_timer_slack(Duration::from_micros(7))?;
        assert_eq!(timer_slack()?, Duration::from_micros(7));
        go.send(()).unwrap();
        assert_eq!(other.join().unwrap()?, default, "the setting is per thread");
        // A thread made from this one inherits it.
        let child = std::thread::spawn(timer_slack).join().unwrap()?;
        assert_eq!(child, Duration::from_micros(7), "inherited at creation");
        set_timer_slack(Duration::ZERO)?;
        assert_eq!(timer_slack()?, default, "zero restores the default");
        set_timer_slack(Duration::MAX)?;
        assert_eq!(
            timer_slack()?,
            Duration::from_nanos(i32::MAX as u64),
            "saturated where it still reads back"
        );
        Ok(())
    })
    .join()
    .unwrap()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[test]
fn unsupported_elsewhere() {
    let e = ioman_poll::set_timer_slack(Duration::from_nanos(1)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
    let e = ioman_poll::timer_slack().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
}
