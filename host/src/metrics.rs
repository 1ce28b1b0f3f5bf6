//! Names of the host's Prometheus metrics, and the recorder with their
//! histogram buckets. The admin endpoint serves them on `GET /metrics`.

use weblog_common::metrics::{PrometheusHandle, DURATION_BUCKETS};

use crate::plugin::PluginIdentity;

/// Raw records consumed, by input topic.
pub const RECORDS_CONSUMED: &str = "weblog_host_records_consumed_total";
/// Bytes of raw record values consumed, by input topic.
pub const CONSUMED_BYTES: &str = "weblog_host_consumed_bytes_total";
/// Enriched records acknowledged by Kafka, by output topic.
pub const RECORDS_PRODUCED: &str = "weblog_host_records_produced_total";
/// Bytes of enriched record values acknowledged, by output topic.
pub const PRODUCED_BYTES: &str = "weblog_host_produced_bytes_total";
/// Dead letters acknowledged by Kafka, by dead-letter topic and failure
/// kind.
pub const RECORDS_DEAD_LETTERED: &str = "weblog_host_records_dead_lettered_total";
/// Records per consumed batch.
pub const BATCH_RECORDS: &str = "weblog_host_batch_records";
/// Duration of one `enrich-batch` call, by plugin name and version.
pub const PLUGIN_CALL_DURATION: &str = "weblog_host_plugin_call_duration_seconds";
/// Records the plugin failed on, by plugin, version and failure kind.
pub const PLUGIN_FAILURES: &str = "weblog_host_plugin_failures_total";
/// Candidate plugins loaded for a swap, whatever the result.
pub const PLUGIN_SWAP_ATTEMPTS: &str = "weblog_host_plugin_swap_attempts_total";
/// Finished swap attempts, by result: `done` or `refused`.
pub const PLUGIN_SWAPS: &str = "weblog_host_plugin_swaps_total";
/// Gauge 1 for the running plugin's name, version and digest, 0 for
/// plugins swapped out.
pub const PLUGIN_INFO: &str = "weblog_host_plugin_info";
/// Lag of the group on each assigned partition, in records.
pub const CONSUMER_LAG: &str = "weblog_host_consumer_lag_records";
/// Records the producer failed to produce or deliver, by topic and error.
pub const PRODUCE_ERRORS: &str = "weblog_host_produce_errors_total";
/// Offset commits accepted by the consumer (an asynchronous commit counts
/// when it is queued), or committed transactions with `--exactly-once`.
pub const COMMITS: &str = "weblog_host_commits_total";

/// Bucket bounds of [`BATCH_RECORDS`]: 1 to 4096 records.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Installs the recorder and returns its handle; later calls return the
/// same handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = weblog_common::metrics::install(
        "weblog-host",
        &[
            (BATCH_RECORDS, BATCH_BUCKETS),
            (PLUGIN_CALL_DURATION, DURATION_BUCKETS),
        ],
    )?;
    describe();
    Ok(handle)
}

fn describe() {
    use weblog_common::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(RECORDS_CONSUMED, "raw records consumed");
    describe_counter!(CONSUMED_BYTES, Unit::Bytes, "bytes of raw values consumed");
    describe_counter!(RECORDS_PRODUCED, "enriched records acknowledged by Kafka");
    describe_counter!(
        PRODUCED_BYTES,
        Unit::Bytes,
        "bytes of enriched values acknowledged"
    );
    describe_counter!(RECORDS_DEAD_LETTERED, "dead letters acknowledged by Kafka");
    describe_histogram!(BATCH_RECORDS, Unit::Count, "records per consumed batch");
    describe_histogram!(
        PLUGIN_CALL_DURATION,
        Unit::Seconds,
        "duration of one enrich-batch call of the plugin"
    );
    describe_counter!(PLUGIN_FAILURES, "records the plugin failed on, by kind");
    describe_counter!(PLUGIN_SWAP_ATTEMPTS, "candidate plugins loaded for a swap");
    describe_counter!(PLUGIN_SWAPS, "finished swap attempts, by result");
    describe_gauge!(PLUGIN_INFO, "1 for the running plugin");
    describe_gauge!(
        CONSUMER_LAG,
        "records of an assigned partition not committed yet"
    );
    describe_counter!(PRODUCE_ERRORS, "records that failed to produce or deliver");
    describe_counter!(COMMITS, "offset commits queued or transactions committed");
}

/// Sets [`PLUGIN_INFO`] of `plugin` to `value`: 1 for the running plugin,
/// 0 for one swapped out.
pub fn set_plugin_info(plugin: &PluginIdentity, value: f64) {
    weblog_common::metrics::gauge!(
        PLUGIN_INFO,
        "plugin" => plugin.name.clone(),
        "version" => plugin.version.clone(),
        "digest" => plugin.digest.clone(),
    )
    .set(value);
}
