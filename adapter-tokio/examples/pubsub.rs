//! A publish/subscribe server: clients subscribe to topics and publish to
//! them; each publish is encoded once and handed to every subscriber
//! without waiting for any of them.
//!
//! ```text
//! cargo run -p wsmachine-tokio --example pubsub -- 127.0.0.1:9002
//! ```
//!
//! Prints `listening on ws://ADDR` once ready. The protocol is text
//! messages, one command each (a topic is one word):
//!
//! | client sends        | server answers       | and                                         |
//! |---------------------|----------------------|---------------------------------------------|
//! | `sub TOPIC`         | `ok sub TOPIC`       | from now on every publish to TOPIC arrives  |
//! | `unsub TOPIC`       | `ok unsub TOPIC`     | none arrive after this answer               |
//! | `pub TOPIC PAYLOAD` | `ok pub TOPIC N`     | each of the N subscribers gets `msg TOPIC PAYLOAD` |
//! | anything else       | `error ...`          |                                             |
//!
//! A subscriber gets the publishes to a topic in the order the server took
//! them, and the answer to a command comes after everything that command
//! caused (a publisher subscribed to its own topic gets its `msg` before
//! its `ok pub`).
//!
//! **Fan-out.** A publish is a [`PreparedMessage`]: the frame is built
//! once, and with permessage-deflate it is compressed once (the server
//! resets its compression context after every message,
//! `server_no_context_takeover`, so every connection can send the same
//! compressed bytes). It is handed to each subscriber's writer with
//! `try_send_prepared`, which queues it and returns at once: no task or
//! channel per subscriber, and no subscriber can stall a publish. Each
//! connection's own task, reading its commands, writes what was queued.
//!
//! **Slow subscribers.** A subscriber that does not read its messages sees
//! its unsent output grow. Past [`HIGH_WATER`] the send says so
//! (`SendStatus::Backpressure`, the message is still queued); a send that
//! finds more than [`MAX_PENDING`] unsent fails: the library drops that
//! connection's output and closes it (`Config::max_pending_output`), and
//! the hub takes the subscriber off every topic and prints
//! `dropped ADDR: REASON`.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use wsmachine_tokio::{
    accept_with, Accept, Config, DeflateConfig, Error, Message, PreparedMessage, SendStatus,
    WebSocketWriter,
};

/// Unsent output above which a send reports `Backpressure`.
const HIGH_WATER: usize = 64 << 10;
/// Unsent output past which a subscriber is dropped.
const MAX_PENDING: usize = 1 << 20;

type Writer = WebSocketWriter<TcpStream>;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".into());
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pubsub: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().expect("bound socket has an address");
    println!("listening on ws://{local}");
    let _ = std::io::stdout().flush();
    let config = Arc::new(Config {
        write_buffer_high_water: HIGH_WATER,
        // A send that finds more than this unsent fails and closes the
        // connection: the reader's task then ends by itself.
        max_pending_output: Some(MAX_PENDING),
        deflate: Some(DeflateConfig {
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        }),
        ..Config::default()
    });
    let hub = Arc::new(Mutex::new(Hub::default()));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // e.g. out of file descriptors: keep serving the others.
                eprintln!("pubsub: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (config, hub) = (config.clone(), hub.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(tcp, peer, config, hub).await {
                eprintln!("pubsub: {peer}: {e}");
            }
        });
    }
}

