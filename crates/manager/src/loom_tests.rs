//! loom models of the manager's two races: a registration racing the loop's dispatch, and the
//! loop's decision to block racing a new earlier timeout.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p ioman --release --lib loom`
//!
//! The models drive the real `EventManager` on a mock backend whose "kernel" is a loom
//! mutex, so loom sees (and permutes) the race between a registration's backend call and the
//! loop's poll, not only the manager's own locks. Readiness is set by the test.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ioman_poll::{Backend, Capabilities, Event, Events, Mode, Readiness};
use loom::thread;

use crate::{EventManager, Interest, Lifetime};

/// A kernel: each file's readiness, and the registrations epoll would hold, under one loom
/// mutex. Readiness belongs to the file, so a registration added later sees it.
#[derive(Default)]
struct Mock {
    state: loom::sync::Mutex<MockState>,
}

#[derive(Default)]
struct MockState {
    fds: HashMap<RawFd, MockFd>,
    ready: HashMap<RawFd, Readiness>,
}

struct MockFd {
    key: u32,
    interest: Interest,
    mode: Mode,
    armed: bool,
}

impl Mock {
    fn set_ready(&self, fd: RawFd, r: Readiness) {
        self.state.lock().unwrap().ready.insert(fd, r);
    }
}

impl Backend for Mock {
    fn register_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        if st.fds.contains_key(&fd) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let f = MockFd {
            key,
            interest,
            mode,
            armed: true,
        };
        st.fds.insert(fd, f);
        Ok(())
    }
    fn modify_raw(&self, fd: RawFd, key: u32, interest: Interest, mode: Mode) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        let f = st.fds.get_mut(&fd).ok_or(io::ErrorKind::NotFound)?;
        (f.key, f.interest, f.mode, f.armed) = (key, interest, mode, true);
        Ok(())
    }
    fn deregister_raw(&self, fd: RawFd) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        st.fds
            .remove(&fd)
            .map(drop)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn wait(&self, events: &mut Events, _timeout: Option<Duration>) -> io::Result<usize> {
        events.clear();
        let mut st = self.state.lock().unwrap();
        let MockState { fds, ready } = &mut *st;
        for (fd, f) in fds.iter_mut() {
            let r = ready.get(fd).copied().unwrap_or_default();
            if f.armed && r.satisfies(f.interest) {
                events.push(Event::new(*fd, f.key, r));
                if f.mode == Mode::OneShot {
                    f.armed = false;
                }
            }
        }
        Ok(events.len())
    }
    fn capabilities(&self) -> Capabilities {
        // What epoll offers: every mode, and changes reach a blocked wait.
        Capabilities::new().with_edge(true).with_live_modify(true)
    }
}

fn mock_manager() -> (Arc<EventManager<Arc<Mock>>>, Arc<Mock>) {
    let mock = Arc::new(Mock::default());
    let m = EventManager::builder()
        .backend(mock.clone())
        .build()
        .unwrap();
    (Arc::new(m), mock)
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    // Counted per model (tests run in parallel threads; a shared static would mix them).
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        r.fetch_add(1, Ordering::SeqCst);
        f()
    });
    // Interleavings explored: more than one, or the model tested nothing.
    let runs = runs.load(Ordering::SeqCst);
    assert!(runs > 1, "loom explored only {runs} interleaving");
    eprintln!("loom explored {runs} interleavings");
}

