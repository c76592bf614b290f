//! Failing backend calls (what `strace -e inject=epoll_ctl:error=ENOMEM` finds), through a
//! backend wrapper that fails a chosen call: the table and the kernel always agree, and
//! nothing is spun on.

mod util;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ioman::{Backend, EventManager, Interest, Lifetime};
use util::{pair, Faulty};

/// A manager on a `Faulty` backend, and the backend to arm its faults.
type Rigged<B> = (EventManager<Arc<Faulty<B>>>, Arc<Faulty<B>>);

fn build<B: Backend + 'static>(make: fn() -> io::Result<B>) -> io::Result<Rigged<B>> {
    let faulty = Arc::new(Faulty::new(make()?));
    let m = EventManager::builder().backend(faulty.clone()).build()?;
    Ok((m, faulty))
}

/// A refused `DEL` (`ENOMEM`) in `unregister_fd`: the error is returned and nothing
/// changed; the registration still runs, and a retry removes it.
fn failed_deregister_changes_nothing<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let (m, faulty) = build(make)?;
    let (mut a, b) = pair()?;
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let key = m.register_fd(&b, Interest::READ, Lifetime::MultiShot, move |_, _, _| {
        n2.fetch_add(1, Ordering::SeqCst);
    })?;
    faulty.fail_deregister.store(libc::ENOMEM, Ordering::SeqCst);
    let e = m.unregister_fd(key).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
    assert_eq!(m.live().0, 1, "still registered");
    a.write_all(b"x")?;
    m.step(Some(Duration::from_secs(10)))?;
    assert_eq!(n.load(Ordering::SeqCst), 1, "and still called");
    assert!(m.unregister_fd(key)?, "the retry removes it");
    let before = n.load(Ordering::SeqCst);
    m.step(Some(Duration::ZERO))?; // (poll(2): the wake that tells the loop of the change)
    let polled = faulty.polled.load(Ordering::SeqCst);
    m.step(Some(Duration::ZERO))?;
    assert_eq!(n.load(Ordering::SeqCst), before);
    assert_eq!(
        faulty.polled.load(Ordering::SeqCst),
        polled,
        "the kernel no longer reports it"
    );
    Ok(())
}

/// The kernel watches an fd the manager believes removed (a `DEL` reported done that was
/// not): its first event is answered with a real `DEL`, and the fd is never reported again.
fn stray_fd_is_disarmed_not_spun_on<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let (m, faulty) = build(make)?;
    let (mut a, b) = pair()?;
    let key = m.register_fd(&b, Interest::READ, Lifetime::MultiShot, |_, _, _| {
        panic!("unregistered: must not run")
    })?;
    faulty.lie_deregister.store(true, Ordering::SeqCst);
    assert!(m.unregister_fd(key)?);
    a.write_all(b"x")?; // level-triggered and never read: it would report forever
    let dels = faulty.deregisters.load(Ordering::SeqCst);
    m.step(Some(Duration::from_secs(10)))?;
    assert!(
        faulty.polled.load(Ordering::SeqCst) >= 1,
        "the stray fd was reported"
    );
    assert_eq!(
        faulty.deregisters.load(Ordering::SeqCst),
        dels + 1,
        "and removed from the kernel"
    );
    let polled = faulty.polled.load(Ordering::SeqCst);
    for _ in 0..3 {
        m.step(Some(Duration::ZERO))?;
    }
    assert_eq!(
        faulty.polled.load(Ordering::SeqCst),
        polled,
        "never reported again"
    );
    assert_eq!(m.stats().panics, 0);
    Ok(())
}

/// A refused `ADD` (`ENOMEM`) or re-arming `MOD`: the registration fails, nothing stays,
/// and the fd works for the next registration.
fn failed_register_leaves_nothing<B: Backend + 'static>(
    make: fn() -> io::Result<B>,
) -> io::Result<()> {
    let (m, faulty) = build(make)?;
    let (mut a, mut b) = pair()?;
    faulty.fail_register.store(libc::ENOMEM, Ordering::SeqCst);
    let e = m
        .register_fd(&b, Interest::READ, Lifetime::OneShot, |_, _, _| {})
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
    assert_eq!(m.live().0, 0);
    // A one-shot that fired leaves the fd known to the kernel, disarmed: the next
    // registration re-arms it with a MOD. Fail that one.
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, _| {
        n2.fetch_add(1, Ordering::SeqCst);
    })?;
    a.write_all(b"x")?;
    m.step(Some(Duration::from_secs(10)))?;
    assert_eq!(n.load(Ordering::SeqCst), 1);
    let mut buf = [0; 4];
    let _ = b.read(&mut buf)?;
    faulty.fail_modify.store(libc::ENOMEM, Ordering::SeqCst);
    let failed = m.register_fd(&b, Interest::READ, Lifetime::OneShot, |_, _, _| {});
    assert_eq!(failed.unwrap_err().raw_os_error(), Some(libc::ENOMEM));
    assert_eq!(m.live().0, 0);
    let n3 = n.clone();
    m.register_fd(&b, Interest::READ, Lifetime::OneShot, move |_, _, _| {
        n3.fetch_add(1, Ordering::SeqCst);
    })?;
    a.write_all(b"y")?;
    m.step(Some(Duration::from_secs(10)))?;
    assert_eq!(n.load(Ordering::SeqCst), 2, "the fd still works");
    Ok(())
}

for_each_backend!(
    failed_deregister_changes_nothing,
    stray_fd_is_disarmed_not_spun_on,
    failed_register_leaves_nothing,
);
