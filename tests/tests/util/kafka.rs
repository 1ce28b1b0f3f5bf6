//! Kafka helpers for tests: the broker address, topics of a test's own, and
//! reading or writing a topic directly.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Broker for the tests: `KAFKA_BOOTSTRAP`, or the local default.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// Returns a name unique to this test run, for topics and groups.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{count}", std::process::id())
}

/// Raw, enriched and dead-letter topics created for one test.
pub struct TestTopics {
    pub raw: String,
    pub enriched: String,
    pub dlq: String,
}

impl TestTopics {
    /// Creates the three topics with `partitions` partitions each.
    pub fn create(test: &str, partitions: i32) -> Self {
        let topics = Self {
            raw: unique_name(&format!("{test}-raw")),
            enriched: unique_name(&format!("{test}-enriched")),
            dlq: unique_name(&format!("{test}-dlq")),
        };
        create_topics(&[&topics.raw, &topics.enriched, &topics.dlq], partitions);
        topics
    }
}

/// Returns `weblog-host run` on `topics` in consumer group `group` with
/// `plugin`; callers add plugin settings and limits.
pub fn host_run_command(topics: &TestTopics, group: &str, plugin: &Path) -> Command {
    let mut command = Command::new(super::binary("weblog-host"));
    command
        .arg("run")
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--input-topic", &topics.raw])
        .args(["--output-topic", &topics.enriched])
        .args(["--dlq-topic", &topics.dlq])
        .args(["--group-id", group])
        .arg("--plugin")
        .arg(plugin);
    command
}

/// Creates topics with the admin API and waits until they exist.
pub fn create_topics(names: &[&str], partitions: i32) {
    create_topics_with_config(names, partitions, &[]);
}

/// Creates topics with the admin API, each with the topic settings in
/// `config` (for example `("max.message.bytes", "2000")`), and waits until
/// they exist.
pub fn create_topics_with_config(names: &[&str], partitions: i32, config: &[(&str, &str)]) {
    create_topics_at(&bootstrap(), names, partitions, 1, config);
}

/// One record read back from a topic.
#[derive(Clone, Debug)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Received {
    fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let mut headers = BTreeMap::new();
        if let Some(list) = message.headers() {
            for header in list.iter() {
                let value = header
                    .value
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                headers.insert(header.key.to_string(), value.into_owned());
            }
        }
        Self {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        }
    }

    /// Returns a header's value, panicking with the record if it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing on {self:?}"))
    }
}

/// A consumer without a group that reads a topic from the beginning.
pub struct TopicReader {
    consumer: BaseConsumer,
    pub received: Vec<Received>,
}

impl TopicReader {
    /// Assigns every partition of `topic` from offset 0.
    pub fn new(topic: &str) -> Self {
        Self::with_isolation(topic, "read_committed")
    }

    /// Assigns every partition of `topic` from offset 0 and reads with
    /// `isolation.level` set to `isolation`, which is `read_committed` or
    /// `read_uncommitted`. The latter also returns records of aborted
    /// transactions.
    pub fn with_isolation(topic: &str, isolation: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("group.id", unique_name("reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()
            .expect("create reader");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("fetch metadata");
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics()[0].partitions() {
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .expect("add partition");
        }
        consumer.assign(&assignment).expect("assign partitions");
        Self {
            consumer,
            received: Vec::new(),
        }
    }

    /// Reads what is available within `wait`.
    pub fn poll_for(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => self.received.push(Received::from_message(&message)),
                Some(Err(error)) => panic!("failed to read test topic: {error}"),
                None => {}
            }
        }
    }

    /// Reads until `count` records arrived or `timeout` passed.
    pub fn read_at_least(&mut self, count: usize, timeout: Duration) -> &[Received] {
        let deadline = Instant::now() + timeout;
        while self.received.len() < count && Instant::now() < deadline {
            self.poll_for(Duration::from_millis(200));
        }
        &self.received
    }
}

