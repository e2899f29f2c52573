//! The `tracing` feature's output for one whole connection, captured: a
//! server with keepalive and permessage-deflate echoes one message, waits
//! for a keepalive round trip, and closes; the client answers the Ping
//! automatically and echoes the Close. The test checks each span's fields
//! and the order of the events in it, and prints the whole capture (run
//! with `--nocapture` to see it).
//!
//! The capture is a small recording `Subscriber` (no formatting crate):
//! every span with its fields, every event with its span, level, message
//! and fields.
// The test runs its own clock.
#![allow(clippy::disallowed_methods)]

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use wsmachine_tokio::{accept_with, Accept, CloseCode, Config, ConnectBuilder, Message};

#[derive(Debug)]
struct SpanRec {
    fields: Vec<(String, String)>,
}

#[derive(Debug)]
struct EventRec {
    span: Option<u64>,
    level: Level,
    fields: Vec<(String, String)>,
}

impl EventRec {
    fn message(&self) -> &str {
        field(&self.fields, "message").unwrap_or("")
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[derive(Default)]
struct Captured {
    spans: Vec<SpanRec>,
    events: Vec<EventRec>,
}

impl Captured {
    /// One line per event, `span{fields}: LEVEL message fields`.
    fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            if let Some(id) = e.span {
                let span = &self.spans[id as usize - 1];
                let f: Vec<String> = span
                    .fields
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                out.push_str(&format!("websocket{{{}}}: ", f.join(" ")));
            }
            let f: Vec<String> = e
                .fields
                .iter()
                .filter(|(n, _)| n != "message")
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            out.push_str(&format!("{} {} {}\n", e.level, e.message(), f.join(" ")));
        }
        out
    }

    /// The span whose `role` field is `role`.
    fn span_of(&self, role: &str) -> (u64, &SpanRec) {
        let i = self
            .spans
            .iter()
            .position(|s| field(&s.fields, "role") == Some(role))
            .unwrap_or_else(|| panic!("no {role} span in\n{}", self.render()));
        (i as u64 + 1, &self.spans[i])
    }

    fn events_in(&self, span: u64) -> Vec<&EventRec> {
        self.events
            .iter()
            .filter(|e| e.span == Some(span))
            .collect()
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::DEBUG
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Vec::new();
        span.record(&mut Fields(&mut fields));
        let mut c = self.0.lock().unwrap();
        c.spans.push(SpanRec { fields });
        Id::from_u64(c.spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut c = self.0.lock().unwrap();
        let rec = &mut c.spans[span.into_u64() as usize - 1];
        values.record(&mut Fields(&mut rec.fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        let rec = EventRec {
            span: event.parent().map(Id::into_u64),
            level: *event.metadata().level(),
            fields,
        };
        self.0.lock().unwrap().events.push(rec);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Checks that `want` (message, then `field=value` pairs that must be
/// among the event's fields) occur in this order among `events`, others
/// possibly in between.
fn assert_in_order(events: &[&EventRec], want: &[(&str, &[(&str, &str)])], all: &str) {
    let mut it = events.iter();
    for (msg, fields) in want {
        let found = it.any(|e| {
            e.message() == *msg && fields.iter().all(|(n, v)| field(&e.fields, n) == Some(*v))
        });
        assert!(found, "no {msg:?} {fields:?} in order in:\n{all}");
    }
}

#[test]
fn a_whole_connection_traced() {
    let capture = Capture::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = tracing::subscriber::with_default(capture.clone(), || {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (tcp, peer) = listener.accept().await.unwrap();
                let cfg = Config {
                    ping_interval: Some(Duration::from_millis(50)),
                    ..Config::with_deflate()
                };
                let mut ws = accept_with(tcp, cfg, |_| Ok(Accept::new()))
                    .await
                    .expect("accept");
                ws.record_peer_addr(peer);
                let m = ws.recv().await.expect("message").expect("message");
                ws.send(m).await.expect("echo");
                // Until the keepalive Ping has been answered.
                while ws.stats().last_rtt.is_none() {
                    ws.recv_event().await.expect("event").expect("event");
                }
                ws.close(CloseCode::NORMAL, "done").await.expect("close");
                peer
            });
            let (mut ws, _) = ConnectBuilder::new(format!("ws://{addr}/chat?token=secret"))
                .config(Config {
                    ping_interval: None,
                    ..Config::with_deflate()
                })
                .connect()
                .await
                .expect("connect");
            ws.send(Message::Text("hello".into())).await.expect("send");
            // The echo, then (Pings answered meanwhile) the end.
            let echo = ws.recv().await.expect("echo").expect("echo");
            assert_eq!(echo, Message::Text("hello".into()));
            let end = ws.recv().await;
            assert!(end.is_none(), "{end:?}");
            drop(ws);
            server.await.unwrap()
        })
    });
    drop(rt);
    let c = capture.0.lock().unwrap();
    let all = c.render();
    println!("{all}");

    let (server, span) = c.span_of("Server");
    assert_eq!(field(&span.fields, "path"), Some("/chat"), "{all}");
    assert_eq!(
        field(&span.fields, "peer"),
        Some(&*peer.to_string()),
        "{all}"
    );
    assert_eq!(field(&span.fields, "subprotocol"), Some(""), "{all}");
    assert!(
        field(&span.fields, "extensions").is_some_and(|e| e.starts_with("permessage-deflate")),
        "{all}"
    );
    let events = c.events_in(server);
    assert_in_order(
        &events,
        &[
            ("handshake complete", &[]),
            ("keepalive ping sent", &[]),
            ("keepalive pong received", &[]),
            ("close sent", &[("code", "1000")]),
            ("close received", &[("code", "1000")]),
            (
                "side ended",
                &[("side", "receiving"), ("messages", "1"), ("bytes", "5")],
            ),
            (
                "side ended",
                &[("side", "sending"), ("messages", "1"), ("bytes", "5")],
            ),
        ],
        &all,
    );
    let rtt = events
        .iter()
        .find(|e| e.message() == "keepalive pong received")
        .and_then(|e| field(&e.fields, "rtt"));
    assert!(rtt.is_some(), "{all}");

    let (client, span) = c.span_of("Client");
    assert_eq!(field(&span.fields, "path"), Some("/chat"), "{all}");
    assert_in_order(
        &c.events_in(client),
        &[
            ("handshake complete", &[]),
            ("automatic pong sent", &[]),
            ("close received", &[("code", "1000"), ("reason", "done")]),
            ("close sent", &[("code", "1000")]),
            ("side ended", &[("side", "receiving"), ("messages", "1")]),
            ("side ended", &[("side", "sending"), ("messages", "1")]),
        ],
        &all,
    );
    // Nothing failed: no warning, no error.
    assert!(c.events.iter().all(|e| e.level >= Level::INFO), "{all}");
}
