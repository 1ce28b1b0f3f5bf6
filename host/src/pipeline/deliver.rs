//! Waiting for delivery reports, and what happens to a record whose
//! delivery failed.
//!
//! In the default mode a record that failed with a retriable error is sent
//! again with [`Backoff`] up to `--max-retries` times. A record the broker
//! rejects for good (too large, invalid) is dead-lettered in its place. A
//! dead letter the broker rejects for good is sent once more with only the
//! first KiB of its input, and only when that fails too does the batch
//! fail. Either way the batch's offsets are committed only once each of
//! its records is delivered or dead-lettered. In exactly-once mode a failed delivery
//! aborts the transaction, so [`await_deliveries`] reports the failures to
//! the caller instead.

use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::DeliveryFuture;
use weblog_common::metrics::counter;

use super::commit::PendingBatch;
use super::produce::{error_label, Output};
use crate::metrics::PRODUCE_ERRORS;
use crate::retry::{self, Backoff, DeliveryFailure, Jitter};

/// One produced record awaiting its delivery report.
pub(super) struct Delivery {
    future: DeliveryFuture,
    /// Index of the input record in the batch.
    input: usize,
    /// Whether the record is a dead letter, which has no fallback.
    dead_letter: bool,
}

impl Delivery {
    pub(super) fn enriched(future: DeliveryFuture, input: usize) -> Self {
        Self {
            future,
            input,
            dead_letter: false,
        }
    }

    pub(super) fn dead_letter(future: DeliveryFuture, input: usize) -> Self {
        Self {
            future,
            input,
            dead_letter: true,
        }
    }
}

/// Retry policy for failed deliveries in the default mode.
#[derive(Clone, Copy, Debug)]
pub struct RetrySettings {
    /// Sends of one record after its first failed delivery.
    pub max_retries: u32,
    /// Wait before each of those sends.
    pub backoff: Backoff,
}

/// A delivery that failed, as the exactly-once mode needs it.
#[derive(Debug)]
pub(super) struct FailedDelivery {
    pub(super) error: KafkaError,
    /// Index of the input record in the batch.
    pub(super) input: usize,
    pub(super) dead_letter: bool,
    pub(super) topic: String,
}

impl std::fmt::Display for FailedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "failed to deliver a record to topic {:?}: {}",
            self.topic, self.error
        )
    }
}

/// Every failed delivery of a batch, the first one in the message.
#[derive(Debug)]
pub(super) struct FailedDeliveries(pub(super) Vec<FailedDelivery>);

impl std::fmt::Display for FailedDeliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [] => write!(f, "no delivery failed"),
            [only] => write!(f, "{only}"),
            [first, rest @ ..] => write!(f, "{first} (and {} more)", rest.len()),
        }
    }
}

impl std::error::Error for FailedDeliveries {}

/// Waits for every delivery report and returns the failed ones as
/// [`FailedDeliveries`].
pub(super) async fn await_deliveries(deliveries: Vec<Delivery>) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for delivery in deliveries {
        match delivery.future.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, message))) => {
                count_error(&error, &message);
                failed.push(FailedDelivery {
                    error,
                    input: delivery.input,
                    dead_letter: delivery.dead_letter,
                    topic: message.topic().to_string(),
                });
            }
            Err(_canceled) => anyhow::bail!("producer dropped a delivery report"),
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(FailedDeliveries(failed).into())
}

