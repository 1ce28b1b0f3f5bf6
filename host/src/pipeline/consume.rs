//! Consuming raw records in batches, and tracking which partitions this
//! instance owns so that it never commits offsets for one it lost.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use weblog_common::admin::{health, Check};
use weblog_common::kafka_context::{describe_partitions, ErrorThrottle};
use weblog_common::kafka_stats::ClientStats;
use weblog_common::metrics::{counter, histogram};

use super::PipelineConfig;
use crate::bindings::InputRecord;

/// The host's Kafka consumer.
pub(super) type HostConsumer = StreamConsumer<HostContext>;

/// Pause after a consumer error before polling again, so that a broker
/// outage does not spin the CPU.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// Records of one batch and the offsets to commit once they are handled.
pub(super) struct ConsumedBatch {
    /// Records in consumption order.
    pub(super) records: Vec<InputRecord>,
    /// Next offset to consume per (topic, partition): the last offset in
    /// the batch plus one, which is what Kafka expects as a commit.
    pub(super) next_offsets: BTreeMap<(String, i32), i64>,
    /// Origin of each record, by index.
    pub(super) origins: Vec<Origin>,
    /// Partitions whose end the consumer reached while the batch filled,
    /// reported only with `enable.partition.eof`, which `replay-dlq` sets.
    pub(super) end_of_partition: Vec<i32>,
    /// Consumed records left out of `records`: dead letters that the host
    /// did not write, when replaying.
    pub(super) skipped: usize,
    /// Dead letters left out of `records` because they already went
    /// through a plugin `max_attempts` times, when replaying.
    pub(super) at_max_attempts: usize,
    /// Dead letters left out of `records` because they hold only the first
    /// bytes of their input, when replaying.
    pub(super) cut: usize,
}

/// Where a record started and how often it went through a plugin, for the
/// headers of its outputs. It is the consumed record itself, except when
/// `replay-dlq` consumes a dead letter.
#[derive(Clone, Debug)]
pub(super) struct Origin {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// Milliseconds since the Unix epoch, if the record has a timestamp.
    pub(super) timestamp_ms: Option<i64>,
    /// Plugin runs including the current one.
    pub(super) attempts: u32,
    /// The broker's error for this record's dead letter when it rejected
    /// it for good in an aborted transaction, so that the next one is
    /// small.
    pub(super) rejected_dead_letter: Option<String>,
}

impl Origin {
    /// Returns the origin of a record consumed from the raw topic.
    pub(super) fn of(record: &InputRecord) -> Self {
        Self {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            attempts: 1,
            rejected_dead_letter: None,
        }
    }
}

/// Consumer context that keeps the set of assigned partitions, and
/// reports it and the client's statistics to the admin endpoint.
pub(super) struct HostContext {
    assigned: Mutex<HashSet<(String, i32)>>,
    errors: ErrorThrottle,
    stats: ClientStats,
    /// Readiness check that passes while a partition is assigned.
    partitions_check: Check,
}

impl HostContext {
    fn new() -> Self {
        Self {
            assigned: Mutex::default(),
            errors: ErrorThrottle::default(),
            stats: ClientStats::new("consumer"),
            partitions_check: health().register("partitions", "no partition assigned yet"),
        }
    }

    /// Updates the partitions check from the assigned set.
    fn report_assignment(&self, assigned: &HashSet<(String, i32)>) {
        if assigned.is_empty() {
            self.partitions_check.fail("no partition assigned");
        } else {
            self.partitions_check.pass();
        }
    }

    /// Tells whether this instance currently owns the partition.
    pub(super) fn owns(&self, topic: &str, partition: i32) -> bool {
        self.assigned
            .lock()
            .map(|set| set.contains(&(topic.to_string(), partition)))
            .unwrap_or(false)
    }
}

