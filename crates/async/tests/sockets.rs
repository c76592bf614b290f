//! The socket constructors beyond TCP streams: UDP, Unix listeners and streams, Unix
//! datagrams, `peek`, `into_inner`, on a dedicated manager driven by `block_on_with`.

mod util;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};

use futures::io::{AsyncReadExt, AsyncWriteExt};
use ioman_async::{block_on_with, Async};

#[test]
fn udp_datagrams_both_ways() -> io::Result<()> {
    let m = util::manager()?;
    block_on_with(&m, async {
        let a = Async::<UdpSocket>::bind_with(&m, ([127, 0, 0, 1], 0))?;
        let b = Async::<UdpSocket>::bind_with(&m, ([127, 0, 0, 1], 0))?;
        let (a_addr, b_addr) = (a.get_ref().local_addr()?, b.get_ref().local_addr()?);
        let mut buf = [0u8; 16];
        for i in 0..50u8 {
            a.send_to(&[i; 3], b_addr).await?;
            let (n, from) = b.recv_from(&mut buf).await?;
            assert_eq!((n, from, buf[0]), (3, a_addr, i));
        }
        b.get_ref().connect(a_addr)?;
        a.get_ref().connect(b_addr)?;
        b.send(b"pong").await?;
        assert_eq!(a.recv(&mut buf).await?, 4);
        Ok(())
    })
}

#[test]
fn unix_listener_accepts_and_streams_echo() -> io::Result<()> {
    let m = util::manager()?;
    let dir = std::env::temp_dir().join(format!("ioman-async-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    let r = block_on_with(&m, async {
        let listener = Async::<UnixListener>::bind_with(&m, &path)?;
        let mut c = Async::<UnixStream>::connect_with(&m, &path).await?;
        let (mut s, _) = listener.accept().await?;
        c.write_all(b"over unix").await?;
        let mut buf = [0u8; 9];
        s.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"over unix");
        Ok::<(), io::Error>(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

#[test]
fn unix_datagram_pair_and_peek_and_into_inner() -> io::Result<()> {
    let m = ioman_async::global_manager()?;
    block_on_with(&m, async {
        let (a, b) = Async::<std::os::unix::net::UnixDatagram>::pair()?;
        a.send(b"dgram").await?;
        let mut buf = [0u8; 8];
        assert_eq!(b.recv(&mut buf).await?, 5);

        let listener = Async::<TcpListener>::bind_with(&m, ([127, 0, 0, 1], 0))?;
        let addr = listener.get_ref().local_addr()?;
        let mut c = Async::<TcpStream>::connect_with(&m, addr).await?;
        let (s, _) = listener.accept().await?;
        c.write_all(b"peeked").await?;
        let mut p = [0u8; 6];
        assert_eq!(s.peek(&mut p).await?, 6);
        // Still there after the peek; read it through the std object after into_inner.
        let mut s = s.into_inner()?;
        s.set_nonblocking(false)?;
        let mut all = [0u8; 6];
        s.read_exact(&mut all)?;
        assert_eq!(&all, b"peeked");
        s.write_all(b"!")?;
        let mut one = [0u8; 1];
        c.read_exact(&mut one).await?;
        assert_eq!(&one, b"!");
        Ok(())
    })
}
