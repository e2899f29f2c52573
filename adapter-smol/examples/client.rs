//! Line client: `cargo run -p wsmachine-smol --example client -- ws://127.0.0.1:9001/`
//!
//! Offers permessage-deflate, sends each line of stdin as a text message,
//! prints each text message received on its own line (binary ones as hex).
//! At the end of stdin it sends Close 1000, prints whatever still arrives,
//! and exits 0 once the closing handshake completes; it exits 1 with a
//! message on stderr when the connection fails. When the server ends the
//! connection first it exits at once, even while stdin is still open.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use wsmachine_smol::{CloseCode, ConnectBuilder, Error, Message};

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: client ws://HOST:PORT/PATH");
        return ExitCode::from(2);
    };
    smol::block_on(async {
        let ws = match ConnectBuilder::new(url.as_str())
            .compression(true)
            .connect()
            .await
        {
            Ok((ws, _response)) => ws,
            Err(e) => {
                eprintln!("client: cannot connect to {url}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (mut reader, mut writer) = ws.split();
        // One queue for what the sending loop waits on: lines of stdin, the
        // end of stdin, and the end of the connection.
        let (tx, rx) = smol::channel::bounded(16);

        // Print everything that arrives, until the connection is over.
        let ended = tx.clone();
        smol::spawn(async move {
            let end = loop {
                match reader.recv().await {
                    Some(Ok(msg)) => print_message(&msg),
                    Some(Err(e)) => break Err(e),
                    // Whether the closing handshake completed.
                    None => break Ok(reader.close_frame().is_some()),
                }
            };
            let _ = ended.send(Input::Ended(end)).await;
        })
        .detach();

        // stdin on a thread of its own, never joined: the process ends when
        // `main` returns, even while this thread waits for a line.
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let stop = line.is_err();
                if tx.send_blocking(Input::Line(line)).is_err() || stop {
                    return;
                }
            }
            let _ = tx.send_blocking(Input::StdinEnd);
        });

        loop {
            match rx.recv().await {
                Ok(Input::Line(Ok(line))) => {
                    if let Err(e) = writer.send(line).await {
                        eprintln!("client: send failed: {e}");
                        break;
                    }
                }
                Ok(Input::Line(Err(e))) => {
                    eprintln!("client: reading stdin: {e}");
                    break;
                }
                Ok(Input::StdinEnd) => break,
                // The server ended the connection first: exit now, not at
                // the end of stdin.
                Ok(Input::Ended(end)) => return outcome(end, Ok(())),
                Err(_) => unreachable!("the printer sends before it ends"),
            }
        }
        // The writer's close waits for the printer (the reader) to see the
        // server's Close and the end of the connection.
        let closed = writer.close(CloseCode::NORMAL, "").await;
        loop {
            match rx.recv().await {
                Ok(Input::Ended(end)) => return outcome(end, closed),
                Ok(_) => {}
                Err(_) => unreachable!("the printer sends before it ends"),
            }
        }
    })
}

/// What the sending loop waits for.
enum Input {
    Line(std::io::Result<String>),
    StdinEnd,
    /// The connection is over: whether the closing handshake completed,
    /// or how it failed.
    Ended(Result<bool, Error>),
}

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

fn print_message(msg: &Message) {
    let mut out = std::io::stdout().lock();
    let _ = match msg {
        Message::Text(t) => writeln!(out, "{t}"),
        Message::Binary(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            writeln!(out, "{hex}")
        }
    };
    let _ = out.flush();
}
