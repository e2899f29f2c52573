//! A blocking echo server on `std::net`, one thread per connection, driving
//! the sans-IO core by hand: the same loop a game server or proxy would run
//! inside its own event loop.
//!
//! ```text
//! cargo run -p wsmachine --example blocking_echo_server -- 127.0.0.1:9002
//! ```
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use wsmachine::{Accept, Config, Connection, Event};

fn serve(mut tcp: TcpStream) -> std::io::Result<()> {
    let mut conn = Connection::server(Config::with_deflate(), Instant::now());
    let mut buf = [0u8; 16 * 1024];
    loop {
        // 1. Write everything the core queued.
        while let Some(bytes) = conn.poll_transmit() {
            tcp.write_all(&bytes)?;
        }
        if conn.should_close_transport() {
            return Ok(());
        }
        // 2. Handle events; echoes queue output for the next round.
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Request(_) => conn
                    .accept(Instant::now(), Accept::new())
                    .ok()
                    .unwrap_or(()),
                Event::Text(t) => conn.send(t).unwrap_or(()),
                Event::Binary(b) => conn.send(b).unwrap_or(()),
                Event::Error(e) => eprintln!("connection failed: {e}"),
                _ => {}
            }
        }
        if conn.pending_output() > 0 {
            continue;
        }
        // Received bytes still wait (a large compressed message is inflated
        // a slice per call): process the next slice before reading more.
        if conn.has_pending_work() {
            conn.resume(Instant::now());
            continue;
        }
        // 3. Wait for input, but no longer than the next timer.
        let wait = conn.poll_timeout().map(|t| {
            t.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        tcp.set_read_timeout(wait)?;
        match tcp.read(&mut buf) {
            Ok(0) => conn.receive_eof(Instant::now()),
            Ok(n) => conn.receive(Instant::now(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                conn.handle_timeout(Instant::now())
            }
            Err(e) => return Err(e),
        }
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".into());
    let listener = TcpListener::bind(&addr)?;
    println!("listening on ws://{}", listener.local_addr()?);
    for tcp in listener.incoming() {
        let tcp = tcp?;
        std::thread::spawn(move || {
            if let Err(e) = serve(tcp) {
                eprintln!("i/o error: {e}");
            }
        });
    }
    Ok(())
}
