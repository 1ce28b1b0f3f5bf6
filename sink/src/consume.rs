//! The consume loop: collect a batch, write it, checkpoint it, commit it.
//!
//! Each batch is handled in this order: the valid values are appended to
//! the file and fsynced, the rejected ones are produced to the dead-letter
//! topic and acknowledged, the checkpoint records the file length and the
//! offsets after the batch, and only then are the offsets committed to
//! Kafka. A failure in any step ends the run before the checkpoint, so the
//! next run truncates the batch's lines and writes them again. The Kafka
//! commit serves lag monitoring and partitions without a checkpoint entry.
//!
//! Records below a partition's position (the checkpointed offset, or the
//! one after the last record taken into a batch) are dropped. They arrive
//! when a rebalance gives a partition back and the consumer starts it at
//! the checkpoint while the batch in memory holds later records.
//!
//! One sink instance per output file is the supported setup. With two in
//! one group, a partition revoked from one instance while its records sit
//! in that instance's batch is also read by its new owner, so those
//! records end up in both output files.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Offsets;
use crate::config::Config;
use crate::context::{SharedOffsets, SinkContext};
use crate::dead_letter::{DeadLetters, Rejected, INVALID_OUTPUT_KIND};
use crate::metrics::{
    Freshness, CONSUMER_LAG, RECORDS_CONSUMED, RECORDS_DEAD_LETTERED, RECORDS_WRITTEN,
    WRITTEN_BYTES,
};
use crate::receive::Receiver;
use crate::record::check_value;
use crate::write::SinkWriter;
use weblog_common::admin::health;
use weblog_common::metrics::counter;
use weblog_common::topic::check_topic_exists;

/// The consumer of the enriched topic.
pub(crate) type SinkConsumer = StreamConsumer<SinkContext>;

/// Counts of one run or one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SinkSummary {
    /// Records appended to the output file.
    pub(crate) written: u64,
    /// Records sent to the dead-letter topic.
    pub(crate) dead_lettered: u64,
}

