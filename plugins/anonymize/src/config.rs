//! The plugin's settings from the host's `init` config, validated once.

use std::fmt;

use crate::address::Prefixes;

/// Config key that selects the input format.
pub const MODE_KEY: &str = "mode";
/// Config key of the IPv4 prefix length.
pub const IPV4_PREFIX_KEY: &str = "ipv4_prefix";
/// Config key of the IPv6 prefix length.
pub const IPV6_PREFIX_KEY: &str = "ipv6_prefix";
/// Config key of the policy for clients logged by host name.
pub const HOSTNAMES_KEY: &str = "hostnames";
/// Config key that empties the `user` and `ident` fields of JSON records.
pub const DROP_USER_KEY: &str = "drop_user";

/// Every accepted config key, in the order the error message lists them.
pub const KEYS: [&str; 5] = [
    MODE_KEY,
    IPV4_PREFIX_KEY,
    IPV6_PREFIX_KEY,
    HOSTNAMES_KEY,
    DROP_USER_KEY,
];

/// IPv4 bits kept by default. A /24 leaves the network of up to 256
/// hosts, the truncation that web analytics tools commonly apply.
pub const DEFAULT_IPV4_PREFIX: u8 = 24;
/// IPv6 bits kept by default. A /48 is the usual allocation to one site,
/// so it names the site's network but no subnet or host in it.
pub const DEFAULT_IPV6_PREFIX: u8 = 48;

/// Max value of `ipv4_prefix`: all bits of an IPv4 address.
pub const MAX_IPV4_PREFIX: u8 = 32;
/// Max value of `ipv6_prefix`: all bits of an IPv6 address.
pub const MAX_IPV6_PREFIX: u8 = 128;

/// The input format of the records the plugin reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// JSON objects as the access-log plugin emits them.
    #[default]
    Json,
    /// Raw access-log lines.
    Line,
}

/// Policy for a client logged as a host name instead of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostnamePolicy {
    /// The name passes unchanged.
    Keep,
    /// The name is replaced: by `-` in a line, by `null` in a record's
    /// `host` and by `unknown` in a forwarded-for chain.
    #[default]
    Drop,
    /// The record is rejected and goes to the dead-letter topic.
    Reject,
}

impl HostnamePolicy {
    /// Applies the policy to a client that is not an IP address. Returns
    /// the name to keep, `None` when it is dropped, or the reason to reject
    /// the record. `-` and `unknown` (any case) name no client, so they
    /// are always kept.
    pub fn apply(self, name: &str) -> Result<Option<&str>, String> {
        if name == "-" || name.eq_ignore_ascii_case("unknown") {
            return Ok(Some(name));
        }
        match self {
            Self::Keep => Ok(Some(name)),
            Self::Drop => Ok(None),
            Self::Reject => Err(format!(
                "client {name:?} is not an IP address, and hostnames=reject"
            )),
        }
    }
}

/// Every setting of the plugin, as `init` validated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymizeConfig {
    /// Input format.
    pub mode: Mode,
    /// Prefix lengths that addresses are truncated to.
    pub prefixes: Prefixes,
    /// Treatment of clients logged as host names.
    pub hostnames: HostnamePolicy,
    /// Whether the `user` and `ident` fields of a JSON record become `null`.
    pub drop_user: bool,
}

impl Default for AnonymizeConfig {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            prefixes: Prefixes {
                ipv4: DEFAULT_IPV4_PREFIX,
                ipv6: DEFAULT_IPV6_PREFIX,
            },
            hostnames: HostnamePolicy::default(),
            drop_user: false,
        }
    }
}

impl AnonymizeConfig {
    /// Builds the settings from the `init` config. Keys that are missing
    /// keep their defaults, and values may have blanks around them.
    pub fn from_config(config: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut result = Self::default();
        let mut seen: Vec<&str> = Vec::with_capacity(config.len());
        for (key, value) in config {
            if seen.contains(&key.as_str()) {
                return Err(ConfigError::DuplicateKey(key.clone()));
            }
            seen.push(key);
            let trimmed = value.trim();
            let invalid = |expected: &'static str| ConfigError::InvalidValue {
                key: key.clone(),
                value: value.clone(),
                expected,
            };
            match key.as_str() {
                MODE_KEY => {
                    result.mode = match trimmed {
                        "json" => Mode::Json,
                        "line" => Mode::Line,
                        _ => return Err(invalid("`json` or `line`")),
                    }
                }
                IPV4_PREFIX_KEY => {
                    result.prefixes.ipv4 = parse_prefix(trimmed, MAX_IPV4_PREFIX)
                        .ok_or_else(|| invalid("an integer from 0 to 32"))?;
                }
                IPV6_PREFIX_KEY => {
                    result.prefixes.ipv6 = parse_prefix(trimmed, MAX_IPV6_PREFIX)
                        .ok_or_else(|| invalid("an integer from 0 to 128"))?;
                }
                HOSTNAMES_KEY => {
                    result.hostnames = match trimmed {
                        "keep" => HostnamePolicy::Keep,
                        "drop" => HostnamePolicy::Drop,
                        "reject" => HostnamePolicy::Reject,
                        _ => return Err(invalid("`keep`, `drop` or `reject`")),
                    }
                }
                DROP_USER_KEY => {
                    result.drop_user = match trimmed {
                        "true" => true,
                        "false" => false,
                        _ => return Err(invalid("`true` or `false`")),
                    }
                }
                _ => return Err(ConfigError::UnknownKey(key.clone())),
            }
        }
        if result.drop_user && result.mode == Mode::Line {
            return Err(ConfigError::DropUserInLineMode);
        }
        Ok(result)
    }
}

