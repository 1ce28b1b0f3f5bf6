//! `mode=line`: rewriting the client field of a raw access-log line.

use std::borrow::Cow;

use crate::address::{anonymize_literal, is_ip_literal};
use crate::config::AnonymizeConfig;

/// Rewrites the client field of one raw line and returns the JSON text
/// `{"line":"<rewritten line>"}`, or the reason to reject the line.
///
/// The client field is the first run of non-blank characters, extended
/// over an X-Forwarded-For chain written with blanks after its commas
/// (`192.0.2.10, 198.51.100.7`), the way the access-log plugin reads it.
/// Everything else in the line is kept as it is, a trailing `\r`
/// included. Bytes that are not UTF-8 become U+FFFD, because the output is
/// a JSON string.
pub fn anonymize_line(raw: &[u8], config: &AnonymizeConfig) -> Result<String, String> {
    let line = String::from_utf8_lossy(raw);
    let start = line.len() - line.trim_start_matches(is_blank).len();
    let mut end = client_field_end(&line, start);
    // A `\r` that ends the line is no part of the client.
    if end == line.len() && line[start..end].ends_with('\r') {
        end -= 1;
    }
    let field = &line[start..end];
    if field.is_empty() {
        return Err("empty line: no client field".to_owned());
    }

    let client = anonymize_client_field(field, config)?;
    let mut rewritten = String::with_capacity(line.len());
    rewritten.push_str(&line[..start]);
    rewritten.push_str(&client);
    rewritten.push_str(&line[end..]);

    let text = serde_json::to_string(&rewritten)
        .map_err(|error| format!("failed to encode the line as JSON: {error}"))?;
    Ok(format!("{{\"line\":{text}}}"))
}

fn is_blank(character: char) -> bool {
    character == ' ' || character == '\t'
}

/// Returns the byte offset where the client field that starts at `start`
/// ends. A token that ends in `,` continues with the next token only when
/// that one contains only chain entries, so that the ident `-` never joins.
fn client_field_end(line: &str, start: usize) -> usize {
    let mut end = token_end(line, start);
    while line[start..end].ends_with(',') {
        let next_start = end + (line[end..].len() - line[end..].trim_start_matches(is_blank).len());
        let next_end = token_end(line, next_start);
        if !is_chain_part(&line[next_start..next_end]) {
            break;
        }
        end = next_end;
    }
    end
}

fn token_end(line: &str, start: usize) -> usize {
    line[start..]
        .find(is_blank)
        .map_or(line.len(), |length| start + length)
}

/// Returns whether `token` is a part of a forwarded-for chain: one or more
/// comma-separated entries, each an IP literal or `unknown`, which proxies
/// write for a hop they cannot name.
fn is_chain_part(token: &str) -> bool {
    let mut entries = token
        .split(',')
        .filter(|entry| !entry.is_empty())
        .peekable();
    entries.peek().is_some()
        && entries.all(|entry| entry.eq_ignore_ascii_case("unknown") || is_ip_literal(entry))
}

/// Returns the anonymised client field: one address truncated, each
/// entry of a comma-separated chain treated on its own, or a host name
/// handled by the `hostnames` policy.
fn anonymize_client_field<'a>(
    field: &'a str,
    config: &AnonymizeConfig,
) -> Result<Cow<'a, str>, String> {
    if let Some(address) = anonymize_literal(field, config.prefixes) {
        return Ok(Cow::Owned(address));
    }
    if field.contains(',') {
        let entries = field
            .split(',')
            .map(|entry| anonymize_chain_entry(entry, config))
            .collect::<Result<Vec<String>, String>>()?;
        return Ok(Cow::Owned(entries.join(",")));
    }
    let name = config.hostnames.apply(field)?;
    Ok(Cow::Borrowed(name.unwrap_or("-")))
}

