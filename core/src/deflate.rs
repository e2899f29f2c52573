//! permessage-deflate (RFC 7692). PLACEHOLDER: being written; see the interface below.

use bytes::BytesMut;

use crate::error::{ExtensionError, ProtocolError};
use crate::extensions::ExtensionOffer;
use crate::Role;

/// permessage-deflate settings: the client's offer, or the server's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Client: ask the server not to keep its context; server: demand it.
    pub server_no_context_takeover: bool,
    /// Client: promise not to keep our context; server: demand it of the client.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window the server may use (8–15).
    pub server_max_window_bits: u8,
    /// Largest LZ77 window the client may use (8–15).
    pub client_max_window_bits: u8,
    /// Compression level 0–9.
    pub level: u32,
    /// zlib memLevel 1–9 for the compressor.
    pub mem_level: u8,
    /// Messages shorter than this are sent uncompressed.
    pub min_compress_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 6,
            mem_level: 8,
            min_compress_size: 0,
        }
    }
}

/// The negotiated parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window size (8–15).
    pub server_max_window_bits: u8,
    /// The client's LZ77 window size (8–15).
    pub client_max_window_bits: u8,
}

impl DeflateConfig {
    /// Client: the `Sec-WebSocket-Extensions` value to offer.
    pub fn offer_header(&self) -> String {
        todo!()
    }
    /// Server: the first acceptable offer's parameters and the response element; `None` declines.
    pub fn negotiate(&self, _offers: &[ExtensionOffer]) -> Option<(DeflateParams, String)> {
        todo!()
    }
    /// Client: validates the server's accepted `permessage-deflate` element.
    pub fn check_response(
        &self,
        _accepted: &ExtensionOffer,
    ) -> Result<DeflateParams, ExtensionError> {
        todo!()
    }
}

pub struct Compressor;
impl Compressor {
    pub(crate) fn new(_p: &DeflateParams, _c: &DeflateConfig, _role: Role) -> Self {
        todo!()
    }
    pub(crate) fn should_compress(&self, _len: usize) -> bool {
        todo!()
    }
    pub(crate) fn compress(&mut self, _data: &[u8], _fin: bool, _out: &mut BytesMut) {
        todo!()
    }
}
pub struct Decompressor;
impl Decompressor {
    pub(crate) fn new(_p: &DeflateParams, _role: Role) -> Self {
        todo!()
    }
    pub(crate) fn decompress(
        &mut self,
        _input: &[u8],
        _fin: bool,
        _out: &mut BytesMut,
        _limit: usize,
    ) -> Result<(), ProtocolError> {
        todo!()
    }
}
