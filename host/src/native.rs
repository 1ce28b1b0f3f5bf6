//! The default plugin's parser called in the host process instead of in its
//! component, behind the `native-plugin` feature and the hidden
//! `run --native-plugin` flag. It exists to measure what the sandbox costs:
//! records still go through the same batches, output checks, headers and
//! producer, and only the call into the component is replaced.
//!
//! NOTE: records keep naming the loaded component in their plugin headers,
//! although its code does not run.

use std::sync::OnceLock;

use weblog_access_log::config::PluginConfig;
use weblog_access_log::output::enrich_line;

use crate::bindings::{InputRecord, Outcome};

/// The parser's settings, set once when the native parser is enabled.
static NATIVE_CONFIG: OnceLock<PluginConfig> = OnceLock::new();

/// Makes every plugin call in this process use the native parser with
/// `config`, the settings that would go to the component's `init`.
pub fn enable(config: &[(String, String)]) -> anyhow::Result<()> {
    let config = PluginConfig::from_config(config).map_err(|error| {
        anyhow::anyhow!("invalid plugin setting for the native parser: {error}")
    })?;
    NATIVE_CONFIG
        .set(config)
        .map_err(|_| anyhow::anyhow!("the native parser is already enabled"))?;
    tracing::info!("native parser enabled in place of the plugin component");
    Ok(())
}

/// Enriches `records` natively, the way the component's `enrich-batch`
/// does, or returns `None` when the native parser is not enabled.
pub(crate) fn enrich_batch(records: &[InputRecord]) -> Option<Vec<Outcome>> {
    let config = NATIVE_CONFIG.get()?;
    let outcomes = records
        .iter()
        .map(|record| match enrich_line(&record.value, config) {
            Ok(json) => Outcome::Emit(vec![json]),
            Err(rejection) => Outcome::Reject(rejection.to_string()),
        })
        .collect();
    Some(outcomes)
}