/// Anonymises one entry of a chain and keeps the blanks around it. An
/// address is truncated, and a host name that `hostnames=drop` removes
/// becomes `unknown`, the word proxies write for a hop they cannot name.
fn anonymize_chain_entry(entry: &str, config: &AnonymizeConfig) -> Result<String, String> {
    let client = entry.trim_matches(is_blank);
    let leading = &entry[..entry.len() - entry.trim_start_matches(is_blank).len()];
    let trailing = &entry[entry.trim_end_matches(is_blank).len()..];
    let anonymized = match anonymize_literal(client, config.prefixes) {
        Some(address) => address,
        None if client.is_empty() => String::new(),
        None => config
            .hostnames
            .apply(client)?
            .unwrap_or("unknown")
            .to_owned(),
    };
    Ok(format!("{leading}{anonymized}{trailing}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Prefixes;
    use crate::config::{HostnamePolicy, Mode};

    fn line_config(hostnames: HostnamePolicy) -> AnonymizeConfig {
        AnonymizeConfig {
            mode: Mode::Line,
            hostnames,
            ..AnonymizeConfig::default()
        }
    }

    /// Returns the rewritten line from the emitted `{"line": ...}` object.
    fn rewritten(raw: &[u8], config: &AnonymizeConfig) -> String {
        let json = anonymize_line(raw, config).expect("line is accepted");
        let value: serde_json::Value = serde_json::from_str(&json).expect("output is JSON");
        value["line"]
            .as_str()
            .expect("`line` is a string")
            .to_owned()
    }

    const REST: &str = " - frank [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 2326";

    #[test]
    fn ipv4_client_truncated() {
        let config = line_config(HostnamePolicy::Drop);
        let raw = format!("192.0.2.77{REST}");
        assert_eq!(
            anonymize_line(raw.as_bytes(), &config).expect("accepted"),
            format!(
                "{{\"line\":\"192.0.2.0 - frank [10/Oct/2000:13:55:36 -0700] \
                 \\\"GET / HTTP/1.0\\\" 200 2326\"}}"
            )
        );
    }

    #[test]
    fn ipv6_client_truncated() {
        let config = line_config(HostnamePolicy::Drop);
        let raw = format!("2001:db8:85a3::8a2e:370:7334{REST}");
        assert_eq!(
            rewritten(raw.as_bytes(), &config),
            format!("2001:db8:85a3::{REST}")
        );
    }

    #[test]
    fn prefixes_from_config() {
        let config = AnonymizeConfig {
            prefixes: Prefixes { ipv4: 16, ipv6: 32 },
            ..line_config(HostnamePolicy::Drop)
        };
        assert_eq!(
            rewritten(format!("198.51.100.9{REST}").as_bytes(), &config),
            format!("198.51.0.0{REST}")
        );
        assert_eq!(
            rewritten(format!("2001:db8:1::9{REST}").as_bytes(), &config),
            format!("2001:db8::{REST}")
        );
    }

    #[test]
    fn forwarded_chain_truncated_in_place() {
        let config = line_config(HostnamePolicy::Drop);
        let raw = format!("192.0.2.10, unknown,198.51.100.7{REST}");
        assert_eq!(
            rewritten(raw.as_bytes(), &config),
            format!("192.0.2.0, unknown,198.51.100.0{REST}")
        );
    }

    #[test]
    fn ident_never_joins_chain() {
        let config = line_config(HostnamePolicy::Drop);
        let raw = b"192.0.2.10, - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1";
        assert_eq!(
            rewritten(raw, &config),
            "192.0.2.0, - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1"
        );
    }

    #[test]
    fn host_name_policies() {
        let raw = format!("client-7.example.com{REST}");
        assert_eq!(
            rewritten(raw.as_bytes(), &line_config(HostnamePolicy::Drop)),
            format!("-{REST}")
        );
        assert_eq!(
            rewritten(raw.as_bytes(), &line_config(HostnamePolicy::Keep)),
            raw
        );
        assert_eq!(
            anonymize_line(raw.as_bytes(), &line_config(HostnamePolicy::Reject)),
            Err("client \"client-7.example.com\" is not an IP address, \
                 and hostnames=reject"
                .to_owned())
        );
    }

    #[test]
    fn host_name_in_chain() {
        let raw = format!("client-7.example.com,192.0.2.10{REST}");
        assert_eq!(
            rewritten(raw.as_bytes(), &line_config(HostnamePolicy::Drop)),
            format!("unknown,192.0.2.0{REST}")
        );
        assert_eq!(
            rewritten(raw.as_bytes(), &line_config(HostnamePolicy::Keep)),
            format!("client-7.example.com,192.0.2.0{REST}")
        );
        assert!(anonymize_line(raw.as_bytes(), &line_config(HostnamePolicy::Reject)).is_err());
    }

    #[test]
    fn dash_and_unknown_pass_under_reject() {
        let config = line_config(HostnamePolicy::Reject);
        for client in ["-", "unknown"] {
            let raw = format!("{client}{REST}");
            assert_eq!(rewritten(raw.as_bytes(), &config), raw);
        }
    }

    #[test]
    fn leading_blanks_and_cr_kept() {
        let config = line_config(HostnamePolicy::Drop);
        let raw = format!(" \t192.0.2.77{REST}\r");
        assert_eq!(
            rewritten(raw.as_bytes(), &config),
            format!(" \t192.0.2.0{REST}\r")
        );
    }

    #[test]
    fn client_without_rest() {
        let config = line_config(HostnamePolicy::Drop);
        assert_eq!(rewritten(b"203.0.113.200", &config), "203.0.113.0");
        assert_eq!(rewritten(b"203.0.113.200\r", &config), "203.0.113.0\r");
    }

    #[test]
    fn invalid_utf8_replaced() {
        let config = line_config(HostnamePolicy::Drop);
        assert_eq!(
            rewritten(b"192.0.2.77 - - \"GET /caf\xe9\"", &config),
            "192.0.2.0 - - \"GET /caf\u{fffd}\""
        );
    }

    #[test]
    fn empty_lines_rejected() {
        let config = line_config(HostnamePolicy::Drop);
        for raw in [&b""[..], b"   ", b"\r", b" \t\r"] {
            assert_eq!(
                anonymize_line(raw, &config),
                Err("empty line: no client field".to_owned()),
                "{raw:?}"
            );
        }
    }
}
