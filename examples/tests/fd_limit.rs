//! The server at its process's fd limit: a connection it cannot take is refused (accepted
//! and closed at once, with the spare fd) instead of waiting, and the listener does not
//! spin. The server runs in a child process (this test binary, re-run with
//! `IOMAN_FD_LIMIT_CHILD` set) whose open-file limit is lowered, so the clients here do not
//! share its fd table.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ioman_examples::{http, server, sys};

const CHILD: &str = "IOMAN_FD_LIMIT_CHILD";

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The child: a server with room for a few connections; prints its address, serves until
/// stdin closes, prints what it counted.
#[test]
fn child_server() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let s = server::Server::start(server::Config::default()).unwrap();
    sys::set_soft_fd_limit(open_fds() + 6).unwrap();
    println!("addr {}", s.addr());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let st = s.stats();
    println!("stats {} {} {}", st.accepted, st.refused, st.io_errors);
    s.shutdown();
}

/// The child's CPU time (user + system), in clock ticks.
/// What the child printed after `tag` on the first line that has it; panics if the child's
/// output ends first. (libtest prints the test's name on the same line, before what the
/// test prints.)
fn after_tag(out: &mut impl BufRead, tag: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child's output ended before {tag:?}"
        );
        if let Some((_, rest)) = line.trim().split_once(tag) {
            return rest.to_string();
        }
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
}

#[test]
fn refuses_at_the_fd_limit_without_spinning() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let addr: std::net::SocketAddr = after_tag(&mut out, "addr ").parse().unwrap();
    // More connections than the child has fds for: they wait in its accept queue, and it
    // takes what it can, then refuses the rest with its spare fd.
    let clients: Vec<TcpStream> = (0..12).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // No spin: the child is quiet while it stays at its limit (its listener is readable
    // whenever a connection waits, and accept(2) says EMFILE even when none does).
    let before = cpu_ticks(child.id());
    std::thread::sleep(Duration::from_millis(500));
    let spent = cpu_ticks(child.id()) - before;
    assert!(
        spent <= 10,
        "{spent} ticks of CPU in 500 ms at the fd limit"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut served, mut refused) = (0u64, 0u64);
    for mut c in clients {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 512];
        let sent = c.write_all(http::GET).is_ok();
        match c.read(&mut buf) {
            Ok(n) if n > 0 && sent => served += 1,
            Ok(_) => refused += 1, // closed by the child with nothing sent
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => refused += 1,
            Err(e) => panic!("a connection neither served nor refused: {e}"),
        }
    }
    assert!(Instant::now() < deadline);
    drop(child.stdin.take()); // the child prints its counts and exits
    let stats: Vec<u64> = after_tag(&mut out, "stats ")
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    let stats = (stats[0], stats[1], stats[2]);
    assert!(child.wait().unwrap().success());
    assert!(
        served >= 1 && refused >= 1,
        "served {served}, refused {refused}"
    );
    assert_eq!(
        stats,
        (served, refused, 0),
        "the child's accepted, refused, io errors"
    );
}
