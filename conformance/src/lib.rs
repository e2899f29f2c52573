//! # wsmachine-conformance
//!
//! Byte-trace record and replay, the trace corpus, and the Autobahn runner
//! for wsmachine (DESIGN.md §5).
//!
//! - [`trace`]: the byte-trace format, [`parse_trace`] and the writer
//!   ([`Trace::to_text`] / `Display`).
//! - [`replay`](mod@replay): feeds a trace to a fresh core and checks every event and
//!   every sent byte, whole and byte by byte; [`replay_both`] first checks
//!   the peer's verdict ([`check_verdict`]).
//! - [`record`]: stream wrappers (tokio and futures-io) that tee the bytes
//!   read and written into a trace.
//! - [`driver`]: a small recording driver over the core (tokio stream +
//!   [`wsmachine::Connection`] + [`wsmachine::SeededMask`]) that records
//!   sessions whose sent bytes are reproducible.
//! - [`adapter`]: records sessions through the tokio and smol adapters'
//!   `WebSocket` types over the recorder wrappers.
//! - `src/bin/record.rs`: regenerates the corpus in `traces/` from real
//!   peers, collecting each peer's verdict, and serves as an echo server /
//!   Autobahn client over the driver.
//! - `autobahn.sh`: the Autobahn|Testsuite runner.
//!
//! ## The byte-trace format (version 2)
//!
//! A UTF-8 text file, line oriented, meant to be read and diffed in review.
//! A header of `key: value` lines, a `---` line, then the body. Lines
//! starting with `#` are comments anywhere; a chunk line may end in
//! `  # comment` (the writer adds the first line of an HTTP head there).
//!
//! ```text
//! wsmachine-trace: 2                        format version (first line)
//! role: client                              role of the recorded wsmachine endpoint
//! peer: python-websockets 13.1              the other endpoint, name and version
//! scenario: echo text, client closes        free text
//! recorded-by: wsmachine-conformance 0.1.0 recording driver (tokio TcpStream, loopback)
//! date: 2025-01-01
//! seed: 5e5e…(64 hex digits)                SeededMask seed (client masks)
//! key: 77736d…(32 hex digits)               client only: Sec-WebSocket-Key nonce
//! request-host: 127.0.0.1:9001              client only: the request builder's fields
//! request-path: /echo                       (also request-origin, request-subprotocols,
//!                                            request-header: Name: value, repeatable)
//! config: max_frame_size=16777216 …         every Config field that changes the wire
//! deflate: none                             or the DeflateConfig fields, key=value
//! extensions: none                          negotiated, canonical (checked on replay)
//! events: all                               `=` lines list every event (or `none`)
//! sent: stream                              only for adapter recordings (default `exact`)
//! verdict: ok peer-exit=0 peer-checks=5/5 peer-close=1000
//! ---
//! ```
//!
//! Version 1 (no `verdict:` / `sent:` lines) is still read, so an old trace
//! is refused by [`replay_both`] for its missing verdict.
//!
//! `verdict:` (new in version 2) is what the peer concluded about the
//! session: `ok` or `fail`, then `KEY=VALUE` words saying what that rests
//! on (values never hold whitespace or `=`). The recorder writes it from
//! the peer's own report, never from our side of the trace:
//!
//! | peer | fields | `ok` when |
//! |---|---|---|
//! | `python-websockets`, `node-ws` as client (`scripts/*`) | `peer-exit` `peer-checks=passed/total` `peer-close` (and `peer-failed` on failure) | the process exited 0, printed `done`, every `result` record is `ok` (each echo equal to what it sent, the Pong arrived, …), and the Close it received is the scenario's (1000; 1001 for server-close; 1007 for badutf8) |
//! | same, as server | `peer-report` `peer-checks` `peer-close` (and `peer-error` on failure) | its `report` record for the connection has no error, its checks are `ok` (the Pong to its Ping arrived) and the Close it received is the scenario's (1002 for badframe) |
//! | `tungstenite` (in process) | `tungstenite=ok` or the error, `peer-close` | the session ended with `ConnectionClosed` after the closing handshake, every echo matched, the Close received is the scenario's |
//! | `autobahn` | `run-exit` `wstest` `wstest-close` | `run.sh` exited 0 and the case's `behavior` and `behaviorClose` in wstest's report (`index.json`) are `OK` or `INFORMATIONAL` |
//! | `chromium` | `page-close` (or `page-close-answer`) `page-reason` | echo / ping: the page closed with 1000 "done", which it does only when every check passed; server-close: the page answered our Close 4000 "bye" |
//!
//! `record corpus` refuses to save a session whose verdict is `fail` (the
//! trace goes to `target/rejected-traces/` instead, a stale corpus file of
//! that name is removed, and the command lists it and exits non-zero).
//! [`replay_both`], used by the corpus test and `record check`, refuses a
//! trace without a verdict or with a failing one before replaying it.
//!
//! `sent: stream` marks a trace recorded under an adapter ([`adapter`]).
//! There the adapter, not the trace, decides the chunking: write batching
//! (an echo loop's answers go out in one write), read-ahead while sending,
//! and, for a client, masking keys from its own random source and a random
//! `Sec-WebSocket-Key` (the `key:` line is the one it sent). Replay of a
//! stream trace therefore checks: every `=` line against the core's events
//! in order (each event is taken from the core at its `=` line, as the
//! application took it from `recv_event`, so the core's answer to the
//! peer's Close lands where it did live), and the concatenation of the
//! `>` chunks against everything the core sent, ignoring chunk boundaries;
//! for a client, frame by frame with masking keys zeroed and payloads
//! unmasked (the HTTP head byte for byte). When the session ends with our
//! own `! close`, a last peer Close the adapter did not hand to the
//! application is not required (wsmachine-smol's `close()` consumes it,
//! wsmachine-tokio's returns it from the next `recv_event`). Where a `> eof`
//! falls is not checked in a stream trace. The `= connected 101` /
//! `= request` and `! accept` lines are written by the recording code: the
//! adapter's `connect_on` / `accept_with` take those events themselves.
//!
//! Body lines, in the order things happened:
//!
//! | line | meaning |
//! |---|---|
//! | `< N` + data lines | `N` bytes read from the transport in one read (chunk boundaries kept exactly) |
//! | `> N` + data lines | `N` bytes written by the recorded endpoint in one write |
//! | `< N base64` / `> N base64` | same, data lines in base64 (76 per line) instead of hex (32 bytes per line) |
//! | `< eof` / `> eof` | end of stream read / the recorded endpoint closed the transport |
//! | `= connected 101` | client: handshake accepted |
//! | `= request "/path?q"` | server: a valid request arrived |
//! | `= text "hello"` | a text message (Rust-like escapes `\"` `\\` `\n` `\u{7f}`) |
//! | `= binary 0102ff` | a binary message, hex (nothing after `binary` when empty) |
//! | `= text len=65536 fnv1a=0123456789abcdef` | a message over 128 bytes: length and FNV-1a 64 |
//! | `= fragment text first more 6869` | a fragment (`first`/`cont`, `last`/`more`), reassembly off |
//! | `= ping 6869` / `= pong` | control frames (hex payload) |
//! | `= close 1000 "bye"` | the peer's Close (no status: `1005 ""`) |
//! | `= error protocol InvalidUtf8` | the connection failed: class (`protocol`, `handshake`, `timeout`, `eof`) and variant |
//! | `! accept compression=true subprotocol="chat"` | server: the application accepted (also `! reject 403`) |
//! | `! text "hi"` / `! binary 00ff` | the application sent a message |
//! | `! echo` | the application sent back the oldest received message not yet echoed |
//! | `! fragment text more 6869` / `… fin …` | the application sent one fragment |
//! | `! ping 01` / `! pong` / `! close 1000 "bye"` | control frames sent by the application |
//! | `! timeout 5003` | timers ran, this many ms after the start |
//!
//! A data line is indented; a chunk's data lines must hold exactly `N` bytes.
//!
//! ```
//! let text = r#"wsmachine-trace: 2
//! role: server
//! peer: example 1.0
//! config: max_frame_size=16777216 max_message_size=67108864 max_fragments=131072 max_handshake_size=16384 max_headers=64 reassemble=true auto_pong=true ping_interval_ms=none pong_timeout_ms=30000 opening_handshake_timeout_ms=10000 close_timeout_ms=5000
//! deflate: none
//! extensions: none
//! ---
//! < 4
//!   8100zz
//! "#;
//! // (a broken chunk: the parser says where, and never panics)
//! let err = wsmachine_conformance::parse_trace(text).unwrap_err();
//! assert_eq!(err.line, 9);
//! assert!(err.to_string().contains("invalid hex"));
//! ```
//!
//! A complete, replayable server trace (the RFC 6455 §1.3 handshake, then
//! the masked "Hello" of §5.7, echoed):
//!
//! ```
//! use wsmachine_conformance::{parse_trace, replay, replay_both, Feed};
//! let text = "wsmachine-trace: 2
//! role: server
//! peer: example 1.0
//! scenario: RFC 6455 examples
//! config: max_frame_size=16777216 max_message_size=67108864 max_fragments=131072 max_handshake_size=16384 max_headers=64 reassemble=true auto_pong=true ping_interval_ms=none pong_timeout_ms=30000 opening_handshake_timeout_ms=10000 close_timeout_ms=5000
//! deflate: none
//! extensions: none
//! events: all
//! verdict: ok example=1
//! ---
//! < 100  # GET /chat HTTP/1.1
//!   474554202f6368617420485454502f312e310d0a486f73743a20736572766572
//!   2e6578616d706c652e636f6d0d0a557067726164653a20776562736f636b6574
//!   0d0a436f6e6e656374696f6e3a20557067726164650d0a5365632d576562536f
//!   636b6574
//! < 61
//!   2d4b65793a206447686c49484e68625842735a5342756232356a5a513d3d0d0a
//!   5365632d576562536f636b65742d56657273696f6e3a2031330d0a0d0a
//! = request \"/chat\"
//! ! accept compression=false
//! > 129  # HTTP/1.1 101 Switching Protocols
//!   485454502f312e312031303120537769746368696e672050726f746f636f6c73
//!   0d0a557067726164653a20776562736f636b65740d0a436f6e6e656374696f6e
//!   3a20557067726164650d0a5365632d576562536f636b65742d4163636570743a
//!   20733370504c4d426954786151396b59477a7a685a52624b2b784f6f3d0d0a0d
//!   0a
//! < 11
//!   818537fa213d7f9f4d5158
//! = text \"Hello\"
//! ! echo
//! > 7
//!   810548656c6c6f
//! ";
//! let trace = parse_trace(text).unwrap();
//! replay(&trace, Feed::Whole).unwrap();
//! replay(&trace, Feed::ByteByByte).unwrap();
//! // The writer's output parses back to the same trace.
//! assert_eq!(parse_trace(&trace.to_string()).unwrap(), trace);
//! // The verdict, then both replays; a peer's `fail` is refused.
//! replay_both(&trace).unwrap();
//! let rejected = parse_trace(&text.replace("verdict: ok", "verdict: fail")).unwrap();
//! assert!(replay_both(&rejected).unwrap_err().contains("peer rejected"));
//! ```
//!
//! ## Replay
//!
//! [`replay()`] builds a fresh core from the header — `Connection::client`
//! with the recorded request, key and `SeededMask` seed, or
//! `Connection::server` — with the recorded `Config`, then walks the body:
//! `<` chunks are fed to `receive`, `!` actions are performed again, `=`
//! lines are checked against `poll_event` in order, and the bytes from
//! `poll_transmit` are checked against the `>` chunks. The core is
//! deterministic given the seed, so sent bytes match byte for byte
//! (masking keys and deflate output included). Received bytes, end of
//! stream and timers are the synchronisation points: before each, every
//! byte the core sent must already be recorded and (with `events: all`)
//! every event checked. The clock is virtual and only moves at `! timeout`.
//!
//! [`Feed::ByteByByte`] replays the same trace with every received byte in
//! its own `receive` call: events must match, sent bytes must match as one
//! concatenation. A mismatch is a [`ReplayError`] naming the item, the first
//! differing sent chunk, the byte offset and hex context of both sides:
//!
//! ```text
//! at trace item 7: sent chunk 1 (trace item 7, 7 bytes) differs at byte offset 2 (stream offset 131): bytes differ
//!   expected: 8105[49]656c6c6f
//!   actual:   8105[48]656c6c6f
//! ```
//!
//! ## Recording
//!
//! [`TokioRecorder`] / [`FuturesRecorder`] wrap any stream and tee each
//! read and write into a [`Recorder`]. Most of the corpus is recorded with
//! [`driver`], which runs the core directly with a `SeededMask` and records
//! events and actions too, so its traces replay chunk by chunk (`sent:
//! exact`). [`adapter`] puts the recorders under the tokio and smol
//! adapters' real `WebSocket` types (the application code records the
//! events it receives and what it does); those traces are `sent: stream`
//! (see above).
//!
//! ## The corpus
//!
//! `traces/<peer>/[<adapter>-]<role>-<scenario>[-deflate].trace`, recorded
//! from real peers with [`driver`] (our endpoint uses
//! `SeededMask::new(driver::CORPUS_SEED)` and the key `b"wsmachine-trace!"`)
//! or, with an `tokio-` / `smol-` prefix, through that adapter ([`adapter`]),
//! each with the peer's verdict:
//!
//! | peer | how it runs | client traces (our core as client) | server traces (our core as server) |
//! |---|---|---|---|
//! | `python-websockets` | `scripts/py_peer.py` in `target/peers-venv` | echo, server-close, ping, fragments, badutf8, badframe; each with and without deflate; tokio and smol adapters: echo ± deflate | echo (± deflate), server-close, ping, badutf8; tokio and smol adapters: echo ± deflate |
//! | `node-ws` | `scripts/node_peer.js`, `ws` in `target/node-peers` | same | same |
//! | `tungstenite` | in process, blocking threads (no deflate support) | same, without deflate | same, without deflate |
//! | `chromium` | system headless Chromium loading `peers/chromium/trace.html` (a browser is a client only) | — | echo (± deflate), server-close (4000 "bye"), ping, each ± deflate |
//! | `autobahn` | `wstest`, one run per case | fuzzingserver cases 1.1.1 1.2.2 2.3 3.1 5.3 5.6 6.4.1 7.1.1 7.5.1 12.1.1 13.1.1 13.7.1 | the same cases from fuzzingclient |
//!
//! The scenarios cover echo of text, binary, fragmented and compressible
//! messages, Ping/Pong both ways, close started by either side, and error
//! cases: invalid UTF-8 from the peer (we send 1007) and a reserved opcode
//! (we send 1002). Regenerate everything, or a subset (needs `python3`,
//! `node`, `npm` and PyPI/npm access; installs peers into `target/`):
//!
//! ```text
//! cargo run -p wsmachine-conformance --bin record -- corpus
//! cargo run -p wsmachine-conformance --bin record -- corpus --only node-ws,tungstenite [--scenario echo]
//! cargo run -p wsmachine-conformance --bin record -- check conformance/traces/*/*.trace
//! ```
//!
//! Every trace is replayed right after it is recorded; the command ends
//! with the count of traces per peer, role and recorder and the list of
//! failures (sessions a peer rejected, sessions that failed, traces that do
//! not replay). Headers hold the loopback port and the date, so a
//! regeneration changes those lines in every file; review the rest.
//! `cargo test -p wsmachine-conformance` checks every trace's verdict and
//! replays it whole and byte by byte (`tests/corpus.rs`), checks that the
//! files are in the writer's canonical form, and that a corrupted trace, a
//! rejected one or one without verdict fails (`tests/trace_verdicts.rs`).
//!
//! The driver is also a test peer: `record serve [ADDR]` is an echo server
//! (prints `listening on ws://ADDR`; `--trace-dir DIR` records every
//! connection) and `record autobahn-client URL AGENT` runs the fuzzingserver
//! loop, so the core can be checked against Autobahn without any adapter.
//!
//! ## Autobahn
//!
//! ```text
//! conformance/autobahn.sh                # all adapters, all cases (needs ~20 min)
//! conformance/autobahn.sh --quick        # excluding 12.x/13.x
//! conformance/autobahn.sh --driver       # against the recording driver over the core only
//! WSMACHINE_AUTOBAHN=1 cargo test -p wsmachine-conformance --test autobahn -- --nocapture
//! ```
//!
//! The script installs `wstest` into `target/autobahn-venv` when missing,
//! builds the echo servers in release, runs fuzzingclient against each and
//! fuzzingserver against the tokio `autobahn_client`, and fails unless every
//! case is OK or INFORMATIONAL. Reports go to `conformance/reports/`
//! (gitignored).

pub mod adapter;
pub mod bench;
pub mod driver;
pub mod record;
pub mod replay;
pub mod trace;

pub use record::{FuturesRecorder, Recorder, TokioRecorder};
pub use replay::{check_verdict, replay, replay_both, Feed, ReplayError, ReplayStats};
pub use trace::{
    parse_trace, Action, Expected, Header, Item, SentCheck, Trace, TraceError, Verdict,
};

use wsmachine::Negotiated;

/// The canonical `extensions:` header value for what was negotiated.
pub fn negotiated_extensions(n: &Negotiated) -> String {
    match &n.deflate {
        None => "none".to_string(),
        Some(p) => {
            let mut s = String::from("permessage-deflate");
            if p.server_no_context_takeover {
                s.push_str("; server_no_context_takeover");
            }
            if p.client_no_context_takeover {
                s.push_str("; client_no_context_takeover");
            }
            s.push_str(&format!(
                "; server_max_window_bits={}; client_max_window_bits={}",
                p.server_max_window_bits, p.client_max_window_bits
            ));
            s
        }
    }
}
