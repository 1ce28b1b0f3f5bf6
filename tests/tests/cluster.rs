//! The shipper against the 3-node cluster of `scripts/kafka-cluster.sh`,
//! whose nodes the test kills with SIGKILL and starts again.
//!
//! Needs the `cluster-tests` feature and the cluster's addresses in
//! `KAFKA_CLUSTER_BOOTSTRAP`; `make cluster-test` sets both. The test
//! leaves every node running when it passes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::util::kafka::{create_replicated_topics, partition_leaders, unique_name};
use crate::util::{binary, repo_root, run, wait_until, ChildProcess};

/// Lines appended to the log in each phase: before any crash, with one
/// node down, and with two nodes down.
const LINES_PER_PHASE: u64 = 1000;

/// Max time the lines of one phase may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(90);

/// Time the test keeps two nodes down while the shipper has lines to send.
const OUTAGE: Duration = Duration::from_secs(20);

/// librdkafka's delivery timeout for the shipper. librdkafka retries a
/// record until this timeout and then fails it, so it must outlast the
/// outage plus the restart of two nodes (about 60 s on a busy 2-core
/// machine). It also bounds how long a broken test waits for the shipper.
const MESSAGE_TIMEOUT_MS: &str = "180000";

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
/// that a node's crash causes.
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

/// Returns the shipper following `log` into `topic` at `bootstrap`, with
/// librdkafka's notices of lost and refused connections on stderr.
fn shipper_command(bootstrap: &str, topic: &str, log: &Path, checkpoint: &Path) -> Command {
    let mut command = Command::new(binary("weblog-shipper"));
    command
        .env("RUST_LOG", "info")
        .args(["--bootstrap-servers", bootstrap, "--topic", topic])
        .args(["--follow", "--poll-interval-ms", "50"])
        .args(["--oversize", "truncate"])
        .arg("--file")
        .arg(log)
        .arg("--checkpoint")
        .arg(checkpoint)
        .args([
            "--kafka-option",
            &format!("message.timeout.ms={MESSAGE_TIMEOUT_MS}"),
        ]);
    command
}

/// Picks a node other than `except` that is not the leader of `topic`'s
/// partition 0, so that the leader keeps running when it is killed.
fn follower(bootstrap: &str, topic: &str, except: i32) -> i32 {
    let leader = partition_leaders(bootstrap, topic)[&0];
    (1..=3)
        .find(|node| *node != except && *node != leader)
        .unwrap_or_else(|| panic!("no follower besides node {except} and leader {leader}"))
}

/// With one of three nodes killed, the shipper's lines keep arriving. With
/// two killed, a topic at min.insync.replicas=2 accepts no write, and the
/// shipper keeps retrying instead of failing. Once the nodes are back,
/// every line arrives exactly once and in file order.
#[test]
fn shipper_survives_two_node_crashes() {
    let bootstrap = cluster_bootstrap();
    let topic = unique_name("cluster-raw");
    create_replicated_topics(&bootstrap, &[&topic], 1, 3, &[("min.insync.replicas", "2")]);
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

    // The first victim is the partition's leader, so that a new leader
    // has to take over.
    let first = partition_leaders(&bootstrap, &topic)[&0];
    cluster_command(&["kill", &first.to_string()]);
    append_lines(&log, LINES_PER_PHASE + 1..=2 * LINES_PER_PHASE);
    reader.wait_for(2 * LINES_PER_PHASE as usize, &mut shipper);
    let stderr_before_outage = shipper.stderr().len();

    let second = follower(&bootstrap, &topic, first);
    cluster_command(&["kill", &second.to_string()]);
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
    // NOTE: the shipper logs no NOT_ENOUGH_REPLICAS here. Two of three
    // nodes down also leave the KRaft controller quorum without a
    // majority, so the ISR cannot shrink below two. The leader appends the
    // batch and waits for the dead follower up to request.timeout.ms, and
    // librdkafka retries without reporting an error. Only librdkafka's
    // notices of lost connections show, so they are printed, not checked.
    let outage_log = shipper.stderr()[stderr_before_outage..].to_string();
    eprintln!("shipper log during the outage:\n{outage_log}");

    cluster_command(&["start", &second.to_string()]);
    cluster_command(&["start", &first.to_string()]);
    reader.wait_for(3 * LINES_PER_PHASE as usize, &mut shipper);

    let (status, stdout) = shipper.terminate(Duration::from_secs(60));
    assert!(
        status.success(),
        "shipper exit: {status}\n{}",
        shipper.stderr()
    );
    let summary = format!("sent {} lines", 3 * LINES_PER_PHASE);
    assert!(stdout.starts_with(&summary), "shipper output: {stdout}");

    reader.poll_for(Duration::from_secs(2));
    let expected: Vec<u64> = (1..=3 * LINES_PER_PHASE).collect();
    assert_eq!(reader.numbers.len(), 1, "partitions with records");
    assert_eq!(
        reader.numbers[&0], expected,
        "partition 0 does not hold every line once, in file order"
    );
}
