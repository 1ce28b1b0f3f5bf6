//! Consumer lag per partition: how many records of a partition a consumer
//! group has not committed yet.
//!
//! The lag is the partition's high watermark minus the group's committed
//! offset. A partition without a commit counts from its low watermark,
//! which is where a consumer with `auto.offset.reset=earliest` starts, and
//! the lag is never below 0. The same computation feeds the
//! `*_consumer_lag_records` gauges of the host and sink, refreshed in the
//! background for the assigned partitions, and the `weblog-host lag`
//! command, which prints it for any group.
//!
//! NOTE: on a topic written with transactions the last record of each
//! transaction is followed by a commit marker that takes an offset but is
//! never consumed, so a caught-up group shows a lag of 1 per partition
//! there, as Kafka's own `kafka-consumer-groups` does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{KafkaArgs, LoggingContext};

/// How long one committed-offset or watermark request may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Lag of one partition for one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    /// Topic name.
    pub topic: String,
    /// Partition id.
    pub partition: i32,
    /// Offset the group committed, or `None` when it has none.
    pub committed: Option<i64>,
    /// High watermark: the offset the next record written gets.
    pub end: i64,
    /// Records from the committed offset (or the low watermark) to the end.
    pub lag: i64,
}

/// Returns the lag of a partition with watermarks `low` and `high` for a
/// group that committed `committed`.
pub fn compute_lag(committed: Option<i64>, low: i64, high: i64) -> i64 {
    let from = committed.unwrap_or(low);
    (high - from).max(0)
}

/// Returns the lag of each partition in `committed`, a list with the
/// group's committed offsets as `committed_offsets` returns it, by asking
/// the broker for each partition's watermarks. Blocks on the network.
pub fn partition_lags<X, C>(
    consumer: &X,
    committed: &TopicPartitionList,
) -> KafkaResult<Vec<PartitionLag>>
where
    X: Consumer<C>,
    C: ConsumerContext,
{
    let mut lags = Vec::with_capacity(committed.count());
    for element in committed.elements() {
        let (low, high) =
            consumer.fetch_watermarks(element.topic(), element.partition(), QUERY_TIMEOUT)?;
        let committed = match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        lags.push(PartitionLag {
            topic: element.topic().to_string(),
            partition: element.partition(),
            committed,
            end: high,
            lag: compute_lag(committed, low, high),
        });
    }
    Ok(lags)
}

/// Starts a task that sets the gauge `metric{topic,partition}` to the lag
/// of each partition assigned to `consumer`, every `interval`, until
/// `shutdown` is cancelled. A partition that is no longer assigned is set
/// to 0, because its new owner reports it.
pub fn spawn_lag_gauge<X, C>(
    consumer: Arc<X>,
    metric: &'static str,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    X: Consumer<C> + Send + Sync + 'static,
    C: ConsumerContext + 'static,
{
    tokio::spawn(async move {
        let mut reported: BTreeSet<(String, i32)> = BTreeSet::new();
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let consumer = consumer.clone();
            let lags = tokio::task::spawn_blocking(move || assigned_lags(consumer.as_ref())).await;
            let lags = match lags {
                Ok(Ok(lags)) => lags,
                Ok(Err(error)) => {
                    // One warning per outage, not one per interval.
                    if !failing {
                        tracing::warn!(error = %error, "failed to refresh consumer lag");
                    }
                    failing = true;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "consumer lag task failed");
                    continue;
                }
            };
            if failing {
                tracing::info!("consumer lag refreshed again");
                failing = false;
            }
            reported = set_lag_gauges(metric, &lags, reported);
        }
    })
}

/// Returns the lag of every partition assigned to `consumer`.
fn assigned_lags<X, C>(consumer: &X) -> KafkaResult<Vec<PartitionLag>>
where
    X: Consumer<C>,
    C: ConsumerContext,
{
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(Vec::new());
    }
    let committed = consumer.committed_offsets(assignment, QUERY_TIMEOUT)?;
    partition_lags(consumer, &committed)
}

