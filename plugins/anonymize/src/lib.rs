//! weblog plugin that anonymises client addresses: IPv4 addresses are
//! truncated to a network prefix (default /24) and IPv6 addresses to
//! another (default /48), so the records keep the network but no longer
//! name a host.
//!
//! This file only adapts the `weblog:enrich` WIT world to the plain
//! functions of the modules, which the tests call natively.
//!
//! Layout:
//! - [`address`]: truncating one address and reading IP literals.
//! - [`record`]: `mode=json`, records from the access-log plugin.
//! - [`line`]: `mode=line`, raw access-log lines.
//! - [`config`]: the `init` settings.

use std::cell::RefCell;

pub mod address;
pub mod config;
pub mod line;
pub mod record;

use config::{AnonymizeConfig, Mode};

#[allow(unsafe_code)] // The generated canonical ABI glue uses `unsafe`.
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "enricher" });
}

use bindings::exports::weblog::enrich::plugin::{Guest, InputRecord, Outcome, PluginInfo};

thread_local! {
    /// Settings from `init`, or the defaults before `init` is called.
    static CONFIG: RefCell<AnonymizeConfig> = RefCell::new(AnonymizeConfig::default());
}

/// Anonymises one record value in the format `config.mode` selects and
/// returns the JSON text to emit, or the reason to reject the record.
pub fn anonymize(value: &[u8], config: &AnonymizeConfig) -> Result<String, String> {
    match config.mode {
        Mode::Json => record::anonymize_record(value, config),
        Mode::Line => line::anonymize_line(value, config),
    }
}

struct AnonymizePlugin;

impl Guest for AnonymizePlugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "anonymize".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let config = AnonymizeConfig::from_config(&config).map_err(|error| error.to_string())?;
        CONFIG.with(|current| *current.borrow_mut() = config);
        Ok(())
    }

    fn enrich_batch(records: Vec<InputRecord>) -> Vec<Outcome> {
        CONFIG.with_borrow(|config| {
            records
                .iter()
                .map(|record| match anonymize(&record.value, config) {
                    Ok(json) => Outcome::Emit(vec![json]),
                    Err(reason) => Outcome::Reject(reason),
                })
                .collect()
        })
    }
}

// The export symbols are named after the WIT interface (`weblog:enrich/...`),
// which a native linker rejects, so they exist only in the component.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // The export glue uses `unsafe`.
mod exports {
    use super::{bindings, AnonymizePlugin};
    bindings::export!(AnonymizePlugin with_types_in bindings);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: &[u8]) -> InputRecord {
        InputRecord {
            topic: "web-logs-enriched".to_owned(),
            partition: 0,
            offset: 3,
            timestamp_ms: None,
            key: None,
            value: value.to_vec(),
        }
    }

    fn pairs(config: &[(&str, &str)]) -> Vec<(String, String)> {
        config
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn info_names_plugin_and_version() {
        let info = AnonymizePlugin::info();
        assert_eq!(info.name, "anonymize");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn batch_outcomes_in_input_order() {
        AnonymizePlugin::init(Vec::new()).expect("empty config is valid");
        let outcomes = AnonymizePlugin::enrich_batch(vec![
            input(br#"{"ip":"203.0.113.9"}"#),
            input(b"not json"),
            input(br#"{"ip":"2001:db8:1:2::3"}"#),
        ]);
        assert_eq!(outcomes.len(), 3);
        assert!(
            matches!(&outcomes[0], Outcome::Emit(records) if records == &[r#"{"ip":"203.0.113.0"}"#]),
            "{:?}",
            outcomes[0]
        );
        assert!(
            matches!(&outcomes[1], Outcome::Reject(reason) if reason.starts_with("invalid JSON record")),
            "{:?}",
            outcomes[1]
        );
        assert!(
            matches!(&outcomes[2], Outcome::Emit(records) if records == &[r#"{"ip":"2001:db8:1::"}"#]),
            "{:?}",
            outcomes[2]
        );
    }

    #[test]
    fn init_selects_line_mode() {
        AnonymizePlugin::init(pairs(&[("mode", "line"), ("ipv4_prefix", "8")]))
            .expect("valid config");
        let outcomes = AnonymizePlugin::enrich_batch(vec![input(b"198.51.100.7 - - [x]")]);
        assert!(
            matches!(&outcomes[0], Outcome::Emit(records) if records == &[r#"{"line":"198.0.0.0 - - [x]"}"#]),
            "{:?}",
            outcomes[0]
        );

        // The settings live in a thread-local, so restore them for any test
        // that runs later on this thread.
        AnonymizePlugin::init(Vec::new()).expect("empty config is valid");
    }

    #[test]
    fn init_reports_invalid_value() {
        let error =
            AnonymizePlugin::init(pairs(&[("ipv6_prefix", "200")])).expect_err("out of range");
        assert_eq!(
            error,
            "invalid value \"200\" for `ipv6_prefix`: expected an integer from 0 to 128"
        );
    }
}
