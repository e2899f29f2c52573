//! The peer's Close (or a protocol error) that arrives in the same read as
//! messages before it is answered only after the application has answered
//! those messages: an echo application's echoes go out before our Close.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsmachine_tokio::accept;

const LIMIT: Duration = Duration::from_secs(10);

/// A masked client frame (FIN set) with extra RSV bits `rsv` (e.g. 0x20 = RSV2).
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

/// Runs an echo application (recv → send, until `recv` says the connection
/// is over) on one connection, has a raw client send `frames` in ONE write
/// after the handshake, and returns the frames the client received.
async fn echo_app_answers(frames: Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let (l, addr) = common::listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp).await.unwrap();
        while let Some(r) = ws.recv().await {
            if let Ok(m) = r {
                ws.send(m).await.unwrap();
            }
        }
    });
    let mut tcp = common::raw_client(addr).await;
    tcp.write_all(&frames).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, tcp.read_to_end(&mut got))
        .await
        .expect("the server ends the connection")
        .unwrap();
    tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
    server_frames(&got)
}

#[tokio::test]
async fn echo_goes_out_before_the_close_echo() {
    let mut wire = client_frame(0x1, 0, b"hello");
    wire.extend(client_frame(0x8, 0, &1000u16.to_be_bytes()));
    let frames = echo_app_answers(wire).await;
    assert_eq!(
        frames,
        vec![
            (0x1, b"hello".to_vec()),
            (0x8, 1000u16.to_be_bytes().to_vec())
        ]
    );
}

#[tokio::test]
async fn echo_goes_out_before_the_close_for_a_protocol_error() {
    let mut wire = client_frame(0x1, 0, b"hello");
    wire.extend(client_frame(0x1, 0x20, b"bad")); // RSV2: no extension grants it
    let frames = echo_app_answers(wire).await;
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], (0x1, b"hello".to_vec()));
    assert_eq!(frames[1].0, 0x8);
    assert_eq!(frames[1].1[..2], 1002u16.to_be_bytes());
}
