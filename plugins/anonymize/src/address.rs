//! Truncating one IP address to its network prefix, and reading an IP
//! literal as access logs write it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Prefix lengths that addresses are truncated to, in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefixes {
    /// Bits of an IPv4 address that are kept, from 0 to 32.
    pub ipv4: u8,
    /// Bits of an IPv6 address that are kept, from 0 to 128.
    pub ipv6: u8,
}

/// Clears every bit of `address` after the prefix length for its family.
///
/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) carries an IPv4
/// client, so its IPv4 part is truncated to the IPv4 prefix and the result
/// stays in mapped form (`::ffff:192.0.2.0`).
pub fn truncate(address: IpAddr, prefixes: Prefixes) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(truncate_v4(v4, prefixes.ipv4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V6(truncate_v4(v4, prefixes.ipv4).to_ipv6_mapped()),
            None => IpAddr::V6(truncate_v6(v6, prefixes.ipv6)),
        },
    }
}

fn truncate_v4(address: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    // A shift by the full width overflows, and a /0 keeps no bit.
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from_bits(address.to_bits() & mask)
}

fn truncate_v6(address: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ipv6Addr::from_bits(address.to_bits() & mask)
}

/// Returns the truncated form of an IP literal, or `None` when `text` is
/// not one.
///
/// Besides what `std::net` parses, an IPv6 literal may carry a zone id
/// (`fe80::1%eth0`) or brackets (`[2001:db8::1]`). The zone id names an
/// interface of the logging host, which means nothing for a network
/// prefix, so it is dropped. Brackets are kept.
pub fn anonymize_literal(text: &str, prefixes: Prefixes) -> Option<String> {
    if let Some(inner) = text
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        let address = parse_ipv6_with_zone(inner)?;
        return Some(format!("[{}]", truncate(IpAddr::V6(address), prefixes)));
    }
    let address = match text.parse::<IpAddr>() {
        Ok(address) => address,
        Err(_) => IpAddr::V6(parse_ipv6_with_zone(text)?),
    };
    Some(truncate(address, prefixes).to_string())
}

/// Returns whether `text` is an IP literal that [`anonymize_literal`]
/// accepts.
pub fn is_ip_literal(text: &str) -> bool {
    let prefixes = Prefixes { ipv4: 0, ipv6: 0 };
    anonymize_literal(text, prefixes).is_some()
}

/// Parses an IPv6 literal with an optional non-empty `%zone` suffix.
fn parse_ipv6_with_zone(text: &str) -> Option<Ipv6Addr> {
    let address = match text.split_once('%') {
        Some((address, zone)) if !zone.is_empty() => address,
        Some(_) => return None,
        None => text,
    };
    address.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Prefixes = Prefixes { ipv4: 24, ipv6: 48 };

    fn anonymized(text: &str, prefixes: Prefixes) -> Option<String> {
        anonymize_literal(text, prefixes)
    }

    #[test]
    fn ipv4_default_prefix() {
        assert_eq!(
            anonymized("192.0.2.77", DEFAULTS).as_deref(),
            Some("192.0.2.0")
        );
    }

    #[test]
    fn ipv6_default_prefix() {
        assert_eq!(
            anonymized("2001:db8:85a3::8a2e:370:7334", DEFAULTS).as_deref(),
            Some("2001:db8:85a3::")
        );
    }

    #[test]
    fn ipv4_prefix_edges() {
        let cases = [
            (0, "0.0.0.0"),
            (1, "128.0.0.0"),
            (8, "203.0.0.0"),
            (16, "203.0.0.0"),
            (20, "203.0.112.0"),
            (31, "203.0.113.254"),
            (32, "203.0.113.255"),
        ];
        for (prefix, expected) in cases {
            let prefixes = Prefixes {
                ipv4: prefix,
                ipv6: 48,
            };
            assert_eq!(
                anonymized("203.0.113.255", prefixes).as_deref(),
                Some(expected),
                "/{prefix}"
            );
        }
    }

    #[test]
    fn ipv6_prefix_edges() {
        let address = "2001:db8:85a3:1234:5678:8a2e:370:7334";
        let cases = [
            (0, "::"),
            (16, "2001::"),
            (32, "2001:db8::"),
            (52, "2001:db8:85a3:1000::"),
            (64, "2001:db8:85a3:1234::"),
            (127, "2001:db8:85a3:1234:5678:8a2e:370:7334"),
            (128, "2001:db8:85a3:1234:5678:8a2e:370:7334"),
        ];
        for (prefix, expected) in cases {
            let prefixes = Prefixes {
                ipv4: 24,
                ipv6: prefix,
            };
            assert_eq!(
                anonymized(address, prefixes).as_deref(),
                Some(expected),
                "/{prefix}"
            );
        }
        let odd_last_bit = Prefixes {
            ipv4: 24,
            ipv6: 127,
        };
        assert_eq!(
            anonymized("2001:db8::ff", odd_last_bit).as_deref(),
            Some("2001:db8::fe")
        );
    }

    #[test]
    fn ipv4_mapped_uses_ipv4_prefix() {
        assert_eq!(
            anonymized("::ffff:192.0.2.1", DEFAULTS).as_deref(),
            Some("::ffff:192.0.2.0")
        );
        let narrow = Prefixes {
            ipv4: 16,
            ipv6: 128,
        };
        assert_eq!(
            anonymized("::ffff:198.51.100.9", narrow).as_deref(),
            Some("::ffff:198.51.0.0")
        );
    }

    #[test]
    fn zone_id_dropped() {
        assert_eq!(
            anonymized("fe80::1:2:3:4%eth0", Prefixes { ipv4: 24, ipv6: 64 }).as_deref(),
            Some("fe80::")
        );
        assert_eq!(
            anonymized("2001:db8:1:2::5%3", DEFAULTS).as_deref(),
            Some("2001:db8:1::")
        );
    }

    #[test]
    fn brackets_kept() {
        assert_eq!(
            anonymized("[2001:db8:aa:bb::1]", DEFAULTS).as_deref(),
            Some("[2001:db8:aa::]")
        );
    }

    #[test]
    fn non_literals_rejected() {
        for text in [
            "",
            "-",
            "unknown",
            "www.example.com",
            "192.0.2.256",
            "192.0.2",
            "192.0.2.1%eth0",
            "fe80::1%",
            "[192.0.2.1]",
            "[2001:db8::1",
            "2001:db8::1]",
            "192.0.2.1:8080",
        ] {
            assert_eq!(anonymized(text, DEFAULTS), None, "{text:?}");
            assert!(!is_ip_literal(text), "{text:?}");
        }
    }
}
