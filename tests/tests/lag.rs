//! `weblog-host lag` against a real broker: each row agrees with Kafka's
//! own `kafka-consumer-groups --describe`, and partitions without a commit
//! or without records show no negative lag.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

use crate::util::kafka::{bootstrap, create_topics, produce_to_partitions, unique_name};
use crate::util::{binary, repo_root, run};

/// Records produced per partition; partition 2 stays empty.
const RECORDS: [(i32, usize); 3] = [(0, 10), (1, 7), (2, 0)];

/// Offsets the group commits; partition 2 gets no commit.
const COMMITS: [(i32, i64); 2] = [(0, 4), (1, 7)];

/// One row of a lag table: committed offset (`None` for none), end offset
/// and lag.
type Row = (Option<i64>, i64, i64);

/// Every row of `lag --format json` matches Kafka's tool, an empty and an
/// uncommitted partition show lag 0, and the table prints the same rows
/// and the total.
#[test]
fn lag_matches_kafka_tool() {
    let topic = unique_name("lag");
    let group = unique_name("lag-group");
    create_topics(&[&topic], 3);
    let values: Vec<(i32, Vec<u8>)> = RECORDS
        .iter()
        .flat_map(|(partition, count)| {
            (0..*count).map(move |index| (*partition, format!("record {index}").into_bytes()))
        })
        .collect();
    let records: Vec<(i32, &[u8])> = values
        .iter()
        .map(|(partition, value)| (*partition, value.as_slice()))
        .collect();
    produce_to_partitions(&topic, &records);
    commit_offsets(&group, &topic);

    let ours = lag_json(&["--group", &group, "--topic", &topic]);
    let expected: BTreeMap<i32, Row> = [
        (0, (Some(4), 10, 6)),
        (1, (Some(7), 7, 0)),
        (2, (None, 0, 0)),
    ]
    .into_iter()
    .collect();
    assert_eq!(ours.rows, expected);
    assert_eq!(ours.total, 6);

    let kafka = kafka_tool_rows(&group, &topic);
    assert!(kafka.len() >= COMMITS.len(), "kafka tool rows: {kafka:?}");
    for (partition, row) in &kafka {
        assert_eq!(ours.rows.get(partition), Some(row), "partition {partition}");
    }

    // Without --topic, the topics where the group committed are shown.
    let discovered = lag_json(&["--group", &group]);
    assert_eq!(discovered.rows, expected);

    let table = run(&mut lag_command(&["--group", &group, "--topic", &topic]));
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8(table.stdout).expect("UTF-8 table");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[0].starts_with("TOPIC"), "{text}");
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(first, [topic.as_str(), "0", "4", "10", "6"]);
    let last: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(last, [topic.as_str(), "2", "-", "0", "0"]);
    assert_eq!(lines[4], "total lag: 6");
}

/// A group without a single commit, such as a misspelt one, is an error
/// naming the group, not an empty table that reads as no lag.
#[test]
fn lag_of_unknown_group_fails() {
    let group = unique_name("lag-none");
    let output = run(&mut lag_command(&["--group", &group]));
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("consumer group {group:?} has no committed offset")),
        "{stderr}"
    );
    assert!(stderr.contains("consumer-groups --list"), "{stderr}");
}

/// Without a broker at the address, the command fails after the metadata
/// timeout with the address and the fix, and logs librdkafka's
/// `AllBrokersDown` error at most once instead of at each report.
#[test]
fn lag_without_broker_names_fix() {
    // Nothing listens on port 1, so every connection is refused.
    let output = run(Command::new(binary("weblog-host")).args([
        "lag",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--group",
        "lag-no-broker",
    ]));
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "error: failed to fetch metadata from 127.0.0.1:1 within 10 s; check that the \
             broker is running (`make broker-up` starts the local one) and that \
             --bootstrap-servers names its client port: "
        ),
        "{stderr}"
    );
    let all_brokers_down = stderr
        .lines()
        .filter(|line| line.contains("AllBrokersDown"))
        .count();
    assert!(all_brokers_down <= 1, "{stderr}");
}

/// An empty group id is rejected before any connection.
#[test]
fn lag_of_empty_group_is_invalid() {
    let output = run(&mut lag_command(&["--group", ""]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--group"), "{stderr}");
}

/// Commits [`COMMITS`] for `group` from a consumer that never joins it.
fn commit_offsets(group: &str, topic: &str) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("create committing consumer");
    let mut list = TopicPartitionList::new();
    for (partition, offset) in COMMITS {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("add offset");
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .expect("commit offsets");
}

fn lag_command(args: &[&str]) -> Command {
    let mut command = Command::new(binary("weblog-host"));
    command
        .arg("lag")
        .args(["--bootstrap-servers", &bootstrap()])
        .args(args);
    command
}

/// Rows of `weblog-host lag --format json` by partition, and the total.
struct LagOutput {
    rows: BTreeMap<i32, Row>,
    total: i64,
}

fn lag_json(args: &[&str]) -> LagOutput {
    let output = run(lag_command(args).args(["--format", "json"]));
    assert!(
        output.status.success(),
        "lag failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&output.stdout).expect("lag prints JSON");
    let rows = value["partitions"]
        .as_array()
        .expect("partitions array")
        .iter()
        .map(|row| {
            let partition = row["partition"].as_i64().expect("partition") as i32;
            let committed = row["committed"].as_i64();
            let end = row["end"].as_i64().expect("end");
            let lag = row["lag"].as_i64().expect("lag");
            (partition, (committed, end, lag))
        })
        .collect();
    LagOutput {
        rows,
        total: value["total_lag"].as_i64().expect("total_lag"),
    }
}

/// Runs `kafka-consumer-groups --describe` and returns its rows of `topic`
/// by partition: CURRENT-OFFSET (`-` is `None`), LOG-END-OFFSET and LAG
/// (`-` for no commit, which this tool counts from the log start).
fn kafka_tool_rows(group: &str, topic: &str) -> BTreeMap<i32, Row> {
    // The group coordinator can take a moment to serve a new group.
    let mut rows = BTreeMap::new();
    let found = crate::util::wait_until(Duration::from_secs(30), || {
        let output = run(Command::new(repo_root().join("scripts/kafka.sh"))
            .args(["tool", "consumer-groups", "--describe", "--group", group])
            .args(["--bootstrap-server", &bootstrap()]));
        let text = String::from_utf8_lossy(&output.stdout);
        rows = parse_describe(&text, topic);
        rows.len() >= COMMITS.len()
    });
    assert!(found, "kafka tool shows {rows:?} for group {group}");
    rows
}

fn parse_describe(text: &str, topic: &str) -> BTreeMap<i32, Row> {
    let mut lines = text.lines().skip_while(|line| !line.starts_with("GROUP"));
    let Some(header) = lines.next() else {
        return BTreeMap::new();
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|column| *column == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    let (topic_column, partition_column) = (column("TOPIC"), column("PARTITION"));
    let (current, end, lag) = (
        column("CURRENT-OFFSET"),
        column("LOG-END-OFFSET"),
        column("LAG"),
    );
    let mut rows = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.get(topic_column) != Some(&topic) {
            continue;
        }
        let number = |index: usize| cells[index].parse::<i64>().ok();
        let partition = number(partition_column).expect("numeric partition") as i32;
        let end_offset = number(end).expect("numeric log end offset");
        let committed = number(current);
        // The tool prints "-" as the lag of a partition without a commit,
        // where ours counts from the low watermark.
        let lag = number(lag).unwrap_or(end_offset);
        rows.insert(partition, (committed, end_offset, lag));
    }
    rows
}
