//! Committing offsets in order, after every output is acknowledged.
//!
//! Batches arrive in consumption order. For each one the task waits for all
//! delivery reports, and only when every output of a batch is acknowledged
//! (after the retries of [`super::deliver`]) are its offsets merged into the
//! set to commit. A delivery that still fails stops the host without
//! committing, so the records are replayed after a restart. While the task
//! waits, the consume loop stops once `--max-in-flight-batches` batches are
//! pending, so a broker outage pauses consumption. Commits are asynchronous
//! while batches flow and confirmed by a synchronous one when they stop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::consume::{HostConsumer, Origin};
use super::deliver::{deliver_with_retries, Delivery, RetrySettings};
use super::produce::Output;
use crate::bindings::InputRecord;
use crate::metrics::{PRODUCED_BYTES, RECORDS_DEAD_LETTERED, RECORDS_PRODUCED};
use crate::outcome::FailureKind;
use crate::retry::Jitter;
use weblog_common::metrics::counter;

/// Outputs of one batch on their way to Kafka.
pub(super) struct PendingBatch {
    /// One per produced record, enriched or dead letter.
    pub(super) deliveries: Vec<Delivery>,
    /// The batch's input records and their origins, for dead letters of
    /// rejected outputs.
    pub(super) inputs: Vec<InputRecord>,
    pub(super) origins: Vec<Origin>,
    /// Offsets to commit once every delivery succeeded.
    pub(super) next_offsets: BTreeMap<(String, i32), i64>,
    /// What the deliveries carry, counted once they are acknowledged.
    pub(super) outputs: OutputCounts,
}

/// Enriched records and dead letters of one batch, for the metrics.
#[derive(Debug)]
pub(super) struct OutputCounts {
    output_topic: String,
    dlq_topic: String,
    enriched: u64,
    enriched_bytes: u64,
    /// Dead letters per failure kind.
    dead_letters: BTreeMap<&'static str, u64>,
}

impl OutputCounts {
    pub(super) fn new(output_topic: &str, dlq_topic: &str) -> Self {
        Self {
            output_topic: output_topic.to_string(),
            dlq_topic: dlq_topic.to_string(),
            enriched: 0,
            enriched_bytes: 0,
            dead_letters: BTreeMap::new(),
        }
    }

    pub(super) fn add_enriched(&mut self, bytes: usize) {
        self.enriched += 1;
        self.enriched_bytes += bytes as u64;
    }

    pub(super) fn add_dead_letter(&mut self, kind: FailureKind) {
        *self.dead_letters.entry(kind.as_str()).or_default() += 1;
    }

    /// Returns the dead letters per failure kind.
    pub(super) fn dead_letters(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.dead_letters
            .iter()
            .map(|(kind, count)| (*kind, *count))
    }

    /// Adds the counts to the produced and dead-lettered metrics. Call once
    /// Kafka acknowledged every output.
    pub(super) fn record_acknowledged(&self) {
        let topic = self.output_topic.clone();
        counter!(RECORDS_PRODUCED, "topic" => topic.clone()).increment(self.enriched);
        counter!(PRODUCED_BYTES, "topic" => topic).increment(self.enriched_bytes);
        for (kind, count) in self.dead_letters() {
            counter!(
                RECORDS_DEAD_LETTERED,
                "topic" => self.dlq_topic.clone(),
                "kind" => kind,
            )
            .increment(count);
        }
    }
}

/// Totals since start, for the shutdown log.
#[derive(Debug, Default)]
pub(super) struct PipelineCounts {
    consumed: AtomicU64,
    enriched: AtomicU64,
    dead_lettered: AtomicU64,
}

impl PipelineCounts {
    pub(super) fn add_consumed(&self, count: usize) {
        self.consumed.fetch_add(count as u64, Ordering::Relaxed);
    }
    pub(super) fn add_enriched(&self, count: usize) {
        self.enriched.fetch_add(count as u64, Ordering::Relaxed);
    }
    pub(super) fn add_dead_lettered(&self, count: usize) {
        self.dead_lettered
            .fetch_add(count as u64, Ordering::Relaxed);
    }
    pub(super) fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }
    pub(super) fn enriched(&self) -> u64 {
        self.enriched.load(Ordering::Relaxed)
    }
    pub(super) fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}

