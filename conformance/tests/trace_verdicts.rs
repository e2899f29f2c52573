//! The `verdict:` and `sent: stream` header lines: replay refuses a trace
//! the peer rejected or that has no verdict, and a stream (adapter) trace is
//! checked on its concatenated, unmasked sent bytes.

use std::path::Path;

use wsmachine_conformance::trace::{Item, SentCheck, Verdict};
use wsmachine_conformance::{check_verdict, parse_trace, replay, replay_both, Feed, Trace};

fn load(rel: &str) -> Trace {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("traces")
            .join(rel),
    )
    .expect("corpus trace exists");
    parse_trace(&text).expect("corpus trace parses")
}

#[test]
fn verdict_line_round_trips_and_cleans_values() {
    let mut t = load("python-websockets/server-echo.trace");
    let v = Verdict::new(
        false,
        vec![
            ("peer-exit".into(), "1".into()),
            ("peer-failed".into(), "echo.text: got 'x'".into()),
            ("empty".into(), String::new()),
        ],
    );
    // Whitespace and `=` in values would not parse back: they become `_`.
    assert_eq!(
        v.to_string(),
        "fail peer-exit=1 peer-failed=echo.text:_got_'x' empty=-"
    );
    t.header.verdict = Some(v.clone());
    let text = t.to_string();
    assert!(text.contains("\nverdict: fail peer-exit=1 "), "{text}");
    let back = parse_trace(&text).expect("parses");
    assert_eq!(back.header.verdict, Some(v));
    assert_eq!(back, t);
}

#[test]
fn replay_refuses_a_trace_the_peer_rejected() {
    let mut t = load("python-websockets/server-echo.trace");
    // The bytes and events replay: only the verdict makes it unacceptable.
    replay(&t, Feed::Whole).expect("bytes and events replay");
    t.header.verdict = Some(Verdict::new(
        false,
        vec![
            ("peer-exit".into(), "1".into()),
            ("peer-close".into(), "1006".into()),
        ],
    ));
    let e = replay_both(&t).expect_err("a rejected session is no evidence");
    assert!(e.contains("peer rejected"), "{e}");
    assert!(e.contains("peer-close=1006"), "{e}");
    // Through the text form too, as the corpus test reads it.
    let e = replay_both(&parse_trace(&t.to_string()).expect("parses")).expect_err("rejected");
    assert!(e.contains("verdict: fail"), "{e}");
}

#[test]
fn replay_refuses_a_trace_without_verdict() {
    let mut t = load("node-ws/client-echo.trace");
    assert!(
        check_verdict(&t).is_ok(),
        "the corpus trace has an ok verdict"
    );
    t.header.verdict = None;
    let e = replay_both(&t).expect_err("no verdict");
    assert!(e.contains("no `verdict:`"), "{e}");
}

#[test]
fn a_version_1_trace_reads_but_is_refused_for_its_missing_verdict() {
    // Version 1 traces were saved whatever the peer concluded.
    let mut t = load("tungstenite/server-echo.trace");
    t.header.verdict = None;
    let text = t
        .to_string()
        .replacen("wsmachine-trace: 2", "wsmachine-trace: 1", 1);
    let old = parse_trace(&text).expect("version 1 still parses");
    assert_eq!(old.header.version, 1);
    replay(&old, Feed::Whole).expect("its bytes and events replay");
    let e = replay_both(&old).expect_err("no verdict");
    assert!(e.contains("no `verdict:`"), "{e}");
}

/// The client adapter traces' sent frames: (offset of the masking key,
/// payload range) for each masked frame after the HTTP head.
fn masked_frames(stream: &[u8]) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut at = stream
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("handshake")
        + 4;
    let mut out = Vec::new();
    while at + 2 <= stream.len() {
        let len7 = usize::from(stream[at + 1] & 0x7f);
        let (ext, len) = match len7 {
            126 => (
                2,
                usize::from(u16::from_be_bytes([stream[at + 2], stream[at + 3]])),
            ),
            127 => panic!("no 64-bit lengths in the echo scenario"),
            n => (0, n),
        };
        assert!(stream[at + 1] & 0x80 != 0, "a client frame is masked");
        let key = at + 2 + ext;
        out.push((key, key + 4..key + 4 + len));
        at = key + 4 + len;
    }
    out
}

/// Rewrites the `>` chunks of `t` from one concatenated stream, keeping
/// the chunk sizes.
fn set_sent(t: &mut Trace, stream: &[u8]) {
    let mut at = 0;
    for it in &mut t.items {
        if let Item::Sent(d) = it {
            let n = d.len();
            d.copy_from_slice(&stream[at..at + n]);
            at += n;
        }
    }
}

#[test]
fn stream_trace_ignores_masking_keys_but_not_payloads() {
    let t = load("node-ws/tokio-client-echo-deflate.trace");
    assert_eq!(t.header.sent, SentCheck::Stream);
    replay_both(&t).expect("the adapter trace replays");
    let sent: Vec<u8> = t
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Sent(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let frames = masked_frames(&sent);
    assert!(frames.len() >= 5, "text, binary, text, ping, close");
    // Another masking key for every frame, payloads re-masked with it: the
    // same frames, as a different random mask source would have sent them.
    let mut remasked = sent.clone();
    for (n, (key, payload)) in frames.iter().enumerate() {
        let old: Vec<u8> = sent[*key..*key + 4].to_vec();
        let new = [0x11, 0x22, 0x33, u8::try_from(n).unwrap_or(0)];
        remasked[*key..*key + 4].copy_from_slice(&new);
        for (i, p) in payload.clone().enumerate() {
            remasked[p] = sent[p] ^ old[i % 4] ^ new[i % 4];
        }
    }
    assert_ne!(remasked, sent);
    let mut t2 = t.clone();
    set_sent(&mut t2, &remasked);
    replay(&t2, Feed::Whole).expect("masking keys are not compared");
    replay(&t2, Feed::ByteByByte).expect("masking keys are not compared");
    // One payload byte changed: the unmasked frames differ.
    let (_, payload) = &frames[0];
    let mut wrong = sent.clone();
    wrong[payload.start] ^= 0x01;
    let mut t3 = t.clone();
    set_sent(&mut t3, &wrong);
    let e = replay(&t3, Feed::Whole).expect_err("a changed payload must fail");
    assert!(e.to_string().contains("masking keys removed"), "{e}");
}

#[test]
fn stream_trace_ignores_chunk_boundaries_but_not_bytes() {
    let t = load("python-websockets/tokio-server-echo.trace");
    assert_eq!(t.header.sent, SentCheck::Stream);
    // All sent bytes in one chunk at the end, as if the adapter had
    // batched every write: still the same stream.
    let mut all = Vec::new();
    let mut t2 = t.clone();
    t2.items.retain(|i| match i {
        Item::Sent(d) => {
            all.extend_from_slice(d);
            false
        }
        _ => true,
    });
    t2.items.push(Item::Sent(all.clone()));
    replay_both(&t2).expect("chunk boundaries are not compared");
    // A missing last byte is.
    all.pop();
    if let Some(Item::Sent(d)) = t2.items.last_mut() {
        *d = all;
    }
    let e = replay(&t2, Feed::Whole).expect_err("a missing byte must fail");
    assert!(e.to_string().contains("concatenated sent bytes"), "{e}");
}
