//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1):
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-token = registered-token
//! registered-token = token
//! extension-param = token [ "=" (token | quoted-string) ]
//!     ; When using the quoted-string syntax variant, the value
//!     ; after quoted-string unescaping MUST conform to the
//!     ; 'token' ABNF.
//! ```
//!
//! Optional whitespace (space or tab) is accepted around every `,`, `;` and
//! `=`. Following the `#rule` of RFC 7230 §7 ("a recipient MUST accept empty
//! list elements"), empty list elements such as the middle of `a, , b` are
//! skipped; a value with no extension at all, an element without a name
//! (`; x`), an empty parameter (`a;`, `a;;b`), or any other byte outside the
//! grammar is [`ExtensionError::Malformed`].

use crate::error::ExtensionError;

/// One extension element: a name and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// Extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in order, with their values (quotes removed) if any.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses one header value into its comma-separated elements.
///
/// Quoted parameter values are unescaped and must then be tokens (RFC 6455
/// §9.1). Names and values are kept as sent; comparing them
/// case-insensitively is up to the extension.
///
/// ```
/// use wsmachine::{parse_extensions, ExtensionOffer};
/// let offers = parse_extensions(r#"permessage-deflate; client_max_window_bits="10", x-foo"#).unwrap();
/// assert_eq!(offers[0].name, "permessage-deflate");
/// assert_eq!(offers[0].params, [("client_max_window_bits".to_string(), Some("10".to_string()))]);
/// assert_eq!(offers[1], ExtensionOffer { name: "x-foo".into(), params: vec![] });
/// ```
pub fn parse_extensions(value: &str) -> Result<Vec<ExtensionOffer>, ExtensionError> {
    let mut p = Parser {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_ows();
        match p.peek() {
            None => break,
            // An empty list element (RFC 7230 §7): skip it.
            Some(b',') => {
                p.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = p.token("extension name")?;
        let mut params = Vec::new();
        loop {
            p.skip_ows();
            match p.peek() {
                None => break,
                Some(b',') => {
                    p.pos += 1;
                    break;
                }
                Some(b';') => {
                    p.pos += 1;
                    p.skip_ows();
                    let pname = p.token("parameter name")?;
                    p.skip_ows();
                    let pvalue = if p.peek() == Some(b'=') {
                        p.pos += 1;
                        p.skip_ows();
                        Some(p.value()?)
                    } else {
                        None
                    };
                    params.push((pname, pvalue));
                }
                Some(c) => return Err(p.unexpected(c, "`,` or `;`")),
            }
        }
        out.push(ExtensionOffer { name, params });
    }
    if out.is_empty() {
        return Err(ExtensionError::Malformed(
            "no extension in the header value".into(),
        ));
    }
    Ok(out)
}

/// Formats one element as it appears in the header, e.g.
/// `permessage-deflate; client_max_window_bits=10`.
///
/// Values that are not tokens are written as quoted strings, so the output
/// always parses back with [`parse_extensions`] (given a token name).
/// (Crate-private for now; re-export it from `lib.rs` to make it public.)
pub(crate) fn format_extension(ext: &ExtensionOffer) -> String {
    let mut s = ext.name.clone();
    for (name, value) in &ext.params {
        s.push_str("; ");
        s.push_str(name);
        if let Some(v) = value {
            s.push('=');
            if is_token(v) {
                s.push_str(v);
            } else {
                s.push('"');
                for c in v.chars() {
                    if c == '"' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
            }
        }
    }
    s
}

/// `tchar` (RFC 7230 §3.2.6).
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn unexpected(&self, c: u8, wanted: &str) -> ExtensionError {
        ExtensionError::Malformed(format!(
            "unexpected {:?} at byte {}, expected {wanted}",
            char::from(c),
            self.pos
        ))
    }

    fn token(&mut self, what: &str) -> Result<String, ExtensionError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(match self.peek() {
                Some(c) => self.unexpected(c, what),
                None => ExtensionError::Malformed(format!("missing {what} at end of header")),
            });
        }
        // tchar is ASCII, so the slice is valid UTF-8.
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    /// `token | quoted-string`; a quoted value must unescape to a token.
    fn value(&mut self) -> Result<String, ExtensionError> {
        if self.peek() != Some(b'"') {
            return self.token("parameter value");
        }
        self.pos += 1;
        let mut v = Vec::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ExtensionError::Malformed(
                        "unterminated quoted string".into(),
                    ))
                }
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                        Some(c) if c == b'\t' || c >= b' ' && c != 0x7f => v.push(c),
                        _ => return Err(ExtensionError::Malformed("invalid quoted-pair".into())),
                    }
                    self.pos += 1;
                }
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                Some(c) if c == b'\t' || c >= b' ' && c != 0x7f => {
                    v.push(c);
                    self.pos += 1;
                }
                Some(c) => return Err(self.unexpected(c, "quoted-string text")),
            }
        }
        match String::from_utf8(v) {
            Ok(v) if is_token(&v) => Ok(v),
            Ok(v) => Err(ExtensionError::Malformed(format!(
                "quoted value {v:?} is not a token (RFC 6455 §9.1)"
            ))),
            Err(_) => Err(ExtensionError::Malformed(
                "quoted value is not a token (RFC 6455 §9.1)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(name: &str, params: &[(&str, Option<&str>)]) -> ExtensionOffer {
        ExtensionOffer {
            name: name.into(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
                .collect(),
        }
    }

    fn malformed(s: &str) {
        match parse_extensions(s) {
            Err(ExtensionError::Malformed(_)) => {}
            other => panic!("{s:?} should be malformed, got {other:?}"),
        }
    }

    #[test]
    fn single_name() {
        assert_eq!(
            parse_extensions("permessage-deflate").unwrap(),
            [offer("permessage-deflate", &[])]
        );
    }

    #[test]
    fn params_with_and_without_values() {
        assert_eq!(
            parse_extensions(
                "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
            )
            .unwrap(),
            [offer(
                "permessage-deflate",
                &[
                    ("client_max_window_bits", None),
                    ("server_max_window_bits", Some("10"))
                ]
            )]
        );
    }

    #[test]
    fn several_elements_and_ows_everywhere() {
        let got = parse_extensions(
            " \tpermessage-deflate ;\tclient_max_window_bits = 10 ; server_no_context_takeover ,x-webkit ,  foo;a=b\t",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                offer(
                    "permessage-deflate",
                    &[
                        ("client_max_window_bits", Some("10")),
                        ("server_no_context_takeover", None)
                    ]
                ),
                offer("x-webkit", &[]),
                offer("foo", &[("a", Some("b"))]),
            ]
        );
    }

    #[test]
    fn no_whitespace_at_all() {
        assert_eq!(
            parse_extensions("a;b=1;c,d").unwrap(),
            [
                offer("a", &[("b", Some("1")), ("c", None)]),
                offer("d", &[])
            ]
        );
    }

    #[test]
    fn quoted_values_are_unescaped() {
        assert_eq!(
            parse_extensions(r#"a; b="10"; c="x\yz"; d = "q""#).unwrap(),
            [offer(
                "a",
                &[("b", Some("10")), ("c", Some("xyz")), ("d", Some("q"))]
            )]
        );
    }

    #[test]
    fn quoted_value_must_be_a_token() {
        malformed(r#"a; b="1 0""#);
        malformed(r#"a; b="""#);
        malformed(r#"a; b="x,y""#);
        malformed(r#"a; b="x;y""#);
        malformed(r#"a; b="\"""#);
        malformed(r#"a; b="é""#);
    }

    #[test]
    fn unterminated_or_bad_quotes() {
        malformed(r#"a; b="10"#);
        malformed(r#"a; b="10\"#);
        malformed("a; b=\"1\x010\"");
        malformed(r#"a; b="1"0"#);
        malformed(r#"a; b=1"0""#);
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        // RFC 7230 §7: a recipient MUST accept empty list elements.
        assert_eq!(
            parse_extensions("a, ,b,").unwrap(),
            [offer("a", &[]), offer("b", &[])]
        );
        assert_eq!(parse_extensions(", a").unwrap(), [offer("a", &[])]);
    }

    #[test]
    fn empty_or_blank_value_is_malformed() {
        malformed("");
        malformed("   ");
        malformed(" , ,");
    }

    #[test]
    fn garbage_is_malformed() {
        malformed("; a");
        malformed("a;");
        malformed("a; ");
        malformed("a;;b");
        malformed("a; =1");
        malformed("a; b=");
        malformed("a; b= ;c");
        malformed("a; b=1=2");
        malformed("a b");
        malformed("a; b c");
        malformed("a; b=1 2");
        malformed("a/b");
        malformed("a; b=(1)");
        malformed("a;b=1,;c");
        malformed("pérmessage");
        malformed("a\r\n b");
    }

    #[test]
    fn token_chars() {
        assert_eq!(
            parse_extensions("!#$%&'*+-.^_`|~09azAZ").unwrap()[0].name,
            "!#$%&'*+-.^_`|~09azAZ"
        );
    }

    #[test]
    fn format_round_trips() {
        for s in [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
        ] {
            let e = parse_extensions(s).unwrap();
            assert_eq!(format_extension(&e[0]), s);
        }
        let odd = offer("x", &[("v", Some("a b\"c\\"))]);
        assert_eq!(format_extension(&odd), r#"x; v="a b\"c\\""#);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // Every 1- and 2-byte string over an alphabet of the interesting bytes.
        let alphabet = b"a=;,\" \t\\\x01\xff";
        for &a in alphabet {
            for &b in alphabet {
                let s = String::from_utf8_lossy(&[a, b]).into_owned();
                let _ = parse_extensions(&s);
                let s = String::from_utf8_lossy(&[b'x', a, b, b'y']).into_owned();
                let _ = parse_extensions(&s);
            }
        }
    }
}
