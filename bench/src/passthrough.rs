//! `weblog-bench passthrough`: the fastest enrichment stage possible on this
//! broker, a consume-then-produce loop that copies each raw record's key and
//! value to the output topic and calls no plugin.
//!
//! It uses the host's client settings from [`KafkaArgs`] (acks=all,
//! idempotence, lz4, manual commits, read_committed), the host's default
//! batches (256 records, 20 ms linger, 32 in flight) and its at-least-once
//! rule: a batch's offsets are committed only after the broker
//! acknowledged every copy in it and in the batches before it. Unlike the
//! host it adds no headers and writes the raw line, which is about a third
//! of the size of an enriched record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weblog_common::KafkaArgs;

/// Max records per batch, the host's default `--batch-size`.
const BATCH_SIZE: usize = 256;

/// How long a batch waits for more records after its first, the host's
/// default `--batch-linger-ms`.
const BATCH_LINGER: Duration = Duration::from_millis(20);

/// Batches whose delivery reports may be outstanding before consumption
/// waits, the host's default `--max-in-flight-batches`.
const MAX_IN_FLIGHT_BATCHES: usize = 32;

/// Pause before retrying a record that met a full local producer queue.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Flags of `weblog-bench passthrough`.
#[derive(Args, Clone, Debug)]
pub(crate) struct PassthroughArgs {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Topic to consume raw records from.
    #[arg(long)]
    input_topic: String,

    /// Topic to copy every record to.
    #[arg(long)]
    output_topic: String,

    /// Consumer group id.
    #[arg(long, default_value = "weblog-passthrough")]
    group_id: String,
}

/// The copies of one batch and the offsets to commit once all are
/// acknowledged.
#[derive(Default)]
struct CopiedBatch {
    deliveries: Vec<DeliveryFuture>,
    next_offsets: BTreeMap<(String, i32), i64>,
}

/// Copies records until SIGINT or SIGTERM, then commits what was
/// acknowledged and returns.
pub(crate) async fn run(args: PassthroughArgs) -> anyhow::Result<()> {
    let shutdown = weblog_common::listen_for_shutdown()?;
    let consumer: Arc<StreamConsumer> = Arc::new(
        args.kafka
            .consumer_config(&args.group_id)?
            .create()
            .context("failed to create the passthrough consumer")?,
    );
    let producer: FutureProducer = args
        .kafka
        .producer_config()?
        .create()
        .context("failed to create the passthrough producer")?;
    consumer
        .subscribe(&[&args.input_topic])
        .with_context(|| format!("failed to subscribe to topic {:?}", args.input_topic))?;
    tracing::info!(topic = %args.input_topic, group = %args.group_id, "consuming");

    let (batches, acks) = mpsc::channel::<CopiedBatch>(MAX_IN_FLIGHT_BATCHES);
    let committer = tokio::spawn(commit_acknowledged(consumer.clone(), acks));
    let copied = copy_records(&consumer, &producer, &args.output_topic, batches, &shutdown).await;
    let committed = committer.await.context("failed to join the commit task")?;
    let copied = copied?;
    committed?;
    producer
        .flush(Duration::from_secs(30))
        .context("failed to flush the passthrough producer")?;
    tracing::info!(copied, "stopped");
    Ok(())
}

/// Consumes batches until `shutdown`, produces a copy of each record and
/// hands each batch to the commit task. Returns the number of records
/// copied.
async fn copy_records(
    consumer: &StreamConsumer,
    producer: &FutureProducer,
    output_topic: &str,
    batches: mpsc::Sender<CopiedBatch>,
    shutdown: &CancellationToken,
) -> anyhow::Result<u64> {
    let mut copied = 0u64;
    loop {
        // The first record of a batch: wait as long as it takes.
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        let mut batch = CopiedBatch::default();
        let mut next = Some(first);
        let deadline = tokio::time::Instant::now() + BATCH_LINGER;
        while let Some(received) = next.take() {
            match received {
                Ok(message) => {
                    let delivery = copy(producer, output_topic, &message).await?;
                    batch.deliveries.push(delivery);
                    batch.next_offsets.insert(
                        (message.topic().to_string(), message.partition()),
                        message.offset() + 1,
                    );
                }
                Err(error) => tracing::warn!(error = %error, "failed to consume, retrying"),
            }
            if batch.deliveries.len() < BATCH_SIZE {
                next = tokio::time::timeout_at(deadline, consumer.recv())
                    .await
                    .ok();
            }
        }
        copied += batch.deliveries.len() as u64;
        if batches.send(batch).await.is_err() {
            // The commit task stopped; its error is the one reported.
            break;
        }
    }
    Ok(copied)
}

/// Produces a copy of `message`'s key and value to `topic`.
async fn copy(
    producer: &FutureProducer,
    topic: &str,
    message: &BorrowedMessage<'_>,
) -> anyhow::Result<DeliveryFuture> {
    let mut record =
        FutureRecord::<[u8], [u8]>::to(topic).payload(message.payload().unwrap_or_default());
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
            }
            Err((error, _)) => anyhow::bail!("failed to produce to topic {topic:?}: {error}"),
        }
    }
}

/// Awaits each batch's delivery reports in consumption order and then
/// commits its offsets, folding batches that already wait into one commit.
/// A failed delivery stops the loop without committing it, as in the host.
async fn commit_acknowledged(
    consumer: Arc<StreamConsumer>,
    mut batches: mpsc::Receiver<CopiedBatch>,
) -> anyhow::Result<()> {
    let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while let Some(batch) = batches.recv().await {
        for delivery in batch.deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => anyhow::bail!("failed to deliver a copy: {error}"),
                Err(_canceled) => anyhow::bail!("producer dropped a delivery report"),
            }
        }
        offsets.extend(batch.next_offsets);
        if batches.is_empty() {
            commit(&consumer, &mut offsets, CommitMode::Async)?;
        }
    }
    commit(&consumer, &mut offsets, CommitMode::Sync)
}

fn commit(
    consumer: &StreamConsumer,
    offsets: &mut BTreeMap<(String, i32), i64>,
    mode: CommitMode,
) -> anyhow::Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), offset) in std::mem::take(offsets) {
        list.add_partition_offset(&topic, partition, Offset::Offset(offset))
            .with_context(|| format!("failed to add {topic}/{partition} to a commit"))?;
    }
    if let Err(error) = consumer.commit(&list, mode) {
        // The next commit covers the same partitions.
        tracing::warn!(error = %error, "failed to commit offsets");
    }
    Ok(())
}
