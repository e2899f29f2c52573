//! A blocking client on `std::net` driving the sans-IO core by hand: sends
//! each line of stdin as a text message and prints what comes back.
//!
//! ```text
//! cargo run -p wsmachine --example blocking_client -- ws://127.0.0.1:9002/
//! ```
// This is the event loop around the core: it owns the clock.
#![allow(clippy::disallowed_methods)]
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use wsmachine::{ClientRequest, CloseCode, Config, Connection, Event, SeededMask, WsUrl};

/// Not a cryptographic seed: a real client takes both from the OS random
/// generator (the tokio adapter uses getrandom). Kept dependency-free here.
fn weak_seed() -> [u8; 32] {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&nanos.to_le_bytes());
    seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    seed
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = WsUrl::parse(
        &std::env::args()
            .nth(1)
            .unwrap_or_else(|| "ws://127.0.0.1:9002/".into()),
    )?;
    if url.secure {
        return Err("this example speaks plain ws:// only; see the adapters for wss://".into());
    }
    let mut tcp = TcpStream::connect((url.host.as_str(), url.port))?;
    let mut mask = SeededMask::new(weak_seed());
    let mut key = [0u8; 16];
    mask.fill(&mut key);
    let mut conn = Connection::client(
        Config::with_deflate(),
        ClientRequest::from_url(&url),
        key,
        mask,
        Instant::now(),
    );
    let mut lines = std::io::stdin().lock().lines();
    let mut buf = [0u8; 16 * 1024];
    let mut connected = false;
    let mut stdin_done = false;
    loop {
        while let Some(bytes) = conn.poll_transmit() {
            tcp.write_all(&bytes)?;
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Connected(_) => connected = true,
                Event::Text(t) => println!("{t}"),
                Event::Binary(b) => println!(
                    "{}",
                    b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                ),
                Event::Error(e) => return Err(e.into()),
                _ => {}
            }
        }
        if conn.should_close_transport() {
            return Ok(());
        }
        // Send one line per round once connected, then close at end of input.
        if connected && !stdin_done {
            match lines.next() {
                Some(line) => conn.send_text(&line?)?,
                None => {
                    stdin_done = true;
                    conn.close(Instant::now(), CloseCode::NORMAL, "")?;
                }
            }
            if conn.pending_output() > 0 {
                continue;
            }
        }
        // Received bytes still wait (a large compressed message is inflated
        // a slice per call): process them before reading more.
        if conn.has_pending_work() {
            conn.resume(Instant::now());
            continue;
        }
        let wait = conn.poll_timeout().map(|t| {
            t.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        tcp.set_read_timeout(Some(
            wait.unwrap_or(Duration::from_millis(50))
                .min(Duration::from_millis(50)),
        ))?;
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
            Err(e) => return Err(e.into()),
        }
    }
}
