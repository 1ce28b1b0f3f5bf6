//! The pipeline (shipper, host and sink) against the cluster of
//! `scripts/kafka-cluster.sh`: three brokers, which the test kills with
//! SIGKILL and starts again, and a controller apart from them, which keeps
//! running.
//!
//! Needs the `cluster-tests` feature and the brokers' addresses in
//! `KAFKA_CLUSTER_BOOTSTRAP`; `make cluster-test` sets both. The test
//! leaves every node running when it passes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::util::kafka::{
    committed_and_end_at, create_topics_at, fully_committed_at, partition_leaders, read_to_end_at,
    unique_name, Received, TestTopics,
};
use crate::util::{
    binary, default_plugin, repo_root, run, sink_output_lines, wait_until, ChildProcess,
};

/// Lines appended to the log in each of the four phases: before any
/// crash, with one broker down, with one broker down while the host is
/// stopped, and with two brokers down.
const LINES_PER_PHASE: u64 = 1000;

/// Every line whose number is a multiple of this is not an access-log
/// line, so that the default plugin rejects it and the host sends it to
/// the dead-letter topic: 20 dead letters per phase.
const MALFORMED_EVERY: u64 = 50;

/// Start of the reason that the default plugin gives for a malformed line.
const MALFORMED_REASON: &str = "missing timestamp";

/// Raw records with more than one output that the report names.
const MAX_REPORTED_DUPLICATES: usize = 20;

/// Partitions of each test topic, so that the order is checked in each of
/// several partitions.
const PARTITIONS: i32 = 3;

/// Max time the lines of one phase, or their outputs, may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(90);

/// Max time the host may take to commit the last raw offsets once every
/// output arrived.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Max time the controller may take to drop the two killed brokers from
/// the in-sync replicas. It fences a broker that has not sent a heartbeat
/// for `broker.session.timeout.ms`, 9 s by default.
const ISR_SHRINK_TIMEOUT: Duration = Duration::from_secs(60);

/// Time the test keeps two brokers down while the shipper has lines to
/// send.
const OUTAGE: Duration = Duration::from_secs(20);

/// librdkafka's delivery timeout for the shipper and the host. librdkafka
/// retries a record until this timeout and then fails it, so it must
/// outlast the outage plus the restart of two brokers (about 60 s on a busy
/// 2-core machine). It also bounds how long a broken test waits for them.
const MESSAGE_TIMEOUT_MS: &str = "180000";

/// The host's consumer session timeout, 45 s by default. The test stops
/// the host for about 15 s, most of it spent waiting for the in-sync
/// replicas to shrink, and the group coordinator can move to another
/// broker meanwhile. A session that expired would need a rebalance, which
/// cannot complete while `__consumer_offsets` rejects writes too, and the
/// host would then sit out the outage without producing.
const HOST_SESSION_TIMEOUT_MS: &str = "90000";

/// librdkafka's delivery timeout for the probe record, short because the
/// probe is meant to fail. A broker that has handed out no producer id yet
/// replies to the idempotent producer's first request with
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

/// Returns whether line `number` is one that the plugin rejects.
fn is_malformed(number: u64) -> bool {
    number.is_multiple_of(MALFORMED_EVERY)
}

/// Appends the numbered lines of `phase` (1 to 4) to the log file at
/// `path`, and returns how many lines the log then contains.
fn append_phase(path: &Path, phase: u64) -> usize {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open test log");
    let mut text = String::new();
    for number in (phase - 1) * LINES_PER_PHASE + 1..=phase * LINES_PER_PHASE {
        if is_malformed(number) {
            text.push_str(&format!("not an access log line {number}\n"));
        } else {
            text.push_str(&format!(
                "127.0.0.1 - - [04/Dec/2026:17:08:12 +0000] \"GET /item/{number} HTTP/1.1\" 200 \
                 {number}\n"
            ));
        }
    }
    file.write_all(text.as_bytes()).expect("append to test log");
    (phase * LINES_PER_PHASE) as usize
}

/// Returns how many of the first `lines` lines the plugin enriches.
fn enriched_lines(lines: usize) -> usize {
    lines - lines / MALFORMED_EVERY as usize
}