/// How long the committer waits without a new batch before it confirms
/// the asynchronous commits since the last confirmed one with a
/// synchronous commit.
pub(super) const CONFIRM_AFTER_IDLE: Duration = Duration::from_secs(5);

/// Waits for each batch's deliveries in order and commits its offsets.
/// Returns when the channel closes, after a final synchronous commit.
///
/// Commits are asynchronous while batches flow, and the next one covers a
/// failed one. An asynchronous commit that the broker fails shows only as
/// librdkafka's `COMMITFAIL` warning, because on librdkafka's mock cluster
/// the context's commit callback did not run. So once no batch has come
/// for `confirm_after`, the offsets are committed again synchronously,
/// and again after each further `confirm_after` until that succeeds.
pub(super) async fn commit_in_order(
    consumer: Arc<HostConsumer>,
    output: Output,
    retry: RetrySettings,
    confirm_after: Duration,
    mut batches: mpsc::Receiver<PendingBatch>,
) -> anyhow::Result<()> {
    // Offsets of acknowledged batches that no synchronous commit has
    // confirmed yet.
    let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut jitter = Jitter::from_time();
    loop {
        let next = match offsets.is_empty() {
            true => batches.recv().await,
            false => match tokio::time::timeout(confirm_after, batches.recv()).await {
                Ok(next) => next,
                Err(_idle) => {
                    // A synchronous commit blocks until the broker replies,
                    // so the runtime's other tasks move to another thread.
                    let confirmed = tokio::task::block_in_place(|| {
                        commit(&consumer, &mut offsets, CommitMode::Sync)
                    })?;
                    if confirmed {
                        tracing::debug!(partitions = offsets.len(), "offsets confirmed");
                        offsets.clear();
                    }
                    continue;
                }
            },
        };
        let Some(mut batch) = next else {
            break;
        };
        deliver_with_retries(&output, &mut batch, &retry, &mut jitter).await?;
        batch.outputs.record_acknowledged();
        offsets.extend(batch.next_offsets);

        // Batches that are already waiting are folded into one commit.
        if batches.is_empty() {
            commit(&consumer, &mut offsets, CommitMode::Async)?;
        }
    }
    commit(&consumer, &mut offsets, CommitMode::Sync).map(|_| ())
}

