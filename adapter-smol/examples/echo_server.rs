//! Echo server: `cargo run -p wsmachine-smol --example echo_server [ADDR]`
//! (default 127.0.0.1:9001). Echoes every message; accepts
//! permessage-deflate when the client offers it.

use std::io::Write;

use smol::net::TcpListener;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    smol::block_on(async {
        let listener = match TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("echo_server: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        let local = listener.local_addr().expect("bound socket has an address");
        println!("listening on ws://{local}");
        let _ = std::io::stdout().flush();
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("echo_server: accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            smol::spawn(async move {
                // `accept` uses Config::with_deflate(): compression when offered.
                let mut ws = match wsmachine_smol::accept(stream).await {
                    Ok(ws) => ws,
                    Err(e) => {
                        eprintln!("echo_server: {peer}: handshake failed: {e}");
                        return;
                    }
                };
                // The peer's Close is answered only once `recv` has handed
                // out every message before it, so each can still be echoed.
                while let Some(msg) = ws.recv().await {
                    let sent = match msg {
                        Ok(msg) => ws.send(msg).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = sent {
                        eprintln!("echo_server: {peer}: {e}");
                        break;
                    }
                }
            })
            .detach();
        }
    })
}
