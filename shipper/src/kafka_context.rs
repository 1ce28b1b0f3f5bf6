//! Kafka client context of the shipper.
//!
//! librdkafka reports client-wide errors, such as a broker that is down,
//! through it. They go to the log at warn, because librdkafka retries on
//! its own and the shipper reports whatever ends the run. While a broker is
//! unreachable, librdkafka repeats the same error many times a second, so
//! each error code is logged at most once per [`REPEAT_INTERVAL`], with a
//! count of the ones skipped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

/// Min time between two log events for the same error code.
const REPEAT_INTERVAL: Duration = Duration::from_secs(30);

/// Client context that logs librdkafka errors with repeats limited.
#[derive(Default)]
pub(crate) struct ShipperContext {
    errors: ErrorThrottle,
}

impl ClientContext for ShipperContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if let Some(suppressed) = self.errors.admit(code, Instant::now()) {
            tracing::warn!(error = %error, reason, suppressed, "kafka client error");
        }
    }
}

/// Limits log events to one per error code per [`REPEAT_INTERVAL`].
#[derive(Default)]
struct ErrorThrottle {
    /// Per error code: when it was last logged and how many times it was
    /// skipped since. Few codes ever occur, so a list is enough.
    seen: Mutex<Vec<(Option<RDKafkaErrorCode>, Instant, u64)>>,
}

impl ErrorThrottle {
    /// Returns the number of skipped repeats when an error with `code` may
    /// be logged at `now`, or `None` when it is to be skipped.
    fn admit(&self, code: Option<RDKafkaErrorCode>, now: Instant) -> Option<u64> {
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
    use super::*;

    const DOWN: Option<RDKafkaErrorCode> = Some(RDKafkaErrorCode::AllBrokersDown);
    const TRANSPORT: Option<RDKafkaErrorCode> = Some(RDKafkaErrorCode::BrokerTransportFailure);

    #[test]
    fn throttle_admits_first_of_each_code() {
        let throttle = ErrorThrottle::default();
        let now = Instant::now();
        assert_eq!(throttle.admit(DOWN, now), Some(0));
        assert_eq!(throttle.admit(TRANSPORT, now), Some(0));
        assert_eq!(throttle.admit(None, now), Some(0));
    }

    #[test]
    fn throttle_counts_skipped_repeats() {
        let throttle = ErrorThrottle::default();
        let start = Instant::now();
        assert_eq!(throttle.admit(DOWN, start), Some(0));
        assert_eq!(throttle.admit(DOWN, start + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit(DOWN, start + Duration::from_secs(2)), None);
        assert_eq!(throttle.admit(DOWN, start + REPEAT_INTERVAL), Some(2));
        assert_eq!(throttle.admit(DOWN, start + REPEAT_INTERVAL), None);
    }
}
