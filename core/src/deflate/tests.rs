//! Helpers shared by the deflate tests, and the round trips through a
//! compressor and a decompressor together.

use bytes::BytesMut;

use super::*;
use crate::Role;

/// 15-bit windows, and streams that are the connection's own (released
/// only when asked): what `release`'s tests need.
pub(super) fn cfg15() -> DeflateConfig {
    DeflateConfig {
        server_max_window_bits: 15,
        client_max_window_bits: 15,
        release_after_idle: Some(std::time::Duration::from_secs(1)),
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

/// One connection's direction under test: a compressor and a
/// decompressor whose streams come from the thread's pool with context
/// takeover (as `DeflateConfig::default()` makes them), and two references
/// that owe nothing to the pool: a dedicated compressor of the same
/// settings, and zlib (flate2) inflating with the connection's context.
struct Pooled {
    c: Compressor,
    d: Decompressor,
    c_ref: Compressor,
    zlib: flate2::Decompress,
}

fn pooled_pairs(p: &DeflateParams, bits: u8, role: Role, n: usize) -> Vec<Pooled> {
    let peer = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let pooled = DeflateConfig {
        server_max_window_bits: bits,
        client_max_window_bits: bits,
        ..DeflateConfig::default()
    };
    let dedicated = DeflateConfig {
        server_max_window_bits: bits,
        client_max_window_bits: bits,
        ..cfg15()
    };
    (0..n)
        .map(|_| {
            let mut d = Decompressor::new(p, peer);
            d.pool_between_messages();
            Pooled {
                c: Compressor::new(p, &pooled, role),
                d,
                c_ref: Compressor::new(p, &dedicated, role),
                zlib: flate2::Decompress::new(false),
            }
        })
        .collect()
}

/// zlib's reading of one message with the context of those before it.
fn zlib_inflate(z: &mut flate2::Decompress, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut input = frames.concat();
    input.extend_from_slice(&TRAILER);
    let mut out = Vec::with_capacity(1 << 16);
    z.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .expect("zlib inflates it");
    out
}

/// Sends message `i` of `related_messages` on every connection in turn:
/// what the pooled compressor sends must read right to zlib, and what the
/// dedicated one sends must read right to the pooled decompressor, with
/// context takeover (the pooled wire within a few bytes of the dedicated
/// stream's). Returns whether every message was byte for byte the
/// dedicated stream's.
fn send_round(conns: &mut [Pooled], i: usize, ctx: &str) -> bool {
    let m = &related_messages()[i];
    let pieces = [1, 3][i % 2];
    let mut identical = true;
    for (k, x) in conns.iter_mut().enumerate() {
        let reference = compress_msg(&mut x.c_ref, m, pieces);
        let frames = compress_msg(&mut x.c, m, pieces);
        assert!(
            zlib_inflate(&mut x.zlib, &frames) == m[..],
            "{ctx} connection {k} msg {i}: zlib reads another message"
        );
        let mut out = BytesMut::new();
        for (j, f) in reference.iter().enumerate() {
            x.d.decompress(f, j + 1 == reference.len(), &mut out, m.len())
                .unwrap();
        }
        assert!(out[..] == m[..], "{ctx} connection {k} msg {i}");
        let (wire, reference) = (frames.concat(), reference.concat());
        assert!(
            wire.len() <= reference.len() + 16,
            "{ctx} connection {k} msg {i}: {} vs {}",
            wire.len(),
            reference.len()
        );
        identical &= wire == reference;
        assert!(!x.c.is_allocated() && !x.d.is_allocated(), "{ctx}: held");
    }
    identical
}

#[test]
fn pooled_streams_keep_context_takeover_across_interleaved_connections() {
    // More connections than a thread parks streams for: streams are taken
    // from one connection, reset and primed with another's window.
    for bits in [8, 9, 12, 15] {
        for role in [Role::Client, Role::Server] {
            pool::clear_thread_pool();
            let p = params(false, false, bits, bits);
            let mut pairs = pooled_pairs(&p, bits, role, pool::FREE_PER_CLASS + 3);
            for i in 0..related_messages().len() {
                send_round(&mut pairs, i, &format!("bits {bits} {role:?}"));
            }
            let (deflate, inflate) = pool::thread_pool_len();
            assert!(deflate <= pool::FREE_PER_CLASS && inflate <= pool::FREE_PER_CLASS);
            assert!(pairs
                .iter()
                .all(|x| x.c.history_bytes() > 0 && x.d.history_bytes() > 0));
        }
    }
}

#[test]
fn a_connection_alone_on_its_thread_goes_on_with_its_own_streams() {
    // Nobody else takes the parked streams, so each message continues
    // them as a dedicated stream would: the same bytes on the wire.
    for bits in [9, 12, 15] {
        pool::clear_thread_pool();
        let p = params(false, false, bits, bits);
        let mut pairs = pooled_pairs(&p, bits, Role::Server, 1);
        for i in 0..related_messages().len() {
            assert!(
                send_round(&mut pairs, i, &format!("bits {bits}")),
                "bits {bits} msg {i}: not the dedicated stream's bytes"
            );
            assert_eq!(pool::thread_pool_len(), (1, 1));
        }
        // Gone with its connection: the parked streams are reset for
        // anyone (a later message on them starts from an empty window).
        drop(pairs);
        let reused = &mut pooled_pairs(&p, bits, Role::Server, 1)[0];
        let m = text(3000, 1);
        let mut wire = BytesMut::new();
        reused.c.compress(&m, true, &mut wire);
        assert_eq!(pool::thread_pool_len(), (1, 1));
    }
}

#[test]
fn a_pooled_connection_moves_between_threads_with_its_context() {
    pool::clear_thread_pool();
    let p = params(false, false, 12, 12);
    let mut pairs = pooled_pairs(&p, 12, Role::Server, 2);
    let n = related_messages().len();
    for i in 0..n {
        if i % 2 == 0 {
            send_round(&mut pairs, i, "here");
        } else {
            // Another thread: what this one parked is not there, so the
            // streams there are primed from the windows.
            pairs = std::thread::spawn(move || {
                send_round(&mut pairs, i, "there");
                pairs
            })
            .join()
            .unwrap();
        }
    }
}
