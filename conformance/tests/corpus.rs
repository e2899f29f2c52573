//! Replays every trace of the corpus (`conformance/traces/**.trace`), whole
//! and byte by byte, after checking that the peer's recorded verdict is
//! `ok`, and checks that a corrupted trace fails readably.

use std::path::{Path, PathBuf};

use wsmachine_conformance::trace::{Item, SentCheck};
use wsmachine_conformance::{parse_trace, replay, replay_both, Feed, Trace};

fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("traces")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "trace") {
            out.push(p);
        }
    }
}

fn corpus() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    collect(&traces_dir(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect()
}

fn load(rel: &str) -> Trace {
    let text = std::fs::read_to_string(traces_dir().join(rel)).expect("corpus trace exists");
    parse_trace(&text).expect("corpus trace parses")
}

#[test]
fn every_corpus_trace_replays_whole_and_byte_by_byte() {
    let corpus = corpus();
    assert!(
        corpus.len() >= 20,
        "corpus too small: {} traces",
        corpus.len()
    );
    let mut failures = Vec::new();
    for (path, text) in &corpus {
        let r = parse_trace(text)
            .map_err(|e| e.to_string())
            .and_then(|t| replay_both(&t));
        if let Err(e) = r {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    println!("replayed {} traces", corpus.len());
    assert!(
        failures.is_empty(),
        "{} traces fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_covers_every_peer_in_both_roles() {
    for peer in ["python-websockets", "node-ws", "tungstenite", "autobahn"] {
        for role in ["client-", "server-"] {
            let n = corpus()
                .iter()
                .filter(|(p, _)| {
                    p.parent()
                        .and_then(|d| d.file_name())
                        .is_some_and(|d| d == peer)
                        && p.file_name()
                            .and_then(|f| f.to_str())
                            .is_some_and(|f| f.starts_with(role))
                })
                .count();
            assert!(n > 0, "no {role}* traces for {peer}");
        }
    }
    // Through the adapters' WebSocket types too, both roles, with and
    // without compression.
    for peer in ["python-websockets", "node-ws"] {
        for adapter in ["tokio", "smol"] {
            for role in ["client", "server"] {
                for deflate in ["", "-deflate"] {
                    let rel = format!("{peer}/{adapter}-{role}-echo{deflate}.trace");
                    let t = load(&rel);
                    assert!(
                        t.header
                            .recorded_by
                            .starts_with(&format!("wsmachine-{adapter} WebSocket")),
                        "{rel}: recorded-by {:?}",
                        t.header.recorded_by
                    );
                }
            }
        }
    }
    // A browser is only ever a client: its traces are our server role.
    let chromium = corpus()
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains("/chromium/server-"))
        .count();
    assert!(chromium > 0, "no server-* traces for chromium");
}

#[test]
fn adapter_traces_and_only_they_are_checked_as_streams() {
    // Exact chunk-by-chunk checks for the driver, which writes what the core
    // produced as it produced it; stream checks only where an adapter chose
    // the chunking.
    for (path, text) in corpus() {
        let t = parse_trace(&text).expect("parses");
        let adapter = t.header.recorded_by.starts_with("wsmachine-tokio ")
            || t.header.recorded_by.starts_with("wsmachine-smol ");
        let want = if adapter {
            SentCheck::Stream
        } else {
            SentCheck::Exact
        };
        assert_eq!(t.header.sent, want, "{}", path.display());
    }
}

#[test]
fn corpus_files_are_in_canonical_form() {
    // What the writer produces is what is committed: regeneration diffs only
    // show real changes.
    for (path, text) in corpus() {
        let t = parse_trace(&text).expect("parses");
        assert_eq!(
            t.to_string(),
            text,
            "{} is not in canonical form",
            path.display()
        );
    }
}

#[test]
fn corrupted_sent_chunk_fails_with_a_readable_diff() {
    let mut t = load("tungstenite/client-echo.trace");
    // Flip one byte in the third sent chunk (a masked frame).
    let (idx, chunk) = t
        .items
        .iter_mut()
        .enumerate()
        .filter_map(|(i, it)| match it {
            Item::Sent(d) => Some((i, d)),
            _ => None,
        })
        .nth(2)
        .expect("three sent chunks");
    let at = chunk.len() / 2;
    chunk[at] ^= 0x20;
    let err = replay(&t, Feed::Whole).expect_err("corrupted trace must fail");
    let msg = err.to_string();
    println!("{msg}");
    assert_eq!(err.item, idx);
    assert!(msg.contains("sent chunk 2"), "{msg}");
    assert!(
        msg.contains(&format!("differs at byte offset {at}")),
        "{msg}"
    );
    assert!(
        msg.contains("expected:") && msg.contains("actual:"),
        "{msg}"
    );
    // Byte by byte, the concatenation is checked at the end.
    let err = replay(&t, Feed::ByteByByte).expect_err("corrupted trace must fail byte by byte");
    assert!(err.to_string().contains("sent chunk 2"), "{err}");
}

#[test]
fn missing_event_and_extra_bytes_are_reported() {
    let t = load("tungstenite/server-echo.trace");
    // Drop the first expected text event.
    let mut t1 = t.clone();
    let i = t1
        .items
        .iter()
        .position(|it| matches!(it, Item::Expect(wsmachine_conformance::Expected::Text(_))))
        .expect("a text event");
    t1.items.remove(i);
    let e = replay(&t1, Feed::Whole).expect_err("must fail");
    assert!(e.to_string().contains("text"), "{e}");
    // Drop the last sent chunk: the core sends bytes the trace lacks.
    let mut t2 = t.clone();
    let j = t2
        .items
        .iter()
        .rposition(|it| matches!(it, Item::Sent(_)))
        .expect("a sent chunk");
    t2.items.remove(j);
    let e = replay(&t2, Feed::Whole).expect_err("must fail");
    assert!(e.to_string().contains("bytes"), "{e}");
}
