//! The peer's Close (or a protocol error) that arrives in the same read as
//! messages before it is answered only after the application has answered
//! those messages: an echo application's echoes go out before our Close.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A masked client frame (FIN set) with extra RSV bits `rsv` (0x20 = RSV2).
fn client_frame(opcode: u8, rsv: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x80 | rsv | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// The (opcode, payload) of every unmasked server frame in `wire`.
fn server_frames(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while wire.len() >= 2 {
        assert_eq!(wire[1] & 0x80, 0, "server frames are not masked");
        let len = (wire[1] & 0x7f) as usize;
        assert!(len < 126, "short frames only in this test");
        let (head, rest) = wire.split_at(2);
        out.push((head[0] & 0x0f, rest[..len].to_vec()));
        wire = &rest[len..];
    }
    out
}

/// Runs an echo application (recv → send until `recv` says the connection
/// is over) on one connection while a blocking raw client sends `frames` in
/// ONE write after the handshake; returns the frames the client received.
fn echo_app_answers(frames: Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    util::run(10, async move {
        let (l, addr) = util::listener().await;
        let client = std::thread::spawn(move || {
            let mut tcp = TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
            tcp.write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                tcp.read_exact(&mut b).unwrap();
                head.push(b[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 101"));
            tcp.write_all(&frames).unwrap();
            let mut got = Vec::new();
            tcp.read_to_end(&mut got).unwrap();
            got
        });
        let (s, _) = l.accept().await.unwrap();
        let mut ws = wsmachine_smol::accept(s).await.unwrap();
        while let Some(r) = ws.recv().await {
            if let Ok(m) = r {
                ws.send(m).await.unwrap();
            }
        }
        let got = smol::unblock(move || client.join().unwrap()).await;
        server_frames(&got)
    })
}

#[test]
fn echo_goes_out_before_the_close_echo() {
    let mut wire = client_frame(0x1, 0, b"hello");
    wire.extend(client_frame(0x8, 0, &1000u16.to_be_bytes()));
    assert_eq!(
        echo_app_answers(wire),
        vec![
            (0x1, b"hello".to_vec()),
            (0x8, 1000u16.to_be_bytes().to_vec())
        ]
    );
}

#[test]
fn echo_goes_out_before_the_close_for_a_protocol_error() {
    let mut wire = client_frame(0x1, 0, b"hello");
    wire.extend(client_frame(0x1, 0x20, b"bad")); // RSV2: no extension grants it
    let frames = echo_app_answers(wire);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], (0x1, b"hello".to_vec()));
    assert_eq!(frames[1].0, 0x8);
    assert_eq!(frames[1].1[..2], 1002u16.to_be_bytes());
}
