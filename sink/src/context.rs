//! The consumer context: it starts each assigned partition at the offset in
//! the checkpoint, and logs librdkafka errors and rebalances.
//!
//! A partition with a checkpoint entry starts at that entry, whatever the
//! group committed, because the checkpoint is what the output file
//! contains. A partition without one starts at the group's committed
//! offset, or at the earliest offset when the group has none.

use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use weblog_common::admin::{health, Check};
use weblog_common::kafka_context::{describe_partitions, ErrorThrottle};
use weblog_common::kafka_stats::ClientStats;

use crate::checkpoint::Offsets;

/// Checkpointed offsets shared by the consume loop, which updates them after
/// each checkpoint, and the rebalance callback, which reads them.
pub(crate) type SharedOffsets = Arc<Mutex<Offsets>>;

/// Consumer context of the sink.
pub(crate) struct SinkContext {
    errors: ErrorThrottle,
    checkpointed: SharedOffsets,
    stats: ClientStats,
    /// Readiness check that passes while a partition is assigned.
    partitions_check: Check,
}

impl SinkContext {
    /// Returns a context that starts assigned partitions at `checkpointed`.
    pub(crate) fn new(checkpointed: SharedOffsets) -> Self {
        Self {
            errors: ErrorThrottle::default(),
            checkpointed,
            stats: ClientStats::new("consumer"),
            partitions_check: health().register("partitions", "no partition assigned yet"),
        }
    }

    /// Updates the partitions check from the consumer's assignment.
    fn report_assignment(&self, consumer: &BaseConsumer<Self>) {
        match consumer.assignment() {
            Ok(assignment) if assignment.count() > 0 => self.partitions_check.pass(),
            Ok(_) => self.partitions_check.fail("no partition assigned"),
            Err(error) => self
                .partitions_check
                .fail(format!("failed to read the assignment: {error}")),
        }
    }

    /// Sets the start offset of each partition in `assignment` that has a
    /// checkpoint entry. Returns the partitions it set.
    fn start_at_checkpoint(&self, assignment: &mut TopicPartitionList) -> Vec<String> {
        let checkpointed = self
            .checkpointed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut started = Vec::new();
        for element in assignment.elements() {
            let key = (element.topic().to_string(), element.partition());
            if let Some(offset) = checkpointed.get(&key) {
                started.push((key, *offset));
            }
        }
        drop(checkpointed);
        let mut described = Vec::new();
        for ((topic, partition), offset) in started {
            match assignment.set_partition_offset(&topic, partition, Offset::Offset(offset)) {
                Ok(()) => described.push(format!("{topic}/{partition}@{offset}")),
                Err(error) => tracing::error!(
                    error = %error,
                    topic = %topic,
                    partition,
                    offset,
                    "failed to start a partition at its checkpoint"
                ),
            }
        }
        described
    }
}

impl ClientContext for SinkContext {
    fn stats(&self, statistics: Statistics) {
        self.stats.record(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.stats.record_error(&error);
        self.errors.log(error, reason);
    }
}

impl ConsumerContext for SinkContext {
    /// Does what the default rebalance does, with the checkpointed offsets
    /// put into the assignment first. librdkafka calls this on the thread
    /// that polls the consumer.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let described = describe_partitions(partitions);
        let result = match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let from_checkpoint = self.start_at_checkpoint(partitions).join(",");
                tracing::info!(
                    partitions = %described,
                    from_checkpoint = %from_checkpoint,
                    "partitions assigned"
                );
                if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = %described, "partitions revoked");
                if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance failed");
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            tracing::error!(
                error = %error,
                partitions = %described,
                "failed to apply a rebalance"
            );
        }
        self.report_assignment(consumer);
    }
}