/// Consumes the configured topic into the output file until `shutdown` is
/// cancelled, then finishes the current batch and returns the counts.
pub(crate) async fn run(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<SinkSummary> {
    let mut writer =
        tokio::task::block_in_place(|| SinkWriter::open(&config.output, config.rotation))?;
    let positions = writer.offsets();
    let checkpointed: SharedOffsets = Arc::new(Mutex::new(positions.clone()));
    let dead_letters = DeadLetters::new(&config.producer, &config.dlq_topic)?;
    let servers = config.consumer.get("bootstrap.servers").unwrap_or_default();
    let consumer: SinkConsumer = config
        .consumer
        .create_with_context(SinkContext::new(Arc::clone(&checkpointed)))
        .with_context(|| format!("failed to create consumer for {servers}"))?;
    consumer
        .subscribe(&[&config.topic])
        .with_context(|| format!("failed to subscribe to topic {}", config.topic))?;
    tokio::task::block_in_place(|| {
        check_topic_exists(consumer.client(), &config.topic, "--topic", servers)?;
        dead_letters.check_topic(servers)
    })?;
    let consumer = Arc::new(consumer);
    tracing::info!(
        topic = %config.topic,
        group = %config.group_id,
        output = ?config.output,
        "sink started"
    );
    // The gauge task stops when this function returns, also on an error.
    let lag_stop = shutdown.child_token();
    weblog_common::lag::spawn_lag_gauge(
        consumer.clone(),
        CONSUMER_LAG,
        config.stats_interval,
        lag_stop.clone(),
    );
    let _lag_guard = lag_stop.drop_guard();
    health().set_running(true);
    let result = consume_until_shutdown(
        config,
        shutdown,
        &consumer,
        &mut writer,
        &dead_letters,
        positions,
        &checkpointed,
    )
    .await;
    health().set_running(false);
    let summary = result?;
    tracing::info!(
        written = summary.written,
        dead_lettered = summary.dead_lettered,
        dlq_topic = %dead_letters.topic(),
        "sink stopped"
    );
    Ok(summary)
}

/// Runs the batch loop until `shutdown` is cancelled and returns the counts.
async fn consume_until_shutdown(
    config: &Config,
    shutdown: &CancellationToken,
    consumer: &Arc<SinkConsumer>,
    writer: &mut SinkWriter,
    dead_letters: &DeadLetters,
    mut positions: Offsets,
    checkpointed: &SharedOffsets,
) -> anyhow::Result<SinkSummary> {
    let mut summary = SinkSummary::default();
    let mut receiver = Receiver::new(consumer, dead_letters);
    loop {
        let rotation_deadline = writer.rotation_deadline().map(Instant::from_std);
        let batch = receiver
            .collect_batch(config, &mut positions, rotation_deadline, shutdown)
            .await?;
        if !batch.is_empty() {
            let counts = handle_batch(consumer, writer, dead_letters, &batch, &positions).await?;
            *checkpointed.lock().unwrap_or_else(PoisonError::into_inner) = positions.clone();
            summary.written += counts.written;
            summary.dead_lettered += counts.dead_lettered;
        }
        tokio::task::block_in_place(|| writer.rotate_if_due(std::time::Instant::now()))?;
        if shutdown.is_cancelled() {
            return Ok(summary);
        }
    }
}

/// Writes, dead-letters, checkpoints and commits one batch. `positions`
/// are the offsets after every record taken so far, this batch included.
async fn handle_batch(
    consumer: &Arc<SinkConsumer>,
    writer: &mut SinkWriter,
    dead_letters: &DeadLetters,
    batch: &[OwnedMessage],
    positions: &Offsets,
) -> anyhow::Result<SinkSummary> {
    let mut lines = Vec::new();
    let mut rejected = Vec::new();
    let freshness = Freshness::now();
    for message in batch {
        match check_value(message.payload()) {
            Ok(line) => {
                freshness.record(message, &line);
                lines.extend_from_slice(&line);
                lines.push(b'\n');
            }
            Err(reason) => rejected.push(Rejected { message, reason }),
        }
    }
    let counts = SinkSummary {
        written: (batch.len() - rejected.len()) as u64,
        dead_lettered: rejected.len() as u64,
    };

    if !lines.is_empty() {
        tokio::task::block_in_place(|| writer.append(&lines))?;
    }
    dead_letters.send_all(&rejected).await?;
    tokio::task::block_in_place(|| writer.store_checkpoint(positions))?;
    record_batch_metrics(batch, &counts, lines.len());
    let partitions: BTreeMap<(&str, i32), i64> = batch
        .iter()
        .map(|message| {
            let key = (message.topic().to_string(), message.partition());
            ((message.topic(), message.partition()), positions[&key])
        })
        .collect();
    commit_offsets(consumer, partitions).await?;
    tracing::debug!(
        records = batch.len(),
        written = counts.written,
        dead_lettered = counts.dead_lettered,
        "batch checkpointed and committed"
    );
    Ok(counts)
}

/// Counts a batch that is written and checkpointed.
fn record_batch_metrics(batch: &[OwnedMessage], counts: &SinkSummary, written_bytes: usize) {
    let mut consumed: BTreeMap<&str, u64> = BTreeMap::new();
    for message in batch {
        *consumed.entry(message.topic()).or_default() += 1;
    }
    for (topic, count) in consumed {
        counter!(RECORDS_CONSUMED, "topic" => topic.to_string()).increment(count);
    }
    counter!(RECORDS_WRITTEN).increment(counts.written);
    counter!(WRITTEN_BYTES).increment(written_bytes as u64);
    counter!(RECORDS_DEAD_LETTERED, "kind" => INVALID_OUTPUT_KIND).increment(counts.dead_lettered);
}

/// Commits `offsets` synchronously. A failed commit is logged and the loop
/// goes on: the records are on disk and in the checkpoint already, so only
/// the lag that the group shows is behind until the next commit.
async fn commit_offsets(
    consumer: &Arc<SinkConsumer>,
    offsets: BTreeMap<(&str, i32), i64>,
) -> anyhow::Result<()> {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .with_context(|| format!("failed to add offset {offset} of {topic}/{partition}"))?;
    }
    let consumer = Arc::clone(consumer);
    // A synchronous commit blocks until the group coordinator replies.
    let (result, list) = tokio::task::spawn_blocking(move || {
        let result = consumer.commit(&list, CommitMode::Sync);
        (result, list)
    })
    .await
    .context("failed to join the commit task")?;
    if let Err(error) = result {
        // Expected when a rebalance revoked a partition of this batch. The
        // checkpoint, not the group, decides where this sink resumes.
        tracing::warn!(
            error = %error,
            offsets = %describe_offsets(&list),
            "failed to commit offsets; the group's lag stays behind until the next commit"
        );
    }
    Ok(())
}

