//! Peers that are not an adapter, on plain threads and blocking std sockets
//! (the same for every runtime): [`Peer`] drives the core's `Connection`
//! directly, so a test controls exactly which frames go out and when; the
//! `raw_*` helpers write and read bytes with no WebSocket logic at all.
//! Every read is bounded by a minute, so a hang fails instead of stalling.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use wsmachine::{Accept, ClientRequest, Config, Connection, Event, SeededMask};

/// The bound on every blocking read.
const A_MINUTE: Duration = Duration::from_secs(60);

fn config() -> Config {
    Config {
        ping_interval: None,
        ..Config::default()
    }
}

/// Loopback, `TCP_NODELAY`, reads bounded by a minute.
pub(crate) fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    prepare(&s);
    s
}

fn prepare(s: &TcpStream) {
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(A_MINUTE)).expect("read timeout");
}

/// A listener on a free loopback port.
pub(crate) fn listen() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

/// Accepts one connection (reads bounded by a minute).
pub(crate) fn accept_tcp(l: &TcpListener) -> TcpStream {
    let s = l.accept().expect("accept").0;
    prepare(&s);
    s
}

/// Reads until end of stream (or a reset, which ends it too).
pub(crate) fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// The core's `Connection` over a blocking socket.
pub(crate) struct Peer {
    pub(crate) tcp: TcpStream,
    pub(crate) conn: Connection,
    eof: bool,
    shut_down: bool,
}

impl Peer {
    /// A client, after its opening handshake with the server at `addr`.
    pub(crate) fn connect(addr: SocketAddr) -> Peer {
        let request = ClientRequest::new(addr.to_string(), "/");
        let conn = Connection::client(
            config(),
            request,
            [7; 16],
            SeededMask::new([9; 32]),
            Instant::now(),
        );
        let mut p = Peer {
            tcp: tcp(addr),
            conn,
            eof: false,
            shut_down: false,
        };
        match p.next_event() {
            Some(Event::Connected(_)) => {}
            other => panic!("client handshake: {other:?}"),
        }
        p
    }

    /// A server on the next connection to `l`, after its opening handshake.
    pub(crate) fn accept(l: &TcpListener) -> Peer {
        let mut p = Peer {
            tcp: accept_tcp(l),
            conn: Connection::server(config(), Instant::now()),
            eof: false,
            shut_down: false,
        };
        match p.next_event() {
            Some(Event::Request(_)) => {}
            other => panic!("server handshake: {other:?}"),
        }
        p.conn
            .accept(Instant::now(), Accept::new())
            .expect("accept");
        p.flush();
        p
    }

    /// Writes everything the core queued, and shuts the write side down
    /// once the core says the transport should close.
    pub(crate) fn flush(&mut self) {
        while let Some(bytes) = self.conn.poll_transmit() {
            self.tcp.write_all(&bytes).expect("write");
        }
        if self.conn.should_close_transport() && !self.shut_down {
            self.shut_down = true;
            let _ = self.tcp.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Every event until the end of stream (see [`Peer::next_event`]).
    pub(crate) fn events_until_end(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.next_event()).collect()
    }

    /// The next event, reading as needed (and writing the core's replies
    /// first); `None` at end of stream once every event was taken.
    pub(crate) fn next_event(&mut self) -> Option<Event> {
        loop {
            self.flush();
            if let Some(ev) = self.conn.poll_event() {
                return Some(ev);
            }
            if self.eof {
                return None;
            }
            let mut buf = [0u8; 16 << 10];
            let n = match self.tcp.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => panic!("read: {e}"),
            };
            if n == 0 {
                self.eof = true;
                self.conn.receive_eof(Instant::now());
            } else {
                self.conn.receive(Instant::now(), &buf[..n]);
                while self.conn.has_pending_work() {
                    self.conn.resume(Instant::now());
                }
            }
        }
    }
}

/// Closes `s` with a reset (`SO_LINGER` 0): no FIN, the peer's next read
/// or write fails.
pub(crate) fn reset(s: TcpStream) {
    abort_on_close(&s);
    drop(s);
}

/// Makes closing `s` (any runtime's socket) send a reset instead of a FIN
/// (`SO_LINGER` 0).
pub(crate) fn abort_on_close(s: &impl std::os::fd::AsRawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// A server that answers the opening handshake (raw bytes, no WebSocket
/// logic) and then never sends another byte; it reads until the client
/// ends the stream and gives every byte it got after the handshake.
pub(crate) fn silent_server() -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    raw_server(false)
}

/// A server that completes the handshake, then sends a text message
/// ("tick") every 10 ms for up to 10 s and answers nothing: it never sends
/// a Pong. Returns what it read until the end.
pub(crate) fn chatty_server() -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    raw_server(true)
}

fn raw_server(chatty: bool) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let (l, addr) = listen();
    let t = std::thread::spawn(move || {
        let mut s = accept_tcp(&l);
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).expect("the request");
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head);
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("a key")
            .trim()
            .to_owned();
        write!(
            s,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            wsmachine::accept_key(&key)
        )
        .expect("write");
        if chatty {
            let mut w = s.try_clone().expect("clone");
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if w.write_all(b"\x81\x04tick").is_err() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            });
        }
        read_to_end(&mut s)
    });
    (addr, t)
}
