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
use wsmachine_tokio::{CloseCode, ConnectBuilder, Error, Message};

#[tokio::main]
async fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: client ws://HOST[:PORT]/PATH | wss://...");
        return ExitCode::from(2);
    };
    let (mut reader, mut writer) = match ConnectBuilder::new(&url).compression(true).connect().await
    {
        Ok((ws, _response)) => ws.split(),
        Err(e) => {
            eprintln!("client: cannot connect to {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The reader prints until the server's Close, also after ours: an
    // unsplit `close` would discard the echoes still on their way.
    let mut printer = tokio::spawn(async move {
        loop {
            match reader.recv().await {
                Some(Ok(m)) => print_message(&m),
                Some(Err(e)) => return Err(e),
                None => return Ok(reader.close_frame().is_some()),
            }
        }
    });
    let mut lines = stdin_lines();
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(Ok(line)) => {
                    if let Err(e) = writer.send(line).await {
                        eprintln!("client: send failed: {e}");
                        break;
                    }
                }
                Some(Err(e)) => {
                    eprintln!("client: reading stdin: {e}");
                    break;
                }
                None => break,
            },
            end = &mut printer => return outcome(end.expect("the printer"), Ok(())),
        }
    }
    let closed = writer.close(CloseCode::NORMAL, "").await;
    outcome(printer.await.expect("the printer"), closed)
}

/// The exit status: 0 after a closing handshake, 1 with a message otherwise.
fn outcome(end: Result<bool, Error>, closed: Result<(), Error>) -> ExitCode {
    match (end, closed) {
        (Ok(true), Ok(())) => ExitCode::SUCCESS,
        (Ok(false), _) => {
            eprintln!("client: connection ended without a closing handshake");
            ExitCode::FAILURE
        }
        (Err(e), _) | (Ok(_), Err(e)) => {
            eprintln!("client: connection failed: {e}");
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
