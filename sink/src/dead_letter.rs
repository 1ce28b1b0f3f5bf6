//! The dead-letter topic: where a record goes when its value cannot be
//! written as one line of JSON.
//!
//! The dead letter keeps the record's key, value and headers, and adds
//! headers with the reason it was rejected and its source position. The same
//! header names are used by the host, so one consumer can read the failures
//! of the whole pipeline.

use anyhow::anyhow;
use futures::future::try_join_all;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message};

use weblog_common::topic::check_topic_exists;
use weblog_common::LoggingContext;

/// Value of the `weblog.error.kind` header for a record the sink rejects.
pub(crate) const INVALID_OUTPUT_KIND: &str = "invalid-output";

/// A consumed record that the sink cannot write, with the reason.
pub(crate) struct Rejected<'a> {
    /// The consumed record.
    pub(crate) message: &'a OwnedMessage,
    /// Reason it cannot be written, for the `weblog.error.reason` header.
    pub(crate) reason: String,
}

/// Producer for the dead-letter topic.
pub(crate) struct DeadLetters {
    producer: FutureProducer<LoggingContext>,
    topic: String,
}

impl DeadLetters {
    /// Creates the producer from `config`, writing to `topic`.
    pub(crate) fn new(config: &ClientConfig, topic: &str) -> anyhow::Result<Self> {
        let producer = config
            .create_with_context(LoggingContext::with_stats("dlq-producer"))
            .map_err(|error| {
                anyhow!("failed to create producer for dead-letter topic {topic}: {error}")
            })?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Returns the name of the dead-letter topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Fails with the fix when the dead-letter topic does not exist on the
    /// broker at `bootstrap`. Blocks until the broker replies.
    pub(crate) fn check_topic(&self, bootstrap: &str) -> anyhow::Result<()> {
        check_topic_exists(
            self.producer.client(),
            &self.topic,
            "--dlq-topic",
            bootstrap,
        )
    }

    /// Returns the producer's fatal error, with its reason, once librdkafka
    /// has raised one. The producer cannot send after it.
    pub(crate) fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.producer.client().fatal_error()
    }

    /// Produces every rejected record and waits until Kafka acknowledges
    /// each one. Fails on the first record that cannot be delivered.
    pub(crate) async fn send_all(&self, rejected: &[Rejected<'_>]) -> anyhow::Result<()> {
        try_join_all(rejected.iter().map(|record| self.send(record))).await?;
        Ok(())
    }

    async fn send(&self, rejected: &Rejected<'_>) -> anyhow::Result<()> {
        let message = rejected.message;
        tracing::warn!(
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            dlq_topic = %self.topic,
            reason = %rejected.reason,
            "record is not one line of JSON, sending it to the dead-letter topic"
        );
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .headers(dead_letter_headers(message, &rejected.reason));
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(value) = message.payload() {
            record = record.payload(value);
        }
        // Timeout::Never only lifts the limit on waiting for room in the
        // local queue. The delivery itself still fails after librdkafka's
        // message.timeout.ms (5 minutes by default).
        self.producer
            .send(record, Timeout::Never)
            .await
            .map_err(|(error, _)| {
                anyhow!(
                    "failed to produce record {}/{}@{} to dead-letter topic {}: {error}",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    self.topic
                )
            })?;
        Ok(())
    }
}

/// Builds the headers of a dead letter: the original headers, then the
/// reason and the source position.
fn dead_letter_headers(message: &OwnedMessage, reason: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for header in original.iter() {
            headers = headers.insert(header);
        }
    }
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let added = [
        ("weblog.error.kind", INVALID_OUTPUT_KIND),
        ("weblog.error.reason", reason),
        ("weblog.source.topic", message.topic()),
        ("weblog.source.partition", partition.as_str()),
        ("weblog.source.offset", offset.as_str()),
    ];
    for (key, value) in added {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;

    fn header_value<'a>(headers: &'a OwnedHeaders, key: &str) -> Option<&'a [u8]> {
        headers
            .iter()
            .find(|header| header.key == key)
            .and_then(|header| header.value)
    }

    #[test]
    fn headers_name_reason_and_source() {
        let original = OwnedHeaders::new().insert(Header {
            key: "trace-id",
            value: Some("abc"),
        });
        let message = OwnedMessage::new(
            Some(b"not json".to_vec()),
            None,
            "enriched".to_string(),
            Timestamp::NotAvailable,
            3,
            42,
            Some(original),
        );

        let headers = dead_letter_headers(&message, "expected value at line 1 column 1");

        assert_eq!(header_value(&headers, "trace-id"), Some(&b"abc"[..]));
        assert_eq!(
            header_value(&headers, "weblog.error.kind"),
            Some(&b"invalid-output"[..])
        );
        assert_eq!(
            header_value(&headers, "weblog.error.reason"),
            Some(&b"expected value at line 1 column 1"[..])
        );
        assert_eq!(
            header_value(&headers, "weblog.source.topic"),
            Some(&b"enriched"[..])
        );
        assert_eq!(
            header_value(&headers, "weblog.source.partition"),
            Some(&b"3"[..])
        );
        assert_eq!(
            header_value(&headers, "weblog.source.offset"),
            Some(&b"42"[..])
        );
    }
}
