//! A TCP echo server on `async-executor` tasks, over ioman-async, with its own clients: each
//! sends 64-byte messages and checks the echo; the program prints what it did and exits.
//!
//! ```text
//! cargo run -p ioman-async --example async_echo -- [--clients 100] [--messages 200] [--threads 1]
//! ```
//!
//! With `--threads 1` everything (tasks and the manager's loop) runs on the main thread
//! inside `ioman_async::block_on`; with more, that many threads run the executor and the
//! global manager's loop gets its own thread.

use std::io::{self, ErrorKind};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use ioman_async::{block_on, timeout, Async};

const IDLE: Duration = Duration::from_secs(30);

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Echoes until the peer closes or stays silent for `IDLE`.
async fn echo(mut stream: Async<TcpStream>) -> io::Result<u64> {
    let mut buf = [0u8; 4096];
    let mut echoed = 0;
    loop {
        let n = match timeout(IDLE, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(echoed), // idle: close
        };
        if n == 0 {
            return Ok(echoed);
        }
        stream.write_all(&buf[..n]).await?;
        echoed += n as u64;
    }
}

async fn client(addr: std::net::SocketAddr, messages: usize) -> io::Result<()> {
    let mut s = Async::<TcpStream>::connect(addr).await?;
    let mut back = [0u8; 64];
    for i in 0..messages {
        let msg = [(i % 251) as u8; 64];
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        if back != msg {
            return Err(io::Error::other("echo mismatch"));
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let clients = arg("--clients", 100);
    let messages = arg("--messages", 200);
    let threads = arg("--threads", 1).max(1);
    let ex = Arc::new(Executor::new());

    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    println!("echo server on {addr}, {clients} clients x {messages} messages, {threads} thread(s)");

    let e = Arc::clone(&ex);
    let server = ex.spawn(async move {
        let mut handlers = Vec::new();
        loop {
            match listener.accept().await {
                Ok((stream, _)) => handlers.push(e.spawn(echo(stream))),
                // One connection gone before it was taken: the next one is unaffected.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionAborted | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err::<(), io::Error>(e),
            }
        }
    });

    // Extra executor threads (each in block_on; the manager's loop then gets its own thread).
    let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    let stopped = futures::future::FutureExt::shared(stopped);
    let helpers: Vec<_> = (1..threads)
        .map(|_| {
            let (ex, stopped) = (Arc::clone(&ex), stopped.clone());
            std::thread::spawn(move || block_on(ex.run(stopped)))
        })
        .collect();

    let start = Instant::now();
    block_on(ex.run(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| ex.spawn(client(addr, messages)))
            .collect();
        for t in tasks {
            t.await?;
        }
        Ok::<(), io::Error>(())
    }))?;
    let elapsed = start.elapsed();
    drop(server);
    let _ = stop.send(());
    for h in helpers {
        let _ = h.join();
    }
    let trips = (clients * messages) as f64;
    println!(
        "{} round trips in {:.2} s: {:.0} round trips/s, every echo checked",
        clients * messages,
        elapsed.as_secs_f64(),
        trips / elapsed.as_secs_f64()
    );
    Ok(())
}