/// A one-shot registered while the loop dispatches fires exactly once, and nothing stays
/// registered.
#[test]
fn loom_register_races_dispatch() {
    model(|| {
        let (m, mock) = mock_manager();
        let fd = 100;
        let n = Arc::new(AtomicUsize::new(0));
        let (m2, n2, mock2) = (m.clone(), n.clone(), mock.clone());
        let t = thread::spawn(move || {
            m2.register_fd(fd, Interest::READ, Lifetime::OneShot, move |_, _, _| {
                n2.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
            mock2.set_ready(fd, Readiness::READABLE);
        });
        m.step(Some(Duration::ZERO)).unwrap();
        t.join().unwrap();
        m.step(Some(Duration::ZERO)).unwrap();
        m.step(Some(Duration::ZERO)).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(m.live().0, 0);
    });
}

/// An unregister racing the dispatch of the same one-shot: the callback runs iff unregister
/// said the key was unknown.
#[test]
fn loom_unregister_races_dispatch() {
    model(|| {
        let (m, mock) = mock_manager();
        let fd = 100;
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let key = m
            .register_fd(fd, Interest::READ, Lifetime::OneShot, move |_, _, _| {
                n2.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        mock.set_ready(fd, Readiness::READABLE);
        let m2 = m.clone();
        let t = thread::spawn(move || m2.unregister_fd(key).unwrap());
        m.step(Some(Duration::ZERO)).unwrap();
        let removed = t.join().unwrap();
        m.step(Some(Duration::ZERO)).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), usize::from(!removed));
    });
}

/// close_fd racing the dispatch of a multi-shot: CLOSED is told exactly once, and no
/// readiness is delivered after it.
#[test]
fn loom_close_races_dispatch() {
    model(|| {
        let (m, mock) = mock_manager();
        let (_a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = log.clone();
        m.register_fd(&b, Interest::READ, Lifetime::MultiShot, move |_, _, r| {
            l.lock().unwrap().push(r.is_closed());
        })
        .unwrap();
        mock.set_ready(fd, Readiness::READABLE);
        let m2 = m.clone();
        let t = thread::spawn(move || m2.close_fd(b));
        m.step(Some(Duration::ZERO)).unwrap();
        t.join().unwrap();
        m.step(Some(Duration::ZERO)).unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.iter().filter(|c| **c).count(), 1, "{log:?}");
        assert_eq!(log.last(), Some(&true), "nothing after CLOSED: {log:?}");
    });
}

/// The loop decides how long to block; a timeout registered concurrently either is seen by
/// that decision or leaves a wake pending, so the blocking poll returns at once.
#[test]
fn loom_new_timeout_never_missed_by_blocking_loop() {
    model(|| {
        let (m, _mock) = mock_manager();
        m.register_timeout(Duration::from_secs(60), |_| {}).unwrap();
        m.step(Some(Duration::ZERO)).unwrap(); // drain the wake of that registration
        let m2 = m.clone();
        let t = thread::spawn(move || {
            m2.register_timeout(Duration::ZERO, |_| {}).unwrap();
        });
        let wait = m.prepare_wait(None);
        t.join().unwrap();
        let would_block = wait != Some(Duration::ZERO);
        assert!(
            !would_block || m.wakeup.is_pending(),
            "the loop would block for {wait:?} with a due timeout and no wake pending"
        );
    });
}

/// A re-arm from another thread racing the loop's dispatch of a fired `Rearmable` on a
/// ready fd (whose kernel registration the loop may trim meanwhile): after the re-arm the
/// callback fires exactly once more, never twice, and never before the re-arm.
#[test]
fn loom_rearm_races_dispatch() {
    model(|| {
        let (m, mock) = mock_manager();
        let fd = 100;
        mock.set_ready(fd, Readiness::READABLE);
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let key = m
            .register_fd(fd, Interest::READ, Lifetime::Rearmable, move |_, _, _| {
                n2.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        m.step(Some(Duration::ZERO)).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let m2 = m.clone();
        let t = thread::spawn(move || m2.rearm(key, Interest::READ).unwrap());
        m.step(Some(Duration::ZERO)).unwrap();
        assert!(t.join().unwrap());
        m.step(Some(Duration::ZERO)).unwrap();
        m.step(Some(Duration::ZERO)).unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 2);
    });
}

/// A re-arm racing `close_fd` and the loop: CLOSED is told exactly once, last, and the
/// re-arm either happened before the close or finds the key unknown.
#[test]
fn loom_rearm_races_close() {
    model(|| {
        let (m, mock) = mock_manager();
        let (_a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        mock.set_ready(fd, Readiness::READABLE);
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = log.clone();
        let key = m
            .register_fd(&b, Interest::READ, Lifetime::Rearmable, move |_, _, r| {
                l.lock().unwrap().push(r.is_closed());
            })
            .unwrap();
        m.step(Some(Duration::ZERO)).unwrap();
        let m2 = m.clone();
        let t = thread::spawn(move || m2.rearm(key, Interest::READ).unwrap());
        let m3 = m.clone();
        let c = thread::spawn(move || m3.close_fd(b));
        m.step(Some(Duration::ZERO)).unwrap();
        t.join().unwrap();
        c.join().unwrap();
        m.step(Some(Duration::ZERO)).unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.iter().filter(|c| **c).count(), 1, "{log:?}");
        assert_eq!(log.last(), Some(&true), "nothing after CLOSED: {log:?}");
        assert!(!m.rearm(key, Interest::READ).unwrap());
    });
}
