//! Loading a plugin component and calling it safely.
//!
//! A [`Plugin`] owns one compiled component and one live instance, reused
//! across batches. A call can trap, time out, hit the memory limit or
//! return output that breaks the contract. Then the instance is thrown
//! away, because a trapped instance rejects every later call, and the batch
//! is split in halves until the records that fail on their own are found.
//! Those become failures for the dead-letter topic; every other record is
//! enriched once. Failed calls on one batch may take at most
//! [`ISOLATION_BUDGET_DEADLINES`] CPU deadlines, so that a plugin that
//! fails on every record cannot stall the host for hours.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use wasmtime::component::{types::ComponentItem, Component, Linker};
use wasmtime::{Engine, Store};

use crate::bindings::{EnricherPre, InputRecord, Outcome, PLUGIN_INTERFACE, WIT_VERSION};
use crate::cache::{hex, load_component, ComponentCache, ComponentSource};
use crate::failure::{classify_call_error, truncate_reason};
use crate::outcome::{EnrichOutcome, Failure, FailureKind};
use crate::sandbox::{PluginState, SandboxLimits};

/// Max size of one JSON record a plugin may emit. Kafka's default max
/// message size is 1 MiB, so a larger record could never be produced.
pub const MAX_OUTPUT_RECORD_BYTES: usize = 1 << 20;

/// Time that failed calls may take while one batch is split to isolate its
/// failing records, in CPU deadlines (`--plugin-timeout-ms`). One failing
/// record in a batch of 256 costs 9 failed calls, and every call that
/// fails can take up to a whole deadline. With the default deadline of
/// 5 s, 16 deadlines are 80 s, well under the consumer's default
/// `max.poll.interval.ms` of 300 s. Once it is spent, the records not yet
/// tried on their own are dead-lettered with the failure of the smallest
/// batch that held them.
pub const ISOLATION_BUDGET_DEADLINES: u32 = 16;

/// Name, version and identity of a loaded plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginIdentity {
    /// Name the plugin reports through `info`.
    pub name: String,
    /// Version the plugin reports through `info`.
    pub version: String,
    /// SHA-256 of the component file, in hex.
    pub digest: String,
}

/// A compiled plugin with its config and a live instance.
pub struct Plugin {
    path: PathBuf,
    pre: EnricherPre<PluginState>,
    config: Vec<(String, String)>,
    limits: SandboxLimits,
    identity: PluginIdentity,
    live: Option<LiveInstance>,
}

struct LiveInstance {
    store: Store<PluginState>,
    bindings: crate::bindings::Enricher,
}

impl Plugin {
    /// Compiles the component at `path`, checks that it exports our plugin
    /// interface, instantiates it and passes it `config` through `init`.
    pub fn load(
        engine: &Engine,
        path: &Path,
        config: Vec<(String, String)>,
        limits: SandboxLimits,
    ) -> anyhow::Result<Self> {
        Self::load_cached(engine, path, config, limits, None)
    }

