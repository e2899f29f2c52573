//! The stream tees record reads, writes, end of stream and shutdown as chunks.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsmachine_conformance::trace::Item;
use wsmachine_conformance::{FuturesRecorder, Recorder, TokioRecorder};

#[tokio::test]
async fn tokio_recorder_keeps_chunk_boundaries() {
    let (a, mut b) = tokio::io::duplex(64);
    let rec = Recorder::new();
    let mut s = TokioRecorder::new(a, rec.clone());
    s.write_all(b"abc").await.expect("write");
    b.write_all(b"xy").await.expect("peer write");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"xy");
    drop(b);
    assert_eq!(s.read(&mut buf).await.expect("eof"), 0);
    s.shutdown().await.expect("shutdown");
    assert_eq!(
        rec.take(),
        vec![
            Item::Sent(b"abc".to_vec()),
            Item::Recv(b"xy".to_vec()),
            Item::RecvEof,
            Item::SentEof
        ]
    );
}

#[tokio::test]
async fn futures_recorder_keeps_chunk_boundaries() {
    use futures_util::io::{AsyncReadExt as _, AsyncWriteExt as _, Cursor};
    let rec = Recorder::new();
    let mut s = FuturesRecorder::new(Cursor::new(b"hello".to_vec()), rec.clone());
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).await.expect("read");
    s.write_all(b"!").await.expect("write");
    s.close().await.expect("close");
    assert_eq!(
        rec.take(),
        vec![
            Item::Recv(b"hel".to_vec()),
            Item::Sent(b"!".to_vec()),
            Item::SentEof
        ]
    );
    assert!(Recorder::disabled().take().is_empty());
}
