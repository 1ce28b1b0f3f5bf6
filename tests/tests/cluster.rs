//! The shipper against the cluster of `scripts/kafka-cluster.sh`: three
//! brokers, which the test kills with SIGKILL and starts again, and a
//! controller apart from them, which keeps running.
//!
//! Needs the `cluster-tests` feature and the brokers' addresses in
//! `KAFKA_CLUSTER_BOOTSTRAP`; `make cluster-test` sets both. The test
//! leaves every node running when it passes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::util::kafka::{create_topics_at, partition_leaders, unique_name};
use crate::util::{binary, repo_root, run, wait_until, ChildProcess};

/// Lines appended to the log in each phase: before any crash, with one
/// broker down, and with two brokers down.
const LINES_PER_PHASE: u64 = 1000;

/// Partitions of the test topic, so that the order is checked in each of
/// several partitions.
const PARTITIONS: i32 = 3;

/// Max time the lines of one phase may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(90);

/// Max time the controller may take to drop the two killed brokers from
/// the in-sync replicas. It fences a broker that has not sent a heartbeat
/// for `broker.session.timeout.ms`, 9 s by default.
const ISR_SHRINK_TIMEOUT: Duration = Duration::from_secs(60);

/// Time the test keeps two brokers down while the shipper has lines to
/// send.
const OUTAGE: Duration = Duration::from_secs(20);

/// librdkafka's delivery timeout for the shipper. librdkafka retries a
/// record until this timeout and then fails it, so it must outlast the
/// outage plus the restart of two brokers (about 60 s on a busy 2-core
/// machine). It also bounds how long a broken test waits for the shipper.
const MESSAGE_TIMEOUT_MS: &str = "180000";

/// librdkafka's delivery timeout for the probe record, short because the
/// probe is meant to fail. A broker that has handed out no producer id yet
/// answers the idempotent producer's first request with
/// COORDINATOR_LOAD_IN_PROGRESS while it fetches a block of ids from the
/// controller, which once took over 8 s here, so 10 s leaves room for
/// retries after that.
const PROBE_MESSAGE_TIMEOUT_MS: &str = "10000";

/// Text of librdkafka 2.12's debug line for a produce request that the
/// leader rejected with NOT_ENOUGH_REPLICAS and that librdkafka retries.
const NOT_ENOUGH_REPLICAS_RETRY: &str =
    "encountered error: Broker: Not enough in-sync replicas (actions Retry";

/// Addresses of the three brokers, from `KAFKA_CLUSTER_BOOTSTRAP`.
fn cluster_bootstrap() -> String {
    std::env::var("KAFKA_CLUSTER_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "KAFKA_CLUSTER_BOOTSTRAP is not set; run `make cluster-test`, or start the \
             cluster with `scripts/kafka-cluster.sh up` and set KAFKA_CLUSTER_BOOTSTRAP to the \
             output of `scripts/kafka-cluster.sh bootstrap`"
        )
    })
}

