//! The plugin's settings from the host's `init` config: the rules that name
//! the `service` of each record from its request path, and the minimum
//! length of a hex-like identifier in a `route` template.

use std::fmt;

/// Config key of the service name used when no route matches.
pub const DEFAULT_KEY: &str = "service.default";
/// Prefix of the config keys that map a path prefix to a service name.
pub const ROUTE_KEY_PREFIX: &str = "service.route.";

/// Config key of the minimum length of a hex-like route segment.
pub const HEX_ID_MIN_LENGTH_KEY: &str = "route.hex_id_min_length";

/// Hex-like segments shorter than this stay in a route template. Eight hex
/// digits is a 32-bit value, and shorter hex words with a digit (`e2e`,
/// `b2b`, `abc123`) are more often names than identifiers.
pub const DEFAULT_HEX_ID_MIN_LENGTH: usize = 8;
/// Accepted values of [`HEX_ID_MIN_LENGTH_KEY`]. Below 4, names such as
/// `a1` or `e2e` would become `{id}`.
pub const HEX_ID_MIN_LENGTH_RANGE: std::ops::RangeInclusive<usize> = 4..=64;

/// Every setting of the plugin, as `init` validated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// Rules that name the `service` of a record.
    pub services: ServiceRules,
    /// Minimum length of a hex-like segment that a route template replaces
    /// with `{id}` (see [`crate::request::is_identifier`]).
    pub hex_id_min_length: usize,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            services: ServiceRules::default(),
            hex_id_min_length: DEFAULT_HEX_ID_MIN_LENGTH,
        }
    }
}

impl PluginConfig {
    /// Builds the settings from the `init` config. Keys other than
    /// [`HEX_ID_MIN_LENGTH_KEY`] go to [`ServiceRules::from_config`].
    pub fn from_config(config: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut hex_id_min_length = None;
        let mut service_config = Vec::with_capacity(config.len());
        for (key, value) in config {
            if key != HEX_ID_MIN_LENGTH_KEY {
                service_config.push((key.clone(), value.clone()));
                continue;
            }
            if hex_id_min_length.is_some() {
                return Err(ConfigError::DuplicateKey(key.clone()));
            }
            let length = value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|length| HEX_ID_MIN_LENGTH_RANGE.contains(length))
                .ok_or_else(|| ConfigError::InvalidHexIdMinLength(value.clone()))?;
            hex_id_min_length = Some(length);
        }
        Ok(Self {
            services: ServiceRules::from_config(&service_config)?,
            hex_id_min_length: hex_id_min_length.unwrap_or(DEFAULT_HEX_ID_MIN_LENGTH),
        })
    }
}

/// Service name used when the config does not set [`DEFAULT_KEY`].
pub const BUILT_IN_DEFAULT: &str = "web";
/// Routes used when the config sets no [`ROUTE_KEY_PREFIX`] key, as
/// `(path prefix, service name)`.
pub const BUILT_IN_ROUTES: [(&str, &str); 1] = [("/api/orders", "orders-api")];

/// Rules that name the service behind a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRules {
    default: String,
    /// `(path prefix, service name)`, longest prefix first.
    routes: Vec<(String, String)>,
}

impl Default for ServiceRules {
    fn default() -> Self {
        Self::new(
            BUILT_IN_DEFAULT.to_owned(),
            BUILT_IN_ROUTES
                .iter()
                .map(|(prefix, name)| ((*prefix).to_owned(), (*name).to_owned()))
                .collect(),
        )
    }
}

impl ServiceRules {
    fn new(default: String, mut routes: Vec<(String, String)>) -> Self {
        routes.sort_by(|(left, _), (right, _)| right.len().cmp(&left.len()).then(left.cmp(right)));
        Self { default, routes }
    }

