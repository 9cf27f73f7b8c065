//! URL query strings and path segments built from typed config values, percent-encoded
//! per RFC 3986 so that free-text values (key terms, voice ids, tags) cannot break the URL.
//!
//! Parameters keep the order they were added in, and a name may repeat (Deepgram's
//! `keyterm`), so adapters produce one exact, predictable query string per config.

use std::fmt::Write;

/// An ordered query string under construction: `name=value` pairs joined by `&`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    buf: String,
}

impl Query {
    /// An empty query.
    pub fn new() -> Self {
        Query::default()
    }

    /// Appends `name=value`, both percent-encoded.
    pub fn push(&mut self, name: &str, value: impl AsRef<str>) -> &mut Self {
        if !self.buf.is_empty() {
            self.buf.push('&');
        }
        encode_into(&mut self.buf, name);
        self.buf.push('=');
        encode_into(&mut self.buf, value.as_ref());
        self
    }

    /// Appends `name=value` when `value` is present.
    pub fn push_opt<V: ToString>(&mut self, name: &str, value: Option<V>) -> &mut Self {
        if let Some(value) = value {
            self.push(name, value.to_string());
        }
        self
    }

    /// Appends `name=value` once per value, in order (a repeated parameter).
    pub fn push_each<V: AsRef<str>>(
        &mut self,
        name: &str,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        for value in values {
            self.push(name, value);
        }
        self
    }

    /// The query without a leading `?`.
    pub fn as_str(&self) -> &str {
        &self.buf
    }

    /// True when no parameter was added.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// `url` followed by `?` and this query, or `url` unchanged when the query is empty.
    pub fn append_to(&self, url: &str) -> String {
        if self.buf.is_empty() {
            url.to_string()
        } else {
            format!("{url}?{}", self.buf)
        }
    }
}

/// `text` percent-encoded for use as one query value or one path segment: RFC 3986
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) stay, every other byte of the UTF-8
/// encoding becomes `%XX` (so a space is `%20`, never `+`).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    encode_into(&mut out, text);
    out
}

/// Decodes `%XX` escapes (and `+` as a space, as form encoding does); `None` when an
/// escape is malformed or the result is not UTF-8. Used by the fake servers.
pub fn decode_component(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `name=value` pairs of a raw query string, decoded, in order. Pairs that fail to
/// decode are returned raw. Used by the fake servers.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                decode_component(name).unwrap_or_else(|| name.to_string()),
                decode_component(value).unwrap_or_else(|| value.to_string()),
            )
        })
        .collect()
}

fn encode_into(out: &mut String, text: &str) {
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_an_ordered_encoded_query_with_repeats() {
        let mut q = Query::new();
        q.push("model", "nova-3")
            .push_opt("sample_rate", Some(8000))
            .push_opt::<u32>("missing", None)
            .push_each("keyterm", ["Dr. Müller", "a&b=c"]);
        assert_eq!(
            q.as_str(),
            "model=nova-3&sample_rate=8000&keyterm=Dr.%20M%C3%BCller&keyterm=a%26b%3Dc"
        );
        assert_eq!(
            q.append_to("ws://h/v1/listen"),
            format!("ws://h/v1/listen?{}", q.as_str())
        );
        assert_eq!(Query::new().append_to("ws://h"), "ws://h");
    }

    #[test]
    fn decoding_inverts_encoding() {
        for text in ["plain", "with space", "ümlaut/slash?", "100%", "+"] {
            assert_eq!(
                decode_component(&encode_component(text)).as_deref(),
                Some(text)
            );
        }
        assert_eq!(decode_component("%zz"), None);
        assert_eq!(decode_component("a+b").as_deref(), Some("a b"));
        assert_eq!(
            parse_query("a=1&b=x%20y&c"),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x y".to_string()),
                ("c".to_string(), String::new())
            ]
        );
    }
}
