//! Exactly-once mode (`run --exactly-once`): each batch is one Kafka
//! transaction that contains its enriched records, its dead letters and its
//! consumer offsets, so a downstream consumer with
//! `isolation.level=read_committed` reads all of a batch's outputs once, or
//! none of them.
//!
//! Batches run one at a time: the loop consumes again only after the
//! previous transaction is committed or aborted. The consumer's rebalance
//! callbacks run while it consumes, so no transaction is open when this
//! instance loses a partition. The cost is throughput: the host waits for
//! every commit instead of keeping batches in flight.
//!
//! An abortable error (a failed delivery, a commit the group coordinator
//! rejects) aborts the transaction and seeks the consumer back to the
//! batch's first offsets, so the next batches consume those records again
//! after a backoff with jitter. More than `--max-retries` aborts in a row
//! stop the host. When the broker rejected an enriched record for good (too
//! large, invalid), the next run of the batch dead-letters its input
//! instead. When it rejected a dead letter for good, the next run sends a
//! small one with only the first KiB of the input. A fatal error, such as
//! a newer producer with the same transactional id fencing this one, stops
//! the host.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use weblog_common::LoggingContext;

use super::commit::PipelineCounts;
use super::consume::{ConsumedBatch, HostConsumer};
use super::deliver::{await_deliveries, FailedDeliveries, RetrySettings};
use super::produce::Output;
use crate::outcome::{EnrichOutcome, Failure, FailureKind};
use crate::plugin::PluginIdentity;
use crate::retry::{self, DeliveryFailure, Jitter};

/// How long `init_transactions` may take. It waits for the broker to abort
/// a transaction that a previous producer with the same id left open.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one other transactional call or seek may block.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at one `commit_transaction` while librdkafka calls its error
/// retriable, before the transaction is aborted.
const MAX_COMMIT_ATTEMPTS: u32 = 3;

/// Failure of a transactional step, sorted by what the host can do next.
enum TransactionError {
    /// The producer cannot go on: abort is impossible, the host must stop.
    Fatal(anyhow::Error),
    /// The transaction can be aborted and the batch consumed again.
    Abortable(anyhow::Error),
}

/// The transactional producer and the consumer whose offsets it commits.
pub(super) struct Transactions {
    producer: FutureProducer<LoggingContext>,
    consumer: Arc<HostConsumer>,
    transactional_id: String,
    aborts_in_a_row: u32,
    retry: RetrySettings,
    jitter: Jitter,
    /// Reasons the broker gave for rejecting the enriched records of
    /// inputs, by input (topic, partition, offset), until their batch
    /// commits with a dead letter in their place.
    rejected: HashMap<(String, i32, i64), String>,
    /// The broker's errors for dead letters it rejected for good, by input,
    /// until their batch commits with a small dead letter in their place.
    rejected_dead_letters: HashMap<(String, i32, i64), String>,
}

impl Transactions {
    /// Registers `transactional_id` with the transaction coordinator. This
    /// fences any older producer with the same id and aborts the
    /// transaction it left open, so call it before the consumer subscribes:
    /// the group's committed offsets are then final.
    pub(super) fn init(
        producer: FutureProducer<LoggingContext>,
        consumer: Arc<HostConsumer>,
        transactional_id: &str,
        retry: RetrySettings,
    ) -> anyhow::Result<Self> {
        tokio::task::block_in_place(|| producer.init_transactions(INIT_TIMEOUT)).with_context(
            || format!("failed to init transactions for transactional id {transactional_id:?}"),
        )?;
        tracing::info!(transactional_id, "transactions initialized");
        Ok(Self {
            producer,
            consumer,
            transactional_id: transactional_id.to_string(),
            aborts_in_a_row: 0,
            retry,
            jitter: Jitter::from_time(),
            rejected: HashMap::new(),
            rejected_dead_letters: HashMap::new(),
        })
    }

