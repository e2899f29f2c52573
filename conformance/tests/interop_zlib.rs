//! permessage-deflate interop with Python's zlib (the C zlib most peers use):
//! what our `Compressor` sends must inflate with `zlib.decompressobj(wbits=-N)`
//! for every window N in 8..=15 (8 included: see the window-8 note in
//! `deflate.rs`), and what Python's zlib sends must inflate with our
//! `Decompressor`.
//!
//! Needs `python3` (standard library only). Without it the tests are
//! reported as ignored, with the reason, unless `WSMACHINE_REQUIRE_PEERS=1`,
//! which makes them fail (see `conformance/build.rs`). They lived in the
//! core crate until peers were detected at build time, which only this
//! crate does (a build script in core would run for every user of it).

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::BytesMut;
use wsmachine::internals::{Compressor, Decompressor};
use wsmachine::{DeflateConfig, DeflateParams, Role};

const PY: &str = r#"
import sys, zlib
mode = sys.argv[1]
for line in sys.stdin:
    f = line.split()
    bits, nct, level = int(f[0]), f[1] == "1", int(f[2])
    msgs = [bytes.fromhex(m) if m != "-" else b"" for m in f[3:]]
    out = []
    try:
        if mode == "inflate":
            d = zlib.decompressobj(wbits=-bits)
            for m in msgs:
                if nct:
                    d = zlib.decompressobj(wbits=-bits)
                out.append(d.decompress(m + b"\x00\x00\xff\xff"))
        else:
            # zlib refuses raw wbits=-8 for deflate: peers use 9 when 8 is negotiated.
            w = -max(bits, 9)
            c = zlib.compressobj(level, zlib.DEFLATED, w, 8)
            for m in msgs:
                if nct:
                    c = zlib.compressobj(level, zlib.DEFLATED, w, 8)
                data = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
                if data.endswith(b"\x00\x00\xff\xff"):
                    data = data[:-4]
                out.append(data)
        print("ok " + " ".join(o.hex() or "-" for o in out))
    except Exception as e:
        print("err " + repr(e).replace(" ", "_"))
    sys.stdout.flush()
"#;

