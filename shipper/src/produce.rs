//! Shipping the lines to Kafka: the topic check at start, sending with a
//! bounded number of records in flight, and the final count.
//!
//! A run succeeds only when Kafka has acknowledged every line. The first
//! failed delivery stops reading, but the records already in flight are
//! still awaited, so that the error can name the first line that failed.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::io::AsyncBufRead;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::source::{open_log_file, LineReader};
use weblog_common::LoggingContext;

/// Max records sent but not yet acknowledged. Enough to keep several
/// produce requests in flight, far below librdkafka's own queue limit of
/// 100,000 messages, so the queue does not fill in normal operation.
const MAX_IN_FLIGHT_RECORDS: usize = 10_000;

/// Max bytes of record values sent but not yet acknowledged. librdkafka
/// keeps a copy of each until it is acknowledged, so this bounds memory when
/// lines are long.
const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;

/// Pause before sending a record again after librdkafka reported its local
/// queue full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// Counts of one successful run.
#[derive(Debug)]
pub(crate) struct ShipSummary {
    /// Lines that Kafka acknowledged.
    pub(crate) lines: u64,
    /// Bytes of those lines, without their `\n`.
    pub(crate) bytes: u64,
    /// Topic that received them.
    pub(crate) topic: String,
    /// Time from the first send to the last acknowledgement.
    pub(crate) elapsed: Duration,
}

impl fmt::Display for ShipSummary {
    // Scripts parse the "sent N lines" prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} lines ({} bytes) to {} in {:.2} s",
            self.lines,
            self.bytes,
            self.topic,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Ships every line of the configured file to the configured topic.
///
/// Fails before connecting to Kafka when the file cannot be opened, and
/// before sending when the topic does not exist. After `shutdown` is
/// cancelled, stops reading, waits for the records in flight and fails with
/// the count that was sent.
pub(crate) async fn ship(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<ShipSummary> {
    let mut lines = open_log_file(&config.file).await?;

    let producer: FutureProducer<LoggingContext> = config
        .producer
        .create_with_context(LoggingContext::default())
        .with_context(|| format!("failed to create producer for {}", config.bootstrap_servers))?;
    check_topic(&producer, config).await?;
    tracing::info!(path = ?config.file, topic = %config.topic, "shipping log file");

    let started = Instant::now();
    let mut shipment = Shipment::new(producer, &config.topic);
    let stop = shipment.send_lines(&mut lines, shutdown).await;
    shipment.settle_all().await;
    let elapsed = started.elapsed();

    if let Some((line_number, error)) = shipment.first_failure {
        bail!(
            "failed to deliver line {line_number} of {:?} to topic {}: {error}",
            config.file,
            config.topic
        );
    }
    match stop {
        Stop::EndOfFile => {}
        Stop::ReadFailed(error) => {
            let sent = shipment.acknowledged_lines;
            return Err(error).with_context(|| {
                format!(
                    "failed to read log file {:?} after {sent} lines were sent to topic {}",
                    config.file, config.topic
                )
            });
        }
        Stop::Interrupted => bail!(
            "interrupted after {} lines ({} bytes) were sent to topic {}, so the rest of {:?} \
             was not shipped",
            shipment.acknowledged_lines,
            shipment.acknowledged_bytes,
            config.topic,
            config.file
        ),
        Stop::SendFailed => unreachable!("a failed send always sets first_failure, checked above"),
    }
    Ok(ShipSummary {
        lines: shipment.acknowledged_lines,
        bytes: shipment.acknowledged_bytes,
        topic: config.topic.clone(),
        elapsed,
    })
}

/// Fails unless the broker at the configured address describes the topic
/// within the metadata timeout.
async fn check_topic(
    producer: &FutureProducer<LoggingContext>,
    config: &Config,
) -> anyhow::Result<()> {
    let client = producer.clone();
    let topic = config.topic.clone();
    let timeout = config.metadata_timeout;
    // fetch_metadata blocks the calling thread until the broker replies.
    let metadata =
        tokio::task::spawn_blocking(move || client.client().fetch_metadata(Some(&topic), timeout))
            .await
            .context("failed to join the metadata request task")?;

    let servers = &config.bootstrap_servers;
    let metadata = metadata.map_err(|error| {
        anyhow!(
            "failed to fetch metadata for topic {} from Kafka at {servers} within {} s: {error}; \
             check that the broker is running (`make broker-up` starts the local one) \
             and that --bootstrap-servers is right",
            config.topic,
            timeout.as_secs_f64()
        )
    })?;
    let missing = || {
        anyhow!(
            "topic {} does not exist on Kafka at {servers}; create it \
             (`make broker-up` creates the weblog topics) or pass another --topic",
            config.topic
        )
    };
    let topic = metadata
        .topics()
        .iter()
        .find(|topic| topic.name() == config.topic)
        .ok_or_else(missing)?;
    match topic.error().map(RDKafkaErrorCode::from) {
        None if topic.partitions().is_empty() => Err(missing()),
        None => Ok(()),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Err(missing()),
        Some(code) => Err(anyhow!(
            "failed to look up topic {} on Kafka at {servers}: {code}",
            config.topic
        )),
    }
}

/// Reason the read loop stopped.
enum Stop {
    EndOfFile,
    ReadFailed(std::io::Error),
    SendFailed,
    Interrupted,
}

/// Outcome of one delivery: line number, value size and delivery result.
type Acknowledgement = (u64, usize, Result<(), KafkaError>);

/// Records in flight and the counts of what Kafka acknowledged.
struct Shipment<'a> {
    producer: FutureProducer<LoggingContext>,
    topic: &'a str,
    in_flight: FuturesUnordered<BoxFuture<'static, Acknowledgement>>,
    in_flight_bytes: usize,
    acknowledged_lines: u64,
    acknowledged_bytes: u64,
    /// Lowest failed line number and its error.
    first_failure: Option<(u64, KafkaError)>,
}

impl<'a> Shipment<'a> {
    fn new(producer: FutureProducer<LoggingContext>, topic: &'a str) -> Self {
        Self {
            producer,
            topic,
            in_flight: FuturesUnordered::new(),
            in_flight_bytes: 0,
            acknowledged_lines: 0,
            acknowledged_bytes: 0,
            first_failure: None,
        }
    }