fn parse_prefix(text: &str, max: u8) -> Option<u8> {
    text.parse::<u8>().ok().filter(|prefix| *prefix <= max)
}

/// A config that `init` rejects. The message names the key, the value and
/// what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A key that is not in [`KEYS`].
    UnknownKey(String),
    /// The key appears more than once.
    DuplicateKey(String),
    /// The value is outside what the key accepts.
    InvalidValue {
        /// The config key.
        key: String,
        /// The value as given.
        value: String,
        /// Accepted values, as the message names them.
        expected: &'static str,
    },
    /// `drop_user=true` was combined with `mode=line`.
    DropUserInLineMode,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey(key) => write!(
                f,
                "unknown config key `{key}`; accepted keys: {}",
                KEYS.join(", ")
            ),
            Self::DuplicateKey(key) => write!(f, "config key `{key}` is given more than once"),
            Self::InvalidValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "invalid value {value:?} for `{key}`: expected {expected}"
            ),
            Self::DropUserInLineMode => write!(
                f,
                "invalid value \"true\" for `{DROP_USER_KEY}`: it needs `{MODE_KEY}=json`, \
                 because `{MODE_KEY}=line` rewrites only the client field"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<AnonymizeConfig, ConfigError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        AnonymizeConfig::from_config(&pairs)
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        config(pairs).expect_err("invalid config").to_string()
    }

    #[test]
    fn empty_config_keeps_defaults() {
        let defaults = config(&[]).expect("empty config is valid");
        assert_eq!(defaults.mode, Mode::Json);
        assert_eq!(defaults.prefixes, Prefixes { ipv4: 24, ipv6: 48 });
        assert_eq!(defaults.hostnames, HostnamePolicy::Drop);
        assert!(!defaults.drop_user);
    }

    #[test]
    fn every_key_parsed() {
        let parsed = config(&[
            ("mode", "line"),
            ("ipv4_prefix", " 0 "),
            ("ipv6_prefix", "128"),
            ("hostnames", "reject"),
            ("drop_user", "false"),
        ])
        .expect("valid config");
        assert_eq!(parsed.mode, Mode::Line);
        assert_eq!(parsed.prefixes, Prefixes { ipv4: 0, ipv6: 128 });
        assert_eq!(parsed.hostnames, HostnamePolicy::Reject);
        assert!(!parsed.drop_user);

        let json = config(&[("drop_user", "true"), ("hostnames", "keep")]).expect("valid");
        assert!(json.drop_user);
        assert_eq!(json.hostnames, HostnamePolicy::Keep);
        assert_eq!(
            config(&[("ipv4_prefix", "32")])
                .expect("valid")
                .prefixes
                .ipv4,
            32
        );
    }

    #[test]
    fn rejects_prefix_out_of_range() {
        assert_eq!(
            error(&[("ipv4_prefix", "33")]),
            "invalid value \"33\" for `ipv4_prefix`: expected an integer from 0 to 32"
        );
        assert_eq!(
            error(&[("ipv6_prefix", "129")]),
            "invalid value \"129\" for `ipv6_prefix`: expected an integer from 0 to 128"
        );
        for value in ["-1", "", "24.5", "/24", "256", "x"] {
            let message = error(&[("ipv4_prefix", value)]);
            assert!(message.contains("`ipv4_prefix`"), "{message}");
            assert!(message.contains(&format!("{value:?}")), "{message}");
        }
    }

    #[test]
    fn rejects_unknown_mode_and_policy() {
        assert_eq!(
            error(&[("mode", "csv")]),
            "invalid value \"csv\" for `mode`: expected `json` or `line`"
        );
        assert_eq!(
            error(&[("hostnames", "hash")]),
            "invalid value \"hash\" for `hostnames`: expected `keep`, `drop` or `reject`"
        );
        assert_eq!(
            error(&[("drop_user", "yes")]),
            "invalid value \"yes\" for `drop_user`: expected `true` or `false`"
        );
    }

    #[test]
    fn rejects_unknown_key() {
        assert_eq!(
            error(&[("ipv4_prefix_length", "24")]),
            "unknown config key `ipv4_prefix_length`; accepted keys: \
             mode, ipv4_prefix, ipv6_prefix, hostnames, drop_user"
        );
    }

    #[test]
    fn rejects_duplicate_key() {
        assert_eq!(
            error(&[("ipv4_prefix", "24"), ("ipv4_prefix", "16")]),
            "config key `ipv4_prefix` is given more than once"
        );
    }

    #[test]
    fn rejects_drop_user_in_line_mode() {
        let message = error(&[("mode", "line"), ("drop_user", "true")]);
        assert!(message.contains("`drop_user`"), "{message}");
        assert!(message.contains("`mode=json`"), "{message}");
    }
}
