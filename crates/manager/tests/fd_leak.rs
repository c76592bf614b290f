//! Dropping a manager closes its backend and wakeup fds: count `/proc/self/fd`.
//! (Alone in its test binary, so no other test opens fds meanwhile.)

mod util;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ioman::{Interest, Lifetime, Pool};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn dropping_managers_closes_their_fds() -> io::Result<()> {
    let (_a, b) = util::pair()?;
    let before = open_fds();
    for _ in 0..10 {
        let m = Arc::new(util::epoll()?);
        let h = m.spawn()?;
        m.register_fd(&b, Interest::READ, Lifetime::MultiShot, |_, _, _| {})?;
        m.register_timeout(Duration::from_secs(60), |_| {})?;
        m.shutdown();
        h.join()?;
        drop(m);

        let m = util::poll()?;
        m.register_fd(&b, Interest::WRITE, Lifetime::OneShot, |_, _, _| {})?;
        m.step(Some(Duration::ZERO))?;
        drop(m); // never shut down explicitly

        let pool = Pool::new(3)?;
        pool.register_fd(&b, Interest::READ, Lifetime::OneShot, |_, _, _| {})?;
        drop(pool);
    }
    assert_eq!(open_fds(), before, "every backend and wakeup fd closed");
    Ok(())
}