    /// Sends lines until the end of the file, a read or send failure, or
    /// `shutdown`.
    async fn send_lines<R: AsyncBufRead + Unpin>(
        &mut self,
        lines: &mut LineReader<R>,
        shutdown: &CancellationToken,
    ) -> Stop {
        let mut line = Vec::new();
        loop {
            // A read from a regular file returns at once, but --file may
            // name a pipe that blocks until its writer sends more.
            let read = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Stop::Interrupted,
                read = lines.next_line(&mut line) => read,
            };
            match read {
                Ok(true) => {}
                Ok(false) => return Stop::EndOfFile,
                Err(error) => return Stop::ReadFailed(error),
            }
            if let Err(stop) = self.send(lines.line_number(), &line, shutdown).await {
                return stop;
            }
            self.settle_to_cap().await;
            if self.first_failure.is_some() {
                return Stop::SendFailed;
            }
        }
    }

    /// Hands one line to the producer, retrying while its queue is full.
    async fn send(
        &mut self,
        line_number: u64,
        value: &[u8],
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        loop {
            let record = FutureRecord::<(), [u8]>::to(self.topic).payload(value);
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    let size = value.len();
                    let acknowledgement = delivery.map(move |outcome| {
                        let result = match outcome {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((error, _message))) => Err(error),
                            // The producer dropped the report, which only
                            // happens when it is torn down.
                            Err(_canceled) => Err(KafkaError::Canceled),
                        };
                        (line_number, size, result)
                    });
                    self.in_flight.push(acknowledgement.boxed());
                    self.in_flight_bytes += size;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if shutdown.is_cancelled() {
                        return Err(Stop::Interrupted);
                    }
                    tracing::debug!(line = line_number, "producer queue full, retrying");
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((error, _)) => {
                    self.record_failure(line_number, error);
                    return Err(Stop::SendFailed);
                }
            }
        }
    }

    /// Waits for acknowledgements until the records in flight are within
    /// both caps.
    async fn settle_to_cap(&mut self) {
        while self.in_flight.len() >= MAX_IN_FLIGHT_RECORDS
            || self.in_flight_bytes >= MAX_IN_FLIGHT_BYTES
        {
            if !self.settle_next().await {
                break;
            }
        }
    }

    /// Waits for every record in flight.
    async fn settle_all(&mut self) {
        while self.settle_next().await {}
    }

    /// Waits for the next acknowledgement. Returns `false` when nothing was
    /// in flight.
    async fn settle_next(&mut self) -> bool {
        let Some((line_number, size, result)) = self.in_flight.next().await else {
            return false;
        };
        self.in_flight_bytes -= size;
        match result {
            Ok(()) => {
                self.acknowledged_lines += 1;
                self.acknowledged_bytes += size as u64;
            }
            Err(error) => self.record_failure(line_number, error),
        }
        true
    }

    fn record_failure(&mut self, line_number: u64, error: KafkaError) {
        tracing::debug!(line = line_number, topic = self.topic, error = %error, "delivery failed");
        let is_first = match &self.first_failure {
            Some((first, _)) => line_number < *first,
            None => true,
        };
        if is_first {
            self.first_failure = Some((line_number, error));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    use super::*;
    use crate::config::Cli;

    const TOPIC: &str = "raw-test";

    /// Builds a config the way `main` does, from flags.
    fn config(bootstrap: &str, file: &Path, extra: &[&str]) -> Config {
        let file = file.to_str().expect("temp paths are UTF-8");
        let mut args = vec![
            "weblog-shipper",
            "--file",
            file,
            "--topic",
            TOPIC,
            "--bootstrap-servers",
            bootstrap,
        ];
        args.extend_from_slice(extra);
        let cli = Cli::try_parse_from(args).expect("test flags are valid");
        Config::try_from(cli).expect("test config is valid")
    }

    fn write_log(dir: &Path, content: &[u8]) -> std::path::PathBuf {
        let path = dir.join("access.log");
        std::fs::write(&path, content).expect("write temp log");
        path
    }

    /// Reads every record value in partition 0 of `topic`, in order, once
    /// `count` records are there.
    fn read_values(bootstrap: &str, topic: &str, count: usize) -> Vec<Option<Vec<u8>>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "shipper-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("create test consumer");
        let mut partitions = TopicPartitionList::new();
        partitions
            .add_partition_offset(topic, 0, Offset::Beginning)
            .expect("valid partition");
        consumer.assign(&partitions).expect("assign partition 0");

        let deadline = Instant::now() + Duration::from_secs(30);
        let mut values = Vec::new();
        while values.len() < count && Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                let message = message.expect("consume from mock cluster");
                values.push(message.payload().map(<[u8]>::to_vec));
            }
        }
        let (_, high) = consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .expect("fetch watermarks");
        assert_eq!(
            high,
            values.len() as i64,
            "the topic has more records than were read"
        );
        values
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_arrive_byte_for_byte() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create topic");
        let dir = tempfile::tempdir().expect("temp dir");
        let content = b"GET / HTTP/1.1\r\n\n\xff\xfe not utf-8\n\nlast line without newline";
        let path = write_log(dir.path(), content);
        let bootstrap = cluster.bootstrap_servers();

        let summary = ship(&config(&bootstrap, &path, &[]), &CancellationToken::new())
            .await
            .expect("shipping succeeds");

        assert_eq!(summary.lines, 5);
        assert_eq!(summary.bytes, content.len() as u64 - 4);
        assert!(
            summary.to_string().starts_with("sent 5 lines ("),
            "{summary}"
        );
        let values = tokio::task::spawn_blocking(move || read_values(&bootstrap, TOPIC, 5))
            .await
            .expect("join reader");
        let expected: Vec<Option<Vec<u8>>> = vec![
            Some(b"GET / HTTP/1.1\r".to_vec()),
            Some(Vec::new()),
            Some(b"\xff\xfe not utf-8".to_vec()),
            Some(Vec::new()),
            Some(b"last line without newline".to_vec()),
        ];
        assert_eq!(values, expected);
    }

    #[tokio::test]
    async fn empty_file_sends_nothing() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create topic");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"");

        let config = config(&cluster.bootstrap_servers(), &path, &[]);
        let summary = ship(&config, &CancellationToken::new())
            .await
            .expect("ship");

        assert_eq!(summary.lines, 0);
        assert_eq!(summary.bytes, 0);
    }

    #[tokio::test]
    async fn missing_topic_is_reported() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"line\n");
        let bootstrap = cluster.bootstrap_servers();

        let error = ship(&config(&bootstrap, &path, &[]), &CancellationToken::new())
            .await
            .expect_err("topic does not exist");

        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("topic {TOPIC} does not exist")),
            "{message}"
        );
        assert!(message.contains(&bootstrap), "{message}");
        assert!(message.contains("make broker-up"), "{message}");
    }

    #[tokio::test]
    async fn unreachable_broker_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"line\n");
        // Port 1 is reserved (tcpmux) and has no listener here.
        let mut config = config("127.0.0.1:1", &path, &[]);
        config.metadata_timeout = Duration::from_secs(1);

        let error = ship(&config, &CancellationToken::new())
            .await
            .expect_err("no broker listens");

        let message = format!("{error:#}");
        assert!(message.contains("failed to fetch metadata"), "{message}");
        assert!(message.contains("127.0.0.1:1"), "{message}");
    }

    #[tokio::test]
    async fn missing_file_fails_before_kafka() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing.log");
        // Reaching Kafka would take the whole minute and name the metadata.
        let mut config = config("127.0.0.1:1", &path, &[]);
        config.metadata_timeout = Duration::from_secs(60);

        let started = Instant::now();
        let error = ship(&config, &CancellationToken::new())
            .await
            .expect_err("file is missing");

        let message = format!("{error:#}");
        assert!(message.starts_with("failed to open log file"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn oversized_line_names_line_and_topic() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create topic");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut content = b"short\n".to_vec();
        content.extend(std::iter::repeat_n(b'x', 5_000));
        content.extend(b"\nafter\n");
        let path = write_log(dir.path(), &content);
        // 1000 bytes is the lowest max message size librdkafka accepts.
        let config = config(
            &cluster.bootstrap_servers(),
            &path,
            &["--kafka-option", "message.max.bytes=1000"],
        );

        let error = ship(&config, &CancellationToken::new())
            .await
            .expect_err("line 2 is over the max message size");

        let message = format!("{error:#}");
        assert!(message.contains("line 2 of"), "{message}");
        assert!(message.contains(&format!("to topic {TOPIC}")), "{message}");
        assert!(message.contains("too large"), "{message}");
    }

    #[tokio::test]
    async fn topic_lookup_error_is_reported() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create topic");
        cluster
            .topic_error(
                TOPIC,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
            )
            .expect("inject topic error");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"one\n");
        let config = config(&cluster.bootstrap_servers(), &path, &[]);

        let error = ship(&config, &CancellationToken::new())
            .await
            .expect_err("the broker rejects the topic");

        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("failed to look up topic {TOPIC}")),
            "{message}"
        );
        assert!(message.contains("authorization failed"), "{message}");
    }

    #[tokio::test]
    async fn failed_delivery_names_first_line() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create topic");
        // Every produce request fails with an error that is not retried.
        let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 50];
        cluster.request_errors(RDKafkaApiKey::Produce, &errors);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"one\ntwo\nthree\n");
        let config = config(&cluster.bootstrap_servers(), &path, &[]);

        let error = ship(&config, &CancellationToken::new())
            .await
            .expect_err("every produce request fails");

        let message = format!("{error:#}");
        assert!(
            message.starts_with("failed to deliver line 1 of"),
            "{message}"
        );
        assert!(message.contains(&format!("to topic {TOPIC}")), "{message}");
    }

    #[tokio::test]
    async fn interruption_reports_lines_sent() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create topic");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"one\ntwo\n");
        let config = config(&cluster.bootstrap_servers(), &path, &[]);
        let shutdown = CancellationToken::new();
        shutdown.cancel();

        let error = ship(&config, &shutdown)
            .await
            .expect_err("interrupted at once");

        let message = format!("{error:#}");
        assert!(
            message.starts_with("interrupted after 0 lines"),
            "{message}"
        );
    }
}
