//! The Prometheus recorder of every binary, and the metrics that all
//! binaries share.
//!
//! Each binary installs the recorder once with [`install`] and records
//! through the `metrics` macros; the admin endpoint renders it on
//! `GET /metrics`. Histograms get fixed buckets, so that they render as
//! Prometheus histograms that can be summed across instances.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

// The binaries record through these re-exports, so that all of them use
// the one `metrics` version that the recorder is built for.
pub use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};
pub use metrics_exporter_prometheus::PrometheusHandle;

/// Gauge 1 with the binary's name and version as labels.
pub const BUILD_INFO: &str = "weblog_build_info";

/// Average round-trip time to a broker, from librdkafka statistics.
pub const KAFKA_BROKER_RTT: &str = "weblog_kafka_broker_rtt_seconds";

/// 1 while the client's connection to a broker is up, else 0.
pub const KAFKA_BROKER_UP: &str = "weblog_kafka_broker_up";

/// Records in the producer's local queue, waiting for delivery.
pub const KAFKA_PRODUCER_QUEUE: &str = "weblog_kafka_producer_queue_messages";

/// Produce requests sent again, summed over brokers.
pub const KAFKA_PRODUCE_RETRIES: &str = "weblog_kafka_produce_retries_total";

/// Records fetched but not yet consumed, summed over partitions.
pub const KAFKA_FETCH_QUEUE: &str = "weblog_kafka_consumer_fetch_queue_messages";

/// Buckets of a histogram of seconds spent in one call: 100 µs to 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Time between two upkeep runs, which fold recorded histogram samples
/// into their buckets so that memory stays flat between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the global Prometheus recorder with `histograms`, each a
/// metric name and its bucket bounds, and sets [`BUILD_INFO`] for
/// `binary`. Returns the handle that renders the metrics. A later call,
/// such as a second pipeline run in one test process, returns the first
/// call's handle and keeps its buckets.
pub fn install(binary: &str, histograms: &[(&str, &[f64])]) -> anyhow::Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*installed {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histograms {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets)
            .with_context(|| format!("failed to set the buckets of metric {name}"))?;
    }
    let handle = builder
        .install_recorder()
        .context("failed to install the metrics recorder")?;
    describe_shared();
    metrics::gauge!(
        BUILD_INFO,
        "binary" => binary.to_string(),
        "version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);

    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".to_string())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        })
        .context("failed to start the metrics upkeep thread")?;
    *installed = Some(handle.clone());
    Ok(handle)
}

fn describe_shared() {
    metrics::describe_gauge!(BUILD_INFO, "1 for the running binary and version");
    metrics::describe_gauge!(
        KAFKA_BROKER_RTT,
        metrics::Unit::Seconds,
        "average round-trip time to the broker in the last statistics window"
    );
    metrics::describe_gauge!(
        KAFKA_BROKER_UP,
        "1 while the connection to the broker is up"
    );
    metrics::describe_gauge!(
        KAFKA_PRODUCER_QUEUE,
        "records in the producer's local queue, waiting for delivery"
    );
    metrics::describe_counter!(KAFKA_PRODUCE_RETRIES, "produce requests sent again");
    metrics::describe_gauge!(
        KAFKA_FETCH_QUEUE,
        "records fetched from the broker and not yet consumed"
    );
}

/// Returns `count` bucket bounds from `start`, each `factor` times the one
/// before.
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    std::iter::successors(Some(start), |bound| Some(bound * factor))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_buckets_grow_by_factor() {
        assert_eq!(exponential_buckets(1.0, 4.0, 4), [1.0, 4.0, 16.0, 64.0]);
    }
}