    /// Builds the rules from the `init` config's service keys.
    ///
    /// `service.default` replaces the built-in default name. Any
    /// `service.route.<PATH-PREFIX>` key replaces all built-in routes, so a
    /// config that sets only `service.default` keeps them.
    pub fn from_config(config: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut default = None;
        let mut routes: Vec<(String, String)> = Vec::new();

        for (key, value) in config {
            let is_known = key == DEFAULT_KEY || key.starts_with(ROUTE_KEY_PREFIX);
            if !is_known {
                return Err(ConfigError::UnknownKey(key.clone()));
            }
            if value.trim().is_empty() {
                return Err(ConfigError::EmptyServiceName(key.clone()));
            }

            if key == DEFAULT_KEY {
                if default.is_some() {
                    return Err(ConfigError::DuplicateKey(key.clone()));
                }
                default = Some(value.clone());
                continue;
            }

            let prefix = &key[ROUTE_KEY_PREFIX.len()..];
            if prefix.is_empty() {
                return Err(ConfigError::EmptyPathPrefix(key.clone()));
            }
            if routes.iter().any(|(existing, _)| existing == prefix) {
                return Err(ConfigError::DuplicateKey(key.clone()));
            }
            routes.push((prefix.to_owned(), value.clone()));
        }

        let built_in = Self::default();
        let default = default.unwrap_or(built_in.default);
        let routes = if routes.is_empty() {
            built_in.routes
        } else {
            routes
        };
        Ok(Self::new(default, routes))
    }

    /// Returns the service of the route with the longest prefix of `path`,
    /// or the default name when none matches or there is no path.
    ///
    /// Prefixes match bytes, not path segments: `/api/orders` also matches
    /// `/api/orders-archive`.
    pub fn service_for(&self, path: Option<&str>) -> &str {
        let Some(path) = path else {
            return &self.default;
        };
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map_or(&self.default, |(_, name)| name)
    }
}

/// A config entry that `init` rejects. `Display` gives the message the host
/// shows the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The key is neither `service.default` nor `service.route.<prefix>`.
    UnknownKey(String),
    /// The key's service name is empty or only whitespace.
    EmptyServiceName(String),
    /// The key is `service.route.` with nothing after it.
    EmptyPathPrefix(String),
    /// The key, or a route for the same prefix, appears twice.
    DuplicateKey(String),
    /// The value of `route.hex_id_min_length` is not an integer in
    /// [`HEX_ID_MIN_LENGTH_RANGE`].
    InvalidHexIdMinLength(String),
}