    /// Produces the batch's outputs and commits its offsets in one
    /// transaction. After an abortable error the transaction is aborted,
    /// the consumer is rewound to the batch's first offsets and `Ok` is
    /// returned, so the caller consumes the records again. Returns an error
    /// when the producer failed fatally or after too many aborts in a row.
    pub(super) async fn commit_batch(
        &mut self,
        output: &Output,
        mut batch: ConsumedBatch,
        outcomes: Vec<EnrichOutcome>,
        plugin: &PluginIdentity,
        counts: &PipelineCounts,
    ) -> anyhow::Result<()> {
        let first_offsets = batch.first_offsets();
        let sources: Vec<(String, i32, i64)> = batch
            .records
            .iter()
            .map(|record| (record.topic.clone(), record.partition, record.offset))
            .collect();
        let outcomes = self.dead_letter_rejected(&sources, outcomes);
        for (source, origin) in sources.iter().zip(batch.origins.iter_mut()) {
            origin.rejected_dead_letter = self.rejected_dead_letters.get(source).cloned();
        }
        match self
            .run_transaction(output, batch, outcomes, plugin, counts)
            .await
        {
            Ok(()) => {
                self.aborts_in_a_row = 0;
                for source in &sources {
                    self.rejected.remove(source);
                    self.rejected_dead_letters.remove(source);
                }
                tracing::debug!(records = sources.len(), "transaction committed");
                Ok(())
            }
            Err(TransactionError::Fatal(error)) => Err(self.fatal(error)),
            Err(TransactionError::Abortable(error)) => {
                // A batch whose next attempt dead-letters more inputs makes
                // progress, so its abort does not count as a retry.
                if self.remember_rejections(&error, &sources) {
                    self.aborts_in_a_row = 0;
                }
                self.abort_and_rewind(error, &first_offsets).await
            }
        }
    }

    /// Replaces the outcomes of inputs whose enriched records the broker
    /// rejected in an earlier attempt with a failure.
    fn dead_letter_rejected(
        &self,
        sources: &[(String, i32, i64)],
        mut outcomes: Vec<EnrichOutcome>,
    ) -> Vec<EnrichOutcome> {
        if self.rejected.is_empty() {
            return outcomes;
        }
        for (source, outcome) in sources.iter().zip(outcomes.iter_mut()) {
            if let Some(reason) = self.rejected.get(source) {
                *outcome = EnrichOutcome::Failed(Failure {
                    kind: FailureKind::InvalidOutput,
                    reason: reason.clone(),
                });
            }
        }
        outcomes
    }

    /// Remembers the inputs of enriched records that the broker rejected
    /// for good, so that the next attempt dead-letters them, and of dead
    /// letters it rejected for good, so that the next attempt sends small
    /// ones. Returns whether there was a new one.
    fn remember_rejections(
        &mut self,
        error: &anyhow::Error,
        sources: &[(String, i32, i64)],
    ) -> bool {
        let Some(FailedDeliveries(failures)) = error.downcast_ref::<FailedDeliveries>() else {
            return false;
        };
        let mut remembered = false;
        for failed in failures {
            if retry::classify(&failed.error) != DeliveryFailure::Permanent {
                continue;
            }
            let source = sources[failed.input].clone();
            if failed.dead_letter {
                tracing::warn!(
                    error = %failed.error,
                    topic = %source.0,
                    partition = source.1,
                    offset = source.2,
                    "broker rejected a dead letter, a small one will take its place"
                );
                remembered |= self
                    .rejected_dead_letters
                    .insert(source, failed.error.to_string())
                    .is_none();
                continue;
            }
            tracing::warn!(
                error = %failed.error,
                topic = %source.0,
                partition = source.1,
                offset = source.2,
                "broker rejected an enriched record, its input will be dead-lettered"
            );
            let reason = format!("the broker rejected the enriched record: {}", failed.error);
            remembered |= self.rejected.insert(source, reason).is_none();
        }
        remembered
    }

    async fn run_transaction(
        &self,
        output: &Output,
        batch: ConsumedBatch,
        outcomes: Vec<EnrichOutcome>,
        plugin: &PluginIdentity,
        counts: &PipelineCounts,
    ) -> Result<(), TransactionError> {
        self.producer
            .begin_transaction()
            .map_err(|error| classify(error, "begin a transaction"))?;

        let pending = output
            .send(batch, outcomes, plugin, counts)
            .await
            .map_err(TransactionError::Abortable)?;
        await_deliveries(pending.deliveries)
            .await
            .map_err(TransactionError::Abortable)?;

        let offsets = offset_list(&pending.next_offsets).map_err(TransactionError::Fatal)?;
        let group = self.consumer.group_metadata().ok_or_else(|| {
            TransactionError::Fatal(anyhow::anyhow!("the consumer has no group metadata"))
        })?;
        tokio::task::block_in_place(|| {
            self.producer
                .send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)
        })
        .map_err(|error| classify(error, "send offsets to the transaction"))?;

