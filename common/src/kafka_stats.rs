//! Metrics and broker reachability of one Kafka client, from librdkafka's
//! statistics.
//!
//! librdkafka emits statistics every `statistics.interval.ms` (see
//! `--stats-interval-ms`) to the client context, which hands them to
//! [`ClientStats::record`]. From them come the `weblog_kafka_*` gauges and
//! the client's readiness check: it passes while at least one broker
//! connection is in state `UP`. An `AllBrokersDown` error fails the check at
//! once, without waiting for the next statistics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;

use crate::admin::{health, Check};
use crate::metrics::{
    KAFKA_BROKER_RTT, KAFKA_BROKER_UP, KAFKA_FETCH_QUEUE, KAFKA_PRODUCER_QUEUE,
    KAFKA_PRODUCE_RETRIES,
};

/// Reason of the broker check before the first statistics arrive.
const NO_STATISTICS_YET: &str = "no statistics from the Kafka client yet";

/// Metrics and broker check of one client, named by its role.
#[derive(Clone, Debug)]
pub struct ClientStats {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Role of the client, the `client` label: `consumer`, `producer`,
    /// `dlq-producer`.
    client: String,
    broker_check: Check,
    /// Brokers reported so far, so that one that disappears from the
    /// statistics is reported as down.
    brokers: Mutex<HashSet<String>>,
}

impl ClientStats {
    /// Returns the stats of the client named `client` and registers its
    /// readiness check, `<client> broker`.
    pub fn new(client: &str) -> Self {
        let broker_check = health().register(&format!("{client} broker"), NO_STATISTICS_YET);
        Self {
            inner: Arc::new(Inner {
                client: client.to_string(),
                broker_check,
                brokers: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Updates the metrics and the broker check from one statistics
    /// report.
    pub fn record(&self, statistics: &Statistics) {
        let client = self.inner.client.clone();
        let mut up = 0;
        let mut retries = 0;
        let mut seen = HashSet::new();
        for broker in statistics.brokers.values() {
            // "logical" brokers (the group coordinator) and "internal" ones
            // repeat or stand for no real connection.
            if broker.source == "logical" || broker.source == "internal" {
                continue;
            }
            let is_up = broker.state == "UP";
            up += usize::from(is_up);
            retries += broker.txretries;
            let labels = [("client", client.clone()), ("broker", broker.name.clone())];
            metrics::gauge!(KAFKA_BROKER_UP, &labels).set(f64::from(u8::from(is_up)));
            if let Some(rtt) = &broker.rtt {
                metrics::gauge!(KAFKA_BROKER_RTT, &labels).set(rtt.avg as f64 / 1e6);
            }
            seen.insert(broker.name.clone());
        }
        self.mark_missing_down(&seen);

        if statistics.client_type == "producer" {
            metrics::gauge!(KAFKA_PRODUCER_QUEUE, "client" => client.clone())
                .set(statistics.msg_cnt as f64);
            metrics::counter!(KAFKA_PRODUCE_RETRIES, "client" => client).absolute(retries);
        } else {
            let fetch_queue: i64 = statistics
                .topics
                .values()
                .flat_map(|topic| topic.partitions.values())
                .filter(|partition| partition.partition >= 0)
                .map(|partition| partition.fetchq_cnt)
                .sum();
            metrics::gauge!(KAFKA_FETCH_QUEUE, "client" => client).set(fetch_queue as f64);
        }

        if up > 0 {
            self.inner.broker_check.pass();
        } else {
            self.inner
                .broker_check
                .fail("no connection to any broker is up");
        }
    }

    /// Fails the broker check when librdkafka reports every broker down.
    pub fn record_error(&self, error: &KafkaError) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.inner
                .broker_check
                .fail(format!("all brokers are down: {error}"));
        }
    }

    /// Sets the up gauge of brokers that left the statistics to 0.
    fn mark_missing_down(&self, seen: &HashSet<String>) {
        let mut known = self
            .inner
            .brokers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for name in known.difference(seen) {
            metrics::gauge!(
                KAFKA_BROKER_UP,
                "client" => self.inner.client.clone(),
                "broker" => name.clone(),
            )
            .set(0.0);
        }
        known.extend(seen.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rdkafka::statistics::Broker;

    use super::*;

    fn statistics(states: &[(&str, &str, &str)]) -> Statistics {
        let brokers: HashMap<String, Broker> = states
            .iter()
            .map(|(name, source, state)| {
                let broker = Broker {
                    name: name.to_string(),
                    source: source.to_string(),
                    state: state.to_string(),
                    ..Broker::default()
                };
                (name.to_string(), broker)
            })
            .collect();
        Statistics {
            brokers,
            ..Statistics::default()
        }
    }

    #[test]
    fn one_broker_up_passes() {
        let stats = ClientStats::new("test-up");
        stats.record(&statistics(&[
            ("a:9092/1", "learned", "UP"),
            ("b:9092/bootstrap", "configured", "INIT"),
        ]));
        assert_eq!(stats.inner.broker_check.failure(), None);
    }

    #[test]
    fn coordinator_alone_does_not_pass() {
        let stats = ClientStats::new("test-logical");
        stats.record(&statistics(&[
            ("GroupCoordinator", "logical", "UP"),
            ("a:9092/1", "learned", "CONNECT"),
        ]));
        assert!(stats.inner.broker_check.failure().is_some());
    }

    #[test]
    fn all_brokers_down_fails_at_once() {
        let stats = ClientStats::new("test-down");
        stats.record(&statistics(&[("a:9092/1", "learned", "UP")]));
        stats.record_error(&KafkaError::Global(RDKafkaErrorCode::AllBrokersDown));
        let reason = stats.inner.broker_check.failure().expect("check fails");
        assert!(reason.contains("all brokers are down"), "{reason}");
    }
}
