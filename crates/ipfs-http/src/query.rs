//! Query strings as ordered `(key, value)` pairs, percent-decoded.
//!
//! Kubo passes positional arguments as repeated `arg=` keys, which a map-based
//! extractor would lose; this keeps every pair in order.

/// Decoded query pairs in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPairs(Vec<(String, String)>);

impl QueryPairs {
    /// Parses `a=1&b=x%20y&arg=...` (`+` is a space, as in forms). Pairs whose
    /// percent-encoding is broken are kept with the broken escape verbatim.
    pub fn parse(query: Option<&str>) -> Self {
        let Some(query) = query else {
            return Self::default();
        };
        let pairs = query
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (key, value) = part.split_once('=').unwrap_or((part, ""));
                (decode(key), decode(value))
            })
            .collect();
        Self(pairs)
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of the first of `keys` present (an option and its aliases).
    pub fn first(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|key| {
            self.0
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        })
    }

    /// Whether any of `keys` is present.
    pub fn has(&self, keys: &[&str]) -> bool {
        self.first(keys).is_some()
    }
}

/// Percent-decodes one query component (`+` is a space). Invalid UTF-8 after
/// decoding is replaced, never an error: the caller validates what it needs.
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex_value(*b)),
                bytes.get(i + 2).and_then(|b| hex_value(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_repeated_keys_in_order_and_decodes() {
        let q = QueryPairs::parse(Some("arg=a&x=1&arg=b%2Fc&flag&y=a+b&&z=%zz%4"));
        assert_eq!(q.all("arg").collect::<Vec<_>>(), ["a", "b/c"]);
        assert_eq!(q.first(&["x"]), Some("1"));
        assert_eq!(q.first(&["flag"]), Some(""));
        assert_eq!(q.first(&["nope", "y"]), Some("a b"));
        assert_eq!(q.first(&["z"]), Some("%zz%4"));
        assert!(!q.has(&["nope"]));
        assert_eq!(QueryPairs::parse(None), QueryPairs::default());
    }

    #[test]
    fn decodes_utf8_and_survives_garbage() {
        assert_eq!(decode("%C3%A9t%C3%A9"), "été");
        assert_eq!(decode("%FF"), "\u{fffd}");
        assert_eq!(decode("%"), "%");
    }
}
