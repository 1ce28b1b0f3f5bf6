//! Shipping a log file to Kafka: the checkpoint and topic checks at start,
//! the run, and what it reports at the end.
//!
//! A one-shot run succeeds only when Kafka has acknowledged every line. A
//! follow run has no end of its own: SIGINT or SIGTERM stops reading, and
//! the run succeeds once the lines in flight are acknowledged. Either way
//! the first failed delivery stops reading, but the records already in
//! flight are still awaited, so that the error can name the first line
//! that failed, and the checkpoint is written last, with every line
//! acknowledged by then.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, Producer};
use tokio_util::sync::CancellationToken;
use weblog_common::admin::{health, AdminServer};
use weblog_common::LoggingContext;

use crate::checkpoint::{Checkpoint, CheckpointLock};
use crate::config::Config;
use crate::follow::Follower;
use crate::oversize::OversizePolicy;
use crate::progress::Progress;
use crate::resume::plan_start;
use crate::shipment::{store_checkpoint, Shipment, Stop};

/// Counts of one successful run.
#[derive(Debug)]
pub(crate) struct ShipSummary {
    /// Lines that Kafka acknowledged in the raw topic, whole or truncated.
    pub(crate) lines: u64,
    /// Bytes of those records' values.
    pub(crate) bytes: u64,
    /// Topic that received them.
    pub(crate) topic: String,
    /// Lines among `lines` that were truncated for their size.
    pub(crate) truncated: u64,
    /// Lines dead-lettered for their size.
    pub(crate) dead_lettered: u64,
    /// Topic that received the dead letters.
    pub(crate) dlq_topic: String,
    /// Time from the first send to the last acknowledgement.
    pub(crate) elapsed: Duration,
    /// Bytes of a last line without `\n` that were left for the next run.
    pub(crate) unterminated_bytes: u64,
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
        )?;
        if self.truncated > 0 {
            write!(f, ", {} of them truncated for their size", self.truncated)?;
        }
        if self.dead_lettered > 0 {
            write!(
                f,
                "; dead-lettered {} lines too large for Kafka to {}",
                self.dead_lettered, self.dlq_topic
            )?;
        }
        if self.unterminated_bytes > 0 {
            write!(
                f,
                "; left {} bytes of an unterminated last line for the next run",
                self.unterminated_bytes
            )?;
        }
        Ok(())
    }
}

