//! The input both codec benchmarks decode (`frames.rs` and `peers.rs`).

use bytes::BytesMut;
use wsmachine::internals::FrameHeader;
use wsmachine::OpCode;

/// Back-to-back frames totalling about 4 MiB (at least 8 frames).
pub(crate) fn frames(size: usize, masked: bool, opcode: OpCode) -> (Vec<u8>, usize) {
    let count = ((4 << 20) / size).max(8);
    let payload: Vec<u8> = match opcode {
        OpCode::Text => "héllo wörld, ".bytes().cycle().take(size).collect(),
        _ => (0..size).map(|i| i as u8).collect(),
    };
    let mut out = BytesMut::new();
    for i in 0..count {
        let mask = masked.then(|| (i as u32).to_be_bytes());
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len: size as u64,
        }
        .encode_frame(&payload, &mut out);
    }
    (out.to_vec(), count)
}
