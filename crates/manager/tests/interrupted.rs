//! Signals interrupting the loop's blocking poll (EINTR) are invisible to the manager's user:
//! the loop keeps running and nothing is lost.

mod util;

use std::io::{self, Write};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use ioman::{Backend, EventManager, Interest, Lifetime};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// A SIGUSR2 handler installed without `SA_RESTART`, so a blocked `epoll_wait`/`poll` fails
/// with `EINTR` instead of being restarted by the kernel.
fn install_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is valid; the handler only touches an atomic
        // (async-signal-safe); `sigemptyset` and `sigaction` get valid pointers.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
        }
    });
}

fn survives_eintr<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<()> {
    install_handler();
    let m = Arc::new(EventManager::builder().backend(make()?).build()?);
    let m2 = m.clone();
    let loop_thread = std::thread::spawn(move || m2.run());
    let pthread = loop_thread.as_pthread_t();
    util::wait_until(|| m.stats().iterations > 0);

    let before = SIGNALS.load(Ordering::SeqCst);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(2)); // let the loop block again
                                                      // SAFETY: `pthread` is the loop thread, alive until joined below.
        assert_eq!(unsafe { libc::pthread_kill(pthread, libc::SIGUSR2) }, 0);
    }
    util::wait_until(|| SIGNALS.load(Ordering::SeqCst) >= before + 20);

    // The loop still serves fds and timeouts.
    let (mut a, b) = util::pair()?;
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, r| {
        tx.send(r.is_readable()).unwrap()
    })?;
    m.register_timeout(Duration::from_millis(1), move |_| tx2.send(true).unwrap())?;
    a.write_all(b"x")?;
    for _ in 0..2 {
        assert!(rx.recv_timeout(Duration::from_secs(20)).unwrap());
    }
    assert!(!loop_thread.is_finished(), "EINTR must not end the loop");
    m.shutdown();
    loop_thread.join().unwrap()
}

for_each_backend!(survives_eintr);
