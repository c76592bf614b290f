//! A working event loop assembled by hand from the three ioman bricks, without the `ioman`
//! crate: [`ioman_poll::DefaultBackend`] (epoll on Linux) for readiness,
//! [`ioman_timers::TimerQueue`] for timeouts and [`ioman_wakeup::Wakeup`] for cross-thread
//! wakeups.
//!
//! The `Mini` manager below is about 150 lines: a callback table keyed by fd (each
//! registration carries a fresh 32-bit key, so a stale event for a reused fd number is
//! dropped), one-shot registrations re-armed with one `modify`, a timer queue whose
//! [`timeout`](ioman_timers::TimerQueue::timeout) is the poll timeout, and a mailbox that
//! other threads fill before calling [`Wakeup::wake`].
//!
//! The demo:
//!
//! - a ping-pong of 10,000 messages over a Unix datagram socketpair, each side a one-shot
//!   `READ` callback that answers and re-arms itself;
//! - timers at 5, 10 and 20 ms, one at 15 ms cancelled, one moved from 500 ms to 25 ms;
//! - another thread that, once the loop is idle (blocked with no timer left), sends it a
//!   message and then asks it to stop, each time waking it through the `Wakeup` fd.
//!
//! It prints what happened and exits 0 when everything came out as expected.
//!
//! ```text
//! cargo run -p ioman-examples --example custom_manager
//! ```

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ioman_poll::{Backend, DefaultBackend, Event, Events, Interest, Mode, Readiness};
use ioman_timers::{TimerKey, TimerQueue};
use ioman_wakeup::Wakeup;

/// Messages bounced in the ping-pong.
const MESSAGES: u64 = 10_000;

/// What a fd callback wants after it ran.
enum Next {
    /// Re-arm the one-shot registration (one `EPOLL_CTL_MOD`).
    Rearm,
    /// Remove the registration (and deregister the fd).
    Remove,
}

type FdCallback = Box<dyn FnMut(&mut Mini, Readiness) -> Next>;
type TimerCallback = Box<dyn FnOnce(&mut Mini)>;

/// What another thread can ask of the loop.
enum Request {
    Say(String),
    Stop,
}

/// The part of the manager other threads touch: a mailbox and the wakeup that announces it.
struct Shared {
    wakeup: Wakeup,
    mailbox: Mutex<Vec<Request>>,
}

/// A handle for other threads.
#[derive(Clone)]
struct Remote(Arc<Shared>);

impl Remote {
    /// Posts `r`, then wakes the loop (one `write(2)` unless a wake is already pending).
    fn send(&self, r: Request) -> io::Result<()> {
        self.0
            .mailbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
        self.0.wakeup.wake()
    }
}

/// One fd's registration.
struct Registration {
    key: u32,
    interest: Interest,
    /// `None` while the callback runs.
    callback: Option<FdCallback>,
}

/// The key of the wakeup fd's registration; fd registrations get 1, 2, 3...
const WAKE_KEY: u32 = 0;

/// A single-threaded event manager: owned and driven by the loop thread; other threads reach
/// it through [`Remote`].
struct Mini {
    backend: DefaultBackend,
    events: Events,
    ready: Vec<Event>,
    fds: HashMap<RawFd, Registration>,
    next_key: u32,
    timers: TimerQueue<TimerCallback>,
    shared: Arc<Shared>,
    running: bool,
    log: Vec<String>,
    started: Instant,
}

impl Mini {
    fn new() -> io::Result<Mini> {
        let backend = DefaultBackend::new()?;
        let wakeup = Wakeup::new()?;
        // Level-triggered: the fd stays readable until `reset` drains it.
        backend.register(&wakeup, WAKE_KEY, Interest::READ, Mode::Level)?;
        Ok(Mini {
            backend,
            events: Events::with_capacity(64),
            ready: Vec::new(),
            fds: HashMap::new(),
            next_key: WAKE_KEY + 1,
            timers: TimerQueue::new(),
            shared: Arc::new(Shared {
                wakeup,
                mailbox: Mutex::new(Vec::new()),
            }),
            running: false,
            log: Vec::new(),
            started: Instant::now(),
        })
    }

