//! `inflate` (the permessage-deflate decompressor on arbitrary data) and
//! `extensions` (the `Sec-WebSocket-Extensions` parser and the deflate
//! negotiation on both sides).

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use wsmachine::internals::Decompressor;
use wsmachine::{
    parse_extensions, DeflateConfig, DeflateParams, ExtensionOffer, ProtocolError, Role,
};

use crate::alloc::Peak;
use crate::setup::DeflateSetup;

/// Largest output produced by one inflate step (the decompressor's chunk).
const INFLATE_CHUNK: usize = 64 << 10;

/// Frames of compressed messages: (last frame of the message, payload).
pub(crate) type Records<'a> = Vec<(bool, &'a [u8])>;

/// Reads `inflate`'s input: a 2-byte header (bit 0: role, bits 1–3: window
/// bits − 8, bit 4: no context takeover; second byte: limit = 2^(b % 21)),
/// then records `[flags][len: u16 LE][len bytes]` (flags bit 0: last frame
/// of the message), the last one taking what is left.
pub(crate) fn inflate_records(data: &[u8]) -> Option<(u8, usize, Records<'_>)> {
    let (&flags, rest) = data.split_first()?;
    let (&lim, mut rest) = rest.split_first()?;
    let limit = 1usize << (lim % 21);
    let mut records = Vec::new();
    while let Some((&f, r)) = rest.split_first() {
        let (len, r) = match r {
            [a, b, r @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), r),
            r => (r.len(), &r[r.len()..]),
        };
        let len = len.min(r.len());
        records.push((f & 1 != 0, &r[..len]));
        rest = &r[len..];
    }
    Some((flags, limit, records))
}

