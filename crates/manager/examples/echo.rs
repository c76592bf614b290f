//! A TCP echo server on an [`EventManager`], with its clients in the same process.
//!
//! What it shows:
//!
//! - the listening socket registered once as [`Lifetime::MultiShot`] `READ`: its callback
//!   accepts every pending connection;
//! - each connection registered once as [`Lifetime::Rearmable`] `READ`, and re-armed with
//!   [`EventManager::rearm`] from inside its own callback after echoing what it read: the fast
//!   path, with no syscall per re-arm (the summary prints the backend calls: one
//!   `EPOLL_CTL_ADD` per connection, no `MOD`);
//! - [`EventManager::close_fd`] on end of file (GHC's `closeFdWith`), so a reused fd number
//!   never receives an old registration's events;
//! - the loop on its own thread ([`EventManager::spawn`]) and a clean
//!   [`shutdown`](EventManager::shutdown).
//!
//! Several client threads connect to `127.0.0.1` (an ephemeral port), send lines, check that
//! each comes back unchanged, and close. The program prints a summary and exits 0 when every
//! echo matched.
//!
//! Run it with:
//!
//! ```text
//! cargo run -p ioman --example echo
//! ```

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ioman::{EventManager, Interest, Lifetime, Readiness};

/// Client threads started at once.
const CLIENTS: usize = 8;
/// Lines each client sends (and expects back).
const LINES: usize = 200;

/// What the server side counted.
#[derive(Default)]
struct ServerStats {
    accepted: AtomicU64,
    closed: AtomicU64,
    bytes_echoed: AtomicU64,
    wakeups_of_a_connection: AtomicU64,
}

fn main() -> io::Result<()> {
    let started = Instant::now();
    let manager = Arc::new(EventManager::new()?);
    let loop_handle = manager.spawn()?;
    let stats = Arc::new(ServerStats::default());

    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let accept_stats = Arc::clone(&stats);
    // The listener stays registered for the whole run: a multi-shot callback that accepts
    // until `WouldBlock` (level-triggered, so a connection left behind would fire again).
    let listener_key = manager.register_fd(
        listener_fd,
        Interest::READ,
        Lifetime::MultiShot,
        move |mgr, _key, readiness| {
            if readiness.is_closed() {
                return;
            }
            loop {
                match listener.accept() {
                    Ok((stream, _peer)) => {
                        accept_stats.accepted.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = stream
                            .set_nonblocking(true)
                            .and_then(|()| arm(mgr, stream, Arc::clone(&accept_stats)))
                        {
                            eprintln!("echo: could not serve a connection: {e}");
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        eprintln!("echo: accept failed: {e}");
                        break;
                    }
                }
            }
        },
    )?;
    println!("echo server listening on {addr} (loop on its own thread)");

    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| thread::spawn(move || client(id, addr)))
        .collect();
    let mut lines_ok = 0;
    let mut failures = 0;
    for c in clients {
        match c.join() {
            Ok(Ok(n)) => lines_ok += n,
            Ok(Err(e)) => {
                eprintln!("echo: a client failed: {e}");
                failures += 1;
            }
            Err(_) => failures += 1,
        }
    }

    // Every client saw EOF from the server, so every connection is closed by now.
    manager.unregister_fd(listener_key)?;
    let mstats = manager.stats();
    manager.shutdown();
    loop_handle.join()?;

    println!(
        "{CLIENTS} clients x {LINES} lines: {lines_ok} echoes matched, {failures} clients failed"
    );
    println!(
        "server: {} connections accepted, {} closed with close_fd, {} bytes echoed, \
         {} connection callbacks",
        stats.accepted.load(Ordering::Relaxed),
        stats.closed.load(Ordering::Relaxed),
        stats.bytes_echoed.load(Ordering::Relaxed),
        stats.wakeups_of_a_connection.load(Ordering::Relaxed),
    );
    println!(
        "manager: {} loop iterations, {} fd callbacks, {} wakeup syscalls; backend calls: {} \
         register, {} modify, {} deregister; took {:.1?}",
        mstats.iterations,
        mstats.fd_callbacks,
        mstats.wakeups,
        mstats.backend_registers,
        mstats.backend_modifies,
        mstats.backend_deregisters,
        started.elapsed()
    );
    let expected = (CLIENTS * LINES) as u64;
    if failures != 0 || lines_ok as u64 != expected {
        return Err(io::Error::other(format!(
            "expected {expected} matching echoes, got {lines_ok}"
        )));
    }
    if stats.closed.load(Ordering::Relaxed) != CLIENTS as u64 {
        return Err(io::Error::other("not every connection was closed"));
    }
    Ok(())
}

/// Registers the connection's one `Rearmable` `READ` callback, which owns `stream`: it
/// echoes what is available, then re-arms itself (no syscall) or closes the connection.
fn arm(mgr: &EventManager, stream: TcpStream, stats: Arc<ServerStats>) -> io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    // An Option, so that `close_fd` can take the stream out of the callback.
    let mut stream = Some(stream);
    mgr.register_fd(
        fd,
        Interest::READ,
        Lifetime::Rearmable,
        move |mgr, key, readiness: Readiness| {
            if readiness.is_closed() {
                return; // closed by someone else (or the manager shut down)
            }
            let Some(s) = stream.as_mut() else { return };
            stats
                .wakeups_of_a_connection
                .fetch_add(1, Ordering::Relaxed);
            match echo_available(s) {
                Ok(Some(n)) => {
                    stats.bytes_echoed.fetch_add(n as u64, Ordering::Relaxed);
                    if let Err(e) = mgr.rearm(key, Interest::READ) {
                        eprintln!("echo: could not re-arm: {e}");
                    }
                }
                Ok(None) | Err(_) => {
                    // EOF or a broken connection: unregister, tell any other registration
                    // `CLOSED`, and close, under the manager's lock for this fd.
                    stats.closed.fetch_add(1, Ordering::Relaxed);
                    if let Some(s) = stream.take() {
                        mgr.close_fd(s);
                    }
                }
            }
        },
    )?;
    Ok(())
}

/// Reads what the non-blocking socket holds and writes it back. `Ok(None)` on end of file,
/// `Ok(Some(bytes))` otherwise.
fn echo_available(s: &mut TcpStream) -> io::Result<Option<usize>> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                // Clients read while they write and lines are short, so the send buffer
                // has room; a real server would queue and wait for WRITE instead.
                write_all_nonblocking(s, &buf[..n])?;
                total += n;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Some(total)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `write_all` on a non-blocking socket, yielding briefly on a full send buffer.
fn write_all_nonblocking(s: &mut TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One client: sends `LINES` lines, checks each echo, half-closes and waits for the server's
/// EOF. Returns the number of lines echoed correctly.
fn client(id: usize, addr: std::net::SocketAddr) -> io::Result<usize> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    let mut ok = 0;
    for i in 0..LINES {
        let sent = format!("client {id} line {i}: {}\n", "x".repeat(i % 50));
        stream.write_all(sent.as_bytes())?;
        line.clear();
        reader.read_line(&mut line)?;
        if line == sent {
            ok += 1;
        } else {
            return Err(io::Error::other(format!(
                "client {id}: sent {sent:?}, got {line:?}"
            )));
        }
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    line.clear();
    if reader.read_line(&mut line)? != 0 {
        return Err(io::Error::other(format!(
            "client {id}: expected EOF, got {line:?}"
        )));
    }
    Ok(ok)
}
