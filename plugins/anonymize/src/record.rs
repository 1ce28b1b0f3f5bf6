//! `mode=json`: rewriting the client fields of a JSON record as the
//! access-log plugin emits it.
//!
//! The object is read as a list of keys and raw values, so the fields this
//! module does not rewrite keep their order and their exact text.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::address::anonymize_literal;
use crate::config::AnonymizeConfig;

/// Fields of one JSON object in input order, each value as its raw text.
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(24));
        while let Some(field) = map.next_entry::<String, Box<RawValue>>()? {
            fields.push(field);
        }
        Ok(Fields(fields))
    }
}

/// The rewrite of one field of the input record.
enum Rewrite {
    /// The raw value is written unchanged.
    Keep,
    /// The field is written with this JSON text as its value.
    Replace(String),
    /// The field is left out.
    Remove,
}

/// Anonymises one JSON record and returns its JSON text, or the reason to
/// reject it.
///
/// - `ip`: an IP literal is truncated and `null` stays. Anything else is
///   rejected.
/// - `forwarded_for`: each address is truncated, and each other entry
///   except `unknown` is handled by the `hostnames` policy.
/// - `host`: a client host name, handled by the `hostnames` policy
///   (`drop` writes `null`).
/// - `line_base64`: removed, because it is the raw line with the client
///   address in full.
/// - `user`, `ident`: `null` with `drop_user=true`.
///
/// Every other field is kept as it is. A key given twice is rewritten at
/// each place.
pub fn anonymize_record(raw: &[u8], config: &AnonymizeConfig) -> Result<String, String> {
    let fields = serde_json::from_slice::<Fields>(raw)
        .map_err(|error| format!("invalid JSON record: {error}"))?;

    let mut out = String::with_capacity(raw.len());
    out.push('{');
    for (key, value) in &fields.0 {
        let rewrite = rewrite_field(key, value, config)?;
        let text = match &rewrite {
            Rewrite::Keep => value.get(),
            Rewrite::Replace(text) => text,
            Rewrite::Remove => continue,
        };
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&json_string(key)?);
        out.push(':');
        out.push_str(text);
    }
    out.push('}');
    Ok(out)
}

fn rewrite_field(key: &str, value: &RawValue, config: &AnonymizeConfig) -> Result<Rewrite, String> {
    match key {
        "ip" => rewrite_ip(value, config),
        "forwarded_for" => rewrite_forwarded_for(value, config),
        "host" => rewrite_host(value, config),
        "line_base64" => Ok(Rewrite::Remove),
        "user" | "ident" if config.drop_user => Ok(Rewrite::Replace("null".to_owned())),
        _ => Ok(Rewrite::Keep),
    }
}

fn rewrite_ip(value: &RawValue, config: &AnonymizeConfig) -> Result<Rewrite, String> {
    let Some(ip) = optional_string("ip", value)? else {
        return Ok(Rewrite::Keep);
    };
    let anonymized = anonymize_literal(&ip, config.prefixes)
        .ok_or_else(|| format!("`ip` is not an IP address: {ip:?}"))?;
    Ok(Rewrite::Replace(json_string(&anonymized)?))
}

fn rewrite_forwarded_for(value: &RawValue, config: &AnonymizeConfig) -> Result<Rewrite, String> {
    let entries = serde_json::from_str::<Option<Vec<String>>>(value.get())
        .map_err(|_| format!("`forwarded_for` is not a list of strings: {}", value.get()))?;
    let Some(entries) = entries else {
        return Ok(Rewrite::Keep);
    };
    let mut anonymized = Vec::with_capacity(entries.len());
    for entry in &entries {
        let entry = match anonymize_literal(entry, config.prefixes) {
            Some(address) => address,
            None => config
                .hostnames
                .apply(entry)?
                .unwrap_or("unknown")
                .to_owned(),
        };
        anonymized.push(entry);
    }
    let text = serde_json::to_string(&anonymized)
        .map_err(|error| format!("failed to encode `forwarded_for`: {error}"))?;
    Ok(Rewrite::Replace(text))
}

fn rewrite_host(value: &RawValue, config: &AnonymizeConfig) -> Result<Rewrite, String> {
    let Some(host) = optional_string("host", value)? else {
        return Ok(Rewrite::Keep);
    };
    match config.hostnames.apply(&host)? {
        Some(_) => Ok(Rewrite::Keep),
        None => Ok(Rewrite::Replace("null".to_owned())),
    }
}

/// Reads a value that must be a string or `null`.
fn optional_string(key: &str, value: &RawValue) -> Result<Option<String>, String> {
    serde_json::from_str::<Option<String>>(value.get())
        .map_err(|_| format!("`{key}` is not a string or null: {}", value.get()))
}

