//! The server at the process's fd limit: a connection it cannot take is refused (accepted and
//! closed at once, with the spare fd), and the listener does not spin. (Alone in its binary:
//! it lowers the process's open-file limit.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ioman_examples::{http, server, sys};

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

#[test]
fn refuses_at_the_fd_limit_without_spinning() {
    let s = server::Server::start(server::Config::default()).unwrap();
    let addr = s.addr();
    let before = sys::raise_fd_limit().unwrap();
    sys::set_soft_fd_limit(open_fds() + 16).unwrap();
    // Connect until the process has no fd left; every connection is then either served or
    // refused (closed by the server with nothing sent), none hangs.
    let ballast = std::fs::File::open("/dev/null").unwrap();
    let mut clients = Vec::new();
    loop {
        match TcpStream::connect(addr) {
            Ok(c) => clients.push(c),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => panic!("connect: {e}"),
        }
        assert!(clients.len() < 64, "never reached the limit");
    }
    // One fd for one more client: its connection waits in the backlog of a server that has
    // no fd left to accept it with.
    drop(ballast);
    clients.push(TcpStream::connect(addr).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.stats().refused == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing refused: {:?}",
            s.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // No spin: the loop is quiet while the process stays at its limit.
    let m = &s.managers()[0];
    let it = m.stats().iterations;
    std::thread::sleep(Duration::from_millis(300));
    let spun = m.stats().iterations - it;
    assert!(
        spun < 30,
        "{spun} loop iterations in 300 ms at the fd limit"
    );
    let (mut served, mut refused) = (0, 0);
    for mut c in clients {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 512];
        // A refused connection reads end of file (or a reset) at once, never hangs.
        let answered = c.write_all(http::GET).is_ok() && matches!(c.read(&mut buf), Ok(n) if n > 0);
        if answered {
            served += 1;
        } else {
            refused += 1;
        }
    }
    // How many the server took before the table was full depends on who ran first.
    let st = s.stats();
    assert!(refused >= 1, "served {served}, refused {refused}: {st:?}");
    assert_eq!((st.accepted, st.refused), (served, refused), "{st:?}");
    sys::set_soft_fd_limit(before).unwrap();
    s.shutdown();
}