/// Reads the sink's output file at `output` until it has `count` lines,
/// failing the test after [`ARRIVAL_TIMEOUT`] or when one of `processes`
/// exits, and returns the lines.
fn wait_for_sink_lines(
    output: &Path,
    count: usize,
    processes: &mut [&mut ChildProcess],
) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let arrived = wait_until(ARRIVAL_TIMEOUT, || {
        for process in processes.iter_mut() {
            process.assert_running();
        }
        lines = sink_output_lines(output);
        lines.len() >= count
    });
    assert!(
        arrived,
        "the sink wrote {} of {count} lines within {ARRIVAL_TIMEOUT:?}",
        lines.len()
    );
    lines
}

/// Returns the line number that [`append_phase`] wrote into `value`.
fn line_number(value: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(value);
    text.rsplit(' ')
        .next()
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("record is not a numbered test line: {text:?}"))
}

/// A consumer without a group that reads every partition of some topics
/// from the beginning and, unlike `TopicReader`, keeps going through the
/// errors that a broker's crash causes.
struct ClusterReader {
    consumer: BaseConsumer,
    /// Records read, each partition's in offset order.
    received: Vec<Received>,
    /// Errors the consumer reported, kept for failure messages.
    errors: Vec<String>,
}

impl ClusterReader {
    fn new(bootstrap: &str, topics: &[&str]) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", unique_name("cluster-reader"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("create reader");
        let mut assignment = TopicPartitionList::new();
        for topic in topics {
            for partition in partition_leaders(bootstrap, topic).keys() {
                assignment
                    .add_partition_offset(topic, *partition, Offset::Beginning)
                    .expect("add partition");
            }
        }
        consumer.assign(&assignment).expect("assign partitions");
        Self {
            consumer,
            received: Vec::new(),
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

    /// Returns the records read.
    fn count(&self) -> usize {
        self.received.len()
    }

    /// Returns the raw records that the outputs read so far came from,
    /// counting each once.
    fn source_count(&self) -> usize {
        let sources: BTreeSet<(i32, i64)> = self.received.iter().map(Received::source).collect();
        sources.len()
    }

    /// Returns the line numbers read, by partition, in offset order.
    fn line_numbers(&self) -> BTreeMap<i32, Vec<u64>> {
        let mut numbers: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
        for record in &self.received {
            numbers
                .entry(record.partition)
                .or_default()
                .push(line_number(&record.value));
        }
        numbers
    }

    /// Reads what is available within `wait`.
    fn poll_for(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => self.received.push(Received::copy_of(&message)),
                Some(Err(error)) => self.errors.push(error.to_string()),
                None => {}
            }
        }
    }

    /// Reads until `count` records arrived, failing the test after
    /// [`ARRIVAL_TIMEOUT`] or when one of `processes` exits.
    fn wait_for(&mut self, count: usize, processes: &mut [&mut ChildProcess]) {
        self.wait_for_measure("records", count, Self::count, processes);
    }

    /// Reads outputs until those of `count` raw records arrived, failing
    /// the test like [`Self::wait_for`].
    fn wait_for_sources(&mut self, count: usize, processes: &mut [&mut ChildProcess]) {
        self.wait_for_measure("raw records' outputs", count, Self::source_count, processes);
    }

    fn wait_for_measure(
        &mut self,
        subject: &str,
        count: usize,
        measure: fn(&Self) -> usize,
        processes: &mut [&mut ChildProcess],
    ) {
        let arrived = wait_until(ARRIVAL_TIMEOUT, || {
            for process in processes.iter_mut() {
                process.assert_running();
            }
            self.poll_for(Duration::from_millis(200));
            measure(self) >= count
        });
        let logs: Vec<String> = processes.iter().map(|process| process.stderr()).collect();
        assert!(
            arrived,
            "{} of {count} {subject} arrived within {ARRIVAL_TIMEOUT:?}; reader errors: {:?}\n\
             process logs:\n{}",
            measure(self),
            self.errors,
            logs.join("\n----\n")
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

/// Returns `weblog-host run` with the default plugin from `topics.raw` to
/// `topics.enriched` and `topics.dlq` at `bootstrap`, in the default
/// at-least-once mode, with librdkafka's `msg` debug log on stderr as for
/// the shipper.
///
/// With [`MESSAGE_TIMEOUT_MS`], librdkafka's own retries carry each output
/// through the outage, and the host's resends (`--max-retries`, 5 by
/// default, after a delivery failed) stay a backstop that the test does not
/// reach. librdkafka retries a record in its place in the partition's
/// queue, which keeps the order. A resend by the host is a new record,
/// queued behind the records produced since.
///
/// NOTE: with `message.timeout.ms=10000` and `--max-retries 30` the
/// outputs of the host's 1,000 waiting raw records time out during the
/// outage and the host resends them, one backoff per batch. A run got all
/// 4,000 outputs in time, but resent ones came after later outputs, so
/// the order check below failed, as the README says it may.
fn host_command(bootstrap: &str, topics: &TestTopics, group: &str) -> Command {
    let mut command = Command::new(binary("weblog-host"));
    command
        .env(
            "RUST_LOG",
            "warn,weblog_host=info,weblog_common=info,librdkafka=debug",
        )
        .arg("run")
        .args(["--bootstrap-servers", bootstrap])
        .args(["--input-topic", &topics.raw])
        .args(["--output-topic", &topics.enriched])
        .args(["--dlq-topic", &topics.dlq])
        .args(["--group-id", group])
        .arg("--plugin")
        .arg(default_plugin())
        .arg("--no-component-cache")
        .args(["--kafka-option", "debug=msg"])
        .args([
            "--kafka-option",
            &format!("message.timeout.ms={MESSAGE_TIMEOUT_MS}"),
        ])
        .args([
            "--kafka-option",
            &format!("session.timeout.ms={HOST_SESSION_TIMEOUT_MS}"),
        ]);
    command
}

/// Returns the sink writing `topic` to the file `output`, with `dlq_topic`
/// for records that are not JSON.
fn sink_command(bootstrap: &str, topic: &str, dlq_topic: &str, output: &Path) -> Command {
    let mut command = Command::new(binary("weblog-sink"));
    command
        .args(["--bootstrap-servers", bootstrap])
        .args(["--topic", topic, "--dlq-topic", dlq_topic])
        .args(["--group-id", &unique_name("cluster-sink")])
        .arg("--output")
        .arg(output);
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
/// that `log` shows for NOT_ENOUGH_REPLICAS, from the process's log
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

/// Prints [`retry_intervals`] of `log` for each of `topics`, headed by
/// `process`.
fn print_retry_intervals(process: &str, log: &str, topics: &[&str]) {
    for topic in topics {
        for (partition, gaps) in retry_intervals(log, topic) {
            let gaps: Vec<String> = gaps.iter().map(|gap| format!("{gap:.2}")).collect();
            eprintln!(
                "{process}, {topic} [{partition}]: seconds between NOT_ENOUGH_REPLICAS \
                 retries: {}",
                gaps.join(" ")
            );
        }
    }
}

/// Counts of the host's outputs, checked against the raw records.
#[derive(Debug)]
struct OutputTally {
    enriched: usize,
    dead_letters: usize,
    /// Outputs of a raw record after its first, which at-least-once allows.
    duplicates: usize,
    /// Raw records with more than one output, the first
    /// [`MAX_REPORTED_DUPLICATES`], for the report.
    duplicated_sources: Vec<(i32, i64)>,
    /// Outputs that come after an output of a later raw record in the same
    /// output partition, which only duplicates may do.
    duplicates_out_of_order: usize,
}

/// Checks the host's outputs against the raw records they came from. Each
/// raw record has an output, and each output names a raw record of
/// `raw_topic`. Enriched records carry their line's values, and dead
/// letters their line's bytes and the plugin's reason. Within each output
/// partition, the outputs of one raw partition follow raw offsets, apart
/// from duplicates.
fn check_outputs(
    raw_topic: &str,
    raw: &[Received],
    enriched: &[Received],
    dead_letters: &[Received],
) -> OutputTally {
    let inputs: BTreeMap<(i32, i64), &Received> = raw
        .iter()
        .map(|record| ((record.partition, record.offset), record))
        .collect();
    let mut copies: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (output, is_dead_letter) in enriched
        .iter()
        .map(|output| (output, false))
        .chain(dead_letters.iter().map(|output| (output, true)))
    {
        assert_eq!(
            output.header("weblog.source.topic"),
            raw_topic,
            "output from another topic: {output:?}"
        );
        let source = output.source();
        let input = inputs
            .get(&source)
            .unwrap_or_else(|| panic!("output names no raw record: {output:?}"));
        let number = line_number(&input.value);
        assert_eq!(
            is_dead_letter,
            is_malformed(number),
            "line {number} has the wrong kind of output: {output:?}"
        );
        if is_dead_letter {
            check_dead_letter(output, input);
        } else {
            check_enriched(output, number);
        }
        *copies.entry(source).or_default() += 1;
    }

    let missing: Vec<&(i32, i64)> = inputs
        .keys()
        .filter(|source| !copies.contains_key(source))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} raw records (partition, offset) have no output: {missing:?}",
        missing.len(),
        inputs.len()
    );
    let duplicated_sources: Vec<(i32, i64)> = copies
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(source, _)| *source)
        .take(MAX_REPORTED_DUPLICATES)
        .collect();
    let out_of_order =
        count_out_of_order(enriched, &copies) + count_out_of_order(dead_letters, &copies);
    OutputTally {
        enriched: enriched.len(),
        dead_letters: dead_letters.len(),
        duplicates: copies.values().map(|count| count - 1).sum(),
        duplicated_sources,
        duplicates_out_of_order: out_of_order,
    }
}

