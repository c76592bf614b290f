//! An HTTP/1.1 keep-alive server with hyper 1.x on ioman-async, and its own load generator:
//! keep-alive clients on 127.0.0.1 for a few seconds, then the server's requests/s.
//!
//! ```text
//! cargo run --release -p ioman-async --example hyper_server -- [--clients 50] [--seconds 3] [--quick]
//! ```
//!
//! hyper 1.x brings its own I/O and timer traits (`hyper::rt`); the adapter below is the few
//! lines a smol user writes for async-io: `hyper::rt::Read`/`Write` over
//! `ioman_async::Async<TcpStream>` and `hyper::rt::Timer` over `ioman_async::Timer` (hyper
//! then enforces its header-read timeout on the manager's timer queue). The server runs on
//! `async-executor` tasks inside `ioman_async::block_on` on one thread (the global manager,
//! driven by that thread); the load generator runs on the main thread on ioman-async too,
//! with a manager of its own driven by `block_on_with`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use ioman_async::{block_on, block_on_with, Async, EventManager, Timer};

// ---------------------------------------------------------------------------------------
// The hyper::rt adapter

/// An `Async<TcpStream>` seen through hyper's I/O traits.
struct HyperIo(Async<TcpStream>);

impl hyper::rt::Read for HyperIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // Safe code reads into a stack buffer and copies (writing straight into hyper's
        // uninitialised buffer takes `unsafe`).
        let mut tmp = [0u8; 8192];
        let room = buf.remaining().min(tmp.len());
        match Pin::new(&mut self.0).poll_read(cx, &mut tmp[..room]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&tmp[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for HyperIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// hyper's timer on the manager's timer queue.
#[derive(Clone)]
struct HyperTimer;

struct HyperSleep(Timer);

impl Future for HyperSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(Timer::after(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(Timer::at(deadline)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        // Moves the timeout in the manager's queue instead of making a new one.
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(s) => s.get_mut().0.set_at(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"Hello from ioman-async\n",
    ))))
}

fn serve(listener: Async<TcpListener>, served: Arc<AtomicU64>) {
    let ex = async_executor::LocalExecutor::new();
    block_on(ex.run(async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.get_ref().set_nodelay(true);
            let served = Arc::clone(&served);
            ex.spawn(async move {
                let service = service_fn(move |req| {
                    served.fetch_add(1, Ordering::Relaxed);
                    hello(req)
                });
                let _ = http1::Builder::new()
                    .timer(HyperTimer)
                    .keep_alive(true)
                    .serve_connection(HyperIo(stream), service)
                    .await;
            })
            .detach();
        }
    }));
}

// ---------------------------------------------------------------------------------------
// The load generator: keep-alive clients on ioman-async

/// One keep-alive client: GET, read the whole response (by Content-Length), again, until
/// `stop`. Returns the number of responses.
async fn client(
    manager: Arc<EventManager>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> io::Result<u64> {
    let mut s = Async::<TcpStream>::connect_with(&manager, addr).await?;
    s.get_ref().set_nodelay(true)?;
    let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        s.write_all(request).await?;
        buf.clear();
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(total) = response_len(&buf) {
                if buf.len() >= total {
                    break;
                }
            }
        }
        if !buf.starts_with(b"HTTP/1.1 200") {
            return Err(io::Error::other("not a 200 response"));
        }
        done += 1;
    }
    Ok(done)
}

/// The length of the response at the start of `buf` (head plus Content-Length), once the
/// head is complete.
fn response_len(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    Some(head_end + len)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn main() -> io::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let clients: usize = arg("--clients").and_then(|v| v.parse().ok()).unwrap_or(50);
    let seconds: f64 = arg("--seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 0.5 } else { 3.0 });

    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    let served = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&served);
    std::thread::Builder::new()
        .name("server".into())
        .spawn(move || serve(listener, s))?;
    println!(
        "hyper on ioman-async at http://{addr}/, {clients} keep-alive clients for {seconds} s"
    );

    // The load generator drives a manager of its own on this thread, so each thread runs
    // its own loop (two threads in `block_on` on one manager would share it through a loop
    // thread and wake each other across threads).
    let manager = Arc::new(EventManager::new()?);
    let stop = Arc::new(AtomicBool::new(false));
    let ex = async_executor::LocalExecutor::new();
    let start = Instant::now();
    let responses = block_on_with(
        &manager,
        ex.run(async {
            let tasks: Vec<_> = (0..clients)
                .map(|_| ex.spawn(client(Arc::clone(&manager), addr, Arc::clone(&stop))))
                .collect();
            Timer::after_with(&manager, Duration::from_secs_f64(seconds)).await;
            stop.store(true, Ordering::Relaxed);
            let mut total = 0;
            for t in tasks {
                total += t.await?;
            }
            Ok::<u64, io::Error>(total)
        }),
    )?;
    let elapsed = start.elapsed().as_secs_f64();
    let server_count = served.load(Ordering::Relaxed);
    println!(
        "{responses} responses in {elapsed:.2} s: {:.0} req/s (server counted {server_count})",
        responses as f64 / elapsed
    );
    if responses == 0 || server_count < responses {
        return Err(io::Error::other(
            "the server answered fewer requests than were counted",
        ));
    }
    Ok(())
}
