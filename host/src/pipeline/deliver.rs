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
pub(super) async fn deliver_with_retries(
    output: &Output,
    batch: &mut PendingBatch,
    settings: &RetrySettings,
    jitter: &mut Jitter,
) -> anyhow::Result<()> {
    for delivery in std::mem::take(&mut batch.deliveries) {
        let input = &batch.inputs[delivery.input];
        let origin = &batch.origins[delivery.input];
        let mut stage = if delivery.dead_letter {
            Stage::DeadLetter
        } else {
            Stage::Enriched
        };
        let mut retries = 0;
        let mut report = delivery.future.await;
        loop {
            let (error, message) = match report {
                Ok(Ok(_)) => break,
                Ok(Err(failed)) => failed,
                Err(_canceled) => anyhow::bail!("producer dropped a delivery report"),
            };
            count_error(&error, &message);
            let kind = retry::classify(&error);
            let future = if kind == DeliveryFailure::Permanent && stage == Stage::Enriched {
                tracing::warn!(
                    error = %error,
                    topic = %input.topic,
                    partition = input.partition,
                    offset = input.offset,
                    "broker rejected an enriched record, dead-lettering its input"
                );
                stage = Stage::DeadLetter;
                retries = 0;
                output
                    .dead_letter_rejected(input, origin, &message, &error)
                    .await?
            } else if kind == DeliveryFailure::Permanent && stage == Stage::DeadLetter {
                tracing::warn!(
                    error = %error,
                    topic = %input.topic,
                    partition = input.partition,
                    offset = input.offset,
                    "broker rejected a dead letter, sending a small one in its place"
                );
                stage = Stage::SmallDeadLetter;
                retries = 0;
                output
                    .resend_small_dead_letter(input, &message, &error)
                    .await?
            } else if kind == DeliveryFailure::Retriable && retries < settings.max_retries {
                retries += 1;
                let delay = settings.backoff.delay(retries, jitter);
                tracing::warn!(
                    error = %error,
                    topic = %message.topic(),
                    source_partition = input.partition,
                    source_offset = input.offset,
                    retry = retries,
                    delay_ms = delay.as_millis() as u64,
                    "failed to deliver a record, sending it again"
                );
                tokio::time::sleep(delay).await;
                output.resend(&message, input).await?
            } else {
                anyhow::bail!(
                    "failed to deliver a record to topic {:?} for {}/{}@{} after {retries} \
                     retries: {error}; offsets from this batch on stay uncommitted",
                    message.topic(),
                    input.topic,
                    input.partition,
                    input.offset
                );
            };
            report = future.await;
        }
    }
    Ok(())
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
