//! Fuzz targets for wsmachine.
//!
//! Each target is a plain function over `&[u8]`, called both by a libFuzzer
//! binary in `fuzz_targets/` (`cargo fuzz run --features libfuzzer <target>`,
//! see `fuzz/README.md`) and by `tests/regressions.rs`, which replays the
//! committed corpus in `regressions/<target>/` under plain `cargo test`.
//!
//! The targets check properties, not only the absence of panics: the
//! connection invariants of the private `check` module (see its
//! documentation), bounds on peak heap use from the configured limits
//! ([`alloc`]), chunking independence of every incremental parser, and
//! equality for round trips.

pub mod alloc;
mod check;
mod connection;
mod deflate;
mod frame;
mod handshake;
mod http_request;
mod round_trip;
pub mod seeds;
mod setup;
#[cfg(feature = "trace")]
mod trace;

pub use connection::{connection, ConnInput};
pub use deflate::{extensions, inflate};
pub use frame::frame_decode;
pub use handshake::{client_handshake, server_handshake, CLIENT_ACCEPT, CLIENT_KEY};
pub use http_request::http_request;
pub use round_trip::{round_trip, RtInput};
pub use setup::DeflateSetup;
#[cfg(feature = "trace")]
pub use trace::trace_parse;

/// A target: a function over the fuzzer's bytes.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary and regression folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_decode", frame_decode),
    ("server_handshake", server_handshake),
    ("client_handshake", client_handshake),
    ("http_request", http_request),
    ("connection", connection),
    ("inflate", inflate),
    ("round_trip", round_trip),
    ("extensions", extensions),
    #[cfg(feature = "trace")]
    ("trace_parse", trace_parse),
];
