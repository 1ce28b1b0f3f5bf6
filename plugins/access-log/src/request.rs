//! The request line (`%r`): its split into method, target and protocol, the
//! target's split into path and query string, and the route template that
//! replaces identifier segments with `{id}`.

use crate::json;
use crate::parse::{dash_to_none, is_blank};

/// The request line split into its parts, or kept whole in `unsplit`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestParts<'a> {
    /// First word of the request line.
    pub method: Option<&'a str>,
    /// Request target: everything between the method and the protocol,
    /// spaces included.
    pub path: Option<&'a str>,
    /// Last word of the request line when it has the form
    /// `HTTP/<digits>[.<digits>]`.
    pub protocol: Option<&'a str>,
    /// Whole request line, only when it cannot be split into method, target
    /// and protocol. `Some(None)` is a request line of `-`.
    pub unsplit: Option<Option<&'a str>>,
}

/// Splits `METHOD target [protocol]` into words separated by spaces or tabs.
/// The target is everything between the method and the protocol, so it may
/// contain spaces, but the blanks that separate it from the other words are
/// not part of it. A line without a target, or whose first word is not an
/// upper-case token (TLS bytes, a single word, `-`), is kept whole.
pub fn split_request(logged: &str) -> RequestParts<'_> {
    let unsplit = RequestParts {
        unsplit: Some(dash_to_none(logged)),
        ..RequestParts::default()
    };
    let Some(method_end) = logged.bytes().position(is_blank) else {
        return unsplit;
    };
    let method = &logged[..method_end];
    let target_and_protocol = logged[method_end..].trim_matches([' ', '\t']);
    if !is_method(method) || target_and_protocol.is_empty() {
        return unsplit;
    }

    let last_blank = target_and_protocol.bytes().rposition(is_blank);
    let (path, protocol) = match last_blank {
        Some(blank) if is_protocol(&target_and_protocol[blank + 1..]) => (
            target_and_protocol[..blank].trim_end_matches([' ', '\t']),
            Some(&target_and_protocol[blank + 1..]),
        ),
        None if is_protocol(target_and_protocol) => return unsplit,
        _ => (target_and_protocol, None),
    };
    RequestParts {
        method: Some(method),
        path: Some(path),
        protocol,
        unsplit: None,
    }
}

/// Returns whether `word` is an upper-case token: `[A-Z][A-Z0-9_-]*`.
fn is_method(word: &str) -> bool {
    let bytes = word.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_uppercase)
        && bytes.iter().all(|byte| {
            byte.is_ascii_uppercase() || byte.is_ascii_digit() || matches!(byte, b'_' | b'-')
        })
}

/// Returns whether `word` is `HTTP/<digits>[.<digits>]`.
fn is_protocol(word: &str) -> bool {
    let Some(version) = word.strip_prefix("HTTP/") else {
        return false;
    };
    let is_number = |text: &[u8]| !text.is_empty() && text.iter().all(u8::is_ascii_digit);
    let version = version.as_bytes();
    match version.iter().position(|byte| *byte == b'.') {
        Some(dot) => is_number(&version[..dot]) && is_number(&version[dot + 1..]),
        None => is_number(version),
    }
}

/// Splits a request target at its first `?` into the part before it and
/// the query string after it. The query is `None` without a `?` and empty
/// for a target that ends in `?`.
pub fn split_query(target: &str) -> (&str, Option<&str>) {
    match memchr::memchr(b'?', target.as_bytes()) {
        Some(mark) => (&target[..mark], Some(&target[mark + 1..])),
        None => (target, None),
    }
}

/// Returns the path that a route template is made from: the target before
/// its query for an origin-form target (`/a/b?q`), and the part after the
/// authority for an absolute-form one (`http://example.com/a/b` gives
/// `/a/b`, and `http://example.com` gives `/`). Returns `None` for the
/// authority form of `CONNECT` (`example.com:443`), for `*` and for
/// anything else that names no path.
pub fn route_path(target: &str) -> Option<&str> {
    let (before_query, _) = split_query(target);
    if before_query.starts_with('/') {
        return Some(before_query);
    }
    let (scheme, after_scheme) = before_query.split_once("://")?;
    if !is_scheme(scheme) {
        return None;
    }
    match memchr::memchr(b'/', after_scheme.as_bytes()) {
        Some(slash) => Some(&after_scheme[slash..]),
        None => Some("/"),
    }
}

/// Returns whether `text` is a URI scheme: a letter, then letters, digits,
/// `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
}

/// Text that replaces an identifier segment in a route template.
pub const ID_PLACEHOLDER: &str = "{id}";