/// Ships the configured file to the configured topic: once to its end, or
/// following it until `shutdown` is cancelled.
///
/// Fails before connecting to Kafka when another shipper holds the lock on
/// the checkpoint, when the checkpoint cannot be read or written, or when
/// the file cannot be opened, unless it is followed, in which case the run
/// waits for it. Fails before sending when a topic does not exist. In
/// one-shot mode, a cancelled `shutdown` stops reading and fails with the
/// count that was sent, after the records in flight are acknowledged. A
/// one-shot run with a checkpoint and without --final leaves a last line
/// without `\n` unsent and reports its bytes in the summary.
pub(crate) async fn ship(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<ShipSummary> {
    let log_file = std::path::absolute(&config.file)
        .with_context(|| format!("failed to resolve log file path {:?}", config.file))?;
    // The lock is held until the run ends, so that no other shipper ships
    // from the same checkpoint meanwhile.
    let _lock = match &config.checkpoint {
        Some(path) => Some(CheckpointLock::acquire(path)?),
        None => None,
    };
    let saved = match &config.checkpoint {
        Some(path) => Checkpoint::load(path, &log_file)?,
        None => None,
    };
    let starts = plan_start(&config.file, saved.as_ref(), config.follow)?;
    let resumed = starts.iter().filter_map(|start| start.resumed.clone());
    let progress = Progress::new(&log_file, resumed.collect());
    if let Some(path) = &config.checkpoint {
        // Writing the checkpoint now finds an unwritable path before any
        // line is sent.
        store_checkpoint(path.clone(), progress.checkpoint()).await?;
    }

    let metrics = crate::metrics::install()?;
    if let Some(addr) = config.admin_addr {
        AdminServer::new(Some(metrics))
            .serve(addr, shutdown.child_token())
            .await?;
    }
    let producer: FutureProducer<LoggingContext> = config
        .producer
        .create_with_context(LoggingContext::with_stats("producer"))
        .with_context(|| format!("failed to create producer for {}", config.bootstrap_servers))?;
    check_topic(&producer, config, &config.topic).await?;
    if config.oversize == OversizePolicy::DeadLetter {
        check_topic(&producer, config, &config.dlq_topic).await?;
    }
    tracing::info!(
        path = ?config.file,
        topic = %config.topic,
        follow = config.follow,
        checkpoint = ?config.checkpoint,
        "shipping log file"
    );

    let follower = Follower::new(&config.file, config.follow, config.max_line_bytes, starts)
        .leave_partial_line(config.leave_partial_line());
    let mut events = follower.spawn(config.poll_interval)?;
    let started = Instant::now();
    let mut shipment = Shipment::new(producer, config, progress);
    health().set_running(true);
    let stop = shipment.send_lines(&mut events, shutdown).await;
    health().set_running(false);
    // Dropping the receiver ends the reader thread.
    drop(events);
    shipment.settle_all().await;
    let elapsed = started.elapsed();
    let stored = shipment.write_checkpoint().await;

    if let Some(failure) = &shipment.first_failure {
        if let Err(error) = &stored {
            tracing::error!(error = %format!("{error:#}"), "failed to write the final checkpoint");
        }
        let line = &failure.line;
        bail!(
            "failed to deliver line {} of {:?} (offset {}) to topic {}: {}",
            line.number,
            line.path,
            line.offset,
            failure.topic,
            failure.error
        );
    }
    stored?;
    let counts = &shipment.counts;
    let mut unterminated_bytes = 0;
    match stop {
        Stop::EndOfFile {
            unterminated_bytes: 0,
        } => {}
        Stop::EndOfFile {
            unterminated_bytes: left,
        } => {
            unterminated_bytes = left;
            tracing::info!(
                path = ?config.file,
                unterminated_bytes,
                "left {unterminated_bytes} bytes of an unterminated last line for the next run; \
                 pass --final to send them now"
            );
        }
        Stop::Interrupted if config.follow => {
            tracing::info!(
                lines = counts.lines,
                dead_lettered = counts.dead_lettered,
                "stopped following the log file; every line read is acknowledged"
            );
        }
        Stop::ReadFailed(error) => {
            let sent = counts.lines;
            return Err(error.context(format!(
                "stopped after {sent} lines were sent to topic {}",
                config.topic
            )));
        }
        Stop::Interrupted => bail!(
            "interrupted after {} lines ({} bytes) were sent to topic {}, so the rest of {:?} \
             was not shipped",
            counts.lines,
            counts.bytes,
            config.topic,
            config.file
        ),
        Stop::SendFailed => unreachable!("a failed send always sets first_failure, checked above"),
    }
    Ok(ShipSummary {
        lines: counts.lines,
        bytes: counts.bytes,
        topic: config.topic.clone(),
        truncated: counts.truncated,
        dead_lettered: counts.dead_lettered,
        dlq_topic: config.dlq_topic.clone(),
        elapsed,
        unterminated_bytes,
    })
}

/// Fails unless the broker at the configured address describes `topic`
/// within the metadata timeout.
async fn check_topic(
    producer: &FutureProducer<LoggingContext>,
    config: &Config,
    topic: &str,
) -> anyhow::Result<()> {
    let client = producer.clone();
    let name = topic.to_string();
    let timeout = config.metadata_timeout;
    // fetch_metadata blocks the calling thread until the broker replies.
    let metadata =
        tokio::task::spawn_blocking(move || client.client().fetch_metadata(Some(&name), timeout))
            .await
            .context("failed to join the metadata request task")?;

    let servers = &config.bootstrap_servers;
    let metadata = metadata.map_err(|error| {
        anyhow!(
            "failed to fetch metadata for topic {topic} from Kafka at {servers} within {} s: \
             {error}; check that the broker is running (`make broker-up` starts the local one) \
             and that --bootstrap-servers is right",
            timeout.as_secs_f64()
        )
    })?;
    let flag = if topic == config.topic {
        "--topic"
    } else {
        "--dlq-topic"
    };
    let missing = || {
        anyhow!(
            "topic {topic} does not exist on Kafka at {servers}; create it \
             (`make broker-up` creates the weblog topics) or pass another {flag}"
        )
    };
    let described = metadata
        .topics()
        .iter()
        .find(|described| described.name() == topic)
        .ok_or_else(missing)?;
    match described.error().map(RDKafkaErrorCode::from) {
        None if described.partitions().is_empty() => Err(missing()),
        None => Ok(()),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Err(missing()),
        Some(code) => Err(anyhow!(
            "failed to look up topic {topic} on Kafka at {servers}: {code}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    use super::*;
    use crate::config::Cli;

    const TOPIC: &str = "raw-test";
    const DLQ: &str = "dlq-test";

    /// Builds a config the way `main` does, from flags.
    fn config(bootstrap: &str, file: &Path, extra: &[&str]) -> Config {
        let file = file.to_str().expect("temp paths are UTF-8");
        let mut args = vec![
            "weblog-shipper",
            "--file",
            file,
            "--topic",
            TOPIC,
            "--dlq-topic",
            DLQ,
            "--bootstrap-servers",
            bootstrap,
        ];
        args.extend_from_slice(extra);
        let cli = Cli::try_parse_from(args).expect("test flags are valid");
        Config::try_from(cli).expect("test config is valid")
    }

    /// Starts a mock cluster with the raw and dead-letter topics.
    fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create raw topic");
        cluster
            .create_topic(DLQ, 1, 1)
            .expect("create dead-letter topic");
        cluster
    }

    fn write_log(dir: &Path, content: &[u8]) -> std::path::PathBuf {
        let path = dir.join("access.log");
        std::fs::write(&path, content).expect("write temp log");
        path
    }

    /// One record read back: value and headers.
    type Record = (Vec<u8>, Vec<(String, String)>);

    /// Reads every record value in partition 0 of `topic`, in order, once
    /// `count` records are there.
    fn read_values(bootstrap: &str, topic: &str, count: usize) -> Vec<Option<Vec<u8>>> {
        read_records(bootstrap, topic, count)
            .into_iter()
            .map(|(value, _)| Some(value))
            .collect()
    }

    /// Reads every record in partition 0 of `topic`, in order, once `count`
    /// records are there, and checks that there are no more.
    fn read_records(bootstrap: &str, topic: &str, count: usize) -> Vec<Record> {
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
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|header| {
                                let value = header.value.unwrap_or_default();
                                let value = String::from_utf8_lossy(value).into_owned();
                                (header.key.to_string(), value)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let value = message.payload().unwrap_or_default().to_vec();
                values.push((value, headers));
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
        let cluster = cluster();
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
        let cluster = cluster();
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
    async fn missing_dlq_topic_is_reported() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create raw topic");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"line\n");

        let config = config(&cluster.bootstrap_servers(), &path, &[]);
        let error = ship(&config, &CancellationToken::new())
            .await
            .expect_err("dead-letter topic does not exist");

        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("topic {DLQ} does not exist")),
            "{message}"
        );
        assert!(message.contains("--dlq-topic"), "{message}");
    }

    #[tokio::test]
    async fn missing_dlq_topic_is_fine_when_truncating() {
        let cluster = MockCluster::new(1).expect("start mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("create raw topic");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"line\n");

        let config = config(
            &cluster.bootstrap_servers(),
            &path,
            &["--oversize", "truncate"],
        );
        let summary = ship(&config, &CancellationToken::new())
            .await
            .expect("no dead-letter topic needed");
        assert_eq!(summary.lines, 1);
    }

    /// A one-shot run over a log with a long line between two short ones.
    struct LongLineRun {
        _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        bootstrap: String,
        summary: ShipSummary,
    }

    impl LongLineRun {
        /// Ships "short", a line of `length` letters and "after" with
        /// librdkafka's smallest message.max.bytes, 1000, and `extra` flags.
        async fn ship(length: usize, extra: &[&str]) -> Self {
            let cluster = cluster();
            let dir = tempfile::tempdir().expect("temp dir");
            let mut content = b"short\n".to_vec();
            content.extend((0..length).map(|index| b'a' + (index % 26) as u8));
            content.extend(b"\nafter\n");
            let path = write_log(dir.path(), &content);
            let bootstrap = cluster.bootstrap_servers();
            let mut flags = vec!["--kafka-option", "message.max.bytes=1000"];
            flags.extend_from_slice(extra);
            let config = config(&bootstrap, &path, &flags);

            let summary = ship(&config, &CancellationToken::new())
                .await
                .expect("a long line does not fail the run");
            Self {
                _cluster: cluster,
                _dir: dir,
                path,
                bootstrap,
                summary,
            }
        }

        /// Reads `count` records of `topic`.
        async fn records(&self, topic: &'static str, count: usize) -> Vec<Record> {
            let bootstrap = self.bootstrap.clone();
            tokio::task::spawn_blocking(move || read_records(&bootstrap, topic, count))
                .await
                .expect("join reader")
        }
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("header {name} missing in {headers:?}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn line_over_max_is_dead_lettered() {
        let run = LongLineRun::ship(5_000, &["--oversize-keep-bytes", "10"]).await;

        assert_eq!(run.summary.lines, 2);
        assert_eq!(run.summary.dead_lettered, 1);
        let summary = run.summary.to_string();
        assert!(summary.contains("dead-lettered 1 lines"), "{summary}");
        let raw: Vec<Vec<u8>> = run
            .records(TOPIC, 2)
            .await
            .into_iter()
            .map(|(value, _)| value)
            .collect();
        assert_eq!(raw, vec![b"short".to_vec(), b"after".to_vec()]);
        let dead = run.records(DLQ, 1).await;
        let (value, headers) = &dead[0];
        assert_eq!(value, b"abcdefghij");
        assert_eq!(header(headers, "weblog.error.kind"), "line-too-long");
        assert_eq!(header(headers, "weblog.source.offset"), "6");
        assert_eq!(header(headers, "weblog.line.length"), "5000");
        assert_eq!(
            header(headers, "weblog.source.file"),
            run.path.to_str().expect("UTF-8 path")
        );
        let reason = header(headers, "weblog.error.reason");
        assert!(reason.contains("longer than message.max.bytes"), "{reason}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn librdkafka_size_check_dead_letters() {
        // Short enough to be read whole, too long with the record overhead.
        let run = LongLineRun::ship(995, &["--oversize-keep-bytes", "3"]).await;

        assert_eq!(run.summary.lines, 2);
        assert_eq!(run.summary.dead_lettered, 1);
        let dead = run.records(DLQ, 1).await;
        let (value, headers) = &dead[0];
        assert_eq!(value, b"abc");
        assert_eq!(header(headers, "weblog.line.length"), "995");
        let reason = header(headers, "weblog.error.reason");
        assert!(reason.contains("by librdkafka"), "{reason}");
        assert!(reason.contains("too large"), "{reason}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn truncate_policy_marks_line() {
        let extra = ["--oversize", "truncate", "--oversize-keep-bytes", "4"];
        let run = LongLineRun::ship(5_000, &extra).await;

        assert_eq!(run.summary.lines, 3);
        assert_eq!(run.summary.truncated, 1);
        assert_eq!(run.summary.dead_lettered, 0);
        let records = run.records(TOPIC, 3).await;
        let values: Vec<&[u8]> = records.iter().map(|(value, _)| value.as_slice()).collect();
        assert_eq!(
            values,
            vec![
                &b"short"[..],
                b"abcd [weblog: line truncated from 5000 bytes]",
                b"after"
            ]
        );
        assert_eq!(header(&records[1].1, "weblog.line.length"), "5000");
        assert!(records[0].1.is_empty());
    }

    #[tokio::test]
    async fn checkpoint_resumes_after_last_line() {
        let cluster = cluster();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"one\ntwo\n");
        let checkpoint = dir.path().join("shipper.checkpoint");
        let checkpoint_arg = checkpoint.to_str().expect("UTF-8 path");
        let config = config(
            &cluster.bootstrap_servers(),
            &path,
            &["--checkpoint", checkpoint_arg],
        );

        let first = ship(&config, &CancellationToken::new())
            .await
            .expect("first run");
        assert_eq!(first.lines, 2);

        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open log");
        std::io::Write::write_all(&mut log, b"three\n").expect("append");
        let second = ship(&config, &CancellationToken::new())
            .await
            .expect("second run");
        assert_eq!(second.lines, 1);

        let log_file = std::path::absolute(&path).expect("absolute path");
        let saved = Checkpoint::load(&checkpoint, &log_file)
            .expect("load checkpoint")
            .expect("checkpoint exists");
        assert_eq!(saved.files.len(), 1);
        assert_eq!(saved.files[0].offset, 14);
        assert_eq!(saved.files[0].unacknowledged_lines, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoint_leaves_partial_line() {
        let cluster = cluster();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"one\npartial");
        let checkpoint = dir.path().join("shipper.checkpoint");
        let checkpoint_arg = checkpoint.to_str().expect("UTF-8 path");
        let bootstrap = cluster.bootstrap_servers();
        let config = config(&bootstrap, &path, &["--checkpoint", checkpoint_arg]);

        let first = ship(&config, &CancellationToken::new())
            .await
            .expect("first run");
        assert_eq!(first.lines, 1);
        assert_eq!(first.unterminated_bytes, 7);
        let shown = first.to_string();
        assert!(
            shown.contains("left 7 bytes of an unterminated last line"),
            "{shown}"
        );
        let log_file = std::path::absolute(&path).expect("absolute path");
        let saved = Checkpoint::load(&checkpoint, &log_file)
            .expect("load checkpoint")
            .expect("checkpoint exists");
        assert_eq!(saved.files[0].offset, 4);

        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open log");
        std::io::Write::write_all(&mut log, b" line\n").expect("append");
        let second = ship(&config, &CancellationToken::new())
            .await
            .expect("second run");
        assert_eq!(second.lines, 1);
        assert_eq!(second.unterminated_bytes, 0);
        let values = tokio::task::spawn_blocking(move || read_values(&bootstrap, TOPIC, 2))
            .await
            .expect("join reader");
        assert_eq!(
            values,
            vec![Some(b"one".to_vec()), Some(b"partial line".to_vec())]
        );
    }

    #[tokio::test]
    async fn final_run_sends_partial_line() {
        let cluster = cluster();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"one\nlast");
        let checkpoint = dir.path().join("shipper.checkpoint");
        let checkpoint_arg = checkpoint.to_str().expect("UTF-8 path");
        let extra = ["--checkpoint", checkpoint_arg, "--final"];
        let config = config(&cluster.bootstrap_servers(), &path, &extra);

        let summary = ship(&config, &CancellationToken::new())
            .await
            .expect("final run");
        assert_eq!(summary.lines, 2);
        assert_eq!(summary.unterminated_bytes, 0);
        let log_file = std::path::absolute(&path).expect("absolute path");
        let saved = Checkpoint::load(&checkpoint, &log_file)
            .expect("load checkpoint")
            .expect("checkpoint exists");
        assert_eq!(saved.files[0].offset, 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follow_stops_cleanly_on_shutdown() {
        let cluster = cluster();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_log(dir.path(), b"one\ntw");
        let checkpoint = dir.path().join("shipper.checkpoint");
        let bootstrap = cluster.bootstrap_servers();
        let extra = [
            "--follow",
            "--checkpoint",
            checkpoint.to_str().expect("UTF-8 path"),
            "--poll-interval-ms",
            "20",
        ];
        let config = config(&bootstrap, &path, &extra);
        let shutdown = CancellationToken::new();

        let run = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { ship(&config, &shutdown).await })
        };
        let reader_bootstrap = bootstrap.clone();
        let first = tokio::task::spawn_blocking(move || read_values(&reader_bootstrap, TOPIC, 1))
            .await
            .expect("join reader");
        assert_eq!(first, vec![Some(b"one".to_vec())]);
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open log");
        std::io::Write::write_all(&mut log, b"o\n").expect("append");
        let both = tokio::task::spawn_blocking(move || read_values(&bootstrap, TOPIC, 2))
            .await
            .expect("join reader");
        shutdown.cancel();
        let summary = run.await.expect("join ship").expect("clean stop");

        assert_eq!(both, vec![Some(b"one".to_vec()), Some(b"two".to_vec())]);
        assert_eq!(summary.lines, 2);
        let log_file = std::path::absolute(&path).expect("absolute path");
        let saved = Checkpoint::load(&checkpoint, &log_file)
            .expect("load checkpoint")
            .expect("checkpoint exists");
        assert_eq!(saved.files[0].offset, 8);
    }

    #[tokio::test]
    async fn topic_lookup_error_is_reported() {
        let cluster = cluster();
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
        let cluster = cluster();
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
        let cluster = cluster();
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
