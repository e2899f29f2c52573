//! A client that stays connected: prints every text message from the URL
//! given as its argument (`ws://` or `wss://`), reconnecting with
//! exponential backoff and full jitter whenever the server drops it, and
//! stopping when the server refuses it for good (a 4xx, or a close code
//! another attempt would repeat). The README's "A reconnecting client".
//!
//! `cargo run -p wsmachine-tokio --example reconnecting_client -- ws://127.0.0.1:9001/`

use std::time::Duration;

use wsmachine_tokio::{ConnectBuilder, Disconnect, Message, ReconnectPolicy, TlsRoots};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), wsmachine_tokio::Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("ws://127.0.0.1:9001/".into());
    let policy = ReconnectPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .max_delay(Duration::from_secs(30));
    let mut conns = ConnectBuilder::new(url)
        .roots(TlsRoots::Native)
        .reconnect(policy);
    while let Some(conn) = conns.next().await {
        let (mut ws, _response) = conn?; // Err: not retryable, or out of attempts
        eprintln!(
            "connected after {} retries (before: {:?})",
            conns.retries(),
            conns.previous()
        );
        let end = loop {
            match ws.recv().await {
                Some(Ok(Message::Text(t))) => println!("{t}"),
                Some(Ok(Message::Binary(b))) => println!("{} bytes", b.len()),
                Some(Err(e)) => break Disconnect::from(e), // dropped: 1006, reset, timeout…
                None => break Disconnect::Peer(ws.close_frame().cloned()), // 1001, 1012…
            }
        };
        conns.report(end); // Disconnect::Local would end the loop
    }
    Ok(())
}
