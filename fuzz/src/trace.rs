//! `trace_parse` (feature `trace`): the conformance crate's byte-trace
//! parser on arbitrary text. A trace that parses is written back (hex and
//! base64 chunk encodings) and must re-parse to the same trace.

use wsmachine_conformance::parse_trace;

/// Runs the target.
pub fn trace_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(trace) = parse_trace(text) else {
        return;
    };
    for base64 in [false, true] {
        let written = trace.to_text(base64);
        let again = parse_trace(&written)
            .unwrap_or_else(|e| panic!("our own trace text does not parse: {e}\n{written}"));
        assert_eq!(
            again, trace,
            "trace changed through to_text(base64: {base64})"
        );
    }
}
