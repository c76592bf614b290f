//! Helpers shared by the integration tests: a waker that counts its wakes, manual polling,
//! managers on a manual clock, the process's open fds.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use ioman::{EventManager, ManualClock};

/// A waker that counts how often it was woken.
#[derive(Default)]
pub struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub struct CountingWaker {
    counter: Arc<Counter>,
    pub waker: Waker,
}

impl CountingWaker {
    pub fn new() -> CountingWaker {
        let counter = Arc::new(Counter::default());
        CountingWaker {
            waker: Waker::from(Arc::clone(&counter)),
            counter,
        }
    }

    pub fn wakes(&self) -> usize {
        self.counter.0.load(Ordering::SeqCst)
    }
}

/// Polls `f` once with `w`.
pub fn poll<F: Future + Unpin>(f: &mut F, w: &CountingWaker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(&w.waker))
}

/// A manager nobody drives: the test calls `step` itself.
pub fn manager() -> io::Result<Arc<EventManager>> {
    Ok(Arc::new(EventManager::new()?))
}

/// A manager on a manual clock.
pub fn manual() -> io::Result<(Arc<EventManager>, ManualClock)> {
    let clock = ManualClock::new();
    let m = EventManager::builder().clock(clock.clone()).build()?;
    Ok((Arc::new(m), clock))
}

/// One loop iteration without blocking.
pub fn step(m: &EventManager) -> io::Result<usize> {
    m.step(Some(std::time::Duration::ZERO))
}

/// The backend calls the manager made so far: (registers, modifies, deregisters).
pub fn kernel_calls(m: &EventManager) -> (u64, u64, u64) {
    let s = m.stats();
    (
        s.backend_registers,
        s.backend_modifies,
        s.backend_deregisters,
    )
}

/// Writes to the non-blocking `s` until its buffer is full (`WouldBlock`); returns the bytes
/// written.
pub fn fill(mut s: &std::os::unix::net::UnixStream) -> io::Result<usize> {
    use std::io::Write;
    let chunk = [0u8; 65536];
    let mut sent = 0;
    loop {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
            Err(e) => return Err(e),
        }
    }
}

/// The fds this process has open.
pub fn open_fds() -> BTreeSet<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A future that counts its polls.
pub struct Polls<F> {
    pub inner: Pin<Box<F>>,
    pub count: Arc<AtomicUsize>,
}

impl<F: Future> Polls<F> {
    pub fn new(f: F) -> (Polls<F>, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        (
            Polls {
                inner: Box::pin(f),
                count: Arc::clone(&count),
            },
            count,
        )
    }
}

impl<F: Future> Future for Polls<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}
