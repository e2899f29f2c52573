//! One memory budget shared by many connections: what it admits, what it
//! refuses and with which close code, and that every reservation returns —
//! when a message completes, fails, is cut by end of stream, or its
//! connection is dropped mid-message.
// Tests play the event loop, which owns the clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use wsmachine::internals::{Compressor, FrameHeader, RSV1};
use wsmachine::{
    CloseCode, Config, Connection, ConnectionError, DeflateConfig, DeflateParams, Event,
    MemoryBudget, Negotiated, OpCode, ProtocolError, Role,
};

const MIB: usize = 1 << 20;

fn config(budget: &MemoryBudget) -> Arc<Config> {
    Arc::new(Config {
        memory_budget: Some(budget.clone()),
        ping_interval: None,
        ..Config::default()
    })
}

fn server(cfg: &Arc<Config>, deflate: bool) -> Connection {
    let negotiated = Negotiated {
        subprotocol: None,
        deflate: deflate.then(DeflateParams::default),
    };
    Connection::upgraded(Role::Server, cfg.clone(), negotiated, None, Instant::now())
}

/// A client frame as it arrives at the server (masked).
fn frame(fin: bool, rsv: u8, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = BytesMut::new();
    FrameHeader {
        fin,
        rsv,
        opcode,
        mask: Some(mask),
        payload_len: payload.len() as u64,
    }
    .encode_frame(payload, &mut out);
    out.to_vec()
}

/// The deflate data of `len` zero bytes, as the first (`fin: false`) or
/// only frame of a message.
fn zeros_deflated(len: usize, fin: bool) -> Vec<u8> {
    let mut c = Compressor::new(
        &DeflateParams::default(),
        &DeflateConfig::default(),
        Role::Client,
    );
    let mut out = BytesMut::new();
    c.compress(&vec![0; len], fin, &mut out);
    out.to_vec()
}

fn events(c: &mut Connection) -> Vec<Event> {
    let mut evs: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    // A compressed frame is inflated a slice per call: finish it, as a
    // driver does (yielding in between).
    while c.has_pending_work() {
        c.resume(Instant::now());
        evs.extend(std::iter::from_fn(|| c.poll_event()));
    }
    evs
}

/// The close code of the Close frame the connection sent, if any.
fn sent_close_code(c: &mut Connection) -> Option<u16> {
    let out: Vec<u8> = std::iter::from_fn(|| c.poll_transmit()).flatten().collect();
    let (h, n) = FrameHeader::decode(&out).ok()??;
    (h.opcode == OpCode::Close).then(|| u16::from_be_bytes([out[n], out[n + 1]]))
}

fn is_budget_error(e: &Event) -> bool {
    matches!(
        e,
        Event::Error(ConnectionError::Protocol(
            ProtocolError::MemoryBudget { .. }
        ))
    )
}

