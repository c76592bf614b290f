//! `ioman-poll` as a mio/polling replacement: a non-blocking TCP echo server on one thread,
//! written with the poller and std alone, checked by clients on other threads.
//!
//! The listener is level-triggered; each connection is one-shot, re-armed by `modify` after
//! it has been drained (one `EPOLL_CTL_MOD`), and found again by its key.
//!
//! `cargo run -p ioman-poll --example tcp_echo`

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ioman_poll::{Backend, DefaultBackend, Events, Interest, Mode};

const LISTENER: u32 = 0;
const CLIENTS: usize = 8;
const MESSAGES: usize = 100;

fn main() -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let poller = DefaultBackend::new()?;
    poller.register(&listener, LISTENER, Interest::READ, Mode::Level)?;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| std::thread::spawn(move || client(addr, i)))
        .collect();

    let mut conns: HashMap<u32, TcpStream> = HashMap::new();
    let mut next_key = 1;
    let mut events = Events::default();
    let mut closed = 0;
    while closed < CLIENTS {
        if poller.wait(&mut events, Some(Duration::from_secs(10)))? == 0 {
            return Err(io::Error::new(ErrorKind::TimedOut, "no progress in 10 s"));
        }
        for ev in &events {
            if ev.key() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(true)?;
                            poller.register(&stream, next_key, Interest::READ, Mode::OneShot)?;
                            conns.insert(next_key, stream);
                            next_key += 1;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            } else if let Some(stream) = conns.get_mut(&ev.key()) {
                if echo(stream)? {
                    poller.modify(&*stream, ev.key(), Interest::READ, Mode::OneShot)?;
                } else {
                    poller.deregister(&*stream)?;
                    conns.remove(&ev.key());
                    closed += 1;
                }
            }
        }
    }
    for c in clients {
        c.join().expect("client panicked")?;
    }
    println!(
        "echoed {} messages for {CLIENTS} clients",
        CLIENTS * MESSAGES
    );
    Ok(())
}

/// Echoes everything available; `false` once the peer has closed.
fn echo(stream: &mut TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(false),
            // One message in flight per client: the socket's send buffer never fills.
            Ok(n) => stream.write_all(&buf[..n])?,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Sends `MESSAGES` lines and checks each comes back.
fn client(addr: SocketAddr, i: usize) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    for m in 0..MESSAGES {
        let msg = format!("client {i} message {m}\n");
        stream.write_all(msg.as_bytes())?;
        let mut back = vec![0; msg.len()];
        stream.read_exact(&mut back)?;
        assert_eq!(back, msg.as_bytes(), "echoed as sent");
    }
    Ok(())
}
