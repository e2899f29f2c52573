//! A command-line client.
//!
//! ```text
//! cargo run -p wsmachine-tokio --example client -- ws://127.0.0.1:9001/
//! ```
//!
//! Offers permessage-deflate, sends each line of stdin as a text message,
//! prints each text message received on its own line (binary ones as hex).
//! At the end of stdin it closes with code 1000 and exits 0 once the
//! closing handshake is complete, having printed everything that arrived
//! before it. Exits 1 with a message on stderr if the connection fails.
//! When the server ends the connection first it exits at once (0 after a
//! closing handshake, 1 otherwise), even while stdin is still open.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use tokio::sync::mpsc;
use wsmachine_tokio::{CloseCode, ConnectBuilder, Message};

#[tokio::main]
async fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: client ws://HOST[:PORT]/PATH | wss://...");
        return ExitCode::from(2);
    };
    let mut ws = match ConnectBuilder::new(&url).compression(true).connect().await {
        Ok((ws, _response)) => ws,
        Err(e) => {
            eprintln!("client: cannot connect to {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lines = stdin_lines();
    let mut stdin_open = true;
    while stdin_open {
        tokio::select! {
            // Both branches are cancel-safe: nothing is lost when the other wins.
            line = lines.recv() => match line {
                Some(Ok(line)) => {
                    if let Err(e) = ws.send(line).await {
                        eprintln!("client: send failed: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                None => stdin_open = false,
                Some(Err(e)) => {
                    eprintln!("client: reading stdin: {e}");
                    stdin_open = false;
                }
            },
            msg = ws.recv() => match msg {
                Some(Ok(m)) => print_message(&m),
                Some(Err(e)) => {
                    eprintln!("client: connection failed: {e}");
                    return ExitCode::FAILURE;
                }
                None => {
                    // The server closed first; the handshake is complete.
                    return ExitCode::SUCCESS;
                }
            },
        }
    }
    // No need to wait for the answers to the last lines: the server answers
    // our Close only after its application has taken the messages before it
    // (and sent its answers), and `recv` below still returns them.
    let closed = ws.close(CloseCode::NORMAL, "").await;
    // Messages that arrived before the server's Close are still queued.
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(m) => print_message(&m),
            Err(e) => {
                eprintln!("client: connection failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match closed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client: closing handshake failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The lines of stdin, read on a thread of their own. Not
/// `tokio::io::stdin()`: its read runs on the runtime's blocking pool, and
/// the runtime's shutdown waits for it, so a client whose server has gone
/// would not exit until stdin has another line. The thread is never
/// joined: the process ends when `main` returns, whatever it is blocked on.
fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let stop = line.is_err();
            if tx.blocking_send(line).is_err() || stop {
                break;
            }
        }
    });
    rx
}

fn print_message(m: &Message) {
    let mut out = std::io::stdout().lock();
    let _ = match m {
        Message::Text(t) => writeln!(out, "{t}"),
        Message::Binary(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            writeln!(out, "{hex}")
        }
    };
    let _ = out.flush();
}