fn json_string(text: &str) -> Result<String, String> {
    serde_json::to_string(text).map_err(|error| format!("failed to encode {text:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Prefixes;
    use crate::config::HostnamePolicy;

    fn anonymized(raw: &str, config: &AnonymizeConfig) -> String {
        anonymize_record(raw.as_bytes(), config).expect("record is accepted")
    }

    fn rejected(raw: &[u8]) -> String {
        anonymize_record(raw, &AnonymizeConfig::default()).expect_err("record is rejected")
    }

    #[test]
    fn ip_truncated_rest_kept() {
        let raw = r#"{"ip":"192.0.2.77","ident":null,"user":"frank","status":200,"bytes":2326,"nested":{"a": [1, 2.50]},"service":"web"}"#;
        assert_eq!(
            anonymized(raw, &AnonymizeConfig::default()),
            r#"{"ip":"192.0.2.0","ident":null,"user":"frank","status":200,"bytes":2326,"nested":{"a": [1, 2.50]},"service":"web"}"#
        );
    }

    #[test]
    fn ipv6_truncated() {
        let raw = r#"{"ip":"2001:db8:85a3::8a2e:370:7334","status":200}"#;
        assert_eq!(
            anonymized(raw, &AnonymizeConfig::default()),
            r#"{"ip":"2001:db8:85a3::","status":200}"#
        );
        let wide = AnonymizeConfig {
            prefixes: Prefixes {
                ipv4: 24,
                ipv6: 128,
            },
            ..AnonymizeConfig::default()
        };
        assert_eq!(anonymized(raw, &wide), raw);
    }

    #[test]
    fn forwarded_for_entries_truncated() {
        let raw = r#"{"ip":"192.0.2.10","forwarded_for":["192.0.2.10","unknown","2001:db8:7:8::1","proxy.example.com"]}"#;
        assert_eq!(
            anonymized(raw, &AnonymizeConfig::default()),
            r#"{"ip":"192.0.2.0","forwarded_for":["192.0.2.0","unknown","2001:db8:7::","unknown"]}"#
        );
        let keep = AnonymizeConfig {
            hostnames: HostnamePolicy::Keep,
            ..AnonymizeConfig::default()
        };
        assert_eq!(
            anonymized(raw, &keep),
            r#"{"ip":"192.0.2.0","forwarded_for":["192.0.2.0","unknown","2001:db8:7::","proxy.example.com"]}"#
        );
    }

    #[test]
    fn host_policies() {
        let raw = r#"{"ip":null,"host":"client-7.example.com","status":200}"#;
        let config = |hostnames| AnonymizeConfig {
            hostnames,
            ..AnonymizeConfig::default()
        };
        assert_eq!(
            anonymized(raw, &config(HostnamePolicy::Drop)),
            r#"{"ip":null,"host":null,"status":200}"#
        );
        assert_eq!(anonymized(raw, &config(HostnamePolicy::Keep)), raw);
        assert_eq!(
            anonymize_record(raw.as_bytes(), &config(HostnamePolicy::Reject)),
            Err(
                "client \"client-7.example.com\" is not an IP address, and hostnames=reject"
                    .to_owned()
            )
        );
    }

    #[test]
    fn drop_user_nulls_user_and_ident() {
        let raw = r#"{"ip":"198.51.100.23","ident":"ident-7","user":"frank","status":201}"#;
        let config = AnonymizeConfig {
            drop_user: true,
            ..AnonymizeConfig::default()
        };
        assert_eq!(
            anonymized(raw, &config),
            r#"{"ip":"198.51.100.0","ident":null,"user":null,"status":201}"#
        );
    }

    #[test]
    fn line_base64_removed() {
        let raw = r#"{"ip":"192.0.2.77","line_base64":"MTkyLjAuMi43Nw==","service":"web"}"#;
        assert_eq!(
            anonymized(raw, &AnonymizeConfig::default()),
            r#"{"ip":"192.0.2.0","service":"web"}"#
        );
    }

    #[test]
    fn duplicate_ip_rewritten_twice() {
        let raw = r#"{"ip":"192.0.2.77","ip":"203.0.113.9"}"#;
        assert_eq!(
            anonymized(raw, &AnonymizeConfig::default()),
            r#"{"ip":"192.0.2.0","ip":"203.0.113.0"}"#
        );
    }

    #[test]
    fn escaped_keys_and_empty_object() {
        assert_eq!(anonymized("{}", &AnonymizeConfig::default()), "{}");
        assert_eq!(
            anonymized(r#"{"i\u0070":"192.0.2.77"}"#, &AnonymizeConfig::default()),
            r#"{"ip":"192.0.2.0"}"#
        );
    }

    #[test]
    fn invalid_records_rejected() {
        let cases: [(&[u8], &str); 8] = [
            (
                b"",
                "invalid JSON record: EOF while parsing a value at line 1 column 0",
            ),
            (
                b"192.0.2.1 - - [10/Oct/2000:13:55:36 -0700]",
                "invalid JSON record: ",
            ),
            (
                b"[1, 2]",
                "invalid JSON record: invalid type: sequence, expected a JSON object",
            ),
            (
                b"{\"ip\":\"192.0.2.1\"",
                "invalid JSON record: EOF while parsing an object",
            ),
            (
                b"{\"ip\":\"www.example.com\"}",
                "`ip` is not an IP address: \"www.example.com\"",
            ),
            (b"{\"ip\":7}", "`ip` is not a string or null: 7"),
            (
                b"{\"forwarded_for\":\"192.0.2.1\"}",
                "`forwarded_for` is not a list of strings",
            ),
            (
                b"{\"ip\":\"192.0.2.1\xff\"}",
                "invalid JSON record: invalid unicode code point",
            ),
        ];
        for (raw, expected) in cases {
            let reason = rejected(raw);
            assert!(reason.starts_with(expected), "{raw:?}: {reason}");
        }
    }
}