    /// Loads the plugin like [`Plugin::load`], but takes the compiled
    /// component from `cache` when it contains one, and stores it there
    /// otherwise.
    pub fn load_cached(
        engine: &Engine,
        path: &Path,
        config: Vec<(String, String)>,
        limits: SandboxLimits,
        cache: Option<&ComponentCache>,
    ) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("failed to read plugin {path:?}"))?;
        Self::from_bytes(engine, path, &bytes, config, limits, cache)
    }

    /// Loads the plugin like [`Plugin::load_cached`] from `bytes`, which
    /// were read from `path`.
    pub fn from_bytes(
        engine: &Engine,
        path: &Path,
        bytes: &[u8],
        config: Vec<(String, String)>,
        limits: SandboxLimits,
        cache: Option<&ComponentCache>,
    ) -> anyhow::Result<Self> {
        let digest = hex(&Sha256::digest(bytes));
        let (component, source) = load_component(engine, bytes, &digest, cache)
            .with_context(|| format!("failed to load plugin {path:?}"))?;
        check_contract(engine, &component)
            .with_context(|| format!("failed to load plugin {path:?}"))?;

        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(anyhow::Error::from)
            .context("failed to add WASI to the plugin linker")?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to link plugin {path:?}"))?;
        let pre = EnricherPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to find the plugin exports of {path:?}"))?;

        let mut plugin = Self {
            path: path.to_path_buf(),
            pre,
            config,
            limits,
            identity: PluginIdentity {
                name: String::new(),
                version: String::new(),
                digest,
            },
            live: None,
        };
        let info = plugin.instantiate()?;
        plugin.identity.name = info.name;
        plugin.identity.version = info.version;
        tracing::info!(
            plugin = %plugin.identity.name,
            version = %plugin.identity.version,
            digest = %plugin.identity.digest,
            path = ?plugin.path,
            compiled = source == ComponentSource::Compiled,
            "plugin loaded"
        );
        Ok(plugin)
    }

    /// Creates a second plugin from the same compiled component, with its
    /// own instance, for calls that must not touch this one's state.
    pub fn fork(&self) -> anyhow::Result<Self> {
        let mut plugin = Self {
            path: self.path.clone(),
            pre: self.pre.clone(),
            config: self.config.clone(),
            limits: self.limits,
            identity: self.identity.clone(),
            live: None,
        };
        plugin.instantiate()?;
        Ok(plugin)
    }

    /// Returns the path the plugin was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the plugin's name, version and digest.
    pub fn identity(&self) -> &PluginIdentity {
        &self.identity
    }

    /// Enriches `records`, returning one outcome per record in order.
    ///
    /// Never fails as a whole: a record that the plugin cannot handle gets
    /// a [`EnrichOutcome::Failed`] with the kind of failure.
    pub fn enrich(&mut self, records: &[InputRecord]) -> Vec<EnrichOutcome> {
        let mut outcomes = Vec::with_capacity(records.len());
        let mut budget = IsolationBudget::new(&self.limits);
        self.enrich_into(records, &mut budget, &mut outcomes);
        if budget.untried > 0 {
            tracing::warn!(
                plugin = %self.identity.name,
                records = records.len(),
                untried = budget.untried,
                budget_ms = budget.limit.as_millis() as u64,
                "failed plugin calls used up the batch's isolation budget, \
                 dead-lettering records not tried on their own"
            );
        }
        outcomes
    }

    /// Logs one warning for the records of a batch whose output broke the
    /// output contract, naming the first of them: a plugin bug, unlike a
    /// rejected line.
    fn log_invalid_outputs(&self, records: &[InputRecord], outcomes: &[EnrichOutcome]) {
        let mut invalid =
            records
                .iter()
                .zip(outcomes)
                .filter_map(|(record, outcome)| match outcome {
                    EnrichOutcome::Failed(failure)
                        if failure.kind == FailureKind::InvalidOutput =>
                    {
                        Some((record, failure))
                    }
                    _ => None,
                });
        let Some((first, failure)) = invalid.next() else {
            return;
        };
        tracing::warn!(
            plugin = %self.identity.name,
            topic = %first.topic,
            partition = first.partition,
            offset = first.offset,
            records = 1 + invalid.count(),
            error = %failure.reason,
            "plugin output broke the output contract, dead-lettering the records"
        );
    }

    fn enrich_into(
        &mut self,
        records: &[InputRecord],
        budget: &mut IsolationBudget,
        outcomes: &mut Vec<EnrichOutcome>,
    ) {
        if records.is_empty() {
            return;
        }
        let started = Instant::now();
        let failure = match self.call_batch(records) {
            Ok(batch) => match check_batch_output(records.len(), batch) {
                Ok(checked) => {
                    self.log_invalid_outputs(records, &checked);
                    outcomes.extend(checked);
                    return;
                }
                Err(failure) => failure,
            },
            Err(failure) => failure,
        };
        budget.spent += started.elapsed();

        if records.len() == 1 {
            tracing::warn!(
                plugin = %self.identity.name,
                topic = %records[0].topic,
                partition = records[0].partition,
                offset = records[0].offset,
                kind = failure.kind.as_str(),
                error = %failure.reason,
                "plugin failed on record"
            );
            outcomes.push(EnrichOutcome::Failed(failure));
            return;
        }
        tracing::debug!(
            plugin = %self.identity.name,
            records = records.len(),
            kind = failure.kind.as_str(),
            error = %failure.reason,
            "plugin failed on batch, splitting it"
        );
        let (left, right) = records.split_at(records.len() / 2);
        for half in [left, right] {
            if budget.is_spent() {
                budget.untried += half.len();
                let untried = budget.untried_failure(&failure);
                outcomes.extend(half.iter().map(|_| EnrichOutcome::Failed(untried.clone())));
            } else {
                self.enrich_into(half, budget, outcomes);
            }
        }
    }

    /// Calls `enrich-batch` on the live instance, creating one first if the
    /// last call killed it.
    fn call_batch(&mut self, records: &[InputRecord]) -> Result<Vec<Outcome>, Failure> {
        #[cfg(feature = "native-plugin")]
        if let Some(outcomes) = crate::native::enrich_batch(records) {
            return Ok(outcomes);
        }
        if self.live.is_none() {
            self.instantiate().map_err(|error| Failure {
                kind: FailureKind::Trap,
                reason: format!("failed to instantiate plugin: {error:#}"),
            })?;
        }
        let live = self
            .live
            .as_mut()
            .expect("instantiate() sets the live instance or returns an error");
        // Drop what an earlier, successful call left behind, so that a
        // failure reports only its own call.
        live.store.data().take_memory_limit_hit();
        live.store.data().take_stderr();
        live.store.set_epoch_deadline(self.limits.deadline_ticks());
        let started = Instant::now();
        let result = live
            .bindings
            .weblog_enrich_plugin()
            .call_enrich_batch(&mut live.store, records);
        weblog_common::metrics::histogram!(
            crate::metrics::PLUGIN_CALL_DURATION,
            "plugin" => self.identity.name.clone(),
            "version" => self.identity.version.clone(),
        )
        .record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => Ok(outcomes),
            Err(error) => {
                tracing::debug!(plugin = %self.identity.name, error = ?error, "plugin call failed");
                let state = live.store.data();
                let failure = classify_call_error(
                    &error,
                    state.take_memory_limit_hit(),
                    &state.take_stderr(),
                    &self.limits,
                );
                // A trapped instance refuses every later call.
                self.live = None;
                Err(failure)
            }
        }
    }

    /// Creates a fresh instance, calls `info` and `init`, and makes it live.
    fn instantiate(&mut self) -> anyhow::Result<crate::bindings::PluginInfo> {
        let mut store = Store::new(self.pre.engine(), PluginState::new(&self.limits));
        store.limiter(|state| state.limiter());
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.limits.deadline_ticks());

        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to instantiate plugin {:?}", self.path))?;
        let api = bindings.weblog_enrich_plugin();
        let info = api
            .call_info(&mut store)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to call info on plugin {:?}", self.path))?;
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let accepted = api
            .call_init(&mut store, &self.config)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to call init on plugin {:?}", self.path))?;
        if let Err(message) = accepted {
            bail!(
                "plugin {} {} rejected its config: {message}",
                info.name,
                info.version
            );
        }
        self.live = Some(LiveInstance { store, bindings });
        Ok(info)
    }
}