/// Formats a list as `topic/partition@offset` items separated by commas.
fn describe_offsets(list: &TopicPartitionList) -> String {
    let items: Vec<String> = list
        .elements()
        .iter()
        .map(|element| {
            let offset = element.offset().to_raw().unwrap_or(-1);
            format!("{}/{}@{offset}", element.topic(), element.partition())
        })
        .collect();
    items.join(",")
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use clap::Parser;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::message::Headers;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::ClientConfig;

    use super::*;
    use crate::config::Cli;

    const TOPIC: &str = "enriched-test";
    const DLQ_TOPIC: &str = "dlq-test";
    const GROUP: &str = "sink-test";

    /// Builds a config the way `main` does, from flags, for the mock
    /// cluster at `bootstrap`.
    fn config(bootstrap: &str, output: &Path) -> Config {
        let output = output.to_str().expect("temp paths are UTF-8");
        let args = [
            "weblog-sink",
            "--output",
            output,
            "--topic",
            TOPIC,
            "--dlq-topic",
            DLQ_TOPIC,
            "--group-id",
            GROUP,
            "--batch-size",
            "2",
            "--batch-linger-ms",
            "50",
            "--bootstrap-servers",
            bootstrap,
            // Shorter than the defaults so the group forms in well under a
            // second on the mock cluster.
            "--kafka-option",
            "session.timeout.ms=3000",
            "--kafka-option",
            "heartbeat.interval.ms=300",
        ];
        let cli = Cli::try_parse_from(args).expect("test flags are valid");
        Config::try_from(cli).expect("test config is valid")
    }

    /// Produces `values` to `partition` of `TOPIC`, in order.
    async fn produce(bootstrap: &str, partition: i32, values: &[Option<&[u8]>]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("create test producer");
        for value in values {
            let mut record = FutureRecord::<(), [u8]>::to(TOPIC).partition(partition);
            if let Some(value) = value {
                record = record.payload(value);
            }
            producer
                .send(record, Duration::from_secs(10))
                .await
                .expect("produce test record");
        }
    }

    fn test_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("create test consumer")
    }

    /// Returns the offsets that `GROUP` committed for partitions 0 and 1.
    fn committed(bootstrap: &str) -> Vec<Offset> {
        let consumer = test_consumer(bootstrap, GROUP);
        let mut list = TopicPartitionList::new();
        list.add_partition(TOPIC, 0);
        list.add_partition(TOPIC, 1);
        let list = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .expect("fetch committed offsets");
        list.elements()
            .iter()
            .map(|element| element.offset())
            .collect()
    }

    /// Waits until `GROUP` has committed `expected` for partitions 0 and 1.
    async fn wait_for_commits(bootstrap: &str, expected: &[Offset]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let bootstrap = bootstrap.to_string();
            let offsets = tokio::task::spawn_blocking(move || committed(&bootstrap))
                .await
                .expect("join committed offsets");
            if offsets == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "committed offsets stuck at {offsets:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads `count` records from partition 0 of the dead-letter topic.
    fn read_dead_letters(bootstrap: &str, count: usize) -> Vec<OwnedMessage> {
        let consumer = test_consumer(bootstrap, "dlq-reader");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(DLQ_TOPIC, 0, Offset::Beginning)
            .expect("valid partition");
        consumer.assign(&list).expect("assign partition 0");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut messages = Vec::new();
        while messages.len() < count && Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                messages.push(message.expect("consume dead letter").detach());
            }
        }
        messages
    }

    fn header<'a>(message: &'a OwnedMessage, key: &str) -> Option<&'a [u8]> {
        let headers = message.headers()?;
        let header = headers.iter().find(|header| header.key == key)?;
        header.value
    }

    fn start_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 2, 1).expect("create topic");
        cluster
            .create_topic(DLQ_TOPIC, 1, 1)
            .expect("create dead-letter topic");
        cluster
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_are_written_then_committed() {
        let cluster = start_cluster();
        let bootstrap = cluster.bootstrap_servers();
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("out.jsonl");
        let partition_0: [Option<&[u8]>; 4] = [
            Some(br#"{"a":1}"#),
            Some(b"{\n  \"b\": 2\n}"),
            Some(b"not json"),
            None,
        ];
        let partition_1: [Option<&[u8]>; 3] = [Some(br#"{"c":"x\ny"}"#), Some(b""), Some(b"[1,2]")];
        produce(&bootstrap, 0, &partition_0).await;
        produce(&bootstrap, 1, &partition_1).await;

        let config = config(&bootstrap, &output);
        let shutdown = CancellationToken::new();
        let sink = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { run(&config, &shutdown).await }
        });
        wait_for_commits(&bootstrap, &[Offset::Offset(4), Offset::Offset(3)]).await;
        shutdown.cancel();
        let summary = sink.await.expect("join sink").expect("sink succeeds");

        assert_eq!(summary.written, 4);
        assert_eq!(summary.dead_lettered, 3);
        let content = std::fs::read_to_string(&output).expect("read output");
        let lines: Vec<&str> = content.lines().collect();
        assert_eq!(lines.len(), 4, "{content}");
        assert!(content.ends_with('\n'));
        // Partitions interleave in any order, but each keeps its own.
        let position = |line: &str| lines.iter().position(|written| *written == line);
        assert!(position(r#"{"a":1}"#) < position(r#"{"b":2}"#), "{content}");
        assert!(position(r#"{"c":"x\ny"}"#) < position("[1,2]"), "{content}");
        assert!(position(r#"{"b":2}"#).is_some(), "{content}");
        assert!(position("[1,2]").is_some(), "{content}");

        let bootstrap_for_reader = bootstrap.clone();
        let dead = tokio::task::spawn_blocking(move || read_dead_letters(&bootstrap_for_reader, 3))
            .await
            .expect("join reader");
        assert_eq!(dead.len(), 3);
        let mut sources: Vec<(Vec<u8>, Vec<u8>)> = dead
            .iter()
            .map(|message| {
                let partition = header(message, "weblog.source.partition").unwrap_or_default();
                let offset = header(message, "weblog.source.offset").unwrap_or_default();
                (partition.to_vec(), offset.to_vec())
            })
            .collect();
        sources.sort();
        let expected_sources = [(b"0", b"2"), (b"0", b"3"), (b"1", b"1")]
            .map(|(partition, offset)| (partition.to_vec(), offset.to_vec()));
        assert_eq!(sources, expected_sources);
        for message in &dead {
            assert_eq!(
                header(message, "weblog.error.kind"),
                Some(&b"invalid-output"[..])
            );
            assert_eq!(
                header(message, "weblog.source.topic"),
                Some(TOPIC.as_bytes())
            );
            let reason = header(message, "weblog.error.reason").unwrap_or_default();
            assert!(!reason.is_empty());
        }
        let tombstone = dead
            .iter()
            .find(|message| header(message, "weblog.source.offset") == Some(b"3"))
            .expect("tombstone dead letter");
        assert_eq!(tombstone.payload(), None);
        let invalid = dead
            .iter()
            .find(|message| header(message, "weblog.source.offset") == Some(b"2"))
            .expect("invalid JSON dead letter");
        assert_eq!(invalid.payload(), Some(&b"not json"[..]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_write_commits_nothing() {
        let cluster = start_cluster();
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, 0, &[Some(br#"{"a":1}"#)]).await;
        // Every write to /dev/full fails with ENOSPC, as on a full disk. A
        // link to it keeps the checkpoint in the temporary directory.
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("out.jsonl");
        std::os::unix::fs::symlink("/dev/full", &output).expect("link to /dev/full");
        let config = config(&bootstrap, &output);

        let shutdown = CancellationToken::new();
        let error = tokio::time::timeout(Duration::from_secs(30), run(&config, &shutdown))
            .await
            .expect("sink stops on the write error")
            .expect_err("the disk is full");

        let message = format!("{error:#}");
        assert!(
            message.contains("failed to write to output file"),
            "{message}"
        );
        assert!(message.contains("No space left on device"), "{message}");
        let checkpoint = std::fs::read_to_string(dir.path().join("out.jsonl.checkpoint"))
            .expect("read checkpoint");
        assert!(checkpoint.contains("\"length\": 0"), "{checkpoint}");
        assert!(checkpoint.contains("\"offsets\": []"), "{checkpoint}");
        let offsets = tokio::task::spawn_blocking(move || committed(&bootstrap))
            .await
            .expect("join committed offsets");
        assert_eq!(offsets, [Offset::Invalid, Offset::Invalid]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_dead_letter_commits_nothing() {
        let cluster = start_cluster();
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, 0, &[Some(b"not json")]).await;
        // The produce requests fail, not the topic's metadata, so the
        // topic check at start passes and the dead letter fails.
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 10],
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(&bootstrap, &dir.path().join("out.jsonl"));

        let shutdown = CancellationToken::new();
        let error = tokio::time::timeout(Duration::from_secs(60), run(&config, &shutdown))
            .await
            .expect("sink stops on the dead-letter error")
            .expect_err("the dead-letter topic rejects records");

        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("to dead-letter topic {DLQ_TOPIC}")),
            "{message}"
        );
        let offsets = tokio::task::spawn_blocking(move || committed(&bootstrap))
            .await
            .expect("join committed offsets");
        assert_eq!(offsets, [Offset::Invalid, Offset::Invalid]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_while_idle_returns_zero() {
        let cluster = start_cluster();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(&cluster.bootstrap_servers(), &dir.path().join("out.jsonl"));
        let shutdown = CancellationToken::new();
        shutdown.cancel();

        let summary = run(&config, &shutdown).await.expect("sink stops cleanly");

        assert_eq!(summary, SinkSummary::default());
    }
}