#[test]
fn unfinished_compressed_messages_take_the_budget_then_are_refused_with_1013() {
    let budget = MemoryBudget::new(16 * MIB);
    let cfg = config(&budget);
    // Each first fragment is ~6 KiB on the wire and inflates to 6 MiB.
    let attack = frame(false, RSV1, OpCode::Binary, &zeros_deflated(6 * MIB, false));
    assert!(attack.len() < 8 << 10, "{} bytes", attack.len());
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..6 {
        let mut c = server(&cfg, true);
        c.receive(Instant::now(), &attack);
        let evs = events(&mut c);
        assert!(budget.in_use() <= budget.limit(), "{budget:?}");
        if evs.iter().any(is_budget_error) {
            assert_eq!(sent_close_code(&mut c), Some(1013));
            refused += 1;
        } else {
            assert!(evs.is_empty(), "{evs:?}");
        }
        held.push(c);
    }
    // Two fit (with the reservations' rounding), the rest are refused.
    assert_eq!((6 - refused, refused), (2, 4), "{budget:?}");
    assert_eq!(budget.refusals(), 4);
    // Small messages flow for everyone meanwhile, old and new connections.
    let hello = frame(true, 0, OpCode::Text, b"hello");
    let mut fresh = server(&cfg, true);
    fresh.receive(Instant::now(), &hello);
    assert!(matches!(&events(&mut fresh)[..], [Event::Text(t)] if t.as_str() == "hello"));
    // Dropping the connections mid-message gives everything back.
    drop(held);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn unfinished_plain_messages_are_counted_across_frames() {
    let budget = MemoryBudget::new(20 * MIB);
    let cfg = config(&budget);
    let mut c = server(&cfg, false);
    // A whole first fragment of 8 MiB, then 4 MiB of a second one.
    let first = frame(false, 0, OpCode::Binary, &vec![1; 8 * MIB]);
    let second = frame(true, 0, OpCode::Continuation, &vec![2; 8 * MIB]);
    let now = Instant::now();
    c.receive(now, &first);
    c.receive(now, &second[..4 * MIB]);
    assert!(events(&mut c).is_empty());
    let one = budget.in_use();
    assert!((12 * MIB..=14 * MIB).contains(&one), "{budget:?}");
    // A second connection that wants 12 MiB too is refused at 20.
    let mut d = server(&cfg, false);
    d.receive(now, &first);
    d.receive(now, &second[..4 * MIB]);
    let evs = events(&mut d);
    assert!(evs.last().is_some_and(is_budget_error), "{evs:?}");
    assert_eq!(sent_close_code(&mut d), Some(1013));
    assert_eq!(budget.in_use(), one, "a refused connection keeps nothing");
    // The first completes its message, and its reservation returns.
    c.receive(now, &second[4 * MIB..]);
    let evs = events(&mut c);
    assert!(matches!(&evs[..], [Event::Binary(b)] if b.len() == 16 * MIB));
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn a_bomb_stops_at_the_budget_not_at_the_message_limit() {
    let budget = MemoryBudget::new(4 * MIB);
    let cfg = config(&budget);
    let bomb = frame(true, RSV1, OpCode::Text, &zeros_deflated(16 * MIB, true));
    let mut c = server(&cfg, true);
    c.receive(Instant::now(), &bomb);
    let evs = events(&mut c);
    assert!(evs.last().is_some_and(is_budget_error), "{evs:?}");
    assert_eq!(sent_close_code(&mut c), Some(1013));
    assert_eq!(budget.in_use(), 0);
    assert_eq!(budget.refusals(), 1);
    // Without a budget the message limit still answers 1009.
    let cfg = Arc::new(Config {
        memory_budget: None,
        max_message_size: 4 * MIB,
        ..Config::default()
    });
    let mut c = server(&cfg, true);
    c.receive(Instant::now(), &bomb);
    assert!(!events(&mut c).is_empty());
    assert_eq!(sent_close_code(&mut c), Some(1009));
    assert_eq!(
        ProtocolError::MemoryBudget {
            needed: 0,
            limit: 0
        }
        .close_code(),
        CloseCode::TRY_AGAIN_LATER
    );
}

#[test]
fn end_of_stream_mid_message_returns_the_reservation() {
    let budget = MemoryBudget::new(64 * MIB);
    let cfg = config(&budget);
    let mut c = server(&cfg, false);
    let big = frame(true, 0, OpCode::Binary, &vec![0; 8 * MIB]);
    c.receive(Instant::now(), &big[..5 * MIB]);
    assert!(budget.in_use() >= 4 * MIB, "{budget:?}");
    c.receive_eof(Instant::now());
    assert_eq!(budget.in_use(), 0);
    assert!(matches!(
        &events(&mut c)[..],
        [Event::Error(ConnectionError::Eof)]
    ));
}

/// Many connections, each doing a seeded random sequence of things a peer
/// can do — large messages plain or compressed, fed in random pieces,
/// completed, cut by end of stream, broken by a bad frame, dropped —
/// against one small budget: the budget is never exceeded, never
/// underflows (debug builds assert it), and is back to zero at the end.
#[test]
fn interleaved_connections_never_exceed_the_budget_and_return_everything() {
    let budget = MemoryBudget::new(3 * MIB);
    let cfg = config(&budget);
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let messages: Vec<Vec<u8>> = vec![
        frame(true, 0, OpCode::Binary, &vec![3; 900 << 10]),
        frame(
            true,
            RSV1,
            OpCode::Binary,
            &zeros_deflated(1500 << 10, true),
        ),
        [
            frame(false, 0, OpCode::Text, &vec![b'a'; 300 << 10]),
            frame(true, 0, OpCode::Continuation, &vec![b'b'; 300 << 10]),
        ]
        .concat(),
        frame(true, 0, OpCode::Binary, &[7; 20]),
    ];
    let bad = frame(true, 0, OpCode::Pong, &[0; 126]);
    // (connection, message index, bytes of it fed so far)
    let mut conns: Vec<(Connection, usize, usize)> = Vec::new();
    let (mut completed, mut refused) = (0, 0);
    for _ in 0..4000 {
        if conns.len() < 12 && next(4) == 0 {
            let deflate = next(2) == 0;
            let m = next(messages.len() as u64) as usize;
            let m = if !deflate && m == 1 { 0 } else { m };
            conns.push((server(&cfg, deflate), m, 0));
        }
        if conns.is_empty() {
            continue;
        }
        let i = next(conns.len() as u64) as usize;
        let now = Instant::now();
        match next(20) {
            0 => {
                conns.swap_remove(i);
            }
            1 => {
                conns[i].0.receive_eof(now);
                conns.swap_remove(i);
            }
            2 => {
                conns[i].0.receive(now, &bad);
                conns.swap_remove(i);
            }
            _ => {
                let (c, m, fed) = &mut conns[i];
                let msg = &messages[*m];
                let n = (next(256 << 10) as usize + 1).min(msg.len() - *fed);
                c.receive(now, &msg[*fed..*fed + n]);
                *fed += n;
                let evs = events(c);
                if evs.iter().any(is_budget_error) {
                    refused += 1;
                    conns.swap_remove(i);
                } else if *fed == msg.len() {
                    assert_eq!(evs.len(), 1, "{evs:?}");
                    completed += 1;
                    *fed = 0;
                }
            }
        }
        assert!(budget.in_use() <= budget.limit(), "{budget:?}");
    }
    assert!(completed > 50 && refused > 5, "{completed} {refused}");
    // Connections between messages hold nothing.
    for (c, _, fed) in &mut conns {
        if *fed == 0 {
            assert!(events(c).is_empty());
        }
    }
    let between: usize = conns.iter().filter(|(_, _, fed)| *fed > 0).count();
    if between == 0 {
        assert_eq!(budget.in_use(), 0);
    }
    drop(conns);
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn a_close_in_the_middle_of_a_message_returns_the_reservation() {
    let budget = MemoryBudget::new(64 * MIB);
    let cfg = config(&budget);
    let mut c = server(&cfg, false);
    let now = Instant::now();
    c.receive(now, &frame(false, 0, OpCode::Binary, &vec![0; 2 * MIB]));
    assert!(budget.in_use() >= MIB, "{budget:?}");
    c.receive(now, &frame(true, 0, OpCode::Close, &[0x03, 0xe8]));
    assert_eq!(budget.in_use(), 0);
    assert!(matches!(&events(&mut c)[..], [Event::Close(_)]));
}

/// Found by the hostile-clients load run: the reservation was taken only
/// when the input buffer had to grow, and the buffer grows by more than it
/// is asked for, so a message arriving in 64 KiB reads held 24 MiB against
/// 15 MiB reserved (the same happens at any size past the first step). Checked after every read, for one large frame and for a
/// message in two frames.
#[test]
fn the_reservation_covers_what_is_held_after_every_read() {
    let budget = MemoryBudget::new(256 * MIB);
    let cfg = config(&budget);
    let one = frame(true, 0, OpCode::Binary, &vec![1; 6 * MIB]);
    let two = [
        frame(false, 0, OpCode::Binary, &vec![1; 3 * MIB]),
        frame(true, 0, OpCode::Continuation, &vec![2; 3 * MIB]),
    ]
    .concat();
    for wire in [&one, &two] {
        let mut c = server(&cfg, false);
        let now = Instant::now();
        let mut fed = 0;
        // All but the last byte: the message stays unfinished.
        for piece in wire[..wire.len() - 1].chunks(64 << 10) {
            c.receive(now, piece);
            fed += piece.len();
            assert!(events(&mut c).is_empty());
            // Everything fed is held (headers aside), less the free 16 KiB.
            let held = fed.saturating_sub(16 + (16 << 10));
            assert!(
                budget.in_use() >= held,
                "{} reserved for {fed} bytes held",
                budget.in_use()
            );
        }
        c.receive(now, &wire[wire.len() - 1..]);
        assert_eq!(events(&mut c).len(), 1);
        assert_eq!(budget.in_use(), 0);
    }
}