/// Runs the `inflate` target.
pub fn inflate(data: &[u8]) {
    let Some((flags, limit, records)) = inflate_records(data) else {
        return;
    };
    let role = if flags & 1 != 0 {
        Role::Server
    } else {
        Role::Client
    };
    let bits = 8 + ((flags >> 1) & 7);
    let nct = flags & 16 != 0;
    let params = DeflateParams {
        server_no_context_takeover: nct,
        client_no_context_takeover: nct,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    };
    let peak = Peak::start();
    let mut d = Decompressor::new(&params, role);
    // Reference: flate2 (raw deflate, 15-bit window: accepts whatever a
    // smaller window accepts) fed the same messages and trailers.
    let mut reference = flate2::Decompress::new(false);
    let mut out = BytesMut::new();
    let mut input = Vec::new();
    // The output a primed stream may refer back into (see `release` below).
    let mut history = Vec::new();
    let window = 1usize << bits.max(9);
    for (fin, frame) in records {
        let r = d.decompress(frame, fin, &mut out, limit);
        input.extend_from_slice(frame);
        match &r {
            Ok(()) => {
                assert!(
                    out.len() <= limit,
                    "{} bytes out with a limit of {limit}",
                    out.len()
                );
            }
            Err(ProtocolError::MessageTooBig { size, limit: l }) => {
                assert_eq!(*l, limit);
                assert!(*size > limit as u64);
                assert!(
                    out.len() <= limit + 1,
                    "{} bytes kept past the limit of {limit}",
                    out.len()
                );
            }
            Err(ProtocolError::Inflate(e)) => {
                // With a 15-bit window we accept all that flate2 accepts.
                if fin && bits == 15 {
                    let mut z = std::mem::replace(&mut reference, flate2::Decompress::new(false));
                    if let Ok((got, _)) = reference_inflate(&mut z, &input, usize::MAX / 2) {
                        panic!(
                            "rejected ({e}) a message flate2 inflates to {} bytes",
                            got.len()
                        );
                    }
                }
            }
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(
            out.capacity() <= limit + 1 + INFLATE_CHUNK,
            "capacity {} for a limit of {limit}",
            out.capacity()
        );
        if r.is_err() {
            // The decompressor must not be used after an error.
            break;
        }
        if fin {
            let ended = match reference_inflate(&mut reference, &input, out.len()) {
                Ok((got, ended)) => {
                    assert_eq!(got, &out[..], "flate2 inflates to other bytes");
                    ended
                }
                Err(e) => panic!("flate2 rejects a message we inflated: {e}"),
            };
            if nct {
                // No context takeover: a fresh stream, no history.
                reference = flate2::Decompress::new(false);
                history.clear();
            } else {
                history.extend_from_slice(&out);
                let excess = history.len().saturating_sub(window);
                history.drain(..excess);
                if ended {
                    // The peer ended its stream with BFINAL but keeps its
                    // context: the next message starts a fresh stream
                    // primed with the window (RFC 7692 §7.2.3.4, §7.2.1).
                    reference = primed(&history);
                }
            }
            input.clear();
            out = BytesMut::new();
            if flags & 32 != 0 {
                // Free the stream between messages, as an idle connection
                // does. The model: a fresh flate2 stream primed with the
                // last window of output. For a peer that ends every message
                // on a block boundary (RFC 7692 §7.2.1) that is the same as
                // the uninterrupted stream (the unit tests check it); here
                // it also covers messages that end mid-block.
                if d.release() {
                    reference = primed(&history);
                }
            }
        } else if flags & 32 != 0 {
            assert!(!d.release(), "stream freed in the middle of a message");
        }
    }
    peak.check(
        (1 << 20) + 4 * (limit + INFLATE_CHUNK) + 8 * data.len(),
        "inflate",
    );
}

/// A fresh raw flate2 stream primed with `history` as its dictionary.
fn primed(history: &[u8]) -> flate2::Decompress {
    let mut z = flate2::Decompress::new(false);
    if !history.is_empty() {
        z.set_dictionary(history)
            .expect("a fresh raw stream takes a dictionary");
    }
    z
}

/// flate2's inflation of one whole message (frames concatenated), with the
/// trailer appended unless the message already ends with it; data after a
/// BFINAL block is ignored, and the second value says the stream ended
/// there (the caller starts the next one). Stops once more than `max` bytes
/// came out.
fn reference_inflate(
    z: &mut flate2::Decompress,
    input: &[u8],
    max: usize,
) -> Result<(Vec<u8>, bool), String> {
    const TRAILER: [u8; 4] = [0, 0, 0xff, 0xff];
    let mut data = input.to_vec();
    if !data.ends_with(&TRAILER) {
        data.extend_from_slice(&TRAILER);
    }
    let mut got = Vec::new();
    let mut pos = 0;
    loop {
        if got.capacity() - got.len() < 4096 {
            got.reserve(4096);
        }
        let (in0, out0) = (z.total_in(), z.total_out());
        let status = z
            .decompress_vec(&data[pos..], &mut got, flate2::FlushDecompress::None)
            .map_err(|e| e.to_string())?;
        pos += (z.total_in() - in0) as usize;
        if status == flate2::Status::StreamEnd {
            // Bytes after a BFINAL block are ignored (as zlib does, and as
            // the decompressor does for RFC 7692 §7.2.3.4's own example).
            return Ok((got, true));
        }
        let stuck = z.total_in() == in0 && z.total_out() == out0;
        let drained = pos >= data.len() && got.len() < got.capacity();
        if stuck || drained || got.len() > max {
            return Ok((got, false));
        }
    }
}

/// Runs the `extensions` target.
///
/// Input: arbitrary header text for the parser and for both sides of the
/// negotiation, and a client and a server [`DeflateSetup`] for the
/// offer → negotiate → check_response agreement property.
pub fn extensions(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(client), Ok(server)) = (
        DeflateSetup::arbitrary(&mut u),
        DeflateSetup::arbitrary(&mut u),
    ) else {
        return;
    };
    let text = String::from_utf8_lossy(u.take_rest());
    let (client, server) = (client.config(), server.config());
    agreement(&client, &server);
    let Ok(offers) = parse_extensions(&text) else {
        return;
    };
    for o in &offers {
        assert!(is_token(&o.name), "name {:?}", o.name);
        for (n, v) in &o.params {
            assert!(is_token(n), "param {n:?}");
            if let Some(v) = v {
                assert!(is_token(v), "value {v:?}");
            }
        }
    }
    // Formatting and re-parsing gives the same offers.
    let formatted = offers.iter().map(format).collect::<Vec<_>>().join(", ");
    assert_eq!(
        parse_extensions(&formatted).as_ref(),
        Ok(&offers),
        "{formatted:?}"
    );
    // The server's negotiation on arbitrary offers.
    for cfg in [&server, &DeflateConfig::default()] {
        if let Some((params, header)) = cfg.negotiate(&offers) {
            assert!((8..=15).contains(&params.server_max_window_bits));
            assert!((8..=15).contains(&params.client_max_window_bits));
            assert!(params.server_max_window_bits <= cfg.server_max_window_bits.clamp(8, 15));
            let resp = parse_extensions(&header).expect("our response parses");
            assert_eq!(resp.len(), 1);
            // A plain client reads the same parameters from the response.
            let seen = DeflateConfig::default()
                .check_response(&resp[0])
                .expect("a client accepts our response");
            assert_eq!(seen, params, "client and server disagree on {header:?}");
        }
    }
    // The client's validation of arbitrary responses.
    for o in &offers {
        if let Ok(p) = client.check_response(o) {
            assert!((8..=15).contains(&p.server_max_window_bits));
            assert!((8..=15).contains(&p.client_max_window_bits));
            if client.server_no_context_takeover {
                assert!(p.server_no_context_takeover);
            }
        }
    }
}

/// Our offer is always valid and accepted by our server, and both sides
/// derive the same parameters from the response.
fn agreement(client: &DeflateConfig, server: &DeflateConfig) {
    let offer = client.offer_header();
    let offers = parse_extensions(&offer).expect("our offer parses");
    let (params, header) = server
        .negotiate(&offers)
        .expect("our server accepts our offer");
    let resp = parse_extensions(&header).expect("our response parses");
    assert_eq!(resp.len(), 1);
    let seen = client
        .check_response(&resp[0])
        .expect("our client accepts our response");
    assert_eq!(seen, params, "offer {offer:?}, response {header:?}");
    if client.server_no_context_takeover {
        assert!(params.server_no_context_takeover);
    }
    if client.client_no_context_takeover {
        assert!(params.client_no_context_takeover);
    }
    if client.request_server_max_window_bits {
        assert!(params.server_max_window_bits <= client.server_max_window_bits.clamp(8, 15));
    }
    assert!(params.server_max_window_bits <= server.server_max_window_bits.clamp(8, 15));
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn format(o: &ExtensionOffer) -> String {
    let mut s = o.name.clone();
    for (n, v) in &o.params {
        s.push_str("; ");
        s.push_str(n);
        if let Some(v) = v {
            s.push('=');
            s.push_str(v);
        }
    }
    s
}
