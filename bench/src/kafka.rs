//! Broker requests of the benchmark: topic creation, end offsets,
//! committed offsets of a group, and record counts of a topic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weblog_common::KafkaArgs;

/// Partitions of every benchmark topic, as in the default topics of
/// `scripts/kafka.sh`.
pub(crate) const PARTITIONS: i32 = 3;

/// How long one broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long new topics may take to show in the broker's metadata.
const TOPIC_LISTED_TIMEOUT: Duration = Duration::from_secs(30);

/// Read-only view of the broker for progress checks.
pub(crate) struct Probe {
    kafka: KafkaArgs,
    watermarks: BaseConsumer,
    /// One consumer per group, used only to fetch its committed offsets;
    /// it never subscribes, so it never joins the group.
    groups: HashMap<String, BaseConsumer>,
}

impl Probe {
    /// Connects to the brokers in `kafka`.
    pub(crate) fn new(kafka: &KafkaArgs) -> anyhow::Result<Self> {
        let watermarks = kafka
            .client_config()?
            .set("group.id", "weblog-bench-probe")
            .create()
            .context("failed to create the probe consumer")?;
        Ok(Self {
            kafka: kafka.clone(),
            watermarks,
            groups: HashMap::new(),
        })
    }

    /// Creates `topics` with [`PARTITIONS`] partitions each, failing when
    /// one exists already.
    pub(crate) fn create_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .kafka
            .client_config()?
            .create()
            .context("failed to create the admin client")?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|name| NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start a runtime for the admin client")?;
        let results = runtime
            .block_on(admin.create_topics(&new_topics, &options))
            .context("failed to create the benchmark topics")?;
        for result in results {
            if let Err((topic, code)) = result {
                anyhow::bail!("failed to create topic {topic:?}: {code}");
            }
        }
        self.wait_until_listed(topics)
    }

    /// Waits until the broker's metadata lists each of `topics` with a
    /// leader for every partition. A program started right after the
    /// creation can otherwise find a topic missing on a busy broker.
    fn wait_until_listed(&self, topics: &[&str]) -> anyhow::Result<()> {
        let deadline = Instant::now() + TOPIC_LISTED_TIMEOUT;
        loop {
            let metadata = self
                .watermarks
                .fetch_metadata(None, REQUEST_TIMEOUT)
                .context("failed to fetch the broker's metadata")?;
            let listed = topics.iter().all(|name| {
                metadata.topics().iter().any(|topic| {
                    topic.name() == *name
                        && topic.error().is_none()
                        && topic.partitions().len() == PARTITIONS as usize
                        && topic
                            .partitions()
                            .iter()
                            .all(|partition| partition.leader() >= 0)
                })
            });
            if listed {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "topics {topics:?} are not in the broker's metadata {} s after their creation",
                TOPIC_LISTED_TIMEOUT.as_secs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Returns the sum of the end offsets of `topic`'s partitions. For a
    /// topic written without transactions this is its record count.
    pub(crate) fn end_offsets(&self, topic: &str) -> anyhow::Result<u64> {
        let mut sum = 0;
        for partition in 0..PARTITIONS {
            let (low, high) = self
                .watermarks
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .with_context(|| format!("failed to fetch the end offsets of {topic}"))?;
            sum += (high - low).max(0) as u64;
        }
        Ok(sum)
    }

    /// Returns the sum of `group`'s committed offsets on `topic`, counting
    /// a partition without a commit as 0.
    pub(crate) fn committed(&mut self, group: &str, topic: &str) -> anyhow::Result<u64> {
        if !self.groups.contains_key(group) {
            let consumer: BaseConsumer = self
                .kafka
                .client_config()?
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .create()
                .with_context(|| format!("failed to create a probe for group {group}"))?;
            self.groups.insert(group.to_string(), consumer);
        }
        let consumer = &self.groups[group];
        let mut list = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            list.add_partition(topic, partition);
        }
        let committed = consumer
            .committed_offsets(list, REQUEST_TIMEOUT)
            .with_context(|| format!("failed to fetch the offsets of group {group}"))?;
        Ok(committed
            .elements()
            .iter()
            .map(|element| match element.offset() {
                Offset::Offset(offset) => offset.max(0) as u64,
                _ => 0,
            })
            .sum())
    }

    /// Counts the records of `topic` that a read_committed consumer reads,
    /// which leaves out transaction markers and aborted records.
    pub(crate) fn count_records(&self, topic: &str) -> anyhow::Result<u64> {
        let consumer: BaseConsumer = self
            .kafka
            .client_config()?
            .set("group.id", "weblog-bench-counter")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .context("failed to create the counting consumer")?;
        let mut list = TopicPartitionList::new();
        let mut ends = Vec::new();
        for partition in 0..PARTITIONS {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .with_context(|| format!("failed to fetch the end offsets of {topic}"))?;
            if high > low {
                list.add_partition_offset(topic, partition, Offset::Offset(low))?;
                ends.push((partition, high));
            }
        }
        if ends.is_empty() {
            return Ok(0);
        }
        consumer
            .assign(&list)
            .with_context(|| format!("failed to assign {topic}"))?;
        let mut count = 0u64;
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut idle_since = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(_)) => {
                    count += 1;
                    idle_since = Instant::now();
                }
                Some(Err(error)) => anyhow::bail!("failed to read {topic}: {error}"),
                None => {}
            }
            // Past the last record only markers remain, which never arrive
            // as messages, so the count is done once positions reach the
            // end offsets or nothing arrives for a while.
            let done = ends.iter().all(|(partition, high)| {
                matches!(
                    consumer.position().ok().and_then(|position| position
                        .find_partition(topic, *partition)
                        .map(|element| element.offset())),
                    Some(Offset::Offset(offset)) if offset >= *high
                )
            });
            if done || idle_since.elapsed() > Duration::from_secs(3) {
                return Ok(count);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "timed out counting the records of {topic}"
            );
        }
    }

    /// Produces `lines` to `topic` with the shipper's producer settings and
    /// waits until all are acknowledged.
    pub(crate) fn produce_lines(&self, topic: &str, lines: &[Vec<u8>]) -> anyhow::Result<()> {
        let producer: ThreadedProducer<DefaultProducerContext> = self
            .kafka
            .producer_config()?
            .create()
            .context("failed to create the warm-up producer")?;
        for line in lines {
            producer
                .send(BaseRecord::<(), [u8]>::to(topic).payload(line))
                .map_err(|(error, _)| error)
                .with_context(|| format!("failed to produce to {topic}"))?;
        }
        producer
            .flush(REQUEST_TIMEOUT)
            .with_context(|| format!("failed to flush the records to {topic}"))?;
        Ok(())
    }
}

/// Returns the client config of a consumer that reads assigned partitions
/// without a group's offsets.
pub(crate) fn reader_config(kafka: &KafkaArgs, name: &str) -> anyhow::Result<ClientConfig> {
    let mut config = kafka.client_config()?;
    config
        .set("group.id", name)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    Ok(config)
}