/// Commits the offsets of partitions this instance still owns, and drops
/// those of partitions it lost from `offsets`: their new owner replays
/// from its own last commit. Returns false when the commit failed, which
/// for an asynchronous one means it could not be queued.
fn commit(
    consumer: &HostConsumer,
    offsets: &mut BTreeMap<(String, i32), i64>,
    mode: CommitMode,
) -> anyhow::Result<bool> {
    let context = consumer.context();
    offsets.retain(|(topic, partition), offset| {
        let owned = context.owns(topic, *partition);
        if !owned {
            tracing::debug!(topic = %topic, partition, offset, "skipping commit of a lost partition");
        }
        owned
    });
    if offsets.is_empty() {
        return Ok(true);
    }
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), offset) in offsets.iter() {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .with_context(|| format!("failed to add {topic}/{partition} to a commit"))?;
    }
    match consumer.commit(&list, mode) {
        Ok(()) => {
            counter!(crate::metrics::COMMITS).increment(1);
            Ok(true)
        }
        // Not fatal: a later commit covers the same partitions, and if
        // there is none the records are replayed (at-least-once).
        Err(error) => {
            tracing::warn!(error = %error, sync = matches!(mode, CommitMode::Sync), "failed to commit offsets");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use clap::Parser;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::FutureProducer;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::ClientConfig;
    use weblog_common::{KafkaArgs, LoggingContext};

    use super::*;
    use crate::pipeline::consume::HostContext;
    use crate::pipeline::PipelineConfig;
    use crate::retry::Backoff;
    use crate::sandbox::SandboxLimits;

    const TOPIC: &str = "raw-test";
    const GROUP: &str = "commit-test";

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    fn config(bootstrap: &str) -> PipelineConfig {
        let flags = Flags::try_parse_from([
            "test",
            "--bootstrap-servers",
            bootstrap,
            // The group forms in well under a second on the mock cluster.
            "--kafka-option",
            "session.timeout.ms=3000",
            "--kafka-option",
            "heartbeat.interval.ms=300",
        ])
        .expect("test flags are valid");
        PipelineConfig {
            kafka: flags.kafka,
            input_topic: TOPIC.to_string(),
            output_topic: "enriched-test".to_string(),
            dlq_topic: "dlq-test".to_string(),
            group_id: GROUP.to_string(),
            plugin_path: "unused.wasm".into(),
            plugin_config: Vec::new(),
            limits: SandboxLimits::default(),
            batch_size: 16,
            batch_linger: Duration::from_millis(10),
            max_in_flight_batches: 4,
            component_cache: None,
            admin_addr: None,
            transactional_id: None,
            retry: RetrySettings {
                max_retries: 0,
                backoff: Backoff::default(),
            },
            instance_id: "test".to_string(),
            replay: false,
            max_attempts: u32::MAX,
        }
    }

    /// Returns the offset `GROUP` committed for partition 0, if any.
    fn committed(bootstrap: &str) -> Option<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", GROUP)
            .create()
            .expect("create test consumer");
        let mut list = TopicPartitionList::new();
        list.add_partition(TOPIC, 0);
        let list = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .expect("fetch committed offsets");
        match list.elements()[0].offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    }

    /// Returns a batch with no outputs that commits partition 0 at `next`.
    fn batch(next: i64) -> PendingBatch {
        PendingBatch {
            deliveries: Vec::new(),
            inputs: Vec::new(),
            origins: Vec::new(),
            next_offsets: BTreeMap::from([((TOPIC.to_string(), 0), next)]),
            outputs: OutputCounts::new("enriched-test", "dlq-test"),
        }
    }

    /// An asynchronous commit that the broker fails is made good once no
    /// batch follows, before the channel closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_commit_is_confirmed_when_idle() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create topic");
        let bootstrap = cluster.bootstrap_servers();
        let config = config(&bootstrap);
        let consumer = Arc::new(HostContext::create_consumer(&config).expect("create consumer"));
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        // Polling serves the rebalance that assigns the partition.
        let poller = tokio::spawn({
            let consumer = consumer.clone();
            async move { while consumer.recv().await.is_ok() {} }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while !consumer.context().owns(TOPIC, 0) {
            assert!(Instant::now() < deadline, "partition 0 never assigned");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let producer: FutureProducer<LoggingContext> = config
            .kafka
            .producer_config()
            .expect("producer config")
            .create_with_context(LoggingContext::default())
            .expect("create producer");
        let output = Output::new(producer, &config, 1_000_000);

        cluster.request_errors(
            RDKafkaApiKey::OffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE],
        );
        let (sender, receiver) = mpsc::channel(4);
        let committer = tokio::spawn(commit_in_order(
            consumer.clone(),
            output,
            config.retry,
            Duration::from_millis(300),
            receiver,
        ));
        sender.send(batch(3)).await.expect("send batch");

        let seen = wait_for_commit(&bootstrap, 3, Duration::from_secs(20)).await;

        // Shut down before asserting: a consumer dropped by a panicking
        // test while its tasks still run can block the runtime's shutdown.
        drop(sender);
        let result = committer.await.expect("join committer");
        poller.abort();
        let _ = poller.await;
        assert_eq!(seen, Some(3), "committed offset with the channel open");
        result.expect("committer succeeds");
    }

    /// Polls the committed offset of partition 0 until it is `expected` or
    /// `timeout` passes, and returns the last one seen.
    async fn wait_for_commit(bootstrap: &str, expected: i64, timeout: Duration) -> Option<i64> {
        let deadline = Instant::now() + timeout;
        loop {
            let bootstrap = bootstrap.to_string();
            let offset = tokio::task::spawn_blocking(move || committed(&bootstrap))
                .await
                .expect("join committed offsets");
            if offset == Some(expected) || Instant::now() >= deadline {
                return offset;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
