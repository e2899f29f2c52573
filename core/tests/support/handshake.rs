//! Two connections talking in memory, for core's tests that measure
//! compression: included with `#[path]`.

use std::sync::Arc;
use std::time::Instant;

use wsmachine::{Accept, Config, Connection, Event};

/// Moves everything `from` has to send into `to`; returns those bytes.
pub(crate) fn pump(from: &mut Connection, to: &mut Connection, now: Instant) -> Vec<u8> {
    let mut wire = Vec::new();
    while let Some(b) = from.poll_transmit() {
        wire.extend_from_slice(&b);
    }
    to.receive(now, &wire);
    while to.has_pending_work() {
        to.resume(now);
    }
    wire
}

/// Runs the opening handshake between `client` and a new server with
/// `server_config` that accepts with the defaults.
pub(crate) fn open(
    mut client: Connection,
    server_config: impl Into<Arc<Config>>,
    now: Instant,
) -> (Connection, Connection) {
    let mut server = Connection::server(server_config, now);
    pump(&mut client, &mut server, now);
    let Some(Event::Request(_)) = server.poll_event() else {
        panic!("no request")
    };
    server.accept(now, Accept::new()).unwrap();
    pump(&mut server, &mut client, now);
    let Some(Event::Connected(_)) = client.poll_event() else {
        panic!("not connected")
    };
    (client, server)
}
