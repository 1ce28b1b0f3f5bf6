//! A Kafka client context that logs what librdkafka reports on the side.
//!
//! librdkafka reports client-wide errors, such as a broker that is down,
//! through the context. They go to the log at warn, because librdkafka
//! retries on its own and each binary fails on whatever it cannot recover
//! from. While a
//! broker is unreachable, librdkafka repeats the same error many times a
//! second, so each error code is logged at most once per
//! [`REPEAT_INTERVAL`], with a count of the ones skipped. Rebalances are
//! logged at info with the partitions involved. A context made with
//! [`LoggingContext::with_stats`] also turns librdkafka's statistics into
//! metrics and a readiness check (see [`crate::kafka_stats`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::kafka_stats::ClientStats;

/// Min time between two log events for the same error code.
const REPEAT_INTERVAL: Duration = Duration::from_secs(30);

/// Client context that logs librdkafka errors with repeats limited, and
/// rebalances.
#[derive(Debug, Default)]
pub struct LoggingContext {
    errors: ErrorThrottle,
    stats: Option<ClientStats>,
}

impl LoggingContext {
    /// Returns a context that also records the statistics of the client
    /// named `client` (such as `producer`) as metrics.
    pub fn with_stats(client: &str) -> Self {
        Self {
            errors: ErrorThrottle::default(),
            stats: Some(ClientStats::new(client)),
        }
    }
}

impl ClientContext for LoggingContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(stats) = &self.stats {
            stats.record(&statistics);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(stats) = &self.stats {
            stats.record_error(&error);
        }
        self.errors.log(error, reason);
    }
}

impl ConsumerContext for LoggingContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let partitions = describe_partitions(partitions);
                tracing::info!(%partitions, "partitions assigned");
            }
            Rebalance::Revoke(partitions) => {
                let partitions = describe_partitions(partitions);
                tracing::info!(%partitions, "partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(error = %error, "rebalance failed"),
        }
    }
}

/// Formats a partition list as `topic/partition` items separated by commas.
pub fn describe_partitions(list: &TopicPartitionList) -> String {
    let items: Vec<String> = list
        .elements()
        .iter()
        .map(|element| format!("{}/{}", element.topic(), element.partition()))
        .collect();
    items.join(",")
}

/// Limits log events to one per error code per [`REPEAT_INTERVAL`].
#[derive(Debug, Default)]
pub struct ErrorThrottle {
    /// Per error code: when it was last logged and how many times it was
    /// skipped since. Few codes ever occur, so a list is enough.
    seen: Mutex<Vec<(Option<RDKafkaErrorCode>, Instant, u64)>>,
}

impl ErrorThrottle {
    /// Logs a librdkafka client error at warn unless its code was logged
    /// less than [`REPEAT_INTERVAL`] ago.
    pub fn log(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        // The end of a partition, reported with enable.partition.eof, is
        // an event and not a failure.
        let end_of_partition = matches!(error, KafkaError::PartitionEOF(_))
            || code == Some(RDKafkaErrorCode::PartitionEOF);
        if end_of_partition {
            tracing::debug!(error = %error, "reached the end of a partition");
            return;
        }
        if let Some(suppressed) = self.admit(code, Instant::now()) {
            tracing::warn!(error = %error, reason, suppressed, "kafka client error");
        }
    }

    /// Returns the number of skipped repeats when an error with `code` may
    /// be logged at `now`, or `None` when it is to be skipped. For callers
    /// that log their own message.
    pub fn admit(&self, code: Option<RDKafkaErrorCode>, now: Instant) -> Option<u64> {
        // A poisoned lock only means that another thread panicked while
        // logging, and the list is still usable.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let Some(entry) = seen.iter_mut().find(|(seen_code, ..)| *seen_code == code) else {
            seen.push((code, now, 0));
            return Some(0);
        };
        if now.duration_since(entry.1) < REPEAT_INTERVAL {
            entry.2 += 1;
            return None;
        }
        let suppressed = entry.2;
        entry.1 = now;
        entry.2 = 0;
        Some(suppressed)
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Offset;

    use super::*;

    const DOWN: Option<RDKafkaErrorCode> = Some(RDKafkaErrorCode::AllBrokersDown);

    #[test]
    fn partition_end_is_not_logged_as_error() {
        let throttle = ErrorThrottle::default();
        let code = Some(RDKafkaErrorCode::PartitionEOF);
        throttle.log(KafkaError::Global(RDKafkaErrorCode::PartitionEOF), "");
        throttle.log(KafkaError::PartitionEOF(3), "");
        // A logged error would make a repeat of its code wait for
        // REPEAT_INTERVAL.
        assert_eq!(throttle.admit(code, Instant::now()), Some(0));
        assert_eq!(throttle.admit(None, Instant::now()), Some(0));
    }

    #[test]
    fn throttle_counts_skipped_repeats() {
        let throttle = ErrorThrottle::default();
        let start = Instant::now();
        assert_eq!(throttle.admit(DOWN, start), Some(0));
        assert_eq!(throttle.admit(None, start), Some(0));
        assert_eq!(throttle.admit(DOWN, start + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit(DOWN, start + REPEAT_INTERVAL), Some(1));
    }

    #[test]
    fn partitions_are_listed() {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("t", 0, Offset::Invalid)
            .expect("valid");
        list.add_partition_offset("t", 2, Offset::Invalid)
            .expect("valid");
        assert_eq!(describe_partitions(&list), "t/0,t/2");
    }
}