/// Sets the gauges of `lags`, sets those in `before` that are not in `lags`
/// to 0, and returns the partitions now reported.
fn set_lag_gauges(
    metric: &'static str,
    lags: &[PartitionLag],
    before: BTreeSet<(String, i32)>,
) -> BTreeSet<(String, i32)> {
    let mut now = BTreeSet::new();
    for lag in lags {
        metrics::gauge!(
            metric,
            "topic" => lag.topic.clone(),
            "partition" => lag.partition.to_string(),
        )
        .set(lag.lag as f64);
        now.insert((lag.topic.clone(), lag.partition));
    }
    for (topic, partition) in before.difference(&now) {
        metrics::gauge!(
            metric,
            "topic" => topic.clone(),
            "partition" => partition.to_string(),
        )
        .set(0.0);
    }
    now
}

/// Flags of `weblog-host lag`.
#[derive(Args, Clone, Debug)]
pub struct LagArgs {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Consumer group whose lag to show.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    group: String,

    /// Topic to show; repeat for several. Default: every topic on which the
    /// group has committed an offset.
    #[arg(long = "topic", value_name = "TOPIC")]
    topics: Vec<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = LagFormat::Table)]
    format: LagFormat,
}

/// Output format of `weblog-host lag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LagFormat {
    /// Aligned columns and a total line.
    Table,
    /// One JSON object with the partitions and the total.
    Json,
}

/// Output of `weblog-host lag --format json`.
#[derive(Debug, Serialize)]
struct GroupLag<'a> {
    group: &'a str,
    partitions: &'a [PartitionLag],
    total_lag: i64,
}

/// Runs `weblog-host lag`: prints the lag of each partition of the group
/// on stdout.
pub fn run_lag_command(args: &LagArgs) -> anyhow::Result<()> {
    let lags = group_lag(&args.kafka, &args.group, &args.topics)?;
    let total_lag = lags.iter().map(|lag| lag.lag).sum();
    let text = match args.format {
        LagFormat::Table => format_table(&lags, total_lag),
        LagFormat::Json => {
            let output = GroupLag {
                group: &args.group,
                partitions: &lags,
                total_lag,
            };
            let mut json = serde_json::to_string_pretty(&output)
                .context("failed to serialize the lag as JSON")?;
            json.push('\n');
            json
        }
    };
    print!("{text}");
    Ok(())
}

/// Returns the lag of `group` on every partition of `topics`, or, when
/// `topics` is empty, of every topic where the group has a commit. Sorted
/// by topic and partition.
pub fn group_lag(
    kafka: &KafkaArgs,
    group: &str,
    topics: &[String],
) -> anyhow::Result<Vec<PartitionLag>> {
    let servers = &kafka.bootstrap_servers;
    // A short-lived client has no use for statistics. The logging context
    // limits repeats of a client error, which the default context logs
    // every time librdkafka reports it, such as while no broker is up.
    let consumer: BaseConsumer<LoggingContext> = kafka
        .consumer_config(group)?
        .set("statistics.interval.ms", "0")
        .create_with_context(LoggingContext::default())
        .with_context(|| format!("failed to create consumer for {servers}"))?;
    let mut list = TopicPartitionList::new();
    let metadata = consumer
        .fetch_metadata(None, QUERY_TIMEOUT)
        .with_context(|| {
            format!(
                "failed to fetch metadata from {servers} within {} s; check that the broker \
                 is running (`make broker-up` starts the local one) and that \
                 --bootstrap-servers names its client port",
                QUERY_TIMEOUT.as_secs()
            )
        })?;
    for name in topics {
        let found = metadata.topics().iter().any(|topic| topic.name() == name);
        anyhow::ensure!(found, "topic {name:?} does not exist on {servers}");
    }
    for topic in metadata.topics() {
        let wanted = if topics.is_empty() {
            !topic.name().starts_with("__")
        } else {
            topics.iter().any(|name| name == topic.name())
        };
        if wanted {
            for partition in topic.partitions() {
                list.add_partition(topic.name(), partition.id());
            }
        }
    }
    let mut committed = consumer
        .committed_offsets(list, QUERY_TIMEOUT)
        .with_context(|| format!("failed to fetch the committed offsets of group {group:?}"))?;
    // Without --topic only the topics with a commit are shown, and only
    // theirs are asked for watermarks: a topic that is being created has
    // partitions without a leader yet, whose watermarks cannot be fetched.
    if topics.is_empty() {
        committed = with_committed_topics(&committed)?;
    }
    let has_commit = committed
        .elements()
        .iter()
        .any(|element| matches!(element.offset(), Offset::Offset(_)));
    // A typo in the group id must not read as "no lag" to a monitor.
    if !has_commit {
        let scope = match topics.is_empty() {
            true => "any topic".to_string(),
            false => format!("{topics:?}"),
        };
        anyhow::bail!(
            "consumer group {group:?} has no committed offset on {scope} at {servers}; \
             check the group id (`scripts/kafka.sh tool consumer-groups --list` lists the \
             groups) or wait for the group's first commit"
        );
    }
    let mut lags = partition_lags(&consumer, &committed)
        .with_context(|| format!("failed to fetch watermarks from {servers}"))?;
    lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(lags)
}

