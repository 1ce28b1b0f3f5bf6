//! Retrying failed deliveries: which produce errors are worth another
//! attempt, and how long to wait before it.
//!
//! librdkafka already retries a produce request until `message.timeout.ms`
//! (300 s by default, capped at `transaction.timeout.ms` for a
//! transactional producer), backing off from `retry.backoff.ms` (100 ms)
//! exponentially with jitter up to `retry.backoff.max.ms` (1 s) in
//! librdkafka 2.x. A delivery report with an error therefore means those
//! retries are spent. The host then sends the record again itself, up to
//! `--max-retries` times with the backoff below, before it gives up.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Default of `--max-retries`: sends of one record after its first failed
/// delivery. Each send can take up to `message.timeout.ms`, so with the
/// defaults the host rides out a broker outage of about half an hour.
pub const DEFAULT_MAX_RETRIES: u32 = 5;

/// Backoff before the first retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);

/// Max backoff between two retries.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Share of a backoff that jitter adds or removes, so that hosts that
/// failed together do not retry together.
const JITTER: f64 = 0.2;

/// Exponential backoff with jitter: the n-th retry waits
/// `initial * 2^(n-1)`, at most `max`, plus or minus 20 %, and never more
/// than `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Backoff before the first retry, without jitter.
    pub initial: Duration,
    /// Max backoff, with jitter.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: DEFAULT_INITIAL_BACKOFF,
            max: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl Backoff {
    /// Returns the wait before retry `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u32, random: &mut Jitter) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let base = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        let factor = 1.0 - JITTER + 2.0 * JITTER * random.next_unit();
        base.mul_f64(factor).min(self.max)
    }
}

/// Source of jitter: SplitMix64, seeded so that tests repeat.
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// Returns a generator that repeats its sequence for one `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self(seed)
    }

    /// Returns a generator seeded from the clock and the process id.
    pub fn from_time() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        Self(nanos ^ (u64::from(std::process::id()) << 32))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a number in [0, 1).
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the host does with a record whose delivery failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryFailure {
    /// Sending the record again can succeed: a timeout, a broker or leader
    /// that is unavailable, too few in-sync replicas.
    Retriable,
    /// The broker rejects this record whatever happens: it is too large or
    /// invalid. The record goes to the dead-letter topic instead.
    Permanent,
}

/// Sorts a delivery error. Errors of the record itself are permanent and
/// every other error is retriable, so that an unknown error costs retries
/// but never a record.
pub fn classify(error: &KafkaError) -> DeliveryFailure {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::BadMessage,
        ) => DeliveryFailure::Permanent,
        _ => DeliveryFailure::Retriable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };

    #[test]
    fn delays_stay_within_jitter_bounds() {
        let mut random = Jitter::with_seed(7);
        for attempt in 1..=12 {
            let base = (100.0 * 2f64.powi(attempt as i32 - 1)).min(5_000.0);
            for _ in 0..200 {
                let delay = BACKOFF.delay(attempt, &mut random).as_secs_f64() * 1_000.0;
                assert!(delay >= base * 0.8 - 1e-6, "attempt {attempt}: {delay} ms");
                assert!(
                    delay <= (base * 1.2).min(5_000.0) + 1e-6,
                    "attempt {attempt}: {delay} ms"
                );
            }
        }
    }

    #[test]
    fn delays_double_until_max() {
        let mut random = Jitter::with_seed(11);
        let means: Vec<f64> = (1..=8)
            .map(|attempt| {
                let total: f64 = (0..500)
                    .map(|_| BACKOFF.delay(attempt, &mut random).as_secs_f64())
                    .sum();
                total / 500.0
            })
            .collect();
        for pair in means[..6].windows(2) {
            let ratio = pair[1] / pair[0];
            assert!((1.8..2.2).contains(&ratio), "means {means:?}");
        }
        // From attempt 7 (6.4 s before the cap) every delay is near the max.
        assert!(means[7] > 4.0, "means {means:?}");
        assert!(means[7] <= 5.0, "means {means:?}");
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut random = Jitter::with_seed(3);
        let delays: Vec<Duration> = (0..100).map(|_| BACKOFF.delay(3, &mut random)).collect();
        let min = delays.iter().min().expect("delays");
        let max = delays.iter().max().expect("delays");
        assert!(*min < Duration::from_millis(340), "min {min:?}");
        assert!(*max > Duration::from_millis(460), "max {max:?}");
    }

    #[test]
    fn same_seed_repeats_delays() {
        let sequence = |seed| {
            let mut random = Jitter::with_seed(seed);
            (1..=10)
                .map(|attempt| BACKOFF.delay(attempt, &mut random))
                .collect::<Vec<_>>()
        };
        assert_eq!(sequence(42), sequence(42));
        assert_ne!(sequence(42), sequence(43));
    }

    #[test]
    fn huge_attempt_stays_at_max() {
        let mut random = Jitter::with_seed(1);
        assert!(BACKOFF.delay(u32::MAX, &mut random) <= BACKOFF.max);
    }

    #[test]
    fn record_errors_are_permanent() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(classify(&too_large), DeliveryFailure::Permanent);
        let invalid = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord);
        assert_eq!(classify(&invalid), DeliveryFailure::Permanent);
    }

    #[test]
    fn broker_errors_are_retriable() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::LeaderNotAvailable,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            let error = KafkaError::MessageProduction(code);
            assert_eq!(classify(&error), DeliveryFailure::Retriable, "{code:?}");
        }
    }
}
