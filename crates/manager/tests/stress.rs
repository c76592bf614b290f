//! Many threads registering, re-arming, unregistering and closing thousands of fds while
//! events flow and timers fire: every event and every due timer is delivered exactly as
//! registered (nothing lost, nothing duplicated), and nothing deadlocks.
//!
//! `IOMAN_STRESS_FDS` sets the number of fds (default 9,000: the hard open-file limit here is
//! 20,000 per process); it is scaled down to fit the soft limit.

mod util;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use ioman::{Backend, EventManager, Interest, Lifetime, Pool};

const THREADS: usize = 8;
const ROUNDS: usize = 3;
const TIMERS_PER_THREAD: usize = 60;

/// The two tests here would together come close to the open-file limit: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn fd_budget() -> usize {
    let wanted = std::env::var("IOMAN_STRESS_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9_000usize);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024);
    wanted.min(soft.saturating_sub(512))
}

/// The reading end, shared with its callback; taken out to be closed through the manager.
type Reader = Arc<Mutex<Option<UnixStream>>>;

struct Pair {
    writer: UnixStream,
    fd: RawFd,
    reader: Reader,
    /// Read callbacks run (one byte each).
    reads: Arc<AtomicUsize>,
    /// CLOSED callbacks run.
    closed: Arc<AtomicUsize>,
    /// Re-armed by its own callback (on the loop thread) rather than by the test thread.
    self_arming: bool,
}

/// Registers a one-shot read callback that reads one byte; a self-arming one registers
/// itself again from inside the callback.
fn arm<B: Backend + 'static>(
    m: &EventManager<B>,
    fd: RawFd,
    reader: &Reader,
    reads: &Arc<AtomicUsize>,
    closed: &Arc<AtomicUsize>,
    self_arming: bool,
) {
    let (r, n, c) = (reader.clone(), reads.clone(), closed.clone());
    m.register_fd(fd, Interest::READ, Lifetime::OneShot, move |m, _, ready| {
        if ready.is_closed() {
            c.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let mut buf = [0u8; 4];
        let mut guard = r.lock().unwrap();
        let stream = guard.as_mut().expect("read after close");
        match stream.read(&mut buf) {
            Ok(1) => {}
            other => panic!("expected one byte, got {other:?} ({ready:?})"),
        }
        drop(guard);
        n.fetch_add(1, Ordering::SeqCst);
        if self_arming {
            arm(m, fd, &r, &n, &c, true);
        }
    })
    .expect("register");
}

fn stress<B: Backend + 'static>(make: fn() -> io::Result<B>, fds: usize) -> io::Result<()> {
    let panics = Arc::new(AtomicUsize::new(0));
    let p = panics.clone();
    let m = Arc::new(
        EventManager::builder()
            .backend(make()?)
            .panic_hook(move |_| {
                p.fetch_add(1, Ordering::SeqCst);
            })
            .build()?,
    );
    let h = m.spawn()?;
    let pairs_per_thread = fds / 2 / THREADS;

    thread::scope(|s| {
        for t in 0..THREADS {
            let m = &m;
            s.spawn(move || worker(&|_| m, m, t, pairs_per_thread));
        }
    });

    assert_eq!(panics.load(Ordering::SeqCst), 0, "no callback panicked");
    assert_eq!(m.live(), (0, 0), "nothing left registered");
    m.shutdown();
    h.join()
}

