//! End-to-end latency at a fixed offered rate: a rate-limited producer
//! writes raw lines whose key is the send time, and a consumer of the
//! enrichment stage's output topics subtracts that time from the moment it
//! receives each record. Both run in this process, so they share one
//! monotonic clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use weblog_common::KafkaArgs;

use crate::kafka::{reader_config, PARTITIONS};

/// How long the consumer waits for the last records after the producer
/// finished, before it reports the missing ones.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// One latency measurement.
pub(crate) struct LatencyRun<'a> {
    /// Topic the enrichment stage consumes.
    pub(crate) input_topic: &'a str,
    /// Topics where every input ends up (enriched records, dead letters).
    pub(crate) output_topics: Vec<&'a str>,
    /// Offered rate, in lines per second.
    pub(crate) rate: u32,
    /// How long the producer offers lines.
    pub(crate) duration: Duration,
    /// Lines to send, in turn.
    pub(crate) lines: &'a [Vec<u8>],
}

/// Latency percentiles of one run, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct LatencyReport {
    pub(crate) offered_rate: u32,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// Runs the producer and the consumer and returns the percentiles over
/// every record that arrived.
pub(crate) fn measure(kafka: &KafkaArgs, run: &LatencyRun<'_>) -> anyhow::Result<LatencyReport> {
    let consumer: BaseConsumer = reader_config(kafka, "weblog-bench-latency")?
        .create()
        .context("failed to create the latency consumer")?;
    assign_at_end(&consumer, &run.output_topics)?;
    let producer: BaseProducer = kafka
        .producer_config()?
        .create()
        .context("failed to create the latency producer")?;

    let clock = Instant::now();
    let sent = Arc::new(AtomicU64::new(u64::MAX));
    let receiver = {
        let sent = sent.clone();
        std::thread::spawn(move || receive(consumer, clock, &sent))
    };
    let produced = offer(&producer, run, clock);
    sent.store(*produced.as_ref().unwrap_or(&0), Ordering::SeqCst);
    let latencies = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the latency consumer panicked"))??;
    let sent = produced?;
    Ok(summarize(run.rate, sent, latencies))
}

/// Sends lines at `run.rate` for `run.duration`, keyed with the send time
/// in nanoseconds since `clock`, and returns how many it sent.
fn offer(producer: &BaseProducer, run: &LatencyRun<'_>, clock: Instant) -> anyhow::Result<u64> {
    let started = Instant::now();
    let total = (run.rate as f64 * run.duration.as_secs_f64()) as u64;
    let mut sent = 0u64;
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * run.rate as f64) as u64).min(total);
        while sent < due {
            let key = (clock.elapsed().as_nanos() as u64).to_be_bytes();
            let line = &run.lines[sent as usize % run.lines.len()];
            let record = BaseRecord::to(run.input_topic).key(&key[..]).payload(line);
            if let Err((error, _)) = producer.send(record) {
                anyhow::bail!("failed to produce to {}: {error}", run.input_topic);
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(500));
    }
    producer
        .flush(Duration::from_secs(30))
        .context("failed to flush the latency producer")?;
    Ok(sent)
}

/// Assigns every partition of `topics` at its current end, so that only
/// records of this run are read.
fn assign_at_end(consumer: &BaseConsumer, topics: &[&str]) -> anyhow::Result<()> {
    let mut list = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..PARTITIONS {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .with_context(|| format!("failed to fetch the end offsets of {topic}"))?;
            list.add_partition_offset(topic, partition, Offset::Offset(high))?;
        }
    }
    consumer
        .assign(&list)
        .context("failed to assign the output topics")
}

/// Collects one latency per record until `sent` (set when the producer is
/// done) records arrived, or [`DRAIN_TIMEOUT`] after the producer is done.
fn receive(consumer: BaseConsumer, clock: Instant, sent: &AtomicU64) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::new();
    let mut producer_done_at: Option<Instant> = None;
    loop {
        let target = sent.load(Ordering::SeqCst);
        if target != u64::MAX {
            if latencies.len() as u64 >= target {
                return Ok(latencies);
            }
            let done_at = *producer_done_at.get_or_insert_with(Instant::now);
            if done_at.elapsed() > DRAIN_TIMEOUT {
                tracing::warn!(
                    sent = target,
                    received = latencies.len(),
                    "records missing after the drain timeout"
                );
                return Ok(latencies);
            }
        }
        let Some(received) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = received.context("failed to read the output topics")?;
        let now = clock.elapsed().as_nanos() as u64;
        let Some(key) = message.key().and_then(|key| <[u8; 8]>::try_from(key).ok()) else {
            anyhow::bail!(
                "record without the 8-byte send time key in {}; does the stage keep keys?",
                message.topic()
            );
        };
        latencies.push(now.saturating_sub(u64::from_be_bytes(key)));
    }
}

fn summarize(rate: u32, sent: u64, mut latencies: Vec<u64>) -> LatencyReport {
    latencies.sort_unstable();
    let percentile = |fraction: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((latencies.len() as f64 * fraction).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1] as f64 / 1e6
    };
    LatencyReport {
        offered_rate: rate,
        sent,
        received: latencies.len() as u64,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        max_ms: percentile(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let latencies: Vec<u64> = (1..=100).map(|ms| ms * 1_000_000).collect();
        let report = summarize(10, 100, latencies);
        assert_eq!(report.p50_ms, 50.0);
        assert_eq!(report.p99_ms, 99.0);
        assert_eq!(report.max_ms, 100.0);
        assert_eq!(report.received, 100);
    }
}