    fn remote(&self) -> Remote {
        Remote(Arc::clone(&self.shared))
    }

    fn note(&mut self, what: String) {
        let at = self.started.elapsed();
        self.log
            .push(format!("{:>8.2} ms  {what}", at.as_secs_f64() * 1e3));
    }

    /// Calls `callback` once when `fd` is readable (or writable), re-armed while it returns
    /// [`Next::Rearm`].
    fn register(
        &mut self,
        fd: RawFd,
        interest: Interest,
        callback: impl FnMut(&mut Mini, Readiness) -> Next + 'static,
    ) -> io::Result<()> {
        let key = self.next_key;
        self.next_key = self.next_key.wrapping_add(1).max(WAKE_KEY + 1);
        self.backend
            .register_raw(fd, key, interest, Mode::OneShot)?;
        self.fds.insert(
            fd,
            Registration {
                key,
                interest,
                callback: Some(Box::new(callback)),
            },
        );
        Ok(())
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        if self.fds.remove(&fd).is_some() {
            self.backend.deregister_raw(fd)?;
        }
        Ok(())
    }

    fn add_timer(&mut self, after: Duration, cb: impl FnOnce(&mut Mini) + 'static) -> TimerKey {
        self.timers.register_after(after, Box::new(cb))
    }

    /// Loops until a callback or another thread asks it to stop.
    fn run(&mut self) -> io::Result<()> {
        self.running = true;
        while self.running {
            // Block until the earliest timer (or forever when there is none).
            let timeout = self.timers.timeout();
            self.backend.wait(&mut self.events, timeout)?;
            self.ready.clear();
            self.ready.extend(self.events.iter().copied());
            let ready = std::mem::take(&mut self.ready);
            for ev in &ready {
                if ev.key() == WAKE_KEY {
                    self.handle_mailbox()?;
                } else {
                    self.dispatch(*ev)?;
                }
            }
            self.ready = ready;
            // Due timers, in deadline order; collected first because callbacks take `&mut self`.
            let due: Vec<TimerCallback> = self.timers.expire().map(|(_, _, cb)| cb).collect();
            for cb in due {
                cb(self);
            }
        }
        Ok(())
    }