const ACCEPTED_KEYS: &str = "accepted keys are `service.default`, `service.route.<path-prefix>` \
                             and `route.hex_id_min_length`";

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey(key) => write!(f, "unknown config key `{key}`: {ACCEPTED_KEYS}"),
            Self::EmptyServiceName(key) => {
                write!(f, "config key `{key}` has an empty service name")
            }
            Self::EmptyPathPrefix(key) => write!(
                f,
                "config key `{key}` has an empty path prefix: use `{DEFAULT_KEY}` to name the \
                 service for unmatched paths"
            ),
            Self::DuplicateKey(key) => write!(f, "config key `{key}` is set more than once"),
            Self::InvalidHexIdMinLength(value) => write!(
                f,
                "invalid value `{value}` for config key `{HEX_ID_MIN_LENGTH_KEY}`: expected an \
                 integer from {} to {}",
                HEX_ID_MIN_LENGTH_RANGE.start(),
                HEX_ID_MIN_LENGTH_RANGE.end()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::is_identifier;

    fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn empty_config_uses_built_in_rules() {
        let rules = ServiceRules::from_config(&[]).expect("empty config is valid");
        assert_eq!(rules, ServiceRules::default());
        assert_eq!(rules.service_for(Some("/api/orders/123")), "orders-api");
        assert_eq!(rules.service_for(Some("/index.html")), "web");
        assert_eq!(rules.service_for(None), "web");
    }

    #[test]
    fn longest_prefix_wins() {
        let rules = ServiceRules::from_config(&config(&[
            ("service.route./api", "api"),
            ("service.route./api/orders/export", "exports"),
            ("service.route./api/orders", "orders-api"),
        ]))
        .expect("valid config");
        assert_eq!(rules.service_for(Some("/api/orders/export/1")), "exports");
        assert_eq!(rules.service_for(Some("/api/orders/2")), "orders-api");
        assert_eq!(rules.service_for(Some("/api/users")), "api");
        assert_eq!(rules.service_for(Some("/about")), "web");
    }

    #[test]
    fn prefix_matches_bytes_not_segments() {
        let rules = ServiceRules::default();
        assert_eq!(rules.service_for(Some("/api/orders-archive")), "orders-api");
    }

    #[test]
    fn default_key_keeps_built_in_routes() {
        let rules =
            ServiceRules::from_config(&config(&[("service.default", "site")])).expect("valid");
        assert_eq!(rules.service_for(Some("/api/orders")), "orders-api");
        assert_eq!(rules.service_for(Some("/")), "site");
        assert_eq!(rules.service_for(None), "site");
    }

    #[test]
    fn route_keys_replace_built_in_routes() {
        let rules =
            ServiceRules::from_config(&config(&[("service.route./shop", "shop")])).expect("valid");
        assert_eq!(rules.service_for(Some("/shop/cart")), "shop");
        assert_eq!(rules.service_for(Some("/api/orders")), "web");
    }

    #[test]
    fn rejects_unknown_key() {
        let error = ServiceRules::from_config(&config(&[("service.defualt", "x")]))
            .expect_err("misspelt key");
        assert_eq!(error, ConfigError::UnknownKey("service.defualt".to_owned()));
        assert_eq!(
            error.to_string(),
            "unknown config key `service.defualt`: accepted keys are `service.default`, \
             `service.route.<path-prefix>` and `route.hex_id_min_length`"
        );
    }

    #[test]
    fn rejects_empty_service_name() {
        for key in ["service.default", "service.route./api"] {
            for value in ["", "  "] {
                let error =
                    ServiceRules::from_config(&config(&[(key, value)])).expect_err("empty name");
                assert_eq!(error, ConfigError::EmptyServiceName(key.to_owned()));
            }
        }
        assert_eq!(
            ConfigError::EmptyServiceName("service.route./api".to_owned()).to_string(),
            "config key `service.route./api` has an empty service name"
        );
    }

    #[test]
    fn rejects_empty_path_prefix() {
        let error = ServiceRules::from_config(&config(&[("service.route.", "x")]))
            .expect_err("empty prefix");
        assert_eq!(
            error,
            ConfigError::EmptyPathPrefix("service.route.".to_owned())
        );
        assert_eq!(
            error.to_string(),
            "config key `service.route.` has an empty path prefix: use `service.default` to \
             name the service for unmatched paths"
        );
    }

    #[test]
    fn rejects_duplicate_keys() {
        for key in ["service.default", "service.route./api"] {
            let error = ServiceRules::from_config(&config(&[(key, "a"), (key, "b")]))
                .expect_err("duplicate key");
            assert_eq!(error, ConfigError::DuplicateKey(key.to_owned()));
        }
        assert_eq!(
            ConfigError::DuplicateKey("service.default".to_owned()).to_string(),
            "config key `service.default` is set more than once"
        );
    }

    #[test]
    fn hex_id_min_length_default_and_set() {
        let settings = PluginConfig::from_config(&[]).expect("empty config is valid");
        assert_eq!(settings, PluginConfig::default());
        assert_eq!(settings.hex_id_min_length, 8);

        let settings = PluginConfig::from_config(&config(&[
            ("route.hex_id_min_length", "12"),
            ("service.default", "site"),
        ]))
        .expect("valid config");
        assert_eq!(settings.hex_id_min_length, 12);
        assert_eq!(settings.services.service_for(None), "site");
        assert!(!is_identifier("a1b2c3d4e5f", settings.hex_id_min_length));
        assert!(is_identifier("a1b2c3d4e5f6", settings.hex_id_min_length));
    }

    #[test]
    fn rejects_invalid_hex_id_min_length() {
        for value in ["", "3", "65", "eight", "-8", "8.0"] {
            let error = PluginConfig::from_config(&config(&[("route.hex_id_min_length", value)]))
                .expect_err("invalid length");
            assert_eq!(error, ConfigError::InvalidHexIdMinLength(value.to_owned()));
        }
        assert_eq!(
            ConfigError::InvalidHexIdMinLength("3".to_owned()).to_string(),
            "invalid value `3` for config key `route.hex_id_min_length`: expected an integer \
             from 4 to 64"
        );
        let error = PluginConfig::from_config(&config(&[
            ("route.hex_id_min_length", "8"),
            ("route.hex_id_min_length", "9"),
        ]))
        .expect_err("duplicate key");
        assert_eq!(
            error,
            ConfigError::DuplicateKey("route.hex_id_min_length".to_owned())
        );
    }

    #[test]
    fn plugin_config_passes_service_errors() {
        let error =
            PluginConfig::from_config(&config(&[("route.other", "x")])).expect_err("unknown key");
        assert_eq!(error, ConfigError::UnknownKey("route.other".to_owned()));
    }
}