/// Produces records (key, value) to `topic` and waits for all acks.
pub fn produce(topic: &str, records: &[(Option<&[u8]>, &[u8])]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("acks", "all")
        .create()
        .expect("create producer");
    for (key, value) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        producer
            .send(record)
            .unwrap_or_else(|(error, _)| panic!("failed to produce to {topic}: {error}"));
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("flush test producer");
}

/// Returns, per partition, the group's committed offset and the high
/// watermark (`None` for no commit).
pub fn committed_and_end(group: &str, topic: &str) -> Vec<(i32, Option<i64>, i64)> {
    committed_and_end_at(&bootstrap(), group, topic)
}

/// Returns whether a partition's commit covers all of it. A partition that
/// never received a record needs no commit: producers without a key fill
/// one partition at a time, so a small test topic can keep one empty.
pub fn caught_up(committed: Option<i64>, end: i64) -> bool {
    committed.unwrap_or(0) == end
}

/// Returns whether `group` committed every record of `topic`.
pub fn fully_committed(group: &str, topic: &str) -> bool {
    fully_committed_at(&bootstrap(), group, topic)
}

/// Returns [`fully_committed`] from the broker at `bootstrap`.
pub fn fully_committed_at(bootstrap: &str, group: &str, topic: &str) -> bool {
    committed_and_end_at(bootstrap, group, topic)
        .iter()
        .all(|(_, committed, end)| caught_up(*committed, *end))
}

/// Returns [`committed_and_end`] from the broker at `bootstrap`.
pub fn committed_and_end_at(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> Vec<(i32, Option<i64>, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("create offsets consumer");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("fetch metadata");
    let mut list = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        list.add_partition(topic, partition.id());
    }
    let committed = consumer
        .committed_offsets(list, timeout)
        .expect("fetch committed offsets");
    committed
        .elements()
        .iter()
        .map(|element| {
            let (_, high) = consumer
                .fetch_watermarks(topic, element.partition(), timeout)
                .expect("fetch watermarks");
            let offset = match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            (element.partition(), offset, high)
        })
        .collect()
}

/// Creates topics at `bootstrap` with the admin API, each with `partitions`
/// partitions of `replication_factor` replicas and the topic settings in
/// `config`, and fails the test if one already exists or is rejected.
pub fn create_topics_at(
    bootstrap: &str,
    names: &[&str],
    partitions: i32,
    replication_factor: i32,
    config: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("create admin client");
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            let replication = TopicReplication::Fixed(replication_factor);
            let topic = NewTopic::new(name, partitions, replication);
            config
                .iter()
                .fold(topic, |topic, (key, value)| topic.set(key, value))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build runtime");
    let results = runtime
        .block_on(admin.create_topics(&new_topics, &AdminOptions::new()))
        .unwrap_or_else(|error| panic!("failed to create topics on {bootstrap}: {error}"));
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("failed to create topic {topic}: {code}"));
    }
}

/// Returns the broker id that leads each partition of `topic` according
/// to the metadata at `bootstrap`, by partition id.
pub fn partition_leaders(bootstrap: &str, topic: &str) -> BTreeMap<i32, i32> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("create metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("failed to fetch metadata of {topic}: {error}"));
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|partition| (partition.id(), partition.leader()))
        .collect()
}

/// Produces each value to its partition of `topic`, in order, and waits
/// for all acks. Idempotence keeps the order within a partition through
/// retries.
pub fn produce_to_partitions(topic: &str, records: &[(i32, &[u8])]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .expect("create producer");
    for (partition, value) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(*partition)
            .payload(value);
        // The queue takes 100,000 records by default; wait while it is full.
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    returned,
                )) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((error, _)) => panic!("failed to produce to {topic}: {error}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("flush test producer");
}