/// Runs `scripts/kafka-cluster.sh` with `args` and fails the test on error.
fn cluster_command(args: &[&str]) {
    let script = repo_root().join("scripts/kafka-cluster.sh");
    let output = run(Command::new(&script).args(args));
    assert!(
        output.status.success(),
        "{script:?} {args:?} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Appends the numbered lines `numbers` to the log file at `path`.
fn append_lines(path: &Path, numbers: std::ops::RangeInclusive<u64>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open test log");
    let mut text = String::new();
    for number in numbers {
        text.push_str(&format!(
            "127.0.0.1 - - [04/Dec/2026:17:08:12 +0000] \"GET /item/{number} HTTP/1.1\" 200 {number}\n"
        ));
    }
    file.write_all(text.as_bytes()).expect("append to test log");
}

/// Returns the line number that [`append_lines`] wrote into `value`.
fn line_number(value: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(value);
    text.rsplit(' ')
        .next()
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("record is not a numbered test line: {text:?}"))
}

/// A consumer without a group that reads every partition of a topic from
/// the beginning and, unlike `TopicReader`, keeps going through the errors
/// that a broker's crash causes.
struct ClusterReader {
    consumer: BaseConsumer,
    /// Line numbers read, by partition, in offset order.
    numbers: BTreeMap<i32, Vec<u64>>,
    /// Errors the consumer reported, kept for failure messages.
    errors: Vec<String>,
}

impl ClusterReader {
    fn new(bootstrap: &str, topic: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique_name("cluster-reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("create reader");
        let mut assignment = TopicPartitionList::new();
        for partition in partition_leaders(bootstrap, topic).keys() {
            assignment
                .add_partition_offset(topic, *partition, Offset::Beginning)
                .expect("add partition");
        }
        consumer.assign(&assignment).expect("assign partitions");
        Self {
            consumer,
            numbers: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    /// Returns the in-sync replicas of each partition of `topic`, by
    /// partition id, from the metadata the consumer fetches.
    fn in_sync_replicas(&self, topic: &str) -> BTreeMap<i32, Vec<i32>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|error| panic!("failed to fetch metadata of {topic}: {error}"));
        let partitions = metadata.topics()[0].partitions();
        partitions
            .iter()
            .map(|partition| (partition.id(), partition.isr().to_vec()))
            .collect()
    }

    fn count(&self) -> usize {
        self.numbers.values().map(Vec::len).sum()
    }

    /// Reads what is available within `wait`.
    fn poll_for(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let number = line_number(message.payload().unwrap_or_default());
                    self.numbers
                        .entry(message.partition())
                        .or_default()
                        .push(number);
                }
                Some(Err(error)) => self.errors.push(error.to_string()),
                None => {}
            }
        }
    }

    /// Reads until `count` lines arrived, failing the test after
    /// [`ARRIVAL_TIMEOUT`] or when the shipper exits.
    fn wait_for(&mut self, count: usize, shipper: &mut ChildProcess) {
        let arrived = wait_until(ARRIVAL_TIMEOUT, || {
            shipper.assert_running();
            self.poll_for(Duration::from_millis(200));
            self.count() >= count
        });
        assert!(
            arrived,
            "{} of {count} lines arrived within {ARRIVAL_TIMEOUT:?}; reader errors: {:?}\n\
             shipper:\n{}",
            self.count(),
            self.errors,
            shipper.stderr()
        );
    }
}

/// Returns the shipper following `log` into `topic` at `bootstrap`.
/// librdkafka's `msg` debug log goes to stderr, so that the test reads each
/// produce request the leader rejects and librdkafka retries.
fn shipper_command(bootstrap: &str, topic: &str, log: &Path, checkpoint: &Path) -> Command {
    let mut command = Command::new(binary("weblog-shipper"));
    command
        .env("RUST_LOG", "info,librdkafka=debug")
        .args(["--bootstrap-servers", bootstrap, "--topic", topic])
        .args(["--follow", "--poll-interval-ms", "50"])
        .args(["--oversize", "truncate"])
        .arg("--file")
        .arg(log)
        .arg("--checkpoint")
        .arg(checkpoint)
        .args(["--kafka-option", "debug=msg"])
        .args([
            "--kafka-option",
            &format!("message.timeout.ms={MESSAGE_TIMEOUT_MS}"),
        ]);
    command
}

/// Picks a broker other than `except` that is not the leader of `topic`'s
/// partition 0, so that the leader keeps running when it is killed.
fn follower(bootstrap: &str, topic: &str, except: i32) -> i32 {
    let leader = partition_leaders(bootstrap, topic)[&0];
    (1..=3)
        .find(|broker| *broker != except && *broker != leader)
        .unwrap_or_else(|| panic!("no follower besides broker {except} and leader {leader}"))
}

/// Waits until every partition of each of `topics` has `survivor` as its
/// only in-sync replica, which the controller sets once it has fenced the
/// two killed brokers.
fn wait_for_single_isr(reader: &ClusterReader, topics: &[&str], survivor: i32) {
    let mut last = BTreeMap::new();
    let shrunk = wait_until(ISR_SHRINK_TIMEOUT, || {
        last = topics
            .iter()
            .map(|topic| (topic.to_string(), reader.in_sync_replicas(topic)))
            .collect();
        let shrunk = last
            .values()
            .flat_map(BTreeMap::values)
            .all(|isr| isr[..] == [survivor]);
        if !shrunk {
            std::thread::sleep(Duration::from_millis(500));
        }
        shrunk
    });
    assert!(
        shrunk,
        "in-sync replicas still {last:?} after {ISR_SHRINK_TIMEOUT:?}, expected [{survivor}]"
    );
}

/// Client context of the probe producer: keeps librdkafka's debug lines
/// about failed produce requests and the delivery result of the record.
#[derive(Default)]
struct ProbeContext {
    request_errors: Mutex<Vec<String>>,
    delivery: Mutex<Option<Result<(), KafkaError>>>,
}