    fn handle_mailbox(&mut self) -> io::Result<()> {
        // Reset (drain, then clear the pending flag) *before* reading the mailbox: a wake that
        // comes after this point writes the fd again, so nothing is missed.
        self.shared.wakeup.reset()?;
        let requests = std::mem::take(
            &mut *self
                .shared
                .mailbox
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for r in requests {
            match r {
                Request::Say(s) => self.note(format!("woken by another thread: {s:?}")),
                Request::Stop => {
                    self.note("woken by another thread: stop".into());
                    self.running = false;
                }
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, ev: Event) -> io::Result<()> {
        let fd = ev.fd();
        let Some(reg) = self.fds.get_mut(&fd) else {
            return Ok(());
        };
        if reg.key != ev.key() {
            return Ok(()); // a stale event of an earlier registration of this fd number
        }
        let Some(mut cb) = reg.callback.take() else {
            return Ok(());
        };
        let next = cb(self, ev.readiness());
        // The callback may have deregistered (or re-registered) the fd meanwhile.
        match self.fds.get_mut(&fd) {
            Some(reg) if reg.key == ev.key() => match next {
                Next::Rearm => {
                    reg.callback = Some(cb);
                    self.backend
                        .modify_raw(fd, reg.key, reg.interest, Mode::OneShot)?;
                }
                Next::Remove => self.deregister(fd)?,
            },
            _ => {}
        }
        Ok(())
    }
}

/// Receives one counter from `sock`, and sends the next one back unless `MESSAGES` is reached.
fn bounce(sock: &UnixDatagram, received: &mut u64) -> io::Result<Option<u64>> {
    let mut buf = [0u8; 8];
    match sock.recv(&mut buf) {
        Ok(8) => {}
        Ok(n) => return Err(io::Error::other(format!("short datagram of {n} bytes"))),
        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    }
    *received += 1;
    let n = u64::from_ne_bytes(buf);
    if n < MESSAGES {
        sock.send(&(n + 1).to_ne_bytes())?;
    }
    Ok(Some(n))
}

fn main() -> io::Result<()> {
    let mut mini = Mini::new()?;

    // Ping-pong over a datagram socketpair: both sides are one-shot READ callbacks.
    let (a, b) = UnixDatagram::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let kick = a.try_clone()?;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let pingpong_start = Instant::now();
    for (name, sock) in [("a", a), ("b", b)] {
        let mut received = 0u64;
        let done_tx = done_tx.clone();
        mini.register(sock.as_raw_fd(), Interest::READ, move |mini, readiness| {
            if readiness.is_hangup() || readiness.is_error() {
                return Next::Remove;
            }
            match bounce(&sock, &mut received) {
                Ok(Some(n)) if n >= MESSAGES => {
                    let took = pingpong_start.elapsed();
                    mini.note(format!(
                        "ping-pong done: side {name} got message {n}; {MESSAGES} messages in \
                         {took:.1?} ({:.0} ns per message)",
                        took.as_nanos() as f64 / MESSAGES as f64
                    ));
                    let _ = done_tx.send(());
                    Next::Remove
                }
                // This side just sent the last message: nothing more will come.
                Ok(Some(n)) if n + 1 >= MESSAGES => Next::Remove,
                Ok(_) => Next::Rearm,
                Err(e) => {
                    mini.note(format!("side {name}: {e}"));
                    Next::Remove
                }
            }
        })?;
    }
    // The first message, from a to b, through a duplicate of `a` kept for the purpose.
    kick.send(&1u64.to_ne_bytes())?;
    drop(kick);

    // Timers: three that fire, one cancelled, one moved earlier.
    for ms in [5u64, 10, 20] {
        mini.add_timer(Duration::from_millis(ms), move |mini| {
            mini.note(format!("timer set for {ms} ms fired"));
        });
    }
    let cancelled = mini.add_timer(Duration::from_millis(15), |mini| {
        mini.note("the cancelled timer fired (a bug!)".into());
    });
    let moved = mini.add_timer(Duration::from_millis(500), |mini| {
        mini.note("timer set for 500 ms, moved to 25 ms, fired".into());
    });
    assert!(mini.timers.cancel(cancelled).is_some());
    assert!(mini.timers.update_after(moved, Duration::from_millis(25)));

    // Another thread: once the ping-pong is over and the last timer (25 ms) has fired, the
    // loop blocks with no timeout; wake it with a message, then ask it to stop.
    let remote = mini.remote();
    let other = thread::spawn(move || -> io::Result<()> {
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
        thread::sleep(Duration::from_millis(40));
        remote.send(Request::Say("hello from another thread".into()))?;
        thread::sleep(Duration::from_millis(20));
        remote.send(Request::Stop)
    });

    mini.run()?;
    other
        .join()
        .map_err(|_| io::Error::other("the other thread panicked"))??;

    for line in &mini.log {
        println!("{line}");
    }
    let wakeups = mini.shared.wakeup.syscalls();
    println!(
        "wakeup syscalls: {wakeups}; fds still registered: {}",
        mini.fds.len()
    );
    let expect = [
        "ping-pong done",
        "timer set for 5 ms",
        "timer set for 10 ms",
        "timer set for 20 ms",
        "moved to 25 ms",
        "hello from another thread",
        "stop",
    ];
    let ok = expect
        .iter()
        .all(|e| mini.log.iter().any(|l| l.contains(e)))
        && !mini.log.iter().any(|l| l.contains("bug"));
    if !ok {
        return Err(io::Error::other("something did not happen as expected"));
    }
    Ok(())
}
