//! Parser and writer: round trips, error positions, and no panic on
//! arbitrary input.

use std::path::Path;

use wsmachine_conformance::trace::{Action, Expected, Item, Kind, Payload};
use wsmachine_conformance::{parse_trace, Trace};

fn sample() -> Trace {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/tungstenite/client-echo.trace"),
    )
    .expect("sample trace");
    parse_trace(&text).expect("parses")
}

#[test]
fn round_trip_every_item_kind_hex_and_base64() {
    let mut t = sample();
    t.header.extra.push(("x-note".into(), "kept".into()));
    t.header
        .request
        .as_mut()
        .expect("client")
        .headers
        .push(("Authorization".into(), "Bearer x".into()));
    t.header.request.as_mut().expect("client").origin = Some("http://o".into());
    t.header.request.as_mut().expect("client").subprotocols = vec!["a".into(), "b.v2".into()];
    t.items.extend([
        Item::Expect(Expected::Text(Payload::Full(
            "quote \" back\\slash\n\u{1}é😀".as_bytes().to_vec(),
        ))),
        Item::Expect(Expected::Text(Payload::of(&[b'a'; 300]))),
        Item::Expect(Expected::Binary(Payload::Full(vec![]))),
        Item::Expect(Expected::Binary(Payload::of(&[7; 1000]))),
        Item::Expect(Expected::Fragment {
            kind: Kind::Binary,
            first: true,
            last: false,
            data: Payload::Full(vec![1, 2]),
        }),
        Item::Expect(Expected::Fragment {
            kind: Kind::Text,
            first: false,
            last: true,
            data: Payload::Full(vec![]),
        }),
        Item::Expect(Expected::Ping(vec![])),
        Item::Expect(Expected::Pong(vec![0xff])),
        Item::Expect(Expected::Close(1005, String::new())),
        Item::Expect(Expected::Error("protocol".into(), "InvalidUtf8".into())),
        Item::Expect(Expected::Error("eof".into(), String::new())),
        Item::Expect(Expected::Connected(101)),
        Item::Expect(Expected::Request("/a?b=\"c\"".into())),
        Item::Action(Action::Accept {
            compression: false,
            subprotocol: Some("chat v2".into()),
        }),
        Item::Action(Action::Accept {
            compression: true,
            subprotocol: None,
        }),
        Item::Action(Action::Reject(403)),
        Item::Action(Action::SendText(String::new())),
        Item::Action(Action::SendBinary(vec![])),
        Item::Action(Action::Echo),
        Item::Action(Action::Fragment {
            kind: Kind::Text,
            last: true,
            data: vec![],
        }),
        Item::Action(Action::Ping(vec![1])),
        Item::Action(Action::Pong(vec![])),
        Item::Action(Action::Close(4000, "ü".into())),
        Item::Action(Action::Timeout(5003)),
        Item::Recv(vec![0; 100]),
        Item::RecvEof,
        Item::Sent(b"GET / HTTP/1.1\r\n".to_vec()),
        Item::SentEof,
    ]);
    for base64 in [false, true] {
        let text = t.to_text(base64);
        let back = parse_trace(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, t, "base64={base64}");
    }
}

#[test]
fn errors_name_the_line() {
    let text = sample().to_string();
    let lines: Vec<&str> = text.lines().collect();
    // Break the first data line of the body.
    let n = lines
        .iter()
        .position(|l| l.starts_with("  "))
        .expect("data line");
    let mut broken = lines.clone();
    broken[n] = "  zz";
    let e = parse_trace(&broken.join("\n")).expect_err("bad hex");
    assert_eq!(e.line, n + 1);
    // A chunk with fewer bytes than declared.
    let mut short = lines.clone();
    short.remove(n);
    let e = parse_trace(&short.join("\n")).expect_err("short chunk");
    assert!(e.message.contains("declares"), "{e}");
    // Unknown marker.
    let e = parse_trace(&format!("{text}? what\n")).expect_err("marker");
    assert_eq!(e.line, lines.len() + 1);
    // Unknown version, missing header terminator.
    let e = parse_trace(&text.replacen("wsmachine-trace: 2", "wsmachine-trace: 3", 1))
        .expect_err("version 3");
    assert!(e.message.contains("unsupported format version 3"), "{e}");
    assert!(parse_trace("wsmachine-trace: 2\nrole: server\n").is_err());
    // A verdict is `ok` or `fail`, then KEY=VALUE words.
    for bad in [
        "verdict: maybe",
        "verdict: ok peer-exit",
        "verdict: fail =1",
        "sent: some",
    ] {
        let t = text.replacen("---\n", &format!("{bad}\n---\n"), 1);
        let e = parse_trace(&t).expect_err(bad);
        assert!(
            e.message.contains("verdict") || e.message.contains("sent"),
            "{bad}: {e}"
        );
    }
    assert!(parse_trace("").is_err());
}

/// xorshift64*: a small deterministic generator for the mutation test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn parser_never_panics_on_mutated_or_random_input() {
    let base = sample().to_text(false);
    let b64 = sample().to_text(true);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet: Vec<char> =
        "<>=!# \n\t:-\"\\{}u0123456789abcdefxyz=;eofbase64textbinary\u{e9}\u{1F600}"
            .chars()
            .collect();
    for i in 0..20_000 {
        let src = if i % 2 == 0 { &base } else { &b64 };
        let mut chars: Vec<char> = src.chars().collect();
        match i % 4 {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(chars.len());
                    chars[at] = alphabet[rng.below(alphabet.len())];
                }
            }
            1 => chars.truncate(rng.below(chars.len())),
            2 => {
                let at = rng.below(chars.len());
                let len = rng.below(40).min(chars.len() - at);
                chars.drain(at..at + len);
            }
            _ => {
                let head = rng.below(600).min(chars.len());
                chars.truncate(head);
                for _ in 0..rng.below(200) {
                    chars.push(alphabet[rng.below(alphabet.len())]);
                }
            }
        }
        let s: String = chars.into_iter().collect();
        let _ = parse_trace(&s);
    }
    for _ in 0..2_000 {
        let s: String = (0..rng.below(300))
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let _ = parse_trace(&format!("wsmachine-trace: 2\n{s}"));
        let _ = parse_trace(&s);
    }
}