impl ClientContext for ProbeContext {
    fn log(&self, _level: RDKafkaLogLevel, _facility: &str, message: &str) {
        if message.contains("encountered error") {
            self.request_errors
                .lock()
                .expect("probe log lock")
                .push(message.to_string());
        }
    }
}

impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        let outcome = result
            .as_ref()
            .map(|_| ())
            .map_err(|(error, _)| error.clone());
        *self.delivery.lock().expect("probe delivery lock") = Some(outcome);
    }
}

/// Sends one record to partition 0 of `topic` with acks=all and
/// idempotence, as the shipper and the host do, and returns its delivery
/// result and librdkafka's debug lines about the produce requests that
/// failed on the way.
fn probe_produce(bootstrap: &str, topic: &str) -> (Result<(), KafkaError>, Vec<String>) {
    let producer: BaseProducer<ProbeContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", PROBE_MESSAGE_TIMEOUT_MS)
        .set("debug", "msg")
        // The default log level follows the `log` crate's, which no test
        // sets up, so librdkafka would drop its debug lines.
        .set_log_level(RDKafkaLogLevel::Debug)
        .create_with_context(ProbeContext::default())
        .expect("create probe producer");
    producer
        .send(
            BaseRecord::<(), str>::to(topic)
                .partition(0)
                .payload("probe"),
        )
        .unwrap_or_else(|(error, _)| panic!("failed to queue the probe record: {error}"));
    let delivered = wait_until(Duration::from_secs(60), || {
        producer.poll(Duration::from_millis(100));
        producer.context().delivery.lock().expect("lock").is_some()
    });
    assert!(delivered, "no delivery report for the probe record");
    let context = producer.context();
    let outcome = context.delivery.lock().expect("lock").take();
    let request_errors = std::mem::take(&mut *context.request_errors.lock().expect("lock"));
    (outcome.expect("checked above"), request_errors)
}

/// Returns, per partition of `topic`, the seconds between two retries
/// that `log` shows for NOT_ENOUGH_REPLICAS, from the shipper's log
/// timestamps, for the test's report.
fn retry_intervals(log: &str, topic: &str) -> BTreeMap<i32, Vec<f64>> {
    let mut times: BTreeMap<i32, Vec<f64>> = BTreeMap::new();
    let marker = format!("{topic} [");
    for line in log.lines() {
        if !line.contains(NOT_ENOUGH_REPLICAS_RETRY) {
            continue;
        }
        // A line starts with an RFC 3339 timestamp such as
        // 2026-12-04T20:37:56.413203Z, possibly inside colour codes.
        let seconds = line.split_once('T').and_then(|(_, rest)| {
            let clock = rest.split('Z').next()?;
            let mut fields = clock.split(':').map(str::parse::<f64>);
            let (hours, minutes, seconds) = (fields.next()?, fields.next()?, fields.next()?);
            Some(hours.ok()? * 3600.0 + minutes.ok()? * 60.0 + seconds.ok()?)
        });
        let partition = line
            .split_once(&marker)
            .and_then(|(_, rest)| rest.split(']').next()?.parse::<i32>().ok());
        if let (Some(seconds), Some(partition)) = (seconds, partition) {
            times.entry(partition).or_default().push(seconds);
        }
    }
    times
        .into_iter()
        .map(|(partition, times)| {
            let gaps = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
            (partition, gaps)
        })
        .collect()
}

