//! Managers free what they own: dropping one closes its backend and wakeup fds, and a
//! spawned loop stops when its last user handle goes away, shutdown or not. Counted in
//! `/proc/self/fd` and `/proc/self/task`. (One test in its binary, so no other test opens
//! fds or threads meanwhile.)

mod util;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioman::{EventManager, Interest, Lifetime, Pool, State};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Waits up to 20 s for `f() == want` (a joined thread leaves `/proc/self/task` a moment
/// after `join` returns on some kernels).
fn settles(what: &str, want: usize, f: impl Fn() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while f() != want {
        assert!(Instant::now() < deadline, "{what}: {} != {want}", f());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn managers_free_their_fds_and_threads() -> io::Result<()> {
    let (_a, b) = util::pair()?;
    let (fds, tasks) = (open_fds(), threads());
    for _ in 0..10 {
        // Shut down and joined.
        let m = Arc::new(util::default()?);
        let h = m.spawn()?;
        m.register_fd(&b, Interest::READ, Lifetime::MultiShot, |_, _, _| {})?;
        m.register_timeout(Duration::from_secs(60), |_| {})?;
        m.shutdown();
        h.join()?;
        drop(m);

        // Never shut down explicitly, not spawned.
        let m = util::poll()?;
        m.register_fd(&b, Interest::WRITE, Lifetime::OneShot, |_, _, _| {})?;
        m.step(Some(Duration::ZERO))?;
        drop(m);

        // Spawned, then every handle dropped without shutdown: the loop thread stops and
        // the manager's fds close.
        let m = Arc::new(EventManager::new()?);
        let h = m.spawn()?;
        m.register_fd(&b, Interest::READ, Lifetime::MultiShot, |_, _, _| {})?;
        m.register_timeout(Duration::from_secs(60), |_| {})?;
        drop(m);
        drop(h);

        // The handle dropped first: the manager is shut down, the thread gone.
        let m = Arc::new(EventManager::new()?);
        let h = m.spawn()?;
        drop(h);
        assert_eq!(m.state(), State::Finished);
        drop(m);

        let pool = Pool::new(3)?;
        pool.register_fd(&b, Interest::READ, Lifetime::OneShot, |_, _, _| {})?;
        drop(pool);
    }
    settles("threads", tasks, threads);
    assert_eq!(open_fds(), fds, "every backend and wakeup fd closed");
    Ok(())
}
