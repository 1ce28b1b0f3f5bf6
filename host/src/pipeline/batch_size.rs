//! The producer's `batch.size`, kept under the output topics'
//! `max.message.bytes`.
//!
//! The broker checks `max.message.bytes` per record batch and rejects a
//! whole batch that is larger, and librdkafka then fails every record of it
//! with `MessageSizeTooLarge`. With librdkafka's default `batch.size` of
//! 1,000,000 bytes, a topic with a lower limit would reject batches of
//! records that each fit, and one record too large would take its whole
//! batch to the dead-letter topic. So at start the host reads the limit of
//! the enriched and dead-letter topics and keeps its batches below the
//! lower one. A record larger than the limit still gets a batch of its own
//! and is the only one rejected.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use weblog_common::KafkaArgs;

/// How long the broker may take to describe the topics.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// librdkafka's default `batch.size` (librdkafka 2.12).
const DEFAULT_BATCH_SIZE: u64 = 1_000_000;

/// Returns the `batch.size` that keeps a batch's record batch, compressed
/// and framed, within `max_message_bytes`. lz4 grows data that does not
/// compress by well under 1 %, and a record batch adds a header of 61
/// bytes, so 1 % and 512 bytes are left free.
pub(super) fn batch_size_for(max_message_bytes: u64) -> u64 {
    max_message_bytes
        .saturating_sub(max_message_bytes / 100 + 512)
        .max(1)
}

/// Sets `batch.size` in `producer_config` below the lowest
/// `max.message.bytes` of `topics`, unless `--kafka-option` sets it. A
/// topic that cannot be described is logged and left out.
pub(super) async fn cap_batch_size(
    kafka: &KafkaArgs,
    producer_config: &mut ClientConfig,
    topics: &[&str],
) -> anyhow::Result<()> {
    let lowest = match lowest_limit(kafka, topics).await {
        Ok(lowest) => lowest,
        Err(error) => {
            tracing::warn!(
                error = %format!("{error:#}"),
                "failed to read the topics' max.message.bytes; batches keep librdkafka's batch.size"
            );
            return Ok(());
        }
    };
    let Some((topic, limit)) = lowest else {
        return Ok(());
    };
    let fitting = batch_size_for(limit);
    if let Some(set) = producer_config.get("batch.size") {
        let set: u64 = set.parse().unwrap_or(DEFAULT_BATCH_SIZE);
        if set > fitting {
            tracing::warn!(
                topic,
                max_message_bytes = limit,
                batch_size = set,
                "--kafka-option batch.size is above what the topic accepts per batch, so the \
                 broker may reject whole batches; set it to {fitting} or less"
            );
        }
        return Ok(());
    }
    if fitting < DEFAULT_BATCH_SIZE {
        tracing::info!(
            topic,
            max_message_bytes = limit,
            batch_size = fitting,
            "keeping producer batches within the topic's max.message.bytes"
        );
        producer_config.set("batch.size", fitting.to_string());
    }
    Ok(())
}

/// Returns the topic with the lowest `max.message.bytes` and that value.
async fn lowest_limit(kafka: &KafkaArgs, topics: &[&str]) -> anyhow::Result<Option<(String, u64)>> {
    let admin: AdminClient<DefaultClientContext> = kafka
        .client_config()?
        .set("statistics.interval.ms", "0")
        .create()
        .context("failed to create admin client")?;
    let specifiers: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|topic| ResourceSpecifier::Topic(topic))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(DESCRIBE_TIMEOUT));
    let results = admin
        .describe_configs(&specifiers, &options)
        .await
        .context("failed to describe topics")?;
    let mut lowest: Option<(String, u64)> = None;
    for (topic, result) in topics.iter().zip(results) {
        // A missing topic fails the start-up check that follows, with the fix.
        let resource = match result {
            Ok(resource) => resource,
            Err(code) => {
                tracing::debug!(topic, %code, "failed to describe topic");
                continue;
            }
        };
        let Some(value) = resource
            .get("max.message.bytes")
            .and_then(|entry| entry.value.as_deref())
        else {
            continue;
        };
        let limit: u64 = value
            .parse()
            .with_context(|| format!("invalid max.message.bytes {value:?} of topic {topic:?}"))?;
        if lowest.as_ref().is_none_or(|(_, low)| limit < *low) {
            lowest = Some((topic.to_string(), limit));
        }
    }
    Ok(lowest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_leaves_room_for_framing() {
        assert_eq!(batch_size_for(1_048_588), 1_037_591);
        assert_eq!(batch_size_for(100_000), 98_488);
        assert_eq!(batch_size_for(2_000), 1_468);
        assert_eq!(batch_size_for(100), 1);
    }
}