/// With one of three brokers killed, the shipper's lines keep arriving.
/// With two killed, the leader rejects acks=all writes with
/// NOT_ENOUGH_REPLICAS because the topic has min.insync.replicas=2, and the
/// shipper retries with backoff instead of failing. Once the brokers are
/// back, every line arrives exactly once and each partition contains its
/// lines in file order.
#[test]
fn shipper_survives_two_broker_crashes() {
    let bootstrap = cluster_bootstrap();
    let topic = unique_name("cluster-raw");
    let probe_topic = unique_name("cluster-probe");
    let settings = [("min.insync.replicas", "2")];
    create_topics_at(&bootstrap, &[&topic], PARTITIONS, 3, &settings);
    create_topics_at(&bootstrap, &[&probe_topic], 1, 3, &settings);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    let checkpoint = dir.path().join("checkpoint.json");
    append_lines(&log, 1..=LINES_PER_PHASE);

    let mut shipper = ChildProcess::spawn(
        "shipper",
        shipper_command(&bootstrap, &topic, &log, &checkpoint),
        dir.path(),
    );
    let mut reader = ClusterReader::new(&bootstrap, &topic);
    reader.wait_for(LINES_PER_PHASE as usize, &mut shipper);

    // The first victim leads partition 0, so that a new leader has to take
    // over.
    let first = partition_leaders(&bootstrap, &topic)[&0];
    cluster_command(&["kill", &first.to_string()]);
    append_lines(&log, LINES_PER_PHASE + 1..=2 * LINES_PER_PHASE);
    reader.wait_for(2 * LINES_PER_PHASE as usize, &mut shipper);

    let second = follower(&bootstrap, &topic, first);
    let survivor = (1..=3)
        .find(|broker| *broker != first && *broker != second)
        .expect("three brokers");
    cluster_command(&["kill", &second.to_string()]);
    let outage_start = Instant::now();
    wait_for_single_isr(&reader, &[&topic, &probe_topic], survivor);
    let isr_shrink = outage_start.elapsed();

    // With idempotence, librdkafka 2.12 treats NOT_ENOUGH_REPLICAS as
    // retriable: it sends the request again, backing off from
    // retry.backoff.ms (100 ms) to retry.backoff.max.ms (1 s), until
    // message.timeout.ms runs out. The delivery report then carries
    // MessageTimedOut, and only the debug log names the broker's error.
    let (probe, request_errors) = probe_produce(&bootstrap, &probe_topic);
    let probe_error = probe.expect_err("probe record delivered with one in-sync replica");
    assert_eq!(
        probe_error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageTimedOut),
        "probe delivery error: {probe_error}"
    );
    assert!(
        request_errors.len() >= 2,
        "probe produce requests failed {} times, expected a retry: {request_errors:?}",
        request_errors.len()
    );
    for line in &request_errors {
        assert!(
            line.contains(NOT_ENOUGH_REPLICAS_RETRY),
            "probe request failed with another error: {line}"
        );
    }

    let stderr_before_lines = shipper.stderr().len();
    append_lines(&log, 2 * LINES_PER_PHASE + 1..=3 * LINES_PER_PHASE);
    let outage_end = Instant::now() + OUTAGE;
    while Instant::now() < outage_end {
        shipper.assert_running();
        reader.poll_for(Duration::from_millis(500));
    }
    assert_eq!(
        reader.count(),
        2 * LINES_PER_PHASE as usize,
        "lines became readable while only one of three replicas ran"
    );
    let outage_log = shipper.stderr()[stderr_before_lines..].to_string();
    let shipper_retries = outage_log.matches(NOT_ENOUGH_REPLICAS_RETRY).count();
    assert!(
        shipper_retries >= 2,
        "the shipper logged {shipper_retries} NOT_ENOUGH_REPLICAS retries with two brokers \
         down; its log:\n{outage_log}"
    );

    cluster_command(&["start", &second.to_string()]);
    cluster_command(&["start", &first.to_string()]);
    reader.wait_for(3 * LINES_PER_PHASE as usize, &mut shipper);
    let outage = outage_start.elapsed();
    for (partition, gaps) in retry_intervals(&outage_log, &topic) {
        let gaps: Vec<String> = gaps.iter().map(|gap| format!("{gap:.2}")).collect();
        eprintln!(
            "partition {partition}: seconds between NOT_ENOUGH_REPLICAS retries: {}",
            gaps.join(" ")
        );
    }
    eprintln!(
        "two brokers down for {outage:?}: in-sync replicas shrank to [{survivor}] after \
         {isr_shrink:?}, the probe failed with {probe_error} after {} NOT_ENOUGH_REPLICAS \
         retries, and the shipper retried {shipper_retries} produce requests on \
         NOT_ENOUGH_REPLICAS before the brokers returned",
        request_errors.len()
    );

    let (status, stdout) = shipper.terminate(Duration::from_secs(60));
    assert!(
        status.success(),
        "shipper exit: {status}\n{}",
        shipper.stderr()
    );
    let summary = format!("sent {} lines", 3 * LINES_PER_PHASE);
    assert!(stdout.starts_with(&summary), "shipper output: {stdout}");

    reader.poll_for(Duration::from_secs(2));
    for (partition, numbers) in &reader.numbers {
        assert!(
            numbers.windows(2).all(|pair| pair[0] < pair[1]),
            "partition {partition} holds lines out of file order: {numbers:?}"
        );
    }
    let mut all: Vec<u64> = reader.numbers.values().flatten().copied().collect();
    all.sort_unstable();
    let expected: Vec<u64> = (1..=3 * LINES_PER_PHASE).collect();
    assert_eq!(all, expected, "the topic does not hold every line once");
}
