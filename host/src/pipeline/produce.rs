//! Producing enriched records and dead letters.
//!
//! Enriched records keep the input's key and carry headers naming the
//! plugin (name, version and component digest) and the source record. Dead
//! letters keep the input's key and original bytes, and carry the failure
//! kind and reason, the plugin and the source coordinates in headers. An
//! input whose enriched record would not fit in the producer's
//! `message.max.bytes` is dead-lettered as invalid output instead, before
//! any of its records is produced. A dead letter too large for Kafka keeps
//! only its input's first bytes, as [`dead_letter`] describes.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::commit::{OutputCounts, PendingBatch, PipelineCounts};
use super::consume::{ConsumedBatch, Origin};
use super::dead_letter::{self, header, DeadLetterSize, RECORD_OVERHEAD_BYTES};
use super::deliver::Delivery;
use super::PipelineConfig;
use crate::bindings::InputRecord;
use crate::failure::{cut_text, MAX_REJECT_REASON_BYTES};
use crate::headers;
use crate::metrics::{PLUGIN_FAILURES, PRODUCE_ERRORS};
use crate::outcome::{EnrichOutcome, Failure, FailureKind};
use crate::plugin::PluginIdentity;
use weblog_common::metrics::counter;
use weblog_common::LoggingContext;

/// Pause before retrying a record that met a full local producer queue.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// librdkafka's default `message.max.bytes` (librdkafka 2.12): the max size
/// of one record with its key and headers that the producer accepts.
pub(super) const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Producer and topics for enriched records and dead letters.
#[derive(Clone)]
pub(super) struct Output {
    producer: FutureProducer<LoggingContext>,
    output_topic: String,
    dlq_topic: String,
    /// The producer's `message.max.bytes`.
    message_max_bytes: usize,
    /// Written to dead letters.
    instance_id: String,
}

impl Output {
    pub(super) fn new(
        producer: FutureProducer<LoggingContext>,
        config: &PipelineConfig,
        message_max_bytes: usize,
    ) -> Self {
        Self {
            message_max_bytes,
            producer,
            output_topic: config.output_topic.clone(),
            dlq_topic: config.dlq_topic.clone(),
            instance_id: config.instance_id.clone(),
        }
    }

    /// Hands every output of the batch to the producer and returns the
    /// delivery futures with the offsets they cover. `plugin` is the plugin
    /// that produced `outcomes`, named in every output's headers.
    pub(super) async fn send(
        &self,
        batch: ConsumedBatch,
        outcomes: Vec<EnrichOutcome>,
        plugin: &PluginIdentity,
        counts: &PipelineCounts,
    ) -> anyhow::Result<PendingBatch> {
        anyhow::ensure!(
            outcomes.len() == batch.records.len(),
            "plugin host returned {} outcomes for {} records",
            outcomes.len(),
            batch.records.len()
        );
        let mut deliveries = Vec::with_capacity(batch.records.len());
        let mut outputs = OutputCounts::new(&self.output_topic, &self.dlq_topic);
        for (index, (input, outcome)) in batch.records.iter().zip(outcomes).enumerate() {
            let origin = &batch.origins[index];
            let failure = match outcome {
                EnrichOutcome::Enriched(records) => {
                    // Built once per input: they are the same for all its
                    // records, and the size check needs them too.
                    let headers = source_headers(origin, plugin);
                    match self.check_sizes(input, &headers, &records) {
                        Ok(()) => {
                            counts.add_enriched(records.len());
                            self.send_enriched(
                                input,
                                index,
                                &records,
                                headers,
                                &mut deliveries,
                                &mut outputs,
                            )
                            .await?;
                            continue;
                        }
                        Err(failure) => failure,
                    }
                }
                EnrichOutcome::Failed(failure) => failure,
            };
            counts.add_dead_lettered(1);
            outputs.add_dead_letter(failure.kind);
            let (size, failure) = match &origin.rejected_dead_letter {
                None => (DeadLetterSize::Fit, failure),
                Some(error) => (
                    DeadLetterSize::Small,
                    Failure {
                        kind: failure.kind,
                        reason: dead_letter::small_reason(failure.reason, error),
                    },
                ),
            };
            let headers =
                self.add_failure_headers(source_headers(origin, plugin), origin, &failure);
            let future = self.produce_dead_letter(input, headers, size).await?;
            deliveries.push(Delivery::dead_letter(future, index));
        }
        counts.add_consumed(batch.records.len());
        record_plugin_failures(plugin, &outputs);
        Ok(PendingBatch {
            deliveries,
            inputs: batch.records,
            origins: batch.origins,
            next_offsets: batch.next_offsets,
            outputs,
        })
    }

