//! An echo server whose connections are closed after 200 ms without a message: one
//! `Rearmable` registration and one idle timeout per connection (`cargo run -p ioman
//! --example idle_echo`).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ioman::{EventManager, Interest, Lifetime, TimeoutKey};

const IDLE: Duration = Duration::from_millis(200);

/// A connection, shared by its fd callback and its idle timeout.
#[derive(Default)]
struct Conn {
    stream: Option<TcpStream>,
    timer: Option<TimeoutKey>,
}

fn main() -> io::Result<()> {
    let m = Arc::new(EventManager::new()?);
    let _loop = m.spawn()?; // dropping it at the end shuts the manager down
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    m.register_fd(&listener, Interest::READ, Lifetime::MultiShot, {
        let listener = listener.try_clone()?;
        move |m, _, _| {
            while let Ok((s, _)) = listener.accept() {
                if let Err(e) = serve(m, s) {
                    eprintln!("idle_echo: {e}");
                }
            }
        }
    })?;

    let mut busy = TcpStream::connect(addr)?;
    let mut idle = TcpStream::connect(addr)?;
    let mut buf = [0u8; 5];
    for _ in 0..5 {
        std::thread::sleep(IDLE / 2);
        busy.write_all(b"hello")?;
        busy.read_exact(&mut buf)?;
    }
    if idle.read(&mut buf)? != 0 {
        return Err(io::Error::other("the idle connection was not closed"));
    }
    println!("busy connection echoed 5 messages; idle one closed by its timeout");
    Ok(())
}

fn serve(m: &EventManager, stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let conn = Arc::<Mutex<Conn>>::default();
    let c = Arc::clone(&conn);
    let timer = m.register_timeout(IDLE, move |m| close(m, &c))?;
    let c = Arc::clone(&conn);
    m.register_fd(
        &stream,
        Interest::READ,
        Lifetime::Rearmable,
        move |m, key, r| {
            if !r.is_closed() && echo(m, &c) {
                let _ = m.rearm(key, Interest::READ);
            }
        },
    )?;
    *conn.lock().unwrap() = Conn {
        stream: Some(stream),
        timer: Some(timer),
    };
    Ok(())
}

/// Echoes what arrived; returns whether the connection stays open.
fn echo(m: &EventManager, conn: &Arc<Mutex<Conn>>) -> bool {
    let mut c = conn.lock().unwrap();
    let mut buf = [0u8; 4096];
    let Some(s) = c.stream.as_mut() else {
        return false;
    };
    let ok = loop {
        match s.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break false;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break false,
        }
    };
    if ok {
        if let Some(t) = c.timer {
            m.update_timeout(t, IDLE);
        }
        return true;
    }
    drop(c);
    close(m, conn);
    false
}

fn close(m: &EventManager, conn: &Arc<Mutex<Conn>>) {
    let (stream, timer) = {
        let mut c = conn.lock().unwrap();
        (c.stream.take(), c.timer.take())
    };
    if let Some(t) = timer {
        m.unregister_timeout(t);
    }
    if let Some(s) = stream {
        m.close_fd(s);
    }
}
