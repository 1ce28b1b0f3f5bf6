//! weblog's default enrichment plugin: parses Common and Combined Log Format
//! lines into JSON records and enriches them with the service, route,
//! status, client and user-agent classes of each request.
//!
//! This file only adapts the `weblog:enrich` WIT world to the plain
//! functions in [`config`] and [`output`], which the tests call natively.
//!
//! Layout:
//! - [`parse`]: the line scanner, its record and its rejection reasons.
//! - [`client`], [`request`], [`timestamp`]: the fields that need more
//!   than a split, and what is derived from them.
//! - [`user_agent`]: the `user_agent_class` heuristic.
//! - [`output`] and [`json`]: the enriched record as JSON text.
//! - [`config`]: the `init` settings.

use std::cell::RefCell;

pub mod client;
pub mod config;
pub mod json;
pub mod output;
pub mod parse;
pub mod request;
pub mod timestamp;
pub mod user_agent;

use config::PluginConfig;

#[allow(unsafe_code)] // The generated canonical ABI glue uses `unsafe`.
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "enricher" });
}

use bindings::exports::weblog::enrich::plugin::{Guest, InputRecord, Outcome, PluginInfo};

thread_local! {
    /// Settings from `init`, or the built-in ones before `init` is called.
    static CONFIG: RefCell<PluginConfig> = RefCell::new(PluginConfig::default());
}

struct AccessLogPlugin;

impl Guest for AccessLogPlugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "access-log".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let config = PluginConfig::from_config(&config).map_err(|error| error.to_string())?;
        CONFIG.with(|current| *current.borrow_mut() = config);
        Ok(())
    }

    fn enrich_batch(records: Vec<InputRecord>) -> Vec<Outcome> {
        CONFIG.with_borrow(|config| {
            records
                .iter()
                .map(|record| match output::enrich_line(&record.value, config) {
                    Ok(json) => Outcome::Emit(vec![json]),
                    Err(rejection) => Outcome::Reject(rejection.to_string()),
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
    use super::{bindings, AccessLogPlugin};
    bindings::export!(AccessLogPlugin with_types_in bindings);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: &[u8]) -> InputRecord {
        InputRecord {
            topic: "weblog.raw".to_owned(),
            partition: 0,
            offset: 7,
            timestamp_ms: None,
            key: None,
            value: value.to_vec(),
        }
    }

    const ORDERS_LINE: &[u8] =
        b"198.51.100.23 - - [16/Apr/2018:16:19:20 +0000] \"POST /api/orders HTTP/1.1\" 201 73";

    fn emitted_service(outcome: &Outcome) -> String {
        let Outcome::Emit(records) = outcome else {
            panic!("expected an emit outcome, got {outcome:?}");
        };
        assert_eq!(records.len(), 1);
        let record: serde_json::Value = serde_json::from_str(&records[0]).expect("valid JSON");
        record["service"]
            .as_str()
            .expect("service is a string")
            .to_owned()
    }

    #[test]
    fn info_names_plugin_and_version() {
        let info = AccessLogPlugin::info();
        assert_eq!(info.name, "access-log");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn batch_before_init_uses_defaults() {
        let outcomes = AccessLogPlugin::enrich_batch(vec![input(ORDERS_LINE)]);
        assert_eq!(outcomes.len(), 1);
        assert_eq!(emitted_service(&outcomes[0]), "orders-api");
    }

    #[test]
    fn batch_outcomes_in_input_order() {
        let outcomes = AccessLogPlugin::enrich_batch(vec![
            input(b""),
            input(ORDERS_LINE),
            input(b"192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" - 1"),
        ]);
        assert_eq!(outcomes.len(), 3);
        assert!(
            matches!(&outcomes[0], Outcome::Reject(reason) if reason == "empty line: no log record"),
            "{:?}",
            outcomes[0]
        );
        assert_eq!(emitted_service(&outcomes[1]), "orders-api");
        assert!(
            matches!(&outcomes[2], Outcome::Reject(reason) if reason.starts_with("invalid status")),
            "{:?}",
            outcomes[2]
        );
    }

    #[test]
    fn init_sets_service_rules() {
        AccessLogPlugin::init(vec![(
            "service.default".to_owned(),
            "storefront".to_owned(),
        )])
        .expect("valid config");
        let outcomes = AccessLogPlugin::enrich_batch(vec![input(
            b"192.0.2.1 - - [20/Mar/2015:13:45:10 +0000] \"GET / HTTP/1.1\" 200 1",
        )]);
        assert_eq!(emitted_service(&outcomes[0]), "storefront");

        // The rules live in a thread-local, so restore them for any test
        // that runs later on this thread.
        AccessLogPlugin::init(Vec::new()).expect("empty config is valid");
    }

    #[test]
    fn init_reports_bad_key() {
        let error = AccessLogPlugin::init(vec![("routes".to_owned(), "x".to_owned())])
            .expect_err("unknown key");
        assert!(error.contains("`routes`"), "{error}");
        assert!(error.contains("service.route.<path-prefix>"), "{error}");
    }
}
