//! `replay-dlq`: the pipeline run over the dead-letter topic. Each dead
//! letter's original bytes go through the plugin again, with the origin
//! its headers name, and the run stops at the end offsets the topic had at
//! start, so it never consumes the dead letters it writes itself. A dead
//! letter cut to fit Kafka's max record size stays where it is: its
//! input's full line is nowhere in Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::consume::{ConsumedBatch, HostConsumer, Origin};
use crate::bindings::InputRecord;
use crate::headers;

/// How long capturing the end offsets may take per request.
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(10);

/// Partitions of the dead-letter topic still to replay, and where each
/// ends.
pub(super) struct ReplayEnd {
    topic: String,
    /// High watermark per partition when the replay started.
    ends: BTreeMap<i32, i64>,
    /// Partitions not yet consumed up to their end.
    open: BTreeSet<i32>,
}

impl ReplayEnd {
    /// Captures the high watermarks of `topic` and opens each partition
    /// whose committed offset in the consumer's group (or, without one,
    /// its low watermark) lies below it.
    pub(super) fn capture(consumer: &HostConsumer, topic: &str) -> anyhow::Result<Self> {
        let metadata = consumer
            .fetch_metadata(Some(topic), OFFSETS_TIMEOUT)
            .with_context(|| format!("failed to fetch metadata of topic {topic:?}"))?;
        let mut list = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            list.add_partition(topic, partition.id());
        }
        let committed = consumer
            .committed_offsets(list, OFFSETS_TIMEOUT)
            .with_context(|| format!("failed to fetch committed offsets of topic {topic:?}"))?;
        let mut ends = BTreeMap::new();
        let mut open = BTreeSet::new();
        for element in committed.elements() {
            let partition = element.partition();
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, OFFSETS_TIMEOUT)
                .with_context(|| format!("failed to fetch offsets of {topic}/{partition}"))?;
            let start = match element.offset() {
                Offset::Offset(offset) => offset.max(low),
                _ => low,
            };
            ends.insert(partition, high);
            if start < high {
                open.insert(partition);
            }
        }
        tracing::info!(topic, ends = ?ends, open = open.len(), "replaying dead letters up to these offsets");
        Ok(Self {
            topic: topic.to_string(),
            ends,
            open,
        })
    }

    /// Tells whether every partition is consumed up to its end.
    pub(super) fn is_done(&self) -> bool {
        self.open.is_empty()
    }

    /// Drops the batch's records at or past their partition's end, which
    /// a later replay handles, and closes the partitions that reached it.
    pub(super) fn trim(&mut self, batch: &mut ConsumedBatch) {
        let ends = &self.ends;
        let before_end =
            |partition: i32, offset: i64| ends.get(&partition).is_some_and(|end| offset < *end);
        let records = std::mem::take(&mut batch.records);
        let origins = std::mem::take(&mut batch.origins);
        for (record, origin) in records.into_iter().zip(origins) {
            if before_end(record.partition, record.offset) {
                batch.records.push(record);
                batch.origins.push(origin);
            }
        }
        for ((_, partition), next) in batch.next_offsets.iter_mut() {
            let end = ends.get(partition).copied().unwrap_or(0);
            if *next >= end {
                *next = end;
                self.open.remove(partition);
            }
        }
        // The consumer reached the end of these partitions, and the end only
        // grows, so every record before the captured end was consumed.
        for partition in batch.end_of_partition.drain(..) {
            self.open.remove(&partition);
        }
        batch
            .next_offsets
            .retain(|(topic, _), _| *topic == self.topic);
    }
}

/// Returns the origin a dead letter's headers name, with one attempt more
/// than they record, or `None` when the host did not write it: only host
/// dead letters carry `weblog.plugin.name`. `record` is the dead letter
/// as consumed, whose coordinates stand in for missing source headers.
pub(super) fn dead_letter_origin(
    message: &BorrowedMessage<'_>,
    record: &InputRecord,
) -> Option<Origin> {
    let headers = message.headers()?;
    let value = |name: &str| {
        headers
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| header.value)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .map(str::to_string)
    };
    value(headers::PLUGIN_NAME)?;
    let attempts: u32 = value(headers::ERROR_ATTEMPTS)
        .and_then(|text| text.parse().ok())
        .unwrap_or(1);
    Some(Origin {
        topic: value(headers::SOURCE_TOPIC).unwrap_or_else(|| record.topic.clone()),
        partition: value(headers::SOURCE_PARTITION)
            .and_then(|text| text.parse().ok())
            .unwrap_or(record.partition),
        offset: value(headers::SOURCE_OFFSET)
            .and_then(|text| text.parse().ok())
            .unwrap_or(record.offset),
        timestamp_ms: value(headers::SOURCE_TIMESTAMP)
            .and_then(|text| text.parse().ok())
            .or(record.timestamp_ms),
        attempts: attempts.saturating_add(1),
        rejected_dead_letter: None,
    })
}

/// Returns whether a dead letter holds only the first bytes of its input
/// (the host cut it to fit Kafka's max record size), so that replaying it
/// would enrich a line that was never logged.
pub(super) fn is_cut(message: &BorrowedMessage<'_>) -> bool {
    message.headers().is_some_and(|headers| {
        headers.iter().any(|header| {
            header.key == headers::LINE_TRUNCATED && header.value == Some(b"true".as_slice())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[(i32, i64)]) -> ConsumedBatch {
        let mut batch = ConsumedBatch {
            records: Vec::new(),
            next_offsets: BTreeMap::new(),
            origins: Vec::new(),
            end_of_partition: Vec::new(),
            skipped: 0,
            at_max_attempts: 0,
            cut: 0,
        };
        for (partition, offset) in records {
            let record = InputRecord {
                topic: "dlq".to_string(),
                partition: *partition,
                offset: *offset,
                timestamp_ms: None,
                key: None,
                value: Vec::new(),
            };
            batch
                .next_offsets
                .insert(("dlq".to_string(), *partition), offset + 1);
            batch.origins.push(Origin::of(&record));
            batch.records.push(record);
        }
        batch
    }

    fn end(ends: &[(i32, i64)]) -> ReplayEnd {
        ReplayEnd {
            topic: "dlq".to_string(),
            ends: ends.iter().copied().collect(),
            open: ends.iter().map(|(partition, _)| *partition).collect(),
        }
    }

    #[test]
    fn trim_drops_records_past_end() {
        let mut end = end(&[(0, 2), (1, 10)]);
        let mut batch = batch(&[(0, 0), (0, 1), (0, 2), (0, 3), (1, 4)]);
        end.trim(&mut batch);
        let kept: Vec<(i32, i64)> = batch
            .records
            .iter()
            .map(|record| (record.partition, record.offset))
            .collect();
        assert_eq!(kept, vec![(0, 0), (0, 1), (1, 4)]);
        assert_eq!(batch.origins.len(), 3);
        assert_eq!(batch.next_offsets[&("dlq".to_string(), 0)], 2);
        assert_eq!(batch.next_offsets[&("dlq".to_string(), 1)], 5);
        assert!(!end.is_done(), "partition 1 is still open");
    }

    #[test]
    fn partitions_close_at_end_or_eof() {
        let mut end = end(&[(0, 2), (1, 10)]);
        let mut first = batch(&[(0, 0), (0, 1)]);
        end.trim(&mut first);
        assert!(!end.is_done());
        let mut second = batch(&[]);
        second.end_of_partition.push(1);
        end.trim(&mut second);
        assert!(end.is_done());
    }
}
