//! Helpers shared by the deflate tests, and the round trips through a
//! compressor and a decompressor together.

use bytes::BytesMut;

use super::*;
use crate::Role;

pub(super) fn cfg15() -> DeflateConfig {
    DeflateConfig {
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        ..DeflateConfig::default()
    }
}

pub(super) fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    }
}

pub(super) fn compress_msg(c: &mut Compressor, msg: &[u8], pieces: usize) -> Vec<Vec<u8>> {
    // Split into `pieces` frames (the last one may be empty).
    let step = msg.len() / pieces.max(1) + 1;
    let chunks: Vec<&[u8]> = if pieces <= 1 {
        vec![msg]
    } else {
        let mut v: Vec<&[u8]> = msg.chunks(step).collect();
        v.push(&[]);
        v
    };
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut out = BytesMut::new();
            c.compress(chunk, i + 1 == n, &mut out);
            out.to_vec()
        })
        .collect()
}

pub(super) fn text(n: usize, seed: u32) -> Vec<u8> {
    let mut s = Vec::new();
    let mut i = seed;
    while s.len() < n {
        s.extend_from_slice(
            format!(
                "{{\"id\":{i},\"name\":\"user{}\",\"ok\":{}}}\n",
                i % 97,
                i % 3 == 0
            )
            .as_bytes(),
        );
        i += 1;
    }
    s.truncate(n);
    s
}

pub(super) fn random(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}

/// Every window 8..=15 in both roles, context takeover on and off, many
/// messages (some repeated, to exercise takeover), whole and fragmented.
#[test]
fn round_trip_all_windows_roles_and_takeover() {
    let msgs: Vec<Vec<u8>> = vec![
        text(5000, 1),
        text(5000, 1),
        b"".to_vec(),
        random(3000, 7),
        vec![0; 70_000],
        text(40_000, 3),
        b"x".to_vec(),
        text(300, 9),
    ];
    for bits in 8..=15u8 {
        for nct in [false, true] {
            for role in [Role::Client, Role::Server] {
                let p = params(nct, nct, bits, bits);
                let peer = match role {
                    Role::Client => Role::Server,
                    Role::Server => Role::Client,
                };
                let mut c = Compressor::new(&p, &cfg15(), role);
                let mut d = Decompressor::new(&p, peer);
                for (i, m) in msgs.iter().enumerate() {
                    let pieces = [1, 3, 7][i % 3];
                    let frames = compress_msg(&mut c, m, pieces);
                    let mut out = BytesMut::new();
                    for (j, f) in frames.iter().enumerate() {
                        d.decompress(f, j + 1 == frames.len(), &mut out, m.len())
                            .unwrap();
                    }
                    assert!(out[..] == m[..], "bits {bits} nct {nct} {role:?} msg {i}");
                }
            }
        }
    }
}

/// Messages that each refer back into the ones before (same records,
/// new ids), so a stream without the right window would mis-inflate.
fn related_messages() -> Vec<Vec<u8>> {
    (0..8).map(|i| text(700 + 300 * i, 40 + i as u32)).collect()
}

#[test]
fn released_streams_resume_with_their_window_for_every_setting() {
    for bits in 8..=15u8 {
        for nct in [false, true] {
            for role in [Role::Client, Role::Server] {
                let p = params(nct, nct, bits, bits);
                let peer = match role {
                    Role::Client => Role::Server,
                    Role::Server => Role::Client,
                };
                let cfg = DeflateConfig {
                    server_max_window_bits: bits,
                    client_max_window_bits: bits,
                    ..cfg15()
                };
                // A continuous pair as the reference, and a pair that
                // releases both streams between messages.
                let mut c_ref = Compressor::new(&p, &cfg, role);
                let mut c = Compressor::new(&p, &cfg, role);
                let mut d = Decompressor::new(&p, peer);
                for (i, m) in related_messages().iter().enumerate() {
                    let pieces = [1, 3][i % 2];
                    let reference = compress_msg(&mut c_ref, m, pieces).concat();
                    let frames = compress_msg(&mut c, m, pieces);
                    let mut out = BytesMut::new();
                    for (j, f) in frames.iter().enumerate() {
                        d.decompress(f, j + 1 == frames.len(), &mut out, m.len())
                            .unwrap();
                    }
                    let ctx = format!("bits {bits} nct {nct} {role:?} msg {i}");
                    assert!(out[..] == m[..], "{ctx}");
                    // A primed stream finds the same back-references:
                    // within a few bytes of the continuous stream (block
                    // boundaries may differ), and far below a cold start.
                    let wire = frames.concat().len();
                    assert!(
                        wire <= reference.len() + 16,
                        "{ctx}: {wire} vs {}",
                        reference.len()
                    );
                    // Without context takeover the streams already went
                    // back to the pool at the message's end.
                    assert_eq!(c.release(), !nct, "{ctx}: compressor stream freed");
                    assert_eq!(d.release(), !nct, "{ctx}: decompressor stream freed");
                    assert!(!c.is_allocated() && !d.is_allocated());
                }
            }
        }
    }
}

#[test]
fn streams_are_not_released_mid_message() {
    let p = params(false, false, 15, 15);
    let mut c = Compressor::new(&p, &cfg15(), Role::Client);
    let mut d = Decompressor::new(&p, Role::Server);
    let m = text(3000, 2);
    let mut wire = BytesMut::new();
    c.compress(&m[..1000], false, &mut wire);
    assert!(!c.release(), "compressor freed in the middle of a message");
    let first = wire.split().freeze();
    c.compress(&m[1000..], true, &mut wire);
    let mut out = BytesMut::new();
    d.decompress(&first, false, &mut out, m.len()).unwrap();
    assert!(
        !d.release(),
        "decompressor freed in the middle of a message"
    );
    d.decompress(&wire, true, &mut out, m.len()).unwrap();
    assert_eq!(&out[..], &m[..]);
    assert!(c.release() && d.release());
}

#[test]
fn no_context_takeover_keeps_no_history() {
    let p = params(true, true, 15, 15);
    let mut c = Compressor::new(&p, &cfg15(), Role::Client);
    let mut d = Decompressor::new(&p, Role::Server);
    for i in 0..3 {
        let m = text(5000, i);
        let frames = compress_msg(&mut c, &m, 1);
        let mut out = BytesMut::new();
        d.decompress(&frames[0], true, &mut out, m.len()).unwrap();
        assert_eq!(&out[..], &m[..]);
        // Nothing held between messages: the streams are the thread's.
        assert!(!c.is_allocated() && !d.is_allocated());
        assert!(!c.release() && !d.release());
    }
    assert_eq!((c.history_bytes(), d.history_bytes()), (0, 0));
}
