//! The client field (`%h`) and the virtual-host field (`%v`, `%v:%p`): what
//! counts as an address, a host name or an X-Forwarded-For chain, and the
//! class of a client address (`client_class`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The client field of a line, split into the keys the record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client<'a> {
    /// The client as logged when it is an IP literal. For a forwarded-for
    /// chain, its left-most entry when that is an IP literal.
    pub ip: Option<&'a str>,
    /// The parsed form of `ip`.
    pub address: Option<IpAddr>,
    /// The client as logged when it is not an IP literal (a DNS name). For a
    /// forwarded-for chain, its left-most entry when that is not one.
    pub host: Option<&'a str>,
    /// The whole field when it is a comma-separated X-Forwarded-For chain.
    pub forwarded_for: Option<ForwardedFor<'a>>,
}

impl<'a> Client<'a> {
    /// Splits a client field as logged. A field of comma-separated entries
    /// that are all IP literals or `unknown` is a forwarded-for chain, whose
    /// left-most entry is the original client. Any other field is one
    /// client, so a host name logged with a stray comma stays whole.
    pub fn from_field(field: &'a str) -> Self {
        if memchr::memchr(b',', field.as_bytes()).is_none() {
            return Self::single(field, None);
        }
        let chain = ForwardedFor(field);
        if !chain.entries().all(is_chain_entry) {
            return Self::single(field, None);
        }
        let first = chain.entries().next().unwrap_or_default();
        Self::single(first, Some(chain))
    }

    fn single(entry: &'a str, forwarded_for: Option<ForwardedFor<'a>>) -> Self {
        match entry.parse::<IpAddr>() {
            Ok(address) => Self {
                ip: Some(entry),
                address: Some(address),
                host: None,
                forwarded_for,
            },
            Err(_) => Self {
                ip: None,
                address: None,
                host: Some(entry),
                forwarded_for,
            },
        }
    }
}

/// An X-Forwarded-For chain as logged, for example
/// `192.0.2.10, 198.51.100.7, 127.0.0.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedFor<'a>(pub &'a str);

impl<'a> ForwardedFor<'a> {
    /// Returns the entries in logged order, each without the blanks around
    /// it.
    pub fn entries(&self) -> impl Iterator<Item = &'a str> {
        self.0
            .split(',')
            .map(|entry| entry.trim_matches([' ', '\t']))
    }
}

/// Returns whether `text` is a host name: letters, digits, `-`, `_` and
/// `.`, not starting with `-` or `.`, at most 253 bytes. IPv4 literals
/// match too. `-` alone does not, so an empty ident or user never does.
pub fn is_host_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    let valid_start = bytes
        .first()
        .is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_');
    valid_start
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// Returns whether `text` can be one entry of a forwarded-for chain: an IP
/// literal, or `unknown`, which proxies write for a hop they cannot name.
pub fn is_chain_entry(text: &str) -> bool {
    text.eq_ignore_ascii_case("unknown") || text.parse::<IpAddr>().is_ok()
}

/// Returns whether `field` is a client field: an IP literal, a host name,
/// or a forwarded-for chain.
pub fn is_client_field(field: &str) -> bool {
    if memchr::memchr(b',', field.as_bytes()).is_some() {
        return ForwardedFor(field).entries().all(is_chain_entry);
    }
    is_host_name(field) || field.parse::<IpAddr>().is_ok()
}

/// Returns `Some(has_port)` when `field` is a server name as Apache logs
/// `%v` or `%v:%p`: a host name, an IPv4 literal or an IPv6 literal, with an
/// optional `:port` of 1 to 5 digits. An IPv6 literal carries a port only
/// in brackets (`[2001:db8::1]:443`). Returns `None` for anything else.
pub fn server_name_port(field: &str) -> Option<bool> {
    if let Some(bracketed) = field.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']')?;
        address.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some(false),
            _ => after
                .strip_prefix(':')
                .filter(|port| is_port(port))
                .map(|_| true),
        };
    }
    if field.parse::<Ipv6Addr>().is_ok() {
        return Some(false);
    }
    match field.rsplit_once(':') {
        Some((name, port)) => (is_host_name(name) && is_port(port)).then_some(true),
        None => is_host_name(field).then_some(false),
    }
}

fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// Class of a client address, from the IANA special-purpose address
/// registries for IPv4 and IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// The address of no host: `0.0.0.0`, `::`.
    Unspecified,
    /// The same host: `127.0.0.0/8`, `::1`.
    Loopback,
    /// Networks that are not routed on the internet: `10.0.0.0/8`,
    /// `172.16.0.0/12`, `192.168.0.0/16`, carrier-grade NAT `100.64.0.0/10`,
    /// benchmarking `198.18.0.0/15` and unique local `fc00::/7`.
    Private,
    /// One link only: `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Ranges kept for examples: `192.0.2.0/24`, `198.51.100.0/24`,
    /// `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// Group addresses: `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// Never a valid source: the rest of `0.0.0.0/8` and `240.0.0.0/4`,
    /// which includes the broadcast address `255.255.255.255`.
    Reserved,
    /// Every other address.
    Public,
}

impl AddressClass {
    /// Returns the value written to `client_class`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link_local",
            Self::Documentation => "documentation",
            Self::Multicast => "multicast",
            Self::Reserved => "reserved",
            Self::Public => "public",
        }
    }
}

/// Classifies an address. An IPv6 address that embeds an IPv4 one
/// (`::ffff:0:0/96` mapped, `64:ff9b::/96` NAT64) gets the class of the
/// embedded address.
pub fn classify(address: IpAddr) -> AddressClass {
    match address {
        IpAddr::V4(address) => classify_v4(address),
        IpAddr::V6(address) => classify_v6(address),
    }
}

fn in_v4(address: u32, network: [u8; 4], prefix_length: u32) -> bool {
    let mask = u32::MAX << (32 - prefix_length);
    address & mask == u32::from_be_bytes(network) & mask
}