/// Checks that the enriched record `output` contains the fields of line
/// `number`.
fn check_enriched(output: &Received, number: u64) {
    let record: serde_json::Value = serde_json::from_slice(&output.value)
        .unwrap_or_else(|error| panic!("enriched record is not JSON ({error}): {output:?}"));
    assert_eq!(
        record["path"],
        format!("/item/{number}"),
        "path of line {number}"
    );
    assert_eq!(record["bytes"], number, "bytes of line {number}");
    assert_eq!(record["status"], 200, "status of line {number}");
}

/// Checks that the dead letter `output` contains the bytes of `input` and
/// the plugin's reason for rejecting it.
fn check_dead_letter(output: &Received, input: &Received) {
    assert_eq!(
        output.value, input.value,
        "dead letter bytes differ from its raw record"
    );
    assert_eq!(
        output.header("weblog.error.kind"),
        "rejected",
        "kind of {output:?}"
    );
    let reason = output.header("weblog.error.reason");
    assert!(reason.starts_with(MALFORMED_REASON), "reason of {output:?}");
}

/// Returns how many of `outputs` come after an output of a later raw
/// record of the same raw partition in their output partition. Fails the
/// test if one of them is not a duplicate by `copies`, because such an
/// output broke the order.
fn count_out_of_order(outputs: &[Received], copies: &BTreeMap<(i32, i64), usize>) -> usize {
    let mut sorted: Vec<&Received> = outputs.iter().collect();
    sorted.sort_by_key(|output| (output.partition, output.offset));
    // Highest raw offset so far, by (output partition, raw partition).
    let mut highest: BTreeMap<(i32, i32), i64> = BTreeMap::new();
    let mut out_of_order = 0;
    for output in sorted {
        let (source_partition, source_offset) = output.source();
        let key = (output.partition, source_partition);
        match highest.get(&key) {
            Some(&max) if source_offset <= max => {
                assert!(
                    copies[&(source_partition, source_offset)] > 1,
                    "output partition {} contains the only output of raw record {source_partition}/\
                     {source_offset} after that of raw offset {max}: {output:?}",
                    output.partition
                );
                out_of_order += 1;
            }
            _ => {
                highest.insert(key, source_offset);
            }
        }
    }
    out_of_order
}