/// Appends the route template of `path` as a JSON string: each segment
/// between slashes that is an identifier (see [`is_identifier`]) becomes
/// `{id}`, and every other byte is kept as logged.
pub fn write_route_json(path: &str, hex_min_length: usize, out: &mut String) {
    out.push('"');
    // Text between identifiers is escaped in one call per run of segments.
    let mut kept_from = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'/', path.as_bytes()).chain([path.len()]) {
        if is_identifier(&path[start..end], hex_min_length) {
            json::push_escaped(out, &path[kept_from..start]);
            out.push_str(ID_PLACEHOLDER);
            kept_from = end;
        }
        start = end + 1;
    }
    json::push_escaped(out, &path[kept_from..]);
    out.push('"');
}

/// Returns whether a path segment is an identifier:
/// - a number: one or more ASCII digits;
/// - a UUID: 8-4-4-4-12 hex digits with hyphens, in either case;
/// - hex-like: at least `hex_min_length` hex digits, in either case, of
///   which at least one is a decimal digit, so that words such as
///   `deadbeef` or `accede` stay.
pub fn is_identifier(segment: &str, hex_min_length: usize) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(bytes) {
        return true;
    }
    bytes.len() >= hex_min_length
        && bytes.iter().all(u8::is_ascii_hexdigit)
        && bytes.iter().any(u8::is_ascii_digit)
}

fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> String {
        let mut out = String::new();
        write_route_json(path, 8, &mut out);
        serde_json::from_str(&out).expect("route is a JSON string")
    }

    #[test]
    fn splits_method_target_protocol() {
        let parts = split_request("GET /a b HTTP/1.1");
        assert_eq!(parts.method, Some("GET"));
        assert_eq!(parts.path, Some("/a b"));
        assert_eq!(parts.protocol, Some("HTTP/1.1"));
        assert_eq!(parts.unsplit, None);
    }

    #[test]
    fn protocol_forms() {
        for protocol in ["HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/10.25"] {
            assert!(is_protocol(protocol), "{protocol}");
        }
        for text in [
            "HTTP/",
            "HTTP/1.",
            "HTTP/.1",
            "http/1.1",
            "HTTP/1.1x",
            "HTTP/1.1.1",
        ] {
            assert!(!is_protocol(text), "{text}");
        }
    }

    #[test]
    fn query_split_at_first_mark() {
        assert_eq!(split_query("/a?b=1?c"), ("/a", Some("b=1?c")));
        assert_eq!(split_query("/a?"), ("/a", Some("")));
        assert_eq!(split_query("/a"), ("/a", None));
    }

    #[test]
    fn route_path_by_target_form() {
        assert_eq!(route_path("/api/orders/7?x=1"), Some("/api/orders/7"));
        assert_eq!(
            route_path("http://www.example.com/proxy-check.txt"),
            Some("/proxy-check.txt")
        );
        assert_eq!(route_path("https://example.com"), Some("/"));
        assert_eq!(route_path("HTTP://example.com?x"), Some("/"));
        assert_eq!(route_path("example.com:443"), None);
        assert_eq!(route_path("*"), None);
        assert_eq!(route_path("index.html"), None);
        assert_eq!(route_path("1http://example.com/a"), None);
    }

    #[test]
    fn route_replaces_identifiers() {
        assert_eq!(route("/api/orders/123"), "/api/orders/{id}");
        assert_eq!(
            route("/api/orders/123/items/4"),
            "/api/orders/{id}/items/{id}"
        );
        assert_eq!(
            route("/users/3f2504e0-4f89-11d3-9a0c-0305e82c3301/avatar"),
            "/users/{id}/avatar"
        );
        assert_eq!(
            route("/users/3F2504E0-4F89-11D3-9A0C-0305E82C3301"),
            "/users/{id}"
        );
        assert_eq!(
            route("/commits/9fceb02d0ae598e95dc970b74767f19372d61af8"),
            "/commits/{id}"
        );
        assert_eq!(route("/blob/5f3c9a1b/raw"), "/blob/{id}/raw");
        assert_eq!(route("/"), "/");
        assert_eq!(route("/a//b/"), "/a//b/");
    }

    #[test]
    fn route_keeps_words() {
        assert_eq!(route("/deadbeef/cafebabe"), "/deadbeef/cafebabe");
        assert_eq!(route("/v1/a1b2c3d"), "/v1/a1b2c3d");
        assert_eq!(route("/static/app-1.2.3.js"), "/static/app-1.2.3.js");
        assert_eq!(route("/page/3x"), "/page/3x");
        assert_eq!(
            route("/users/3f2504e0-4f89-11d3-9a0c-0305e82c330"),
            "/users/3f2504e0-4f89-11d3-9a0c-0305e82c330"
        );
    }

    #[test]
    fn route_escapes_json() {
        assert_eq!(route("/a\"b/\\/1"), "/a\"b/\\/{id}");
    }

    #[test]
    fn hex_length_is_configurable() {
        assert!(is_identifier("a1b2", 4));
        assert!(!is_identifier("a1b2", 8));
        assert!(is_identifier("a1b2c3d4", 8));
        assert!(!is_identifier("a1b2c3d4", 9));
    }
}