/// Returns the partitions of `committed` whose topic has a commit on at
/// least one partition.
fn with_committed_topics(committed: &TopicPartitionList) -> anyhow::Result<TopicPartitionList> {
    let elements = committed.elements();
    let topics: BTreeSet<&str> = elements
        .iter()
        .filter(|element| matches!(element.offset(), Offset::Offset(_)))
        .map(|element| element.topic())
        .collect();
    let mut kept = TopicPartitionList::new();
    for element in &elements {
        if topics.contains(element.topic()) {
            kept.add_partition_offset(element.topic(), element.partition(), element.offset())
                .with_context(|| {
                    format!("failed to list {}/{}", element.topic(), element.partition())
                })?;
        }
    }
    Ok(kept)
}

/// Formats `lags` as aligned columns followed by the total.
fn format_table(lags: &[PartitionLag], total_lag: i64) -> String {
    let mut rows = vec![[
        "TOPIC".to_string(),
        "PARTITION".to_string(),
        "COMMITTED".to_string(),
        "END".to_string(),
        "LAG".to_string(),
    ]];
    for lag in lags {
        rows.push([
            lag.topic.clone(),
            lag.partition.to_string(),
            lag.committed
                .map_or("-".to_string(), |offset| offset.to_string()),
            lag.end.to_string(),
            lag.lag.to_string(),
        ]);
    }
    let mut widths = [0; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text.push_str(&format!("total lag: {total_lag}\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_commit() {
        assert_eq!(compute_lag(Some(7), 0, 10), 3);
    }

    #[test]
    fn lag_without_commit_counts_from_low_watermark() {
        assert_eq!(compute_lag(None, 4, 10), 6);
    }

    #[test]
    fn empty_partition_has_no_lag() {
        assert_eq!(compute_lag(None, 0, 0), 0);
        assert_eq!(compute_lag(None, 5, 5), 0);
    }

    #[test]
    fn commit_past_end_is_clamped() {
        assert_eq!(compute_lag(Some(12), 0, 10), 0);
    }

    #[test]
    fn table_lists_rows_and_total() {
        let lags = [
            PartitionLag {
                topic: "raw".to_string(),
                partition: 0,
                committed: Some(5),
                end: 8,
                lag: 3,
            },
            PartitionLag {
                topic: "raw".to_string(),
                partition: 1,
                committed: None,
                end: 2,
                lag: 2,
            },
        ];
        let table = format_table(&lags, 5);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "TOPIC  PARTITION  COMMITTED  END  LAG");
        assert_eq!(lines[1], "raw    0          5          8    3");
        assert_eq!(lines[2], "raw    1          -          2    2");
        assert_eq!(lines[3], "total lag: 5");
    }
}
