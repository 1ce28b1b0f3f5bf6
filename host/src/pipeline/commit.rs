//! Committing offsets in order, after every output is acknowledged.
//!
//! Batches arrive in consumption order. For each one the task waits for all
//! delivery reports, and only when every output of a batch is acknowledged
//! (after the retries of [`super::deliver`]) are its offsets merged into the
//! set to commit. A delivery that still fails stops the host without
//! committing, so the records are replayed after a restart. While the task
//! waits, the consume loop stops once `--max-in-flight-batches` batches are
//! pending, so a broker outage pauses consumption.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

/// Waits for each batch's deliveries in order and commits its offsets.
/// Returns when the channel closes, after a final synchronous commit.
///
/// NOTE: an asynchronous commit that the broker fails shows only as
/// librdkafka's `COMMITFAIL` warning (on librdkafka's mock cluster the
/// context's commit callback did not run), and its offsets are not sent
/// again. The next batch's commit covers them, but when no
/// batch follows, as after an outage on an idle topic, the group's offsets
/// stay behind until one does, and the final commit here covers only
/// batches that were not committed yet. A restart then replays those
/// records: duplicates, never a loss.
pub(super) async fn commit_in_order(
    consumer: Arc<HostConsumer>,
    output: Output,
    retry: RetrySettings,
    mut batches: mpsc::Receiver<PendingBatch>,
) -> anyhow::Result<()> {
    let mut to_commit: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut jitter = Jitter::from_time();
    while let Some(mut batch) = batches.recv().await {
        deliver_with_retries(&output, &mut batch, &retry, &mut jitter).await?;
        batch.outputs.record_acknowledged();
        to_commit.extend(batch.next_offsets);

        // Batches that are already waiting are folded into one commit.
        if batches.is_empty() {
            commit(&consumer, &mut to_commit, CommitMode::Async)?;
        }
    }
    commit(&consumer, &mut to_commit, CommitMode::Sync)
}

/// Commits the offsets of partitions this instance still owns and clears
/// the map. Offsets of partitions it lost are dropped: their new owner
/// replays from its own last commit.
fn commit(
    consumer: &HostConsumer,
    offsets: &mut BTreeMap<(String, i32), i64>,
    mode: CommitMode,
) -> anyhow::Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let context = consumer.context();
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), offset) in offsets.iter() {
        if context.owns(topic, *partition) {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .with_context(|| format!("failed to add {topic}/{partition} to a commit"))?;
        } else {
            tracing::debug!(topic = %topic, partition, offset, "skipping commit of a lost partition");
        }
    }
    offsets.clear();
    if list.count() == 0 {
        return Ok(());
    }
    match consumer.commit(&list, mode) {
        Ok(()) => {
            counter!(crate::metrics::COMMITS).increment(1);
            Ok(())
        }
        // Not fatal: the next commit covers the same partitions, and if
        // there is none the records are replayed (at-least-once).
        Err(error) => {
            tracing::warn!(error = %error, sync = matches!(mode, CommitMode::Sync), "failed to commit offsets");
            Ok(())
        }
    }
}