        self.commit()?;
        pending.outputs.record_acknowledged();
        weblog_common::metrics::counter!(crate::metrics::COMMITS).increment(1);
        Ok(())
    }

    /// Commits the open transaction, calling again while librdkafka marks
    /// the error as retriable (a timeout, for example).
    fn commit(&self) -> Result<(), TransactionError> {
        let mut attempt = 1;
        loop {
            let result =
                tokio::task::block_in_place(|| self.producer.commit_transaction(CALL_TIMEOUT));
            match result {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(error))
                    if error.is_retriable() && attempt < MAX_COMMIT_ATTEMPTS =>
                {
                    tracing::warn!(error = %error, attempt, "failed to commit transaction, retrying");
                    attempt += 1;
                }
                Err(error) => return Err(classify(error, "commit the transaction")),
            }
        }
    }

    /// Adds to a fatal error what it means for the operator.
    fn fatal(&self, error: anyhow::Error) -> anyhow::Error {
        error.context(format!(
            "transactional producer {:?} failed fatally; the broker aborts its \
             open transaction when an instance with the same id starts or the \
             transaction times out. If another instance uses this id (it fenced \
             this one), give each instance its own --instance-id or \
             --transactional-id",
            self.transactional_id
        ))
    }

    /// Aborts the open transaction and seeks each owned partition of the
    /// batch back to its first offset, which is the group's committed
    /// offset because batches commit in order.
    async fn abort_and_rewind(
        &mut self,
        cause: anyhow::Error,
        first_offsets: &BTreeMap<(String, i32), i64>,
    ) -> anyhow::Result<()> {
        self.aborts_in_a_row += 1;
        tracing::warn!(
            error = format!("{cause:#}"),
            transactional_id = %self.transactional_id,
            aborts_in_a_row = self.aborts_in_a_row,
            "aborting transaction, its records will be consumed again"
        );
        self.abort(&cause).await?;
        anyhow::ensure!(
            self.aborts_in_a_row <= self.retry.max_retries,
            "aborted {} transactions in a row, the last after: {cause:#}",
            self.aborts_in_a_row
        );

        let context = self.consumer.context();
        for ((topic, partition), offset) in first_offsets {
            if !context.owns(topic, *partition) {
                continue;
            }
            tokio::task::block_in_place(|| {
                self.consumer
                    .seek(topic, *partition, Offset::Offset(*offset), CALL_TIMEOUT)
            })
            .with_context(|| format!("failed to seek {topic}/{partition} back to {offset}"))?;
        }
        let backoff = self
            .retry
            .backoff
            .delay(self.aborts_in_a_row, &mut self.jitter);
        tokio::time::sleep(backoff).await;
        Ok(())
    }

    /// Aborts the open transaction, calling again with backoff while
    /// librdkafka marks the error as retriable, as a timeout during a
    /// broker outage is.
    async fn abort(&mut self, cause: &anyhow::Error) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            let aborted =
                tokio::task::block_in_place(|| self.producer.abort_transaction(CALL_TIMEOUT));
            let error = match aborted {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let retriable =
                matches!(&error, KafkaError::Transaction(inner) if inner.is_retriable());
            if retriable && attempt < self.retry.max_retries {
                attempt += 1;
                let delay = self.retry.backoff.delay(attempt, &mut self.jitter);
                tracing::warn!(error = %error, attempt, delay_ms = delay.as_millis() as u64, "failed to abort transaction, retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
            return match classify(error, "abort the transaction") {
                TransactionError::Fatal(error) => Err(self.fatal(error)),
                TransactionError::Abortable(error) => {
                    Err(error.context(format!("failed to recover from: {cause:#}")))
                }
            };
        }
    }
}

/// Sorts a failed transactional call into fatal or abortable. librdkafka
/// marks a fenced producer, for example, as fatal.
fn classify(error: KafkaError, action: &str) -> TransactionError {
    let fatal = match &error {
        KafkaError::Transaction(inner) => inner.is_fatal(),
        _ => false,
    };
    let error = anyhow::Error::new(error).context(format!("failed to {action}"));
    if fatal {
        TransactionError::Fatal(error)
    } else {
        TransactionError::Abortable(error)
    }
}

fn offset_list(offsets: &BTreeMap<(String, i32), i64>) -> anyhow::Result<TopicPartitionList> {
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, partition), offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .with_context(|| format!("failed to add {topic}/{partition} to the offsets"))?;
    }
    Ok(list)
}
