//! Constructors and operations for the socket types: TCP, UDP and Unix sockets, each a
//! thin layer over [`Async::read_with`] and [`Async::write_with`].

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use ioman::EventManager;

use crate::{global_manager, sys, Async};

impl Async<TcpListener> {
    /// Binds a TCP listener to `addr` on the global manager (port 0 picks a free port; see
    /// [`TcpListener::local_addr`] through [`get_ref`](Async::get_ref)).
    ///
    /// Calls: `socket`, `setsockopt(SO_REUSEADDR)`, `bind`, `listen` (std's), and one
    /// `ioctl(FIONBIO)`; nothing is registered until the first [`accept`](Self::accept) waits.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::bind`], and when the global manager cannot be created.
    pub fn bind(addr: impl Into<SocketAddr>) -> io::Result<Async<TcpListener>> {
        Async::<TcpListener>::bind_with(&global_manager()?, addr)
    }

    /// [`bind`](Self::bind) on `manager`.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::bind`].
    pub fn bind_with(
        manager: &Arc<EventManager>,
        addr: impl Into<SocketAddr>,
    ) -> io::Result<Async<TcpListener>> {
        let listener = TcpListener::bind(addr.into())?;
        listener.set_nonblocking(true)?;
        Ok(Async::from_nonblocking(listener, manager, false))
    }

    /// Accepts a connection, registered with the listener's manager.
    ///
    /// Calls: `accept4` and one `ioctl(FIONBIO)` for the new socket; when no connection is
    /// pending (`WouldBlock`), a wait for the next readiness event (a re-arm, no syscall in
    /// steady state; one `EPOLL_CTL_ADD` the first time). Any number of tasks may accept on
    /// one listener.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::accept`] (for example `EMFILE`, after which the listener still works).
    pub async fn accept(&self) -> io::Result<(Async<TcpStream>, SocketAddr)> {
        let (stream, addr) = self.read_with(|l| l.accept()).await?;
        stream.set_nonblocking(true)?;
        Ok((Async::from_nonblocking(stream, self.manager(), true), addr))
    }
}

impl Async<TcpStream> {
    /// Connects to `addr` without blocking, registered with the global manager.
    ///
    /// The connect is started on a non-blocking socket (`socket`, `connect` returning
    /// `EINPROGRESS`), finished when the socket turns writable ([`writable`](Async::writable):
    /// one `poll(2)`, and when not connected yet a wait, one `EPOLL_CTL_ADD`),
    /// and checked with `SO_ERROR` ([`TcpStream::take_error`]), so a refused connection is an
    /// error here, not at the first read.
    ///
    /// # Errors
    ///
    /// The connect's error (`ConnectionRefused`, `TimedOut` by the kernel, ...), and when the
    /// global manager cannot be created.
    pub async fn connect(addr: impl Into<SocketAddr>) -> io::Result<Async<TcpStream>> {
        let addr = addr.into();
        Async::<TcpStream>::connect_with(&global_manager()?, addr).await
    }

    /// [`connect`](Self::connect) on `manager`.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with(
        manager: &Arc<EventManager>,
        addr: impl Into<SocketAddr>,
    ) -> io::Result<Async<TcpStream>> {
        let stream = Async::from_nonblocking(sys::connect_nonblocking(addr.into())?, manager, true);
        stream.writable().await?;
        if let Some(e) = stream.get_ref().take_error()? {
            return Err(e);
        }
        // Writable without an error means connected; `peer_addr` proves it (as async-io
        // does), and fails with `NotConnected` otherwise.
        stream.get_ref().peer_addr()?;
        Ok(stream)
    }

    /// Reads into `buf` without removing the data from the socket's queue.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peek`].
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|s| s.peek(buf)).await
    }
}