/// `owner` names the manager of an fd (one manager, or a pool's `manager_for`); `m` is the
/// one this thread registers its timeouts with.
type Owner<'a, B> = &'a (dyn Fn(RawFd) -> &'a EventManager<B> + Sync);

fn worker<B: Backend + 'static>(owner: Owner<'_, B>, m: &EventManager<B>, t: usize, n: usize) {
    let mut pairs: Vec<Pair> = (0..n)
        .map(|i| {
            let (writer, reader) = util::pair().expect("socketpair");
            Pair {
                writer,
                fd: reader.as_raw_fd(),
                reader: Arc::new(Mutex::new(Some(reader))),
                reads: Arc::default(),
                closed: Arc::default(),
                self_arming: i % 2 == 0,
            }
        })
        .collect();

    // Timers: register, cancel a third, and account exactly for what fires.
    let fired: Vec<Arc<AtomicUsize>> = (0..TIMERS_PER_THREAD).map(|_| Arc::default()).collect();
    let mut expect_fired = vec![true; TIMERS_PER_THREAD];
    let keys: Vec<_> = fired
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.clone();
            let d = Duration::from_micros(((i * 7919 + t * 131) % 30_000) as u64);
            m.register_timeout(d, move |_| {
                f.fetch_add(1, Ordering::SeqCst);
            })
            .expect("register_timeout")
        })
        .collect();
    for (i, k) in keys.iter().enumerate() {
        if i % 3 == 0 && m.unregister_timeout(*k) {
            expect_fired[i] = false;
        }
    }

    for p in &pairs {
        arm(
            owner(p.fd),
            p.fd,
            &p.reader,
            &p.reads,
            &p.closed,
            p.self_arming,
        );
    }
    for round in 1..=ROUNDS {
        for (i, p) in pairs.iter_mut().enumerate() {
            // Exercise unregister on the test-armed half: arm twice, drop one.
            if round > 1 && !p.self_arming {
                let m = owner(p.fd);
                let extra = m
                    .register_fd(p.fd, Interest::READ, Lifetime::OneShot, |_, _, _| {
                        panic!("an unregistered callback ran")
                    })
                    .expect("register");
                assert!(m.unregister_fd(extra).expect("unregister"));
                arm(m, p.fd, &p.reader, &p.reads, &p.closed, false);
            }
            p.writer.write_all(&[i as u8]).expect("write");
        }
        for p in &pairs {
            util::wait_until(|| p.reads.load(Ordering::SeqCst) >= round);
        }
    }

    // Close everything through the manager: self-arming pairs still have one live
    // registration (told CLOSED once), the others have none.
    for p in &pairs {
        let stream = p.reader.lock().unwrap().take().expect("open");
        let told = owner(p.fd).close_fd(stream);
        assert_eq!(
            told,
            usize::from(p.self_arming),
            "CLOSED told to live registrations only"
        );
        assert_eq!(p.closed.load(Ordering::SeqCst), usize::from(p.self_arming));
        assert_eq!(
            p.reads.load(Ordering::SeqCst),
            ROUNDS,
            "exactly one callback per byte"
        );
    }

    util::wait_until(|| {
        fired
            .iter()
            .zip(&expect_fired)
            .all(|(f, &e)| f.load(Ordering::SeqCst) == usize::from(e))
    });
}

/// The same workload on every backend, one after the other (together they would exceed the
/// open-file limit).
#[test]
fn many_threads_many_fds() -> io::Result<()> {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fds = fd_budget();
    stress(ioman::DefaultBackend::new, fds)?;
    stress(ioman_poll::PosixPoll::new, fds)?;
    Ok(())
}

/// The same workload on a pool of 4 managers: each fd is owned by one of them, re-armed by
/// its own loop or by the test threads, closed from any thread; then shutdown with
/// connections live.
#[test]
fn pool_of_four() -> io::Result<()> {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fds = fd_budget();
    let panics = Arc::new(AtomicUsize::new(0));
    let p = panics.clone();
    let pool = Pool::builder()
        .threads(4)
        .panic_hook(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
        })
        .build()?;
    let owner = |fd: RawFd| &**pool.manager_for(fd);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (owner, pool) = (&owner, &pool);
            s.spawn(move || worker(owner, pool.current(), t, fds / 2 / THREADS));
        }
    });
    assert_eq!(panics.load(Ordering::SeqCst), 0, "no callback panicked");
    for m in pool.managers() {
        assert_eq!(m.live(), (0, 0));
    }

    // Shutdown with connections live: every loop stops, waiters are released.
    let pairs: Vec<_> = (0..64).map(|_| util::pair().unwrap()).collect();
    for (_, b) in &pairs {
        pool.register_fd(b, Interest::READ, Lifetime::MultiShot, |_, _, _| {})?;
    }
    thread::scope(|s| {
        let waiter = s.spawn(|| pool.wait_readable(&pairs[0].1, None));
        util::wait_until(|| pool.manager_for(&pairs[0].1).live().0 >= 2);
        pool.shutdown();
        assert!(ioman::ShutDown::is(&waiter.join().unwrap().unwrap_err()));
    });
    pool.join()?;
    for m in pool.managers() {
        assert_eq!(m.state(), ioman::State::Finished);
        assert_eq!(m.live(), (0, 0));
    }
    Ok(())
}