    /// Sends `records`, enriched from `input` at `index` of its batch, to
    /// the enriched topic, adding their deliveries and counts. The last
    /// record takes `headers`, and the ones before it take copies.
    async fn send_enriched(
        &self,
        input: &InputRecord,
        index: usize,
        records: &[String],
        mut headers: OwnedHeaders,
        deliveries: &mut Vec<Delivery>,
        outputs: &mut OutputCounts,
    ) -> anyhow::Result<()> {
        for (position, record) in records.iter().enumerate() {
            outputs.add_enriched(record.len());
            let record_headers = match position + 1 == records.len() {
                true => std::mem::take(&mut headers),
                false => headers.clone(),
            };
            let key = input.key.as_deref();
            let payload = record.as_bytes();
            let future = self
                .produce(&self.output_topic, key, payload, record_headers, input)
                .await?;
            deliveries.push(Delivery::enriched(future, index));
        }
        Ok(())
    }

    /// Sends a record made from `input`, which errors name.
    async fn produce(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
        input: &InputRecord,
    ) -> anyhow::Result<DeliveryFuture> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.enqueue(record, input).await
    }

    /// Sends a record whose delivery failed once more, as it was.
    pub(super) async fn resend(
        &self,
        message: &OwnedMessage,
        input: &InputRecord,
    ) -> anyhow::Result<DeliveryFuture> {
        let mut record = FutureRecord::<[u8], [u8]>::to(message.topic())
            .payload(message.payload().unwrap_or_default());
        if let Some(headers) = message.headers() {
            record = record.headers(headers.clone());
        }
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        self.enqueue(record, input).await
    }

    /// Sends `input` to the dead-letter topic because the broker rejected
    /// its enriched record `rejected` for good with `error`. The dead
    /// letter keeps the rejected record's plugin and source headers.
    pub(super) async fn dead_letter_rejected(
        &self,
        input: &InputRecord,
        origin: &Origin,
        rejected: &OwnedMessage,
        error: &KafkaError,
    ) -> anyhow::Result<DeliveryFuture> {
        let failure = Failure {
            kind: FailureKind::InvalidOutput,
            reason: format!("the broker rejected the enriched record: {error}"),
        };
        let mut headers = OwnedHeaders::new_with_capacity(8);
        if let Some(rejected_headers) = rejected.headers() {
            for header in rejected_headers.iter() {
                headers = headers.insert(header);
            }
        }
        let headers = self.add_failure_headers(headers, origin, &failure);
        self.produce_dead_letter(input, headers, DeadLetterSize::Fit)
            .await
    }

    /// Sends the dead letter `rejected` once more as a
    /// [`DeadLetterSize::Small`] one, because the broker rejected it for
    /// good with `error`.
    pub(super) async fn resend_small_dead_letter(
        &self,
        input: &InputRecord,
        rejected: &OwnedMessage,
        error: &KafkaError,
    ) -> anyhow::Result<DeliveryFuture> {
        let headers = dead_letter::small_headers(rejected.headers(), &error.to_string());
        self.produce_dead_letter(input, headers, DeadLetterSize::Small)
            .await
    }

    /// Sends a dead letter of `input` with `headers`, keeping as much of
    /// the input as `size` allows.
    async fn produce_dead_letter(
        &self,
        input: &InputRecord,
        mut headers: OwnedHeaders,
        size: DeadLetterSize,
    ) -> anyhow::Result<DeliveryFuture> {
        let mut key = input.key.as_deref();
        let key_bytes = key.map_or(0, <[u8]>::len);
        if key_bytes > size.max_key_bytes(self.message_max_bytes) {
            tracing::warn!(
                topic = %input.topic,
                partition = input.partition,
                offset = input.offset,
                key_bytes,
                "dead letter key too large for Kafka, sending the dead letter without it"
            );
            key = None;
            headers = headers.insert(header(headers::KEY_LENGTH, &key_bytes.to_string()));
        }
        let fixed = RECORD_OVERHEAD_BYTES
            + key.map_or(0, <[u8]>::len)
            + dead_letter::header_bytes(&headers);
        let max_bytes = size.max_value_bytes(self.message_max_bytes, fixed);
        let (value, headers) = dead_letter::cut_value(&input.value, max_bytes, headers);
        if value.len() < input.value.len() {
            tracing::warn!(
                topic = %input.topic,
                partition = input.partition,
                offset = input.offset,
                bytes = input.value.len(),
                kept_bytes = value.len(),
                "dead letter too large for Kafka, keeping the first bytes of its input"
            );
        }
        self.produce(&self.dlq_topic, key, value, headers, input)
            .await
    }

    /// Hands `record` to the producer, waiting while its local queue is
    /// full. `input` is the record it came from, named in errors.
    async fn enqueue(
        &self,
        mut record: FutureRecord<'_, [u8], [u8]>,
        input: &InputRecord,
    ) -> anyhow::Result<DeliveryFuture> {
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((error, returned)) => {
                    let topic = returned.topic;
                    counter!(PRODUCE_ERRORS, "topic" => topic.to_string(), "error" => error_label(&error))
                        .increment(1);
                    anyhow::bail!(
                        "failed to produce to topic {topic:?} for {}/{}@{}: {error}",
                        input.topic,
                        input.partition,
                        input.offset
                    )
                }
            }
        }
    }

    /// Adds the headers of a dead letter to `headers`: failure, attempts,
    /// this host's instance id and the source timestamp. The reason is cut
    /// to [`MAX_REJECT_REASON_BYTES`].
    fn add_failure_headers(
        &self,
        headers: OwnedHeaders,
        origin: &Origin,
        failure: &Failure,
    ) -> OwnedHeaders {
        let reason = cut_text(failure.reason.clone(), MAX_REJECT_REASON_BYTES);
        let mut headers = headers
            .insert(header(headers::ERROR_KIND, failure.kind.as_str()))
            .insert(header(headers::ERROR_REASON, &reason))
            .insert(header(
                headers::ERROR_ATTEMPTS,
                &origin.attempts.to_string(),
            ))
            .insert(header(headers::HOST_INSTANCE, &self.instance_id));
        if let Some(timestamp) = origin.timestamp_ms {
            headers = headers.insert(header(headers::SOURCE_TIMESTAMP, &timestamp.to_string()));
        }
        headers
    }

    /// Returns a failure when one of `records`, with the input's key and
    /// `headers`, would exceed `message.max.bytes`: the producer would
    /// refuse it, and that error stops the host.
    fn check_sizes(
        &self,
        input: &InputRecord,
        headers: &OwnedHeaders,
        records: &[String],
    ) -> Result<(), Failure> {
        let key_bytes = input.key.as_ref().map_or(0, Vec::len);
        let fixed = RECORD_OVERHEAD_BYTES + key_bytes + dead_letter::header_bytes(headers);
        let too_large = records
            .iter()
            .enumerate()
            .find(|(_, record)| fixed + record.len() > self.message_max_bytes);
        let Some((index, record)) = too_large else {
            return Ok(());
        };
        tracing::warn!(
            topic = %input.topic,
            partition = input.partition,
            offset = input.offset,
            bytes = record.len(),
            message_max_bytes = self.message_max_bytes,
            "enriched record too large for the producer, dead-lettering its input"
        );
        Err(Failure {
            kind: FailureKind::InvalidOutput,
            reason: format!(
                "plugin emitted a record at index {index} of {} bytes, which with its key \
                 and headers is over the producer's message.max.bytes of {}",
                record.len(),
                self.message_max_bytes
            ),
        })
    }
}

/// Counts the batch's failed records per kind for the plugin that failed.
fn record_plugin_failures(plugin: &PluginIdentity, outputs: &OutputCounts) {
    for (kind, count) in outputs.dead_letters() {
        counter!(
            PLUGIN_FAILURES,
            "plugin" => plugin.name.clone(),
            "version" => plugin.version.clone(),
            "kind" => kind,
        )
        .increment(count);
    }
}

/// Returns the label of a produce error: librdkafka's error code, such as
/// `MessageSizeTooLarge`, or `other`.
pub(super) fn error_label(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "other".to_string(),
    }
}

fn source_headers(origin: &Origin, plugin: &PluginIdentity) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(6)
        .insert(header(headers::PLUGIN_NAME, &plugin.name))
        .insert(header(headers::PLUGIN_VERSION, &plugin.version))
        .insert(header(headers::PLUGIN_DIGEST, &plugin.digest))
        .insert(header(headers::SOURCE_TOPIC, &origin.topic))
        .insert(header(
            headers::SOURCE_PARTITION,
            &origin.partition.to_string(),
        ))
        .insert(header(headers::SOURCE_OFFSET, &origin.offset.to_string()))
}
