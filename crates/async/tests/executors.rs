//! Many tasks on several threads and two executors from crates.io (`async-executor`,
//! `futures::executor`), plus `block_on` alone: no lost wake-up (every exchange completes,
//! each read under a timeout that would report a hang), no busy loop (polls and backend calls
//! counted), on the global manager and on a dedicated one.

mod util;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_executor::{Executor, LocalExecutor};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::task::SpawnExt;
use ioman::EventManager;
use ioman_async::{block_on, block_on_with, timeout, timeout_with, Async};

const HANG: Duration = Duration::from_secs(30);

/// One client: `rounds` 64-byte messages, each echoed back.
async fn client(manager: Arc<EventManager>, addr: SocketAddr, rounds: usize) -> io::Result<()> {
    let mut s = Async::<TcpStream>::connect_with(&manager, addr).await?;
    let mut buf = [0u8; 64];
    for i in 0..rounds {
        let msg = [i as u8; 64];
        s.write_all(&msg).await?;
        timeout_with(&manager, HANG, s.read_exact(&mut buf)).await??;
        assert_eq!(buf, msg);
    }
    Ok(())
}

async fn echo(mut s: Async<TcpStream>) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[test]
fn a_local_executor_inside_block_on_needs_no_loop_thread_and_no_per_message_syscall(
) -> io::Result<()> {
    let m = Arc::new(EventManager::new()?);
    let listener = Async::<TcpListener>::bind_with(&m, ([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    let (conns, rounds) = (100, 100);
    // An idle connection whose read must not be polled again and again.
    let (_idle_peer, idle) = UnixStream::pair()?;
    let mut idle = Async::with_manager(idle, &m)?;
    let (idle_read, idle_polls) = util::Polls::new(async move {
        let mut b = [0u8; 1];
        let _ = idle.read(&mut b).await;
    });
    let ex = LocalExecutor::new();
    ex.spawn(idle_read).detach();
    let before = util::kernel_calls(&m);
    block_on_with(
        &m,
        ex.run(async {
            let clients: Vec<_> = (0..conns)
                .map(|_| ex.spawn(client(Arc::clone(&m), addr, rounds)))
                .collect();
            for _ in 0..conns {
                let (s, _) = listener.accept().await?;
                ex.spawn(echo(s)).detach();
            }
            for c in clients {
                c.await?;
            }
            Ok::<(), io::Error>(())
        }),
    )?;
    assert_eq!(
        m.state(),
        ioman::State::Created,
        "a loop thread was started"
    );
    assert!(
        idle_polls.load(Ordering::SeqCst) <= 1,
        "an idle read was polled {} times",
        idle_polls.load(Ordering::SeqCst)
    );
    let after = util::kernel_calls(&m);
    let calls = (after.0 - before.0) + (after.1 - before.1) + (after.2 - before.2);
    // Registration, connect and close cost a few calls per connection; messages none.
    assert!(
        calls < (conns * 8) as u64,
        "{calls} backend calls for {conns} connections x {rounds} messages"
    );
    Ok(())
}

#[test]
fn a_multi_threaded_async_executor_on_the_global_manager() -> io::Result<()> {
    let ex = Arc::new(Executor::new());
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    let stop_rx = futures::future::FutureExt::shared(stop_rx);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (ex, stop) = (Arc::clone(&ex), stop_rx.clone());
            std::thread::spawn(move || futures::executor::block_on(ex.run(stop)))
        })
        .collect();
    let m = ioman_async::global_manager()?;
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    let ex2 = Arc::clone(&ex);
    let server = ex.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            ex2.spawn(echo(s)).detach();
        }
    });
    let clients: Vec<_> = (0..64)
        .map(|_| ex.spawn(client(Arc::clone(&m), addr, 200)))
        .collect();
    let r = futures::executor::block_on(async {
        for c in clients {
            timeout(HANG, c).await??;
        }
        Ok::<(), io::Error>(())
    });
    drop(server);
    let _ = stop_tx.send(());
    for t in threads {
        let _ = t.join();
    }
    r
}

#[test]
fn a_futures_thread_pool_with_timeouts_on_unix_pairs() -> io::Result<()> {
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(4)
        .create()?;
    let handles: Vec<_> = (0..200)
        .map(|i| {
            pool.spawn_with_handle(async move {
                let (mut a, mut b) = Async::<UnixStream>::pair()?;
                let mut buf = [0u8; 8];
                for r in 0..50u64 {
                    let msg = (i * 1000 + r).to_le_bytes();
                    a.write_all(&msg).await?;
                    timeout(HANG, b.read_exact(&mut buf)).await??;
                    assert_eq!(buf, msg);
                    b.write_all(&buf).await?;
                    timeout(HANG, a.read_exact(&mut buf)).await??;
                }
                Ok::<(), io::Error>(())
            })
            .map_err(io::Error::other)
        })
        .collect::<io::Result<_>>()?;
    futures::executor::block_on(async {
        for h in handles {
            h.await?;
        }
        Ok(())
    })
}

#[test]
fn many_threads_in_block_on_share_the_global_manager() -> io::Result<()> {
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(|| {
                block_on(async {
                    let (mut a, mut b) = Async::<UnixStream>::pair()?;
                    let mut buf = [0u8; 4];
                    for r in 0..200u32 {
                        a.write_all(&r.to_le_bytes()).await?;
                        timeout(HANG, b.read_exact(&mut buf)).await??;
                        assert_eq!(u32::from_le_bytes(buf), r);
                    }
                    Ok::<(), io::Error>(())
                })
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| io::Error::other("a thread panicked"))??;
    }
    Ok(())
}
