//! Configuration choices shared by the structured targets.

use arbitrary::Arbitrary;
use wsmachine::{DeflateConfig, DeflateParams};

/// permessage-deflate settings drawn by the fuzzer. Window bits and levels
/// are taken raw (`u8`), so out-of-range values exercise the clamping too.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct DeflateSetup {
    /// `server_no_context_takeover`.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits` (mostly 8–15).
    pub server_bits: u8,
    /// `client_max_window_bits` (mostly 8–15).
    pub client_bits: u8,
    /// Compression level.
    pub level: u8,
    /// zlib memLevel.
    pub mem_level: u8,
    /// `min_compress_size`.
    pub min_compress_size: u8,
    /// Client: request `server_max_window_bits`.
    pub request_server_max_window_bits: bool,
}

/// Maps a raw byte to a window size, mostly in 8–15 and sometimes outside.
fn bits(raw: u8) -> u8 {
    match raw {
        0..=239 => 8 + raw % 8,
        other => other % 20,
    }
}

impl DeflateSetup {
    /// The [`DeflateConfig`] these choices describe.
    pub fn config(&self) -> DeflateConfig {
        DeflateConfig {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: bits(self.server_bits),
            client_max_window_bits: bits(self.client_bits),
            level: u32::from(self.level % 11),
            mem_level: self.mem_level % 11,
            // Mostly below the default of 128, so most messages compress.
            min_compress_size: usize::from(self.min_compress_size) * 2,
            request_server_max_window_bits: self.request_server_max_window_bits,
            // Streams from the thread's pool for every message (zero, the
            // default), or short idle periods, so the inputs' clock steps
            // free and re-prime the zlib streams between messages.
            release_after_idle: match self.level % 5 {
                0 => None,
                1 => Some(std::time::Duration::ZERO),
                n => Some(std::time::Duration::from_millis(u64::from(n - 1) * 20)),
            },
        }
    }

    /// Negotiated parameters as if agreed out of band (for `Connection::upgraded`).
    pub fn params(&self) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: 8 + self.server_bits % 8,
            client_max_window_bits: 8 + self.client_bits % 8,
        }
    }
}