fn classify_v4(address: Ipv4Addr) -> AddressClass {
    let bits = u32::from(address);
    let is = |network: [u8; 4], prefix_length: u32| in_v4(bits, network, prefix_length);
    if bits == 0 {
        AddressClass::Unspecified
    } else if is([127, 0, 0, 0], 8) {
        AddressClass::Loopback
    } else if is([10, 0, 0, 0], 8)
        || is([172, 16, 0, 0], 12)
        || is([192, 168, 0, 0], 16)
        || is([100, 64, 0, 0], 10)
        || is([198, 18, 0, 0], 15)
    {
        AddressClass::Private
    } else if is([169, 254, 0, 0], 16) {
        AddressClass::LinkLocal
    } else if is([192, 0, 2, 0], 24) || is([198, 51, 100, 0], 24) || is([203, 0, 113, 0], 24) {
        AddressClass::Documentation
    } else if is([224, 0, 0, 0], 4) {
        AddressClass::Multicast
    } else if is([0, 0, 0, 0], 8) || is([240, 0, 0, 0], 4) {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn classify_v6(address: Ipv6Addr) -> AddressClass {
    let bits = u128::from(address);
    let is = |network: u128, prefix_length: u32| {
        let mask = u128::MAX << (128 - prefix_length);
        bits & mask == network & mask
    };
    let embedded_v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if bits == 0 {
        AddressClass::Unspecified
    } else if bits == 1 {
        AddressClass::Loopback
    } else if is(0xffff_0000_0000, 96) || is(0x0064_ff9b << 96, 96) {
        classify_v4(embedded_v4)
    } else if is(0xfc00 << 112, 7) {
        AddressClass::Private
    } else if is(0xfe80 << 112, 10) {
        AddressClass::LinkLocal
    } else if is(0x2001_0db8 << 96, 32) || is(0x3fff << 112, 20) {
        AddressClass::Documentation
    } else if is(0xff00 << 112, 8) {
        AddressClass::Multicast
    } else {
        AddressClass::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(text: &str) -> &'static str {
        let address: IpAddr = text.parse().expect("test address is valid");
        classify(address).as_str()
    }

    #[test]
    fn ipv4_classes() {
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "reserved"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("172.32.0.1", "public"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("100.128.0.1", "public"),
            ("198.18.0.1", "private"),
            ("198.20.0.1", "public"),
            ("169.254.10.20", "link_local"),
            ("192.0.2.71", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.5", "documentation"),
            ("224.0.0.251", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "reserved"),
            ("83.149.9.216", "public"),
            ("8.8.8.8", "public"),
        ];
        for (address, class) in cases {
            assert_eq!(class_of(address), class, "{address}");
        }
    }

    #[test]
    fn ipv6_classes() {
        let cases = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("0:0:0:0:0:0:0:1", "loopback"),
            ("::ffff:192.168.0.1", "private"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:83.149.9.216", "public"),
            ("64:ff9b::10.0.0.1", "private"),
            ("fd12:3456:789a::1", "private"),
            ("fc00::1", "private"),
            ("fe80::1", "link_local"),
            ("febf::1", "link_local"),
            ("2001:db8:85a3::8a2e:370:7334", "documentation"),
            ("3fff:fff::1", "documentation"),
            ("ff02::1", "multicast"),
            ("2001:41d0:8:f69::1", "public"),
            ("2a02:598:2::1", "public"),
        ];
        for (address, class) in cases {
            assert_eq!(class_of(address), class, "{address}");
        }
    }

    #[test]
    fn client_ip_host_and_chain() {
        let ip = Client::from_field("192.0.2.1");
        assert_eq!(ip.ip, Some("192.0.2.1"));
        assert_eq!(ip.host, None);
        assert_eq!(ip.forwarded_for, None);

        let host = Client::from_field("crawl.example.com");
        assert_eq!(host.ip, None);
        assert_eq!(host.host, Some("crawl.example.com"));

        let chain = Client::from_field("192.0.2.10, 198.51.100.7,127.0.0.1");
        assert_eq!(chain.ip, Some("192.0.2.10"));
        assert_eq!(chain.host, None);
        let entries: Vec<&str> = chain.forwarded_for.expect("a chain").entries().collect();
        assert_eq!(entries, ["192.0.2.10", "198.51.100.7", "127.0.0.1"]);

        let unknown_first = Client::from_field("unknown, 192.0.2.1");
        assert_eq!(unknown_first.ip, None);
        assert_eq!(unknown_first.host, Some("unknown"));
        assert!(unknown_first.forwarded_for.is_some());

        // A host name with a stray comma, as in the NASA trace of 1995.
        let typo = Client::from_field("webber2146,ucr.edu");
        assert_eq!(typo.ip, None);
        assert_eq!(typo.host, Some("webber2146,ucr.edu"));
        assert_eq!(typo.forwarded_for, None);
    }

    #[test]
    fn host_name_syntax() {
        for name in [
            "example.com",
            "ix-den14-15.ix.netcom.com",
            "localhost",
            "_srv.example",
            "192.0.2.1",
        ] {
            assert!(is_host_name(name), "{name}");
        }
        for text in [
            "",
            "-",
            ".example",
            "-host",
            "a b",
            "a,b",
            "host:80",
            "ex\"ample",
        ] {
            assert!(!is_host_name(text), "{text:?}");
        }
    }

    #[test]
    fn server_names_with_ports() {
        assert_eq!(server_name_port("www.example.com:443"), Some(true));
        assert_eq!(server_name_port("www.example.com"), Some(false));
        assert_eq!(server_name_port("192.0.2.1:8080"), Some(true));
        assert_eq!(server_name_port("[2001:db8::1]:443"), Some(true));
        assert_eq!(server_name_port("[2001:db8::1]"), Some(false));
        assert_eq!(server_name_port("2001:db8::1"), Some(false));
        assert_eq!(server_name_port("www.example.com:"), None);
        assert_eq!(server_name_port("www.example.com:123456"), None);
        assert_eq!(server_name_port("[2001:db8::1]443"), None);
        assert_eq!(server_name_port("-"), None);
        assert_eq!(server_name_port("a,b"), None);
    }

    #[test]
    fn client_field_shapes() {
        assert!(is_client_field("192.0.2.1"));
        assert!(is_client_field("2001:db8::1"));
        assert!(is_client_field("crawl.example.com"));
        assert!(is_client_field("192.0.2.10, 198.51.100.7"));
        assert!(is_client_field("unknown,192.0.2.10"));
        assert!(!is_client_field("webber2146,ucr.edu"));
        assert!(!is_client_field("-"));
        assert!(!is_client_field("192.0.2.10,,198.51.100.7"));
        assert!(!is_client_field("\"bob\""));
    }
}