impl Async<UdpSocket> {
    /// Binds a UDP socket to `addr` on the global manager.
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::bind`], and when the global manager cannot be created.
    pub fn bind(addr: impl Into<SocketAddr>) -> io::Result<Async<UdpSocket>> {
        Async::<UdpSocket>::bind_with(&global_manager()?, addr)
    }

    /// [`bind`](Self::bind) on `manager`.
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::bind`].
    pub fn bind_with(
        manager: &Arc<EventManager>,
        addr: impl Into<SocketAddr>,
    ) -> io::Result<Async<UdpSocket>> {
        let socket = UdpSocket::bind(addr.into())?;
        socket.set_nonblocking(true)?;
        Ok(Async::from_nonblocking(socket, manager, false))
    }

    /// Receives one datagram, with its sender.
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::recv_from`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.read_with(|s| s.recv_from(buf)).await
    }

    /// Sends one datagram to `addr`.
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::send_to`].
    pub async fn send_to(&self, buf: &[u8], addr: impl Into<SocketAddr>) -> io::Result<usize> {
        let addr = addr.into();
        self.write_with(|s| s.send_to(buf, addr)).await
    }

    /// Receives one datagram from the connected peer.
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::recv`].
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|s| s.recv(buf)).await
    }

    /// Sends one datagram to the connected peer.
    ///
    /// # Errors
    ///
    /// As [`UdpSocket::send`].
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(|s| s.send(buf)).await
    }
}

impl Async<UnixListener> {
    /// Binds a Unix listener to `path` on the global manager.
    ///
    /// # Errors
    ///
    /// As [`UnixListener::bind`], and when the global manager cannot be created.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Async<UnixListener>> {
        Async::<UnixListener>::bind_with(&global_manager()?, path)
    }

    /// [`bind`](Self::bind) on `manager`.
    ///
    /// # Errors
    ///
    /// As [`UnixListener::bind`].
    pub fn bind_with(
        manager: &Arc<EventManager>,
        path: impl AsRef<Path>,
    ) -> io::Result<Async<UnixListener>> {
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(Async::from_nonblocking(listener, manager, false))
    }

    /// Accepts a connection, registered with the listener's manager; as
    /// [`Async::<TcpListener>::accept`](Async::accept).
    ///
    /// # Errors
    ///
    /// As [`UnixListener::accept`].
    pub async fn accept(&self) -> io::Result<(Async<UnixStream>, UnixSocketAddr)> {
        let (stream, addr) = self.read_with(|l| l.accept()).await?;
        stream.set_nonblocking(true)?;
        Ok((Async::from_nonblocking(stream, self.manager(), true), addr))
    }
}

impl Async<UnixStream> {
    /// Connects to the Unix socket at `path`, registered with the global manager.
    ///
    /// A Unix connect completes (or fails) at once unless the listener's backlog is full,
    /// when std's `connect` waits for room: the connect is made on the calling thread.
    ///
    /// # Errors
    ///
    /// As [`UnixStream::connect`], and when the global manager cannot be created.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<Async<UnixStream>> {
        let manager = global_manager()?;
        Async::<UnixStream>::connect_with(&manager, path).await
    }

    /// [`connect`](Self::connect) on `manager`.
    ///
    /// # Errors
    ///
    /// As [`UnixStream::connect`].
    pub async fn connect_with(
        manager: &Arc<EventManager>,
        path: impl AsRef<Path>,
    ) -> io::Result<Async<UnixStream>> {
        let stream = UnixStream::connect(path)?;
        stream.set_nonblocking(true)?;
        Ok(Async::from_nonblocking(stream, manager, true))
    }

    /// A connected pair of Unix stream sockets on the global manager.
    ///
    /// # Errors
    ///
    /// As [`UnixStream::pair`], and when the global manager cannot be created.
    pub fn pair() -> io::Result<(Async<UnixStream>, Async<UnixStream>)> {
        Async::pair_with(&global_manager()?)
    }

    /// [`pair`](Self::pair) on `manager`.
    ///
    /// # Errors
    ///
    /// As [`UnixStream::pair`].
    pub fn pair_with(
        manager: &Arc<EventManager>,
    ) -> io::Result<(Async<UnixStream>, Async<UnixStream>)> {
        let (a, b) = UnixStream::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok((
            Async::from_nonblocking(a, manager, true),
            Async::from_nonblocking(b, manager, true),
        ))
    }
}

impl Async<UnixDatagram> {
    /// A connected pair of Unix datagram sockets on the global manager.
    ///
    /// # Errors
    ///
    /// As [`UnixDatagram::pair`], and when the global manager cannot be created.
    pub fn pair() -> io::Result<(Async<UnixDatagram>, Async<UnixDatagram>)> {
        let manager = global_manager()?;
        let (a, b) = UnixDatagram::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok((
            Async::from_nonblocking(a, &manager, false),
            Async::from_nonblocking(b, &manager, false),
        ))
    }

    /// Receives one datagram.
    ///
    /// # Errors
    ///
    /// As [`UnixDatagram::recv`].
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_with(|s| s.recv(buf)).await
    }

    /// Sends one datagram to the connected peer.
    ///
    /// # Errors
    ///
    /// As [`UnixDatagram::send`].
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(|s| s.send(buf)).await
    }
}
