//! The manager's loop on its own thread, the tasks on executor threads: the configuration in
//! which a level-triggered registration is seen still ready by the loop before the task has
//! read it (and trimmed from the kernel, an `EPOLL_CTL_ADD` + `DEL` per wait). With the
//! edge-triggered registrations of the default backend, round trips make no backend call at
//! all; on the manager's level-triggered fallback (the fd shared with a registration of
//! another kind) every round trip still completes.

mod util;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use futures::io::AsyncWriteExt;
use ioman::{EventManager, Interest, Lifetime, Stats};
use ioman_async::{timeout_with, Async, Timer};

const N: usize = 1000;
const HANG: Duration = Duration::from_secs(30);

/// Reads one 64-byte message into room for more, so each read is short (drained): the
/// reactor then re-arms before the message is answered, and no edge can come while the
/// registration is disarmed (which would cost a `MOD` at the re-arm).
async fn read_msg(s: &mut Async<TcpStream>, buf: &mut [u8; 4096]) -> io::Result<usize> {
    let mut got = 0;
    while got < 64 {
        let n = futures::io::AsyncReadExt::read(s, &mut buf[got..]).await?;
        if n == 0 {
            return Ok(got);
        }
        got += n;
    }
    Ok(got)
}

/// One round trip: a 64-byte message, its echo under a timeout that would report a hang.
async fn trip(
    m: &Arc<EventManager>,
    i: usize,
    s: &mut Async<TcpStream>,
    buf: &mut [u8; 4096],
) -> io::Result<()> {
    let msg = [i as u8; 64];
    s.write_all(&msg).await?;
    let n = timeout_with(m, HANG, read_msg(s, buf)).await??;
    assert_eq!(&buf[..n], &msg[..], "round trip {i}");
    Ok(())
}

/// Registers a second kind of registration on `s`'s fd (a `Rearmable` one for writability,
/// fired once and never re-armed): the manager then serves the fd level-triggered.
fn mix(m: &EventManager, s: &Async<TcpStream>) -> io::Result<()> {
    m.register_fd(
        s.get_ref(),
        Interest::WRITE,
        Lifetime::Rearmable,
        |_, _, _| {},
    )?;
    Ok(())
}

/// Backend calls between two snapshots: (registers, modifies, deregisters).
fn calls(a: Stats, b: Stats) -> (u64, u64, u64) {
    (
        b.backend_registers - a.backend_registers,
        b.backend_modifies - a.backend_modifies,
        b.backend_deregisters - a.backend_deregisters,
    )
}

/// `N` round trips between a client task and an echo task on a 2-thread `async-executor`,
/// the manager's loop on a thread of its own; returns the manager's stats around them.
fn round_trips(level: bool) -> io::Result<(Stats, Stats)> {
    let m = Arc::new(EventManager::new()?);
    assert!(m.capabilities().edge, "the default backend has edge mode");
    let handle = m.spawn()?;
    let ex = Arc::new(Executor::new());
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let stop_rx = futures::future::FutureExt::shared(stop_rx);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (ex, stop) = (Arc::clone(&ex), stop_rx.clone());
            std::thread::spawn(move || futures::executor::block_on(ex.run(stop)))
        })
        .collect();

    let listener = Async::<TcpListener>::bind_with(&m, ([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    let (m2, ex2) = (Arc::clone(&m), Arc::clone(&ex));
    let server = ex.spawn(async move {
        // Accepts in a loop, so the listener registers too (at its first `WouldBlock`).
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let _ = s.get_ref().set_nodelay(true);
            if level {
                mix(&m2, &s).expect("a mixed registration");
            }
            ex2.spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = read_msg(&mut s, &mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            })
            .detach();
        }
    });
    let m3 = Arc::clone(&m);
    let client = ex.spawn(async move {
        let m = m3;
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let mut s = Async::with_manager(s, &m)?;
        if level {
            mix(&m, &s)?;
        }
        let mut buf = [0u8; 4096];
        // Warm up until every registration is made (the listener's, both streams', and the
        // two mixed ones): each is made at its first `WouldBlock`.
        let want = if level { 5 } else { 3 };
        let mut warm = 0;
        while m.live().0 < want {
            trip(&m, warm, &mut s, &mut buf).await?;
            Timer::after_with(&m, Duration::from_millis(1)).await;
            warm += 1;
            assert!(warm < 10_000, "registrations never made: {:?}", m.live());
        }
        let before = m.stats();
        for i in 0..N {
            trip(&m, i, &mut s, &mut buf).await?;
        }
        let after = m.stats();
        Ok::<_, io::Error>((before, after))
    });
    let r = futures::executor::block_on(timeout_with(&m, HANG * 2, client));
    drop(server);
    let _ = stop_tx.send(());
    for t in threads {
        let _ = t.join();
    }
    m.shutdown();
    handle.join()?;
    r?
}

#[test]
fn round_trips_across_threads_make_no_backend_call() -> io::Result<()> {
    let (before, after) = round_trips(false)?;
    assert_eq!(
        calls(before, after),
        (0, 0, 0),
        "backend calls (ADD, MOD, DEL) in {N} round trips after the first registration"
    );
    // Two edges per round trip (the request at the server, the echo at the client); no
    // spurious wake-up, no spinning loop.
    let callbacks = after.fd_callbacks - before.fd_callbacks;
    assert!(
        callbacks <= 2 * N as u64 + 8,
        "{callbacks} callbacks in {N} round trips"
    );
    Ok(())
}

#[test]
fn round_trips_across_threads_on_the_level_fallback() -> io::Result<()> {
    let (before, after) = round_trips(true)?;
    // Correct (every round trip completed, each under a hang timeout); the lazy trims are
    // what edge mode saves, so some backend calls are expected here.
    let polls = after.polls - before.polls;
    assert!(
        polls <= 8 * N as u64,
        "{polls} loop iterations in {N} round trips"
    );
    eprintln!(
        "level fallback: {:?} backend calls (ADD, MOD, DEL), {polls} loop iterations in {N} round trips",
        calls(before, after)
    );
    Ok(())
}