impl ClientContext for HostContext {
    fn stats(&self, statistics: Statistics) {
        self.stats.record(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.record_error(&error);
        self.errors.log(error, reason);
    }
}

impl ConsumerContext for HostContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let Ok(mut assigned) = self.assigned.lock() else {
                return;
            };
            for element in partitions.elements() {
                assigned.remove(&(element.topic().to_string(), element.partition()));
            }
            self.report_assignment(&assigned);
            tracing::info!(partitions = %describe_partitions(partitions), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                if let Ok(mut assigned) = self.assigned.lock() {
                    for element in partitions.elements() {
                        assigned.insert((element.topic().to_string(), element.partition()));
                    }
                    self.report_assignment(&assigned);
                }
                tracing::info!(partitions = %describe_partitions(partitions), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(error = %error, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(partitions = offsets.count(), "offsets committed"),
            // At-least-once still holds: the partition's next owner starts
            // from the last successful commit and replays the rest.
            Err(error) => tracing::warn!(error = %error, "offset commit failed"),
        }
    }
}

impl HostContext {
    /// Creates the consumer for the pipeline's group.
    pub(super) fn create_consumer(config: &PipelineConfig) -> anyhow::Result<HostConsumer> {
        let mut consumer_config = config.kafka.consumer_config(&config.group_id)?;
        if config.replay {
            consumer_config.set("enable.partition.eof", "true");
        }
        consumer_config
            .create_with_context(HostContext::new())
            .with_context(|| {
                format!(
                    "failed to create consumer for {}",
                    config.kafka.bootstrap_servers
                )
            })
    }
}

/// Waits for the next batch: up to `batch_size` records, collected for at
/// most `batch_linger` after the first one. Returns `None` once `shutdown`
/// is cancelled; a batch already started is finished first.
pub(super) async fn next_batch(
    consumer: &HostConsumer,
    config: &PipelineConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<ConsumedBatch>> {
    let mut batch = ConsumedBatch {
        records: Vec::with_capacity(config.batch_size),
        next_offsets: BTreeMap::new(),
        origins: Vec::with_capacity(config.batch_size),
        end_of_partition: Vec::new(),
        skipped: 0,
        at_max_attempts: 0,
        cut: 0,
    };

    // The first record: wait as long as it takes, unless shutting down.
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                batch.push(&message, config);
                break;
            }
            // Returned at once, so that a replay can stop at the end.
            Err(KafkaError::PartitionEOF(partition)) => {
                batch.end_of_partition.push(partition);
                return Ok(Some(batch));
            }
            Err(error) => {
                tracing::warn!(error = %error, "failed to consume, retrying");
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }

    let deadline = tokio::time::Instant::now() + config.batch_linger;
    while batch.records.len() < config.batch_size {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_elapsed) => break,
            Ok(Ok(message)) => batch.push(&message, config),
            Ok(Err(KafkaError::PartitionEOF(partition))) => {
                batch.end_of_partition.push(partition);
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "failed to consume, retrying");
                break;
            }
        }
    }
    batch.record_metrics(&config.input_topic);
    Ok(Some(batch))
}

impl ConsumedBatch {
    /// Returns the first offset of the batch per (topic, partition).
    pub(super) fn first_offsets(&self) -> BTreeMap<(String, i32), i64> {
        let mut first = BTreeMap::new();
        for record in &self.records {
            first
                .entry((record.topic.clone(), record.partition))
                .or_insert(record.offset);
        }
        first
    }

    /// Drops the records and offsets of partitions that `context` no longer
    /// owns, and returns how many records it dropped. A partition can be
    /// revoked while a batch fills, and its new owner starts from the
    /// group's committed offset.
    pub(super) fn retain_owned(&mut self, context: &HostContext) -> usize {
        let before = self.records.len();
        let records = std::mem::take(&mut self.records);
        let origins = std::mem::take(&mut self.origins);
        for (record, origin) in records.into_iter().zip(origins) {
            if context.owns(&record.topic, record.partition) {
                self.records.push(record);
                self.origins.push(origin);
            }
        }
        self.next_offsets
            .retain(|(topic, partition), _| context.owns(topic, *partition));
        before - self.records.len()
    }

    /// Counts the batch's records and bytes. The host subscribes to one
    /// topic, so every record is from `topic`.
    fn record_metrics(&self, topic: &str) {
        let bytes: usize = self.records.iter().map(|record| record.value.len()).sum();
        counter!(crate::metrics::RECORDS_CONSUMED, "topic" => topic.to_string())
            .increment(self.records.len() as u64);
        counter!(crate::metrics::CONSUMED_BYTES, "topic" => topic.to_string())
            .increment(bytes as u64);
        histogram!(crate::metrics::BATCH_RECORDS).record(self.records.len() as f64);
    }

    /// Adds a consumed record. When replaying the record is a dead letter:
    /// its origin comes from its headers, and one the host did not write,
    /// one at `max_attempts` or one that holds only the first bytes of its
    /// input is left out.
    fn push(&mut self, message: &BorrowedMessage<'_>, config: &PipelineConfig) {
        let topic = message.topic();
        let next = message.offset() + 1;
        // A batch spans few partitions: looking the entry up saves a new
        // key for every record.
        let entry = self
            .next_offsets
            .iter_mut()
            .find(|((known, partition), _)| *partition == message.partition() && known == topic);
        match entry {
            Some((_, offset)) => *offset = next,
            None => {
                self.next_offsets
                    .insert((topic.to_string(), message.partition()), next);
            }
        }
        let record = InputRecord {
            topic: topic.to_string(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        };
        let origin = if config.replay {
            let Some(origin) = super::replay::dead_letter_origin(message, &record) else {
                self.skipped += 1;
                return;
            };
            // `attempts` already counts this replay.
            if origin.attempts > config.max_attempts {
                self.at_max_attempts += 1;
                return;
            }
            // The plugin would see a different line than the one logged.
            if super::replay::is_cut(message) {
                tracing::debug!(
                    partition = record.partition,
                    offset = record.offset,
                    source_topic = origin.topic,
                    source_partition = origin.partition,
                    source_offset = origin.offset,
                    "left a cut dead letter in place"
                );
                self.cut += 1;
                return;
            }
            origin
        } else {
            Origin::of(&record)
        };
        self.origins.push(origin);
        self.records.push(record);
    }
}