/// Checks that the component exports `weblog:enrich/plugin` at a version
/// this host can call, and names both versions when it does not.
fn check_contract(engine: &Engine, component: &Component) -> anyhow::Result<()> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_string())
        .collect();
    let Some(export) = exports.iter().find(|name| {
        name.split_once('@')
            .map_or(name.as_str(), |(base, _)| base)
            .eq(PLUGIN_INTERFACE)
    }) else {
        bail!(
            "the component does not export {PLUGIN_INTERFACE}@{WIT_VERSION} \
             (it exports {exports:?}); build it against wit/enrich.wit"
        );
    };
    let version = export.split_once('@').map_or("", |(_, version)| version);
    if !compatible_versions(version, WIT_VERSION) {
        bail!(
            "the plugin was built against {PLUGIN_INTERFACE}@{version} but this host \
             implements {PLUGIN_INTERFACE}@{WIT_VERSION}; rebuild the plugin against \
             the host's wit/enrich.wit"
        );
    }
    Ok(())
}

/// Applies the semver rule that wasmtime uses to match interface versions:
/// `0.x.*` matches `0.x.*`, and `N.*` matches `N.*` for N >= 1.
fn compatible_versions(plugin: &str, host: &str) -> bool {
    let key = |version: &str| -> Option<(u64, u64)> {
        let mut parts = version.split('.').map(|part| part.parse::<u64>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        Some(if major == 0 { (0, minor) } else { (major, 0) })
    };
    matches!((key(plugin), key(host)), (Some(a), Some(b)) if a == b)
}

/// Checks the outcome count and every emitted record of a batch.
fn check_batch_output(expected: usize, batch: Vec<Outcome>) -> Result<Vec<EnrichOutcome>, Failure> {
    if batch.len() != expected {
        return Err(Failure {
            kind: FailureKind::InvalidOutput,
            reason: format!(
                "plugin returned {} outcomes for {expected} records",
                batch.len()
            ),
        });
    }
    Ok(batch.into_iter().map(check_outcome).collect())
}

/// Checks one outcome: each emitted record must be one JSON object that fits
/// in a Kafka message.
fn check_outcome(outcome: Outcome) -> EnrichOutcome {
    let records = match outcome {
        Outcome::Reject(reason) => {
            return EnrichOutcome::Failed(Failure {
                kind: FailureKind::Rejected,
                reason: truncate_reason(reason),
            })
        }
        Outcome::Emit(records) => records,
    };
    for (index, record) in records.iter().enumerate() {
        if let Err(reason) = check_json_object(record) {
            return EnrichOutcome::Failed(Failure {
                kind: FailureKind::InvalidOutput,
                reason: format!("plugin emitted an invalid record at index {index}: {reason}"),
            });
        }
    }
    EnrichOutcome::Enriched(records)
}

fn check_json_object(text: &str) -> Result<(), String> {
    if text.len() > MAX_OUTPUT_RECORD_BYTES {
        return Err(format!(
            "{} bytes is over the max of {MAX_OUTPUT_RECORD_BYTES} bytes",
            text.len()
        ));
    }
    let value: &RawValue =
        serde_json::from_str(text).map_err(|error| format!("not valid JSON: {error}"))?;
    if !value.get().starts_with('{') {
        return Err("valid JSON but not an object".to_string());
    }
    Ok(())
}

/// Failed-call time that isolating the failing records of one batch may
/// take; see [`ISOLATION_BUDGET_DEADLINES`].
struct IsolationBudget {
    limit: Duration,
    spent: Duration,
    /// Records dead-lettered without a call of their own.
    untried: usize,
}

impl IsolationBudget {
    fn new(limits: &SandboxLimits) -> Self {
        Self {
            limit: limits.call_timeout * ISOLATION_BUDGET_DEADLINES,
            spent: Duration::ZERO,
            untried: 0,
        }
    }

    fn is_spent(&self) -> bool {
        self.spent >= self.limit
    }

    /// Builds the failure of a record that was in `batch_failure`'s batch
    /// but was not tried on its own.
    fn untried_failure(&self, batch_failure: &Failure) -> Failure {
        Failure {
            kind: batch_failure.kind,
            reason: format!(
                "not tried on its own: failed plugin calls on its batch took {} ms, \
                 the isolation budget; the smallest failed batch that held it: {}",
                self.spent.as_millis(),
                batch_failure.reason
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_within_minor_before_1_0() {
        assert!(compatible_versions("0.1.0", "0.1.3"));
        assert!(!compatible_versions("0.2.0", "0.1.0"));
        assert!(compatible_versions("1.2.0", "1.0.0"));
        assert!(!compatible_versions("2.0.0", "1.0.0"));
        assert!(!compatible_versions("", "0.1.0"));
    }

    #[test]
    fn batch_with_wrong_count_is_invalid_output() {
        let failure = check_batch_output(2, vec![Outcome::Emit(vec![])])
            .expect_err("one outcome for two records");
        assert_eq!(failure.kind, FailureKind::InvalidOutput);
        assert!(
            failure.reason.contains("1 outcomes for 2 records"),
            "{}",
            failure.reason
        );
    }

    #[test]
    fn emitted_array_is_invalid_output() {
        let outcome = check_outcome(Outcome::Emit(vec!["{}".into(), "[1]".into()]));
        let EnrichOutcome::Failed(failure) = outcome else {
            panic!("an array is not an object: {outcome:?}");
        };
        assert_eq!(failure.kind, FailureKind::InvalidOutput);
        assert!(failure.reason.contains("index 1"), "{}", failure.reason);
    }

    #[test]
    fn emitted_broken_json_is_invalid_output() {
        let outcome = check_outcome(Outcome::Emit(vec!["{\"a\":".into()]));
        assert!(
            matches!(&outcome, EnrichOutcome::Failed(f) if f.kind == FailureKind::InvalidOutput),
            "{outcome:?}"
        );
    }

    #[test]
    fn rejection_keeps_plugin_reason() {
        let outcome = check_outcome(Outcome::Reject("bad status".into()));
        let EnrichOutcome::Failed(failure) = outcome else {
            panic!("a reject is a failure: {outcome:?}");
        };
        assert_eq!(failure.kind, FailureKind::Rejected);
        assert_eq!(failure.reason, "bad status");
    }

    #[test]
    fn oversized_record_is_rejected() {
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_OUTPUT_RECORD_BYTES));
        let error = check_json_object(&big).expect_err("over the max size");
        assert!(error.contains("over the max"), "{error}");
    }
}
