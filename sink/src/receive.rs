//! Receiving a batch from the consumer, and what happens when receiving
//! fails.
//!
//! While the broker is down, librdkafka hands the consumer the same error
//! several times a second. Each error code is logged at most once per
//! throttle interval (see [`ErrorThrottle`]) with a count of the repeats.
//! After a failed receive the loop pauses, doubling the pause per failure
//! in a row up to [`MAX_RECEIVE_PAUSE`], and then takes the errors queued
//! during the pause without pausing again. A fatal error of the
//! consumer or the dead-letter producer ends the run, because librdkafka
//! does not recover from it.

use std::time::Duration;

use anyhow::bail;
use futures::FutureExt;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, OwnedMessage};
use rdkafka::Message;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weblog_common::kafka_context::ErrorThrottle;

use crate::checkpoint::Offsets;
use crate::config::Config;
use crate::consume::SinkConsumer;
use crate::dead_letter::DeadLetters;

/// Pause after the first failed receive in a row.
const MIN_RECEIVE_PAUSE: Duration = Duration::from_millis(100);

/// Max pause between failed receives. It bounds how long a record that
/// arrives once the broker is back waits behind a pause.
const MAX_RECEIVE_PAUSE: Duration = Duration::from_secs(2);

/// How often the loop checks the clients for a fatal error while it waits
/// for the first record of a batch.
const FATAL_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Collects batches from the consumer.
pub(crate) struct Receiver<'a> {
    consumer: &'a SinkConsumer,
    dead_letters: &'a DeadLetters,
    failures: ReceiveFailures,
}

impl<'a> Receiver<'a> {
    /// Returns a receiver that reads `consumer` and also watches
    /// `dead_letters` for a fatal error.
    pub(crate) fn new(consumer: &'a SinkConsumer, dead_letters: &'a DeadLetters) -> Self {
        Self {
            consumer,
            dead_letters,
            failures: ReceiveFailures::default(),
        }
    }

    /// Waits for the first record, then collects more until the batch is
    /// full, the linger time has passed or `shutdown` is cancelled. Returns
    /// an empty batch when `shutdown` is cancelled or `rotation_deadline`
    /// passes before the first record. Advances `positions` past each
    /// record taken. Fails on a fatal client error, leaving the batch
    /// uncommitted.
    pub(crate) async fn collect_batch(
        &mut self,
        config: &Config,
        positions: &mut Offsets,
        rotation_deadline: Option<Instant>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Vec<OwnedMessage>> {
        let consumer = self.consumer;
        let mut batch = Vec::new();
        while batch.is_empty() {
            let failed = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(batch),
                () = sleep_until(rotation_deadline) => return Ok(batch),
                () = tokio::time::sleep(FATAL_CHECK_INTERVAL) => {
                    self.check_fatal()?;
                    false
                }
                received = consumer.recv() => self.push_received(&mut batch, positions, received)?,
            };
            if failed {
                self.pause_after_failure(&mut batch, positions, shutdown)
                    .await?;
            }
        }

        let deadline = Instant::now() + config.batch_linger;
        while batch.len() < config.batch_size {
            let failed = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(deadline) => break,
                received = consumer.recv() => self.push_received(&mut batch, positions, received)?,
            };
            if failed {
                self.pause_after_failure(&mut batch, positions, shutdown)
                    .await?;
            }
        }
        Ok(batch)
    }

    /// Adds a received record to `batch` unless its offset is below the
    /// partition's entry in `positions`, which means it is in the file or
    /// the batch already. Returns whether the receive failed. A consumer
    /// error is logged, throttled, and skipped, because librdkafka keeps
    /// fetching after it (a broker that is down, for example), unless
    /// librdkafka marks it fatal.
    fn push_received(
        &mut self,
        batch: &mut Vec<OwnedMessage>,
        positions: &mut Offsets,
        received: KafkaResult<BorrowedMessage<'_>>,
    ) -> anyhow::Result<bool> {
        let message = match received {
            Ok(message) => message,
            Err(KafkaError::MessageConsumptionFatal(code)) => {
                bail!("failed to consume records: fatal Kafka consumer error: {code}")
            }
            Err(error) => {
                self.failures.record(&error, std::time::Instant::now());
                return Ok(true);
            }
        };
        self.failures.reset();
        let key = (message.topic().to_string(), message.partition());
        let position = positions.entry(key).or_insert(message.offset());
        if message.offset() < *position {
            tracing::trace!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "skipped a record that is written already"
            );
            return Ok(false);
        }
        *position = message.offset() + 1;
        batch.push(message.detach());
        Ok(false)
    }

    /// Pauses after a failed receive, then takes what the consumer queued
    /// meanwhile without a pause per error, so that errors queued during
    /// the pause do not hold up the records behind them. Stops at the
    /// first record, which it adds to `batch`.
    async fn pause_after_failure(
        &mut self,
        batch: &mut Vec<OwnedMessage>,
        positions: &mut Offsets,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        self.check_fatal()?;
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(self.failures.next_pause()) => {}
        }
        let consumer = self.consumer;
        while let Some(received) = consumer.recv().now_or_never() {
            if !self.push_received(batch, positions, received)? {
                break;
            }
        }
        Ok(())
    }

    /// Fails when the consumer or the dead-letter producer has a fatal
    /// error, after which librdkafka does not send or receive anymore.
    fn check_fatal(&self) -> anyhow::Result<()> {
        let clients = [
            ("consumer", self.consumer.client().fatal_error()),
            ("dead-letter producer", self.dead_letters.fatal_error()),
        ];
        for (client, fatal) in clients {
            if let Some((code, reason)) = fatal {
                bail!(
                    "fatal error in the Kafka {client}: {reason} ({code}); the client cannot \
                     recover, so the sink stops. Check that --bootstrap-servers names the \
                     brokers' client port, not the controller port, and check the \
                     --kafka-option settings"
                );
            }
        }
        Ok(())
    }
}

