//! Which kind of client a librdkafka setting applies to.
//!
//! librdkafka logs a CONFWARN at every start when a producer gets a
//! consumer-only setting or a consumer a producer-only one. Every binary
//! passes the same `--kafka-option`s to all of its clients, so a setting
//! meant for the consumer, such as `group.instance.id`, goes only to the
//! consumer. The lists are the properties marked `C` and `P` in
//! librdkafka 2.12.1's CONFIGURATION.md, global and topic-level, without
//! the callbacks, which cannot be set from a string.

/// Kind of client that a config is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientKind {
    Producer,
    Consumer,
}

/// Settings that only consumers read.
const CONSUMER_ONLY_KEYS: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.commit.enable",
    "auto.offset.reset",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "consume.callback.max.messages",
];

/// Settings that only producers read.
const PRODUCER_ONLY_KEYS: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
];

/// Returns whether librdkafka reads `key` in a client of `kind`. Keys not
/// in the lists, including misspelt ones, apply to both, so that
/// librdkafka still rejects an unknown key.
pub(crate) fn applies_to(key: &str, kind: ClientKind) -> bool {
    let other_only = match kind {
        ClientKind::Producer => CONSUMER_ONLY_KEYS,
        ClientKind::Consumer => PRODUCER_ONLY_KEYS,
    };
    !other_only.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_keys_skip_producers() {
        for key in ["group.instance.id", "session.timeout.ms", "fetch.min.bytes"] {
            assert!(!applies_to(key, ClientKind::Producer), "{key}");
            assert!(applies_to(key, ClientKind::Consumer), "{key}");
        }
    }

    #[test]
    fn producer_keys_skip_consumers() {
        for key in ["linger.ms", "batch.size", "message.timeout.ms"] {
            assert!(applies_to(key, ClientKind::Producer), "{key}");
            assert!(!applies_to(key, ClientKind::Consumer), "{key}");
        }
    }

    #[test]
    fn shared_and_unknown_keys_apply_to_both() {
        for key in ["client.id", "security.protocol", "sasl.pasword"] {
            assert!(applies_to(key, ClientKind::Producer), "{key}");
            assert!(applies_to(key, ClientKind::Consumer), "{key}");
        }
    }
}
