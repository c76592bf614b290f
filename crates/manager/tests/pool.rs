//! A pool of managers: which manager owns an fd, and close_fd from any thread.

mod util;

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use ioman::{Interest, Lifetime, Pool};

/// Every fd's callbacks run on its owner, `manager_for(fd)`, whichever thread registered.
#[test]
fn callbacks_run_on_the_owning_manager() -> io::Result<()> {
    let pool = Pool::new(3)?;
    assert_eq!(pool.len(), 3);
    let pairs: Vec<_> = (0..24).map(|_| util::pair().unwrap()).collect();
    let (tx, rx) = mpsc::channel();
    thread::scope(|s| {
        for chunk in pairs.chunks(6) {
            let (pool, tx) = (&pool, tx.clone());
            s.spawn(move || {
                for (_, b) in chunk {
                    let tx = tx.clone();
                    pool.register_fd(b, Interest::READ, Lifetime::OneShot, move |m, key, _| {
                        tx.send((key.fd(), m as *const _ as usize)).unwrap();
                    })
                    .unwrap();
                }
            });
        }
    });
    for (a, _) in &pairs {
        (&*a).write_all(b"x")?;
    }
    for _ in &pairs {
        let (fd, manager) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(manager, Arc::as_ptr(pool.manager_for(fd)) as usize);
        assert_eq!(
            pool.manager_for(fd) as *const _,
            &pool.managers()[fd as usize % 3] as *const _
        );
    }
    Ok(())
}

/// close_fd from a thread that is not the owner's loop tells the fd's registrations CLOSED,
/// and the pool's wait helpers release a waiter whose fd is closed.
#[test]
fn close_fd_from_any_thread() -> io::Result<()> {
    let pool = Arc::new(Pool::new(2)?);
    let (_a, b) = util::pair()?;
    let fd = b.as_raw_fd();
    let (tx, rx) = mpsc::channel();
    pool.register_fd(fd, Interest::READ, Lifetime::MultiShot, move |_, _, r| {
        tx.send(r).unwrap()
    })?;
    let p = pool.clone();
    let waiter = thread::spawn(move || p.wait_readable(fd, None));
    util::wait_until(|| pool.manager_for(fd).live().0 == 2);
    let closer = {
        let p = pool.clone();
        thread::spawn(move || p.close_fd(b))
    };
    assert_eq!(closer.join().unwrap(), 2);
    assert!(rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .is_closed());
    let e = waiter.join().unwrap().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    Ok(())
}

/// `on_loop_start(i)` runs on loop thread `i` (named `ioman-loop-<i>`) before its loop: where
/// a user pins it to a core.
#[test]
fn on_loop_start_runs_on_each_loop_thread() -> io::Result<()> {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let pool = Pool::builder()
        .threads(3)
        .on_loop_start(move |i| {
            let name = thread::current().name().map(str::to_owned);
            tx.lock().unwrap().send((i, name)).unwrap();
        })
        .build()?;
    let mut seen: Vec<_> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap())
        .collect();
    seen.sort();
    for (i, (j, name)) in seen.into_iter().enumerate() {
        assert_eq!(i, j);
        assert_eq!(name.as_deref(), Some(format!("ioman-loop-{i}").as_str()));
    }
    pool.shutdown();
    pool.join()
}

/// A pool is a cheap handle: clones share the managers, timeouts go to the current manager
/// and are updated and cancelled through the key's own manager; the last clone dropped
/// stops every loop.
#[test]
fn clones_timeouts_and_last_drop() -> io::Result<()> {
    let pool = Pool::new(2)?;
    let clone = pool.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    let t = clone.register_timeout(Duration::from_secs(3600), move |_| {
        tx.send("moved").unwrap();
    })?;
    assert!(
        pool.update_timeout(t, Duration::ZERO),
        "the key's manager moves it"
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), "moved");
    let t = pool.register_timeout_at(
        std::time::Instant::now() + Duration::from_secs(3600),
        move |_| {
            tx2.send("never").unwrap();
        },
    )?;
    assert!(clone.unregister_timeout(t));
    assert!(!pool.unregister_timeout(t));
    let other = Pool::new(1)?;
    let foreign = other.register_timeout(Duration::from_secs(3600), |_| {})?;
    assert!(
        !pool.update_timeout(foreign, Duration::ZERO),
        "another pool's key"
    );
    assert!(!pool.unregister_timeout(foreign));
    pool.sleep(Duration::from_millis(1))?;
    // The moved timeout, and maybe the sleep's (it may end by itself first).
    assert!(pool.stats().timeout_callbacks >= 1);
    let managers: Vec<_> = pool.managers().to_vec();
    drop(pool);
    assert!(
        managers.iter().all(|m| m.state() == ioman::State::Running),
        "a clone lives"
    );
    drop(clone);
    assert!(
        managers.iter().all(|m| m.state() == ioman::State::Finished),
        "the last clone stopped and joined every loop"
    );
    Ok(())
}

/// An accept callback that holds a `Pool` clone keeps the pool alive (a cycle through its own
/// registration); one that holds a `WeakPool` does not: the user's last `Pool` dropped
/// stops and joins every loop.
#[test]
fn weak_pool_in_own_callback_does_not_keep_it_running() -> io::Result<()> {
    let pool = Pool::new(2)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let weak = pool.downgrade();
    let in_cb = listener.try_clone()?;
    pool.register_fd(
        &listener,
        Interest::READ,
        Lifetime::MultiShot,
        move |_, _, _| {
            let Some(pool) = weak.upgrade() else { return };
            while let Ok((conn, _)) = in_cb.accept() {
                let owner = pool.manager_for(&conn);
                let i = pool.managers().iter().position(|m| Arc::ptr_eq(m, owner));
                tx.send((i, conn)).unwrap();
            }
        },
    )?;
    let _client = std::net::TcpStream::connect(addr)?;
    let (owner, conn) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(owner, Some(conn.as_raw_fd() as usize % 2), "fd % N owns it");
    let managers: Vec<_> = pool.managers().to_vec();
    let weak = pool.downgrade();
    drop(pool);
    // The callback may still hold the pool it upgraded to for a moment; then its drop, on
    // the loop thread, is the last one.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !managers.iter().all(|m| m.state() == ioman::State::Finished) {
        assert!(
            std::time::Instant::now() < deadline,
            "the last Pool did not stop every loop, though a callback holds only a WeakPool"
        );
        thread::sleep(Duration::from_millis(1));
    }
    assert!(weak.upgrade().is_none(), "no strong handle left");
    Ok(())
}