/// With one of three brokers killed, the pipeline keeps flowing: the
/// shipper's lines reach the raw topic, the host's outputs the enriched
/// and dead-letter topics, and the enriched records the sink's file. With
/// two killed, the leaders reject
/// acks=all writes with NOT_ENOUGH_REPLICAS because every topic has
/// min.insync.replicas=2, and both the shipper and the host, which has
/// raw records it has not processed yet, retry with backoff instead of
/// failing. Once the brokers are back, every line reaches the raw topic
/// exactly once in file order per partition. Every raw record has its
/// enriched record or dead letter, in raw order per output partition
/// apart from duplicates. The host commits every raw offset, and the
/// sink's file ends with one line per enriched record.
#[test]
fn pipeline_survives_two_broker_crashes() {
    let bootstrap = cluster_bootstrap();
    let topics = TestTopics {
        raw: unique_name("cluster-raw"),
        enriched: unique_name("cluster-enriched"),
        dlq: unique_name("cluster-dlq"),
    };
    let sink_dlq = unique_name("cluster-sink-dlq");
    let probe_topic = unique_name("cluster-probe");
    let all_topics = [
        topics.raw.as_str(),
        &topics.enriched,
        &topics.dlq,
        &sink_dlq,
        &probe_topic,
    ];
    let settings = [("min.insync.replicas", "2")];
    create_topics_at(&bootstrap, &all_topics[..4], PARTITIONS, 3, &settings);
    create_topics_at(&bootstrap, &[&probe_topic], 1, 3, &settings);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    let checkpoint = dir.path().join("checkpoint.json");
    let sink_output = dir.path().join("enriched.jsonl");
    let group = unique_name("cluster-host");

    let mut shipper = ChildProcess::spawn(
        "shipper",
        shipper_command(&bootstrap, &topics.raw, &log, &checkpoint),
        dir.path(),
    );
    let mut host = ChildProcess::spawn(
        "host",
        host_command(&bootstrap, &topics, &group),
        dir.path(),
    );
    let mut sink = ChildProcess::spawn(
        "sink",
        sink_command(&bootstrap, &topics.enriched, &sink_dlq, &sink_output),
        dir.path(),
    );
    let mut reader = ClusterReader::new(&bootstrap, &[&topics.raw]);
    let mut outputs = ClusterReader::new(&bootstrap, &[&topics.enriched, &topics.dlq]);
    let lines = append_phase(&log, 1);
    reader.wait_for(lines, &mut [&mut shipper, &mut host, &mut sink]);
    outputs.wait_for_sources(lines, &mut [&mut shipper, &mut host, &mut sink]);
    wait_for_sink_lines(&sink_output, enriched_lines(lines), &mut [&mut sink]);

    // The first victim leads partition 0 of the raw topic, so that a new
    // leader has to take over.
    let first = partition_leaders(&bootstrap, &topics.raw)[&0];
    cluster_command(&["kill", &first.to_string()]);
    let lines = append_phase(&log, 2);
    reader.wait_for(lines, &mut [&mut shipper, &mut host, &mut sink]);
    outputs.wait_for_sources(lines, &mut [&mut shipper, &mut host, &mut sink]);
    let sink_lines_before_outage =
        wait_for_sink_lines(&sink_output, enriched_lines(lines), &mut [&mut sink]).len();

    // No raw record can be written with two brokers down, so a running
    // host would have nothing to produce then. Stopped with SIGSTOP, it
    // leaves these lines' raw records to the outage.
    host.signal("STOP");
    let backlog_lines = append_phase(&log, 3);
    reader.wait_for(backlog_lines, &mut [&mut shipper, &mut host, &mut sink]);

    let second = follower(&bootstrap, &topics.raw, first);
    let survivor = (1..=3)
        .find(|broker| *broker != first && *broker != second)
        .expect("three brokers");
    cluster_command(&["kill", &second.to_string()]);
    let outage_start = Instant::now();
    wait_for_single_isr(&reader, &all_topics, survivor);
    let isr_shrink = outage_start.elapsed();
    let host_log_start = host.stderr().len();
    host.signal("CONT");

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

    let shipper_log_start = shipper.stderr().len();
    let lines = append_phase(&log, 4);
    let outage_end = Instant::now() + OUTAGE;
    while Instant::now() < outage_end {
        shipper.assert_running();
        host.assert_running();
        sink.assert_running();
        reader.poll_for(Duration::from_millis(400));
        outputs.poll_for(Duration::from_millis(100));
    }
    assert_eq!(
        reader.count(),
        backlog_lines,
        "lines became readable while only one of three replicas ran"
    );
    assert_eq!(
        outputs.source_count(),
        backlog_lines - LINES_PER_PHASE as usize,
        "outputs became readable while only one of three replicas ran"
    );
    assert_eq!(
        sink_output_lines(&sink_output).len(),
        sink_lines_before_outage,
        "the sink wrote lines while only one of three replicas ran"
    );
    let shipper_outage_log = shipper.stderr()[shipper_log_start..].to_string();
    let shipper_retries = shipper_outage_log
        .matches(NOT_ENOUGH_REPLICAS_RETRY)
        .count();
    assert!(
        shipper_retries >= 2,
        "the shipper logged {shipper_retries} NOT_ENOUGH_REPLICAS retries with two brokers \
         down; its log:\n{shipper_outage_log}"
    );
    let host_outage_log = host.stderr()[host_log_start..].to_string();
    let host_retries = host_outage_log.matches(NOT_ENOUGH_REPLICAS_RETRY).count();
    assert!(
        host_retries >= 2,
        "the host logged {host_retries} NOT_ENOUGH_REPLICAS retries with two brokers down \
         and {} raw records to process; its log:\n{host_outage_log}",
        LINES_PER_PHASE
    );

    cluster_command(&["start", &second.to_string()]);
    cluster_command(&["start", &first.to_string()]);
    reader.wait_for(lines, &mut [&mut shipper, &mut host, &mut sink]);
    outputs.wait_for_sources(lines, &mut [&mut shipper, &mut host, &mut sink]);
    let outage = outage_start.elapsed();
    let committed = wait_until(COMMIT_TIMEOUT, || {
        host.assert_running();
        fully_committed_at(&bootstrap, &group, &topics.raw)
    });
    let offsets = committed_and_end_at(&bootstrap, &group, &topics.raw);
    assert!(
        committed,
        "the host's group did not commit every raw partition to its end within \
         {COMMIT_TIMEOUT:?}: (partition, committed, end) {offsets:?}\n{}",
        host.stderr()
    );
    print_retry_intervals("shipper", &shipper_outage_log, &[&topics.raw]);
    print_retry_intervals("host", &host_outage_log, &[&topics.enriched, &topics.dlq]);
    eprintln!(
        "two brokers down for {outage:?}: in-sync replicas shrank to [{survivor}] after \
         {isr_shrink:?}, the probe failed with {probe_error} after {} NOT_ENOUGH_REPLICAS \
         retries, and before the brokers returned the shipper retried {shipper_retries} and \
         the host {host_retries} produce requests on NOT_ENOUGH_REPLICAS",
        request_errors.len()
    );

    let (status, stdout) = shipper.terminate(Duration::from_secs(60));
    assert!(
        status.success(),
        "shipper exit: {status}\n{}",
        shipper.stderr()
    );
    let summary = format!("sent {lines} lines");
    assert!(stdout.starts_with(&summary), "shipper output: {stdout}");
    let (status, _) = host.terminate(Duration::from_secs(60));
    let host_log = host.stderr();
    assert!(status.success(), "host exit: {status}\n{host_log}");
    let stopped = host_log
        .lines()
        .find(|line| line.contains("stopped consumed="))
        .unwrap_or_else(|| panic!("no stop line in the host's log:\n{host_log}"));
    eprintln!("host: {stopped}");

    reader.poll_for(Duration::from_secs(2));
    for (partition, numbers) in &reader.line_numbers() {
        assert!(
            numbers.windows(2).all(|pair| pair[0] < pair[1]),
            "partition {partition} holds lines out of file order: {numbers:?}"
        );
    }
    let mut all: Vec<u64> = reader.line_numbers().into_values().flatten().collect();
    all.sort_unstable();
    let expected: Vec<u64> = (1..=lines as u64).collect();
    assert_eq!(all, expected, "the raw topic does not hold every line once");

    let read_timeout = Duration::from_secs(60);
    let raw = read_to_end_at(&bootstrap, &topics.raw, read_timeout);
    let enriched = read_to_end_at(&bootstrap, &topics.enriched, read_timeout);
    let dead_letters = read_to_end_at(&bootstrap, &topics.dlq, read_timeout);
    assert_eq!(raw.len(), lines, "raw records read to the end");
    let tally = check_outputs(&topics.raw, &raw, &enriched, &dead_letters);

    // The sink writes each enriched record once, duplicates included, as
    // the bytes of its value.
    let mut sink_lines = wait_for_sink_lines(&sink_output, enriched.len(), &mut [&mut sink]);
    let (status, _) = sink.terminate(Duration::from_secs(60));
    assert!(status.success(), "sink exit: {status}\n{}", sink.stderr());
    let mut enriched_values: Vec<Vec<u8>> =
        enriched.iter().map(|record| record.value.clone()).collect();
    sink_lines.sort_unstable();
    enriched_values.sort_unstable();
    assert!(
        sink_lines == enriched_values,
        "the sink's file ({} lines) differs from the enriched topic ({} records)",
        sink_lines.len(),
        enriched_values.len()
    );
    let sink_dead_letters = read_to_end_at(&bootstrap, &sink_dlq, read_timeout);
    assert_eq!(sink_dead_letters.len(), 0, "dead letters of the sink");
    eprintln!(
        "pipeline: {lines} lines, {} raw records, {} enriched records and {} dead letters; \
         {} duplicates, {} of them out of raw order, of raw records (partition, offset) \
         {:?}; host commits (partition, committed, end): {offsets:?}; {} lines in the \
         sink's file",
        raw.len(),
        tally.enriched,
        tally.dead_letters,
        tally.duplicates,
        tally.duplicates_out_of_order,
        tally.duplicated_sources,
        sink_lines.len()
    );
}
