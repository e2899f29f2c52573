//! Line client: `cargo run -p wsmachine-async-std --example client -- ws://127.0.0.1:9001/`
//!
//! Offers permessage-deflate, sends each line of stdin as a text message,
//! prints each text message received on its own line (binary ones as hex).
//! At the end of stdin it sends Close 1000, prints whatever still arrives,
//! and exits 0 once the closing handshake completes; it exits 1 with a
//! message on stderr when the connection fails.

use std::io::Write;
use std::process::ExitCode;

use async_std::io::prelude::BufReadExt;
use async_std::stream::StreamExt;
use wsmachine_async_std::{CloseCode, ConnectBuilder, Message};

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: client ws://HOST:PORT/PATH");
        return ExitCode::from(2);
    };
    async_std::task::block_on(async {
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

        // Print everything that arrives, until the connection is over.
        let printer = async_std::task::spawn(async move {
            while let Some(msg) = reader.recv().await {
                let mut out = std::io::stdout().lock();
                match msg {
                    Ok(Message::Text(t)) => {
                        let _ = writeln!(out, "{t}");
                    }
                    Ok(Message::Binary(b)) => {
                        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                        let _ = writeln!(out, "{hex}");
                    }
                    Err(e) => return Err(e),
                }
                let _ = out.flush();
            }
            Ok(reader.close_frame().cloned())
        });

        let mut lines = async_std::io::BufReader::new(async_std::io::stdin()).lines();
        while let Some(line) = lines.next().await {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("client: reading stdin: {e}");
                    break;
                }
            };
            if let Err(e) = writer.send(line).await {
                eprintln!("client: send failed: {e}");
                break;
            }
        }
        // The writer's close waits for the printer (the reader) to see the
        // server's Close and the end of the connection.
        let closed = writer.close(CloseCode::NORMAL, "").await;
        match (printer.await, closed) {
            (Ok(Some(_)), Ok(())) => ExitCode::SUCCESS,
            (Ok(None), _) => {
                eprintln!("client: connection ended without a closing handshake");
                ExitCode::FAILURE
            }
            (Err(e), _) | (Ok(_), Err(e)) => {
                eprintln!("client: connection failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
