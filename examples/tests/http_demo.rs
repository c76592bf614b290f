//! The HTTP demo (this package's library, run by `examples/http_server.rs`) end to end, in
//! process: the quick self-driving run, the protocol's edge cases, and the idle timeout on a
//! manual clock.

use ioman_examples::{demo, http, server};

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ioman::ManualClock;

fn start(threads: usize) -> server::Server {
    server::Server::start(server::Config {
        threads,
        ..server::Config::default()
    })
    .expect("server starts")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// What a client saw: a response's status, or the end of the connection.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Status(u16),
    Eof,
    Reset,
}

/// Reads responses off `s` until `n` were seen or the connection ended.
struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    fn new() -> Self {
        Reader { buf: Vec::new() }
    }

    fn next(&mut self, s: &mut TcpStream) -> Seen {
        loop {
            if let http::Response::Done { status, len } = http::parse_response(&self.buf) {
                self.buf.drain(..len);
                return Seen::Status(status);
            }
            assert_ne!(
                http::parse_response(&self.buf),
                http::Response::Bad,
                "not HTTP: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) => return Seen::Eof,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Seen::Reset,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

fn ask(addr: SocketAddr, request: &[u8]) -> (Vec<Seen>, TcpStream) {
    let mut s = connect(addr);
    s.write_all(request).unwrap();
    let mut r = Reader::new();
    let mut seen = Vec::new();
    loop {
        let x = r.next(&mut s);
        let end = matches!(x, Seen::Eof | Seen::Reset);
        let keep = matches!(x, Seen::Status(200 | 404 | 405));
        seen.push(x);
        if end || (keep && r.buf.is_empty()) {
            return (seen, s);
        }
    }
}

fn get_ok(addr: SocketAddr) {
    let (seen, _) = ask(addr, http::GET);
    assert_eq!(seen, vec![Seen::Status(200)]);
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn parser_edge_cases() {
    assert_eq!(http::BODY.len(), 151);
    assert_eq!(http::parse(b""), http::Parsed::Incomplete);
    assert_eq!(http::parse(b"GET / HTTP/1.1\r\n"), http::Parsed::Incomplete);
    assert_eq!(http::parse(b"\x00\x01"), http::Parsed::Bad);
    assert_eq!(http::parse(b"GET /\r\n\r\n"), http::Parsed::Bad);
    assert_eq!(
        http::parse(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
        http::Parsed::Bad
    );
    assert_eq!(
        http::parse(b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        http::Parsed::TooLarge
    );
    assert_eq!(
        http::parse(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
        http::Parsed::Bad
    );
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.resize(http::MAX_REQUEST, b'a');
    assert_eq!(http::parse(&big), http::Parsed::TooLarge);
    // Never panics on any prefix of a valid request, nor on byte soup.
    let req = b"POST /x?y HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc";
    for i in 0..=req.len() {
        let _ = http::parse(&req[..i]);
        let _ = http::parse_response(&req[..i]);
    }
    let mut x: u32 = 1;
    for _ in 0..2000 {
        let soup: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b"GET / HTTP/1.1\r\n:ab"[x as usize % 19]
            })
            .collect();
        let _ = http::parse(&soup);
        let mut out = Vec::new();
        let (used, _, _) = http::serve(&soup, &mut out);
        assert!(used <= soup.len());
    }
}

#[test]
fn quick_demo_figures_are_sane() {
    for threads in [1, 2] {
        let d = demo::Demo {
            clients: 20,
            idle: 150,
            silent: 50,
            duration: Duration::from_millis(if threads == 1 { 2500 } else { 1500 }),
            threads,
            client_threads: 1,
            idle_timeout: Duration::from_millis(600),
            progress: false,
        };
        let o = d.run().expect("demo runs");
        let r = &o.report;
        assert!(r.requests > 0, "no requests");
        assert_eq!(r.errors, 0);
        assert!(o.ok(), "pings: {:?}", o.pings);
        let (p50, p99, max) = (
            r.latency.quantile(0.5),
            r.latency.quantile(0.99),
            r.latency.max(),
        );
        assert!(
            p50 > Duration::ZERO && p50 <= p99 && p99 <= max,
            "{p50:?} {p99:?} {max:?}"
        );
        // The pinged idle connections stay open, each with its own timer; the silent ones
        // were closed by their idle timeout.
        assert_eq!((o.idle_opened, o.silent_opened), (150, 50));
        assert_eq!(o.server.accepted, 220);
        assert_eq!(
            o.server.idle_timeouts, 50,
            "every silent connection timed out"
        );
        assert_eq!(o.server.live(), 170);
        assert_eq!(o.live.1, 170, "one idle timer per connection");
        assert_eq!(
            o.live.0, 171,
            "one registration per connection, and the listener's"
        );
        assert!(o.pings.0 > 0 && o.pings.1 == 0, "pings: {:?}", o.pings);
        assert_eq!(o.server.io_errors, 0);
        assert!(o.server.requests >= r.requests + o.pings.0);
    }
}

fn protocol(threads: usize) {
    let s = start(threads);
    let addr = s.addr();
    get_ok(addr);

    // Malformed requests: 400, then the server closes.
    for bad in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let (seen, _) = ask(addr, bad);
        assert_eq!(seen, vec![Seen::Status(400), Seen::Eof], "{bad:?}");
    }

    // Over the 8 KiB limit: 431 then close, or a reset if the kernel discards the answer
    // because the server closed with unread bytes.
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.resize(3 * http::MAX_REQUEST, b'a');
    let mut c = connect(addr);
    let _ = c.write_all(&big);
    let mut r = Reader::new();
    let first = r.next(&mut c);
    assert!(
        matches!(first, Seen::Status(431) | Seen::Reset | Seen::Eof),
        "{first:?}"
    );
    if first == Seen::Status(431) {
        assert!(matches!(r.next(&mut c), Seen::Eof | Seen::Reset));
    }
    drop(c);

    // Unknown path: 404, keep-alive; other method: 405 with its body skipped.
    let (seen, mut c) = ask(addr, b"GET /nope HTTP/1.1\r\n\r\n");
    assert_eq!(seen, vec![Seen::Status(404)]);
    c.write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    c.write_all(http::GET).unwrap();
    let mut r = Reader::new();
    assert_eq!(r.next(&mut c), Seen::Status(405));
    assert_eq!(r.next(&mut c), Seen::Status(200));
    drop(c);

    // A request split over several writes.
    let mut c = connect(addr);
    c.set_nodelay(true).unwrap();
    for part in [
        &b"GE"[..],
        b"T / HT",
        b"TP/1.1\r\nHo",
        b"st: x\r\n",
        b"\r",
        b"\n",
    ] {
        c.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(15));
    }
    let mut r = Reader::new();
    assert_eq!(r.next(&mut c), Seen::Status(200));

    // Pipelined requests in one write, with a partial one at the end finished later.
    let mut many = Vec::new();
    for _ in 0..3 {
        many.extend_from_slice(http::GET);
    }
    many.extend_from_slice(
        b"GET /missing HTTP/1.1\r\n\r\nGET /?q=1 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n",
    );
    c.write_all(&many).unwrap();
    for want in [200, 200, 200, 404, 200] {
        assert_eq!(r.next(&mut c), Seen::Status(want));
    }
    c.write_all(b"\r\n").unwrap();
    assert_eq!(r.next(&mut c), Seen::Status(200));

    // A hundred pipelined requests, more than one read's worth of responses.
    let many: Vec<u8> = http::GET
        .iter()
        .copied()
        .cycle()
        .take(100 * http::GET.len())
        .collect();
    c.write_all(&many).unwrap();
    for _ in 0..100 {
        assert_eq!(r.next(&mut c), Seen::Status(200));
    }
    drop(c);

    // `Connection: close` is honoured after the answer.
    for req in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        let (seen, mut c) = ask(addr, req);
        assert_eq!(seen, vec![Seen::Status(200)]);
        assert_eq!(Reader::new().next(&mut c), Seen::Eof);
    }

    // A client that disconnects mid-request, and one that half-closes.
    let closed_before = s.stats().closed;
    let mut c = connect(addr);
    c.write_all(b"GET / HT").unwrap();
    drop(c);
    let c = connect(addr);
    c.shutdown(Shutdown::Write).unwrap();
    drop(c);
    wait_for("the server to close both", || {
        s.stats().closed >= closed_before + 2
    });

    // Still serving, and nothing leaked once every client is gone.
    get_ok(addr);
    wait_for("every connection closed", || s.stats().live() == 0);
    wait_for("only the listener registered", || s.live() == (1, 0));
    assert_eq!(s.stats().io_errors, 0);
    s.shutdown();
}

#[test]
fn protocol_edge_cases_one_manager() {
    protocol(1);
}

#[test]
fn protocol_edge_cases_pool_of_two() {
    protocol(2);
}

#[test]
fn idle_connection_closed_by_timeout_on_manual_clock() {
    let clock = ManualClock::new();
    let s = server::Server::start(server::Config {
        idle_timeout: Duration::from_secs(10),
        clock: Some(clock.clone()),
        ..server::Config::default()
    })
    .unwrap();
    let addr = s.addr();
    let mut silent = connect(addr);
    let mut busy = connect(addr);
    wait_for("both accepted", || s.stats().accepted == 2);
    assert_eq!(s.live(), (3, 2));
    let mut r = Reader::new();
    busy.write_all(http::GET).unwrap();
    assert_eq!(r.next(&mut busy), Seen::Status(200));

    // 6 s: nothing due.
    clock.advance(Duration::from_secs(6));
    s.wake();
    busy.write_all(http::GET).unwrap(); // pushes `busy` to 16 s
    assert_eq!(r.next(&mut busy), Seen::Status(200));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(s.stats().idle_timeouts, 0);

    // 11 s: `silent` (due at 10 s) is closed, `busy` (due at 16 s or later) is not.
    clock.advance(Duration::from_secs(5));
    s.wake();
    let mut byte = [0u8; 1];
    assert_eq!(silent.read(&mut byte).unwrap(), 0, "closed by the server");
    assert_eq!(s.stats().idle_timeouts, 1);
    busy.write_all(http::GET).unwrap(); // pushes `busy` to 21 s
    assert_eq!(r.next(&mut busy), Seen::Status(200));

    // 40 s: `busy` is closed too.
    clock.advance(Duration::from_secs(29));
    s.wake();
    assert_eq!(r.next(&mut busy), Seen::Eof);
    assert_eq!(s.stats().idle_timeouts, 2);
    wait_for("timers and registrations gone", || s.live() == (1, 0));
    assert_eq!(s.stats().live(), 0);
    s.shutdown();
}