/// One connection: reads its commands until it ends or is dropped.
async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<Config>,
    hub: Arc<Mutex<Hub>>,
) -> Result<(), Error> {
    let ws = accept_with(tcp, config, |_| Ok(Accept::new())).await?;
    // The writer goes to the hub, where publishes reach it; reading stays
    // here, and also writes out whatever the hub queued.
    let (mut reader, writer) = ws.split();
    let id = lock(&hub).join(writer, peer);
    let result = loop {
        match reader.recv().await {
            Some(Ok(Message::Text(cmd))) => lock(&hub).command(id, &cmd),
            Some(Ok(Message::Binary(_))) => lock(&hub).reply(id, "error commands are text".into()),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    // Dropping the reader here and the writer in `leave` ends the
    // connection (the transport closes when both halves are gone).
    lock(&hub).leave(id);
    result
}

fn lock(hub: &Mutex<Hub>) -> std::sync::MutexGuard<'_, Hub> {
    hub.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every connection's writer, and who subscribes to what.
#[derive(Default)]
struct Hub {
    next_id: u64,
    clients: HashMap<u64, Client>,
    topics: HashMap<String, BTreeSet<u64>>,
}

struct Client {
    writer: Writer,
    peer: SocketAddr,
    topics: BTreeSet<String>,
}

impl Hub {
    fn join(&mut self, writer: Writer, peer: SocketAddr) -> u64 {
        self.next_id += 1;
        let client = Client {
            writer,
            peer,
            topics: BTreeSet::new(),
        };
        self.clients.insert(self.next_id, client);
        self.next_id
    }

    fn leave(&mut self, id: u64) {
        if let Some(client) = self.clients.remove(&id) {
            for topic in &client.topics {
                self.unsubscribe(id, topic);
            }
        }
    }

    fn unsubscribe(&mut self, id: u64, topic: &str) {
        if let Some(subs) = self.topics.get_mut(topic) {
            subs.remove(&id);
            if subs.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    fn command(&mut self, id: u64, cmd: &str) {
        let mut words = cmd.splitn(3, ' ');
        let answer = match (words.next(), words.next(), words.next()) {
            (Some("sub"), Some(topic), None) if !topic.is_empty() => {
                self.topics.entry(topic.into()).or_default().insert(id);
                if let Some(c) = self.clients.get_mut(&id) {
                    c.topics.insert(topic.into());
                }
                format!("ok sub {topic}")
            }
            (Some("unsub"), Some(topic), None) if !topic.is_empty() => {
                self.unsubscribe(id, topic);
                if let Some(c) = self.clients.get_mut(&id) {
                    c.topics.remove(topic);
                }
                format!("ok unsub {topic}")
            }
            (Some("pub"), Some(topic), payload) if !topic.is_empty() => {
                let msg = PreparedMessage::new(format!("msg {topic} {}", payload.unwrap_or("")));
                let n = self.publish(topic, &msg);
                format!("ok pub {topic} {n}")
            }
            _ => "error expected `sub TOPIC`, `unsub TOPIC` or `pub TOPIC PAYLOAD`".into(),
        };
        self.reply(id, answer);
    }

    /// Hands `msg` to every subscriber of `topic` without waiting; drops
    /// the ones that are too far behind. Returns how many got it.
    fn publish(&mut self, topic: &str, msg: &PreparedMessage) -> usize {
        let subs: Vec<u64> = self
            .topics
            .get(topic)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let mut sent = 0;
        for id in subs {
            if self.offer(id, msg) {
                sent += 1;
            }
        }
        sent
    }

    /// A reply to one client, under the same rule as a publish.
    fn reply(&mut self, id: u64, text: String) {
        self.offer(id, &PreparedMessage::new(text));
    }

    /// Queues `msg` for client `id`, or drops the client when it is gone
    /// or was too far behind.
    fn offer(&mut self, id: u64, msg: &PreparedMessage) -> bool {
        let Some(client) = self.clients.get_mut(&id) else {
            return false;
        };
        match client.writer.try_send_prepared(msg) {
            // Queued; over HIGH_WATER (`Backpressure`) is tolerated until
            // the library's limit ends the connection.
            Ok(SendStatus::Queued | SendStatus::Backpressure) => true,
            // Over MAX_PENDING, or the connection is over anyway.
            Err(e) => {
                println!("dropped {}: {e}", client.peer);
                self.leave(id);
                false
            }
            Ok(_) => true,
        }
    }
}
