//! Every fd is closed after drop: listeners, accepted and connected streams, pairs, in every
//! state (never waited, waiting in both directions, after an error), compared with
//! `/proc/self/fd`. One test in this binary, so no other test opens fds meanwhile.

mod util;

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::task::Poll;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use ioman::EventManager;
use ioman_async::{block_on_with, Async};
use util::{fill, open_fds, poll, CountingWaker};

#[test]
fn every_fd_is_closed_after_drop_and_no_registration_is_left() -> io::Result<()> {
    let m = Arc::new(EventManager::new()?);
    let before = open_fds();
    block_on_with(&m, async {
        let listener = Async::<TcpListener>::bind_with(&m, ([127, 0, 0, 1], 0))?;
        let addr = listener.get_ref().local_addr()?;
        let mut streams = Vec::new();
        for _ in 0..50 {
            let mut c = Async::<TcpStream>::connect_with(&m, addr).await?;
            let (mut s, _) = listener.accept().await?;
            c.write_all(b"x").await?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await?;
            streams.push((c, s));
        }
        // Pairs left in several states: never waited, a pending read, a pending write.
        let w = CountingWaker::new();
        for i in 0..50 {
            let (a, b) = UnixStream::pair()?;
            let (mut a, b) = (Async::with_manager(a, &m)?, Async::with_manager(b, &m)?);
            if i % 2 == 0 {
                let mut buf = [0u8; 4];
                assert!(matches!(poll(&mut a.read(&mut buf), &w), Poll::Pending));
                // Writable until its buffer is full: `writable` would complete at once.
                fill(b.get_ref())?;
                assert!(matches!(poll(&mut b.writable(), &w), Poll::Pending));
            }
            drop((a, b));
        }
        // A refused connect.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        assert!(Async::<TcpStream>::connect_with(&m, port).await.is_err());
        drop(streams);
        Ok::<(), io::Error>(())
    })?;
    // An Async taken apart gives its fd back, unregistered and open.
    let (a, b) = UnixStream::pair()?;
    let a = Async::with_manager(a, &m)?;
    let w = CountingWaker::new();
    assert!(poll(&mut a.readable(), &w).is_pending());
    let a = a.into_inner()?;
    assert_eq!(m.live().0, 0, "into_inner left a registration");
    drop((a, b));

    assert_eq!(open_fds(), before, "fds left open");
    assert_eq!(m.live(), (0, 0), "registrations or timeouts left");
    Ok(())
}
