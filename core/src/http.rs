//! HTTP heads as the handshake sees them: header fields and the server's
//! response. A module of its own, below both `handshake` and `error`,
//! because a refused handshake's error carries the response.

use bytes::Bytes;

/// HTTP header fields in order, names as sent. Values that are not UTF-8 are
/// kept with invalid bytes replaced (U+FFFD).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, name: &str, value: &[u8]) {
        self.0
            .push((name.to_owned(), String::from_utf8_lossy(value).into_owned()));
    }

    pub(crate) fn from_httparse(headers: &[httparse::Header<'_>]) -> Self {
        let mut h = Headers(Vec::with_capacity(headers.len()));
        for f in headers {
            h.push(f.name, f.value);
        }
        h
    }

    /// Whether any comma-separated token of any `name` field equals `token`
    /// (ASCII case-insensitive), as `Connection: keep-alive, Upgrade` needs.
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Comma-separated values of every `name` field, trimmed, empty ones dropped.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// The server's answer to a client's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields.
    pub headers: Headers,
    /// Body of a non-101 response, truncated to `max_handshake_size` bytes.
    pub body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tokens() {
        let mut h = Headers::new();
        h.push("Connection", b"keep-alive, Upgrade");
        h.push("X", b"a,b");
        h.push("x", b" c ");
        assert!(h.has_token("connection", "upgrade"));
        assert!(!h.has_token("connection", "close"));
        assert_eq!(h.list("X"), vec!["a", "b", "c"]);
        assert_eq!(h.get("x"), Some("a,b"));
    }
}