/// Sleeps until `deadline`, or forever when it is `None`.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Failed receives in a row: their throttled log and the pause after each.
#[derive(Debug)]
struct ReceiveFailures {
    throttle: ErrorThrottle,
    /// Pause after the next failed receive.
    pause: Duration,
}

impl Default for ReceiveFailures {
    fn default() -> Self {
        Self {
            throttle: ErrorThrottle::default(),
            pause: MIN_RECEIVE_PAUSE,
        }
    }
}

impl ReceiveFailures {
    /// Logs a failed receive at warn unless its error code was logged
    /// recently. Returns whether it logged.
    fn record(&self, error: &KafkaError, now: std::time::Instant) -> bool {
        let Some(suppressed) = self.throttle.admit(error.rdkafka_error_code(), now) else {
            return false;
        };
        tracing::warn!(
            error = %error,
            suppressed,
            "failed to receive a record; retrying"
        );
        true
    }

    /// Returns the pause to take now and doubles the next one, up to
    /// [`MAX_RECEIVE_PAUSE`].
    fn next_pause(&mut self) -> Duration {
        let pause = self.pause;
        self.pause = (pause * 2).min(MAX_RECEIVE_PAUSE);
        pause
    }

    /// Starts the pauses over after a record arrived.
    fn reset(&mut self) {
        self.pause = MIN_RECEIVE_PAUSE;
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::RDKafkaErrorCode;

    use super::*;

    #[test]
    fn repeated_failures_are_logged_once() {
        let failures = ReceiveFailures::default();
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        let start = std::time::Instant::now();

        let logged: Vec<bool> = (0..100u64)
            .map(|i| failures.record(&down, start + Duration::from_millis(i * 140)))
            .collect();

        assert!(logged[0]);
        assert_eq!(logged.iter().filter(|logged| **logged).count(), 1);
        let other = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(failures.record(&other, start));
    }

    #[test]
    fn pause_doubles_up_to_max_and_resets() {
        let mut failures = ReceiveFailures::default();

        let pauses: Vec<Duration> = (0..7).map(|_| failures.next_pause()).collect();

        let millis: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [100, 200, 400, 800, 1600, 2000, 2000]);
        failures.reset();
        assert_eq!(failures.next_pause(), MIN_RECEIVE_PAUSE);
    }
}