/// Runs the helper over `lines`.
fn python(mode: &str, lines: &[String]) -> Vec<Result<Vec<Vec<u8>>, String>> {
    let child = Command::new("python3")
        .arg("-c")
        .arg(PY)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = child.unwrap_or_else(|e| panic!("python3 could not be run: {e}"));
    let input = lines.join("\n") + "\n";
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Write from a thread so a full stdout pipe cannot deadlock us.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("python3 ran");
    writer.join().unwrap().expect("wrote to python3");
    assert!(
        output.status.success(),
        "python3 failed: {:?}",
        output.status
    );
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines()
        .map(|l| match l.strip_prefix("ok ") {
            Some(rest) => Ok(rest
                .split(' ')
                .map(|h| if h == "-" { Vec::new() } else { unhex(h) })
                .collect()),
            None => Err(l.to_string()),
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".into();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn text(n: usize, seed: u32) -> Vec<u8> {
    let mut s = Vec::new();
    let mut i = seed;
    while s.len() < n {
        s.extend_from_slice(
            format!(
                "{{\"id\":{i},\"user\":\"u{}\",\"tags\":[\"a\",\"b\"]}}\n",
                i % 89
            )
            .as_bytes(),
        );
        i += 1;
    }
    s.truncate(n);
    s
}

fn random(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

/// Messages that exercise context takeover (repeats), empty messages, random
/// data, long runs, and repeats at distances 251..=512 (reachable by a 9-bit
/// window but not by an 8-bit one).
fn messages() -> Vec<Vec<u8>> {
    let period300: Vec<u8> = random(300, 1)
        .iter()
        .cycle()
        .take(20_000)
        .copied()
        .collect();
    let period500: Vec<u8> = random(500, 2)
        .iter()
        .cycle()
        .take(20_000)
        .copied()
        .collect();
    vec![
        text(3000, 1),
        text(3000, 1),
        Vec::new(),
        b"Hello".to_vec(),
        random(2000, 3),
        vec![0; 50_000],
        period300,
        period500,
        text(70_000, 7),
        b"Hello".to_vec(),
    ]
}

fn params(bits: u8, nct: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: nct,
        client_no_context_takeover: nct,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    }
}

fn config(level: u32, mem_level: u8) -> DeflateConfig {
    DeflateConfig {
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        level,
        mem_level,
        ..DeflateConfig::default()
    }
}

#[test]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 (Debian: apt-get install python3); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
fn python_zlib_inflates_what_we_compress() {
    let msgs = messages();
    let mut lines = Vec::new();
    let mut cases = Vec::new();
    for bits in 8..=15u8 {
        for nct in [false, true] {
            for (level, mem) in [(0, 1), (1, 5), (6, 8), (9, 9)] {
                for role in [Role::Client, Role::Server] {
                    let mut c = Compressor::new(&params(bits, nct), &config(level, mem), role);
                    let mut payloads = Vec::new();
                    for (i, m) in msgs.iter().enumerate() {
                        // Alternate whole messages and messages sent in 3 frames;
                        // the receiver concatenates frame payloads.
                        let mut wire = BytesMut::new();
                        if i % 2 == 0 {
                            c.compress(m, true, &mut wire);
                        } else {
                            let third = m.len() / 3;
                            c.compress(&m[..third], false, &mut wire);
                            c.compress(&m[third..2 * third], false, &mut wire);
                            c.compress(&m[2 * third..], true, &mut wire);
                        }
                        payloads.push(hex(&wire));
                    }
                    lines.push(format!("{bits} {} 0 {}", u8::from(nct), payloads.join(" ")));
                    cases.push((bits, nct, level, role));
                }
            }
        }
    }
    let results = python("inflate", &lines);
    assert_eq!(results.len(), cases.len());
    for (r, case) in results.into_iter().zip(cases) {
        let got = r.unwrap_or_else(|e| panic!("{case:?}: python failed to inflate: {e}"));
        assert_eq!(got.len(), msgs.len(), "{case:?}");
        for (i, (g, m)) in got.iter().zip(&msgs).enumerate() {
            assert!(
                g == m,
                "{case:?} message {i}: python inflated something else"
            );
        }
    }
}

#[test]
#[cfg_attr(
    missing_python,
    ignore = "python3 not found: install python3 (Debian: apt-get install python3); WSMACHINE_REQUIRE_PEERS=1 makes this a failure"
)]
fn we_inflate_what_python_zlib_compresses() {
    let msgs = messages();
    let mut lines = Vec::new();
    let mut cases = Vec::new();
    for bits in 8..=15u8 {
        for nct in [false, true] {
            for level in [1, 6, 9] {
                let hexes: Vec<String> = msgs.iter().map(|m| hex(m)).collect();
                lines.push(format!(
                    "{bits} {} {level} {}",
                    u8::from(nct),
                    hexes.join(" ")
                ));
                cases.push((bits, nct, level));
            }
        }
    }
    let results = python("deflate", &lines);
    assert_eq!(results.len(), cases.len());
    for (r, (bits, nct, level)) in results.into_iter().zip(cases) {
        let payloads = r.unwrap_or_else(|e| panic!("python failed to deflate: {e}"));
        for role in [Role::Client, Role::Server] {
            let mut d = Decompressor::new(&params(bits, nct), role);
            for (i, (p, m)) in payloads.iter().zip(&msgs).enumerate() {
                // Feed each message in up to 3 frames, the last possibly empty.
                let mut out = BytesMut::new();
                let cut1 = p.len() / 3;
                let cut2 = if i % 3 == 0 { p.len() } else { 2 * p.len() / 3 };
                for (j, frame) in [&p[..cut1], &p[cut1..cut2], &p[cut2..]].iter().enumerate() {
                    d.decompress(frame, j == 2, &mut out, m.len())
                        .unwrap_or_else(|e| {
                            panic!("bits {bits} nct {nct} level {level} msg {i}: {e}")
                        });
                }
                assert!(
                    out[..] == m[..],
                    "bits {bits} nct {nct} level {level} {role:?} msg {i}"
                );
            }
        }
    }
}