/// Waits until every record of `batch` is delivered or dead-lettered,
/// sending failed ones again as the module doc describes. Fails when a record
/// is still undelivered after `settings.max_retries` retries, or when a
/// dead letter is rejected for good.
///
/// The reports are taken in rounds. The records that failed with a
/// retriable error in one round wait out one backoff together and are sent
/// again together. After an outage longer than `message.timeout.ms` a
/// batch then waits one backoff per round, not one per record.
pub(super) async fn deliver_with_retries(
    output: &Output,
    batch: &mut PendingBatch,
    settings: &RetrySettings,
    jitter: &mut Jitter,
) -> anyhow::Result<()> {
    let mut waiting: Vec<(DeliveryFuture, Tracked)> = std::mem::take(&mut batch.deliveries)
        .into_iter()
        .map(Tracked::new)
        .collect();
    while !waiting.is_empty() {
        let mut next = Vec::new();
        let mut to_resend = Vec::new();
        for (future, mut tracked) in waiting {
            let (error, message) = match future.await {
                Ok(Ok(_)) => continue,
                Ok(Err(failed)) => failed,
                Err(_canceled) => anyhow::bail!("producer dropped a delivery report"),
            };
            count_error(&error, &message);
            let input = &batch.inputs[tracked.input];
            let origin = &batch.origins[tracked.input];
            let kind = retry::classify(&error);
            if kind == DeliveryFailure::Permanent && tracked.stage == Stage::Enriched {
                tracing::warn!(
                    error = %error,
                    topic = %input.topic,
                    partition = input.partition,
                    offset = input.offset,
                    "broker rejected an enriched record, dead-lettering its input"
                );
                tracked.stage = Stage::DeadLetter;
                tracked.retries = 0;
                let future = output
                    .dead_letter_rejected(input, origin, &message, &error)
                    .await?;
                next.push((future, tracked));
            } else if kind == DeliveryFailure::Permanent && tracked.stage == Stage::DeadLetter {
                tracing::warn!(
                    error = %error,
                    topic = %input.topic,
                    partition = input.partition,
                    offset = input.offset,
                    "broker rejected a dead letter, sending a small one in its place"
                );
                tracked.stage = Stage::SmallDeadLetter;
                tracked.retries = 0;
                let future = output
                    .resend_small_dead_letter(input, &message, &error)
                    .await?;
                next.push((future, tracked));
            } else if kind == DeliveryFailure::Retriable && tracked.retries < settings.max_retries {
                tracked.retries += 1;
                tracing::debug!(
                    error = %error,
                    topic = %message.topic(),
                    source_partition = input.partition,
                    source_offset = input.offset,
                    retry = tracked.retries,
                    "failed to deliver a record"
                );
                to_resend.push((tracked, message, error));
            } else {
                anyhow::bail!(
                    "failed to deliver a record to topic {:?} for {}/{}@{} after {} \
                     retries: {error}; offsets from this batch on stay uncommitted",
                    message.topic(),
                    input.topic,
                    input.partition,
                    input.offset,
                    tracked.retries
                );
            }
        }
        if let Some((first, message, error)) = to_resend.first() {
            let retry = to_resend
                .iter()
                .map(|(tracked, _, _)| tracked.retries)
                .max()
                .unwrap_or(1);
            let delay = settings.backoff.delay(retry, jitter);
            let input = &batch.inputs[first.input];
            tracing::warn!(
                error = %error,
                topic = %message.topic(),
                source_partition = input.partition,
                source_offset = input.offset,
                records = to_resend.len(),
                retry,
                delay_ms = delay.as_millis() as u64,
                "failed to deliver records, sending them again"
            );
            tokio::time::sleep(delay).await;
        }
        for (tracked, message, _) in to_resend {
            let future = output
                .resend(&message, &batch.inputs[tracked.input])
                .await?;
            next.push((future, tracked));
        }
        waiting = next;
    }
    Ok(())
}

/// A record of a batch on its way through [`deliver_with_retries`].
struct Tracked {
    /// Index of the input record in the batch.
    input: usize,
    stage: Stage,
    /// Sends since the last change of `stage`, after the first.
    retries: u32,
}

impl Tracked {
    /// Returns the delivery's future and its record's state.
    fn new(delivery: Delivery) -> (DeliveryFuture, Self) {
        let stage = if delivery.dead_letter {
            Stage::DeadLetter
        } else {
            Stage::Enriched
        };
        let tracked = Self {
            input: delivery.input,
            stage,
            retries: 0,
        };
        (delivery.future, tracked)
    }
}

/// What a delivery in [`deliver_with_retries`] carries at the moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Enriched,
    DeadLetter,
    /// A dead letter with the first KiB of its input.
    SmallDeadLetter,
}

fn count_error(error: &KafkaError, message: &OwnedMessage) {
    counter!(
        PRODUCE_ERRORS,
        "topic" => message.topic().to_string(),
        "error" => error_label(error)
    )
    .increment(1);
}