/// Reads the enriched and dead-letter topics of `topics` until outputs of
/// `expected` distinct inputs arrived (at most 120 s), then a little longer
/// to catch duplicates, and returns both topics' records.
pub fn read_all_outputs(topics: &TestTopics, expected: usize) -> Vec<Received> {
    let mut enriched = TopicReader::new(&topics.enriched);
    let mut dlq = TopicReader::new(&topics.dlq);
    let complete = super::wait_until(Duration::from_secs(120), || {
        enriched.poll_for(Duration::from_millis(300));
        dlq.poll_for(Duration::from_millis(100));
        let sources: std::collections::BTreeSet<(i32, i64)> = enriched
            .received
            .iter()
            .chain(&dlq.received)
            .map(Received::source)
            .collect();
        sources.len() >= expected
    });
    assert!(
        complete,
        "only {} enriched and {} dead letters for {expected} inputs",
        enriched.received.len(),
        dlq.received.len()
    );
    enriched.poll_for(Duration::from_secs(2));
    dlq.poll_for(Duration::from_secs(1));
    enriched.received.into_iter().chain(dlq.received).collect()
}

impl Received {
    /// Returns the (partition, offset) of the raw record that this output
    /// came from, from its `weblog.source.*` headers.
    pub fn source(&self) -> (i32, i64) {
        let partition = self.header("weblog.source.partition").parse();
        let offset = self.header("weblog.source.offset").parse();
        (
            partition.expect("partition header in decimal"),
            offset.expect("offset header in decimal"),
        )
    }
}

/// Reads every partition of `topic` from offset 0 up to its end as it is
/// when the reader reaches it, with `isolation.level=read_committed`, and
/// returns the records. Call it once nothing writes to the topic any more.
/// Panics when the end is not reached within `timeout`.
pub fn read_to_end(topic: &str, timeout: Duration) -> Vec<Received> {
    read_to_end_at(&bootstrap(), topic, timeout)
}

/// Returns [`read_to_end`] from the broker at `bootstrap`.
pub fn read_to_end_at(bootstrap: &str, topic: &str, timeout: Duration) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("create reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("fetch metadata");
    let mut assignment = TopicPartitionList::new();
    let mut open: std::collections::BTreeSet<i32> = std::collections::BTreeSet::new();
    for partition in metadata.topics()[0].partitions() {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("add partition");
        open.insert(partition.id());
    }
    consumer.assign(&assignment).expect("assign partitions");
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "partitions {open:?} of {topic} not read to the end within {timeout:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => received.push(Received::from_message(&message)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(error)) => panic!("failed to read {topic}: {error}"),
            None => {}
        }
    }
    received
}

/// Runs `weblog-host replay-dlq` to its end and returns its stdout.
pub fn replay_dlq(topics: &TestTopics, group: &str, plugin: &Path, extra: &[&str]) -> String {
    let output = crate::util::run_bounded(
        Command::new(crate::util::binary("weblog-host"))
            .arg("replay-dlq")
            .args(["--bootstrap-servers", &bootstrap()])
            .args(["--output-topic", &topics.enriched])
            .args(["--dlq-topic", &topics.dlq])
            .args(["--group-id", group])
            .arg("--plugin")
            .arg(plugin)
            .arg("--no-component-cache")
            .args(extra),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "replay-dlq failed: {stderr}");
    String::from_utf8(output.stdout).expect("UTF-8 stdout")
}

impl Received {
    /// Copies the partition, offset, key, value and headers of `message`,
    /// for readers that poll a consumer of their own.
    pub fn copy_of(message: &BorrowedMessage<'_>) -> Self {
        Self::from_message(message)
    }
}

/// Runs the host `command` in `dir` until `group` committed every record
/// of `topic`, stops it with SIGTERM, checks that it exits 0 and returns
/// its stderr.
pub fn run_host_until_committed(command: Command, dir: &Path, group: &str, topic: &str) -> String {
    let mut host = crate::util::ChildProcess::spawn("host", command, dir);
    let committed = crate::util::wait_until(Duration::from_secs(90), || {
        host.assert_running();
        fully_committed(group, topic)
    });
    assert!(committed, "host did not commit: {}", host.stderr());
    let (status, _) = host.terminate(Duration::from_secs(30));
    let stderr = host.stderr();
    assert!(status.success(), "host exit {status}: {stderr}");
    stderr
}
