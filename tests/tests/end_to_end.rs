//! The whole pipeline on the three real corpora: shipper, host and sink as
//! separate processes on a real broker, checked against `enrich-file`.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::kafka::{
    bootstrap, caught_up, committed_and_end, host_run_command, unique_name, TestTopics, TopicReader,
};
use crate::util::{
    binary, corpus, default_plugin, run, split_lines, wait_until, ChildProcess, CORPORA,
};

/// Max time the pipeline may take to drain the corpora after shipping.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Every input line ends up exactly once, in the sink file or in the
/// dead-letter topic. The sink's records equal enrich-file's, and both
/// consumer groups have committed up to the end of their topics.
#[test]
fn corpora_arrive_exactly_once() {
    let topics = TestTopics::create("e2e", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("enriched.jsonl");
    let host_group = unique_name("e2e-host");
    let sink_group = unique_name("e2e-sink");

    let mut host = ChildProcess::spawn(
        "host",
        host_run_command(&topics, &host_group, &default_plugin()),
        dir.path(),
    );
    let mut sink = ChildProcess::spawn(
        "sink",
        sink_command(&topics, &sink_group, &output),
        dir.path(),
    );

    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for name in CORPORA {
        let path = corpus(name);
        let shipped = run(Command::new(binary("weblog-shipper"))
            .args([
                "--bootstrap-servers",
                &bootstrap(),
                "--topic",
                &topics.raw,
                "--file",
            ])
            .arg(&path));
        let stdout = String::from_utf8_lossy(&shipped.stdout);
        assert!(
            shipped.status.success(),
            "shipper failed on {name}: {}",
            String::from_utf8_lossy(&shipped.stderr)
        );
        let lines = split_lines(&std::fs::read(&path).expect("read corpus"));
        assert!(
            stdout.starts_with(&format!("sent {} lines", lines.len())),
            "shipper output for {name}: {stdout}"
        );
        inputs.extend(lines);
    }
    let (expected_records, expected_rejected) = reference_output();
    assert_eq!(
        expected_records.len() + expected_rejected.len(),
        inputs.len()
    );

    let mut dlq = TopicReader::new(&topics.dlq);
    let drained = wait_until(DRAIN_TIMEOUT, || {
        host.assert_running();
        sink.assert_running();
        dlq.poll_for(Duration::from_millis(100));
        count_lines(&output) + dlq.received.len() >= inputs.len()
    });
    assert!(
        drained,
        "pipeline did not drain in {DRAIN_TIMEOUT:?}: {} in file, {} dead letters, {} shipped\n\
         host:\n{}\nsink:\n{}",
        count_lines(&output),
        dlq.received.len(),
        inputs.len(),
        host.stderr(),
        sink.stderr()
    );

    let (host_status, _) = host.terminate(Duration::from_secs(30));
    assert!(
        host_status.success(),
        "host exit: {host_status}\n{}",
        host.stderr()
    );
    let (sink_status, sink_stdout) = sink.terminate(Duration::from_secs(30));
    assert!(
        sink_status.success(),
        "sink exit: {sink_status}\n{}",
        sink.stderr()
    );
    assert!(sink_stdout.contains("wrote"), "sink output: {sink_stdout}");
    dlq.poll_for(Duration::from_secs(1));

    // The sink's records, sorted, equal enrich-file's.
    let mut actual_records: Vec<String> = std::fs::read_to_string(&output)
        .expect("read sink output")
        .lines()
        .map(canonical_json)
        .collect();
    actual_records.sort();
    assert_eq!(actual_records.len(), expected_records.len(), "record count");
    let first_difference = actual_records
        .iter()
        .zip(&expected_records)
        .position(|(actual, expected)| actual != expected);
    assert_eq!(
        first_difference, None,
        "sink and enrich-file differ at sorted index {first_difference:?}"
    );

    // The dead letters are the rejected lines, with their reason and source.
    let mut actual_rejected: Vec<Vec<u8>> = dlq
        .received
        .iter()
        .map(|record| record.value.clone())
        .collect();
    actual_rejected.sort();
    let mut expected_rejected_bytes: Vec<Vec<u8>> = expected_rejected
        .iter()
        .map(|(corpus_index, line)| corpus_line(*corpus_index, *line))
        .collect();
    expected_rejected_bytes.sort();
    assert_eq!(actual_rejected, expected_rejected_bytes);
    for letter in &dlq.received {
        assert_eq!(letter.header("weblog.error.kind"), "rejected");
        assert!(!letter.header("weblog.error.reason").is_empty());
        assert_eq!(letter.header("weblog.source.topic"), topics.raw);
        assert_eq!(letter.header("weblog.plugin.name"), "access-log");
        letter
            .header("weblog.source.offset")
            .parse::<i64>()
            .expect("numeric offset");
    }

    // Both groups committed everything they consumed.
    for (group, topic) in [(&host_group, &topics.raw), (&sink_group, &topics.enriched)] {
        for (partition, committed, end) in committed_and_end(group, topic) {
            assert!(
                caught_up(committed, end),
                "group {group} on {topic}/{partition}: committed {committed:?} of {end}"
            );
        }
    }
}

fn sink_command(topics: &TestTopics, group: &str, output: &std::path::Path) -> Command {
    let mut command = Command::new(binary("weblog-sink"));
    command
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--topic", &topics.enriched])
        .args(["--dlq-topic", &topics.dlq])
        .args(["--group-id", group])
        .arg("--output")
        .arg(output);
    command
}

/// Runs enrich-file over each corpus and returns its records as sorted
/// canonical JSON, and the rejected lines as (corpus index, line number).
fn reference_output() -> (Vec<String>, Vec<(usize, usize)>) {
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    for (corpus_index, name) in CORPORA.iter().enumerate() {
        let output = run(Command::new(binary("weblog-host"))
            .arg("enrich-file")
            .arg("--plugin")
            .arg(default_plugin())
            .arg("--input")
            .arg(corpus(name)));
        assert!(output.status.success(), "enrich-file failed on {name}");
        for line in String::from_utf8(output.stdout).expect("UTF-8").lines() {
            let value: Value = serde_json::from_str(line).expect("enrich-file JSON");
            match value.get("records") {
                Some(Value::Array(list)) => {
                    records.extend(list.iter().map(|record| record.to_string()))
                }
                _ => rejected.push((
                    corpus_index,
                    value["line"].as_u64().expect("line number") as usize,
                )),
            }
        }
    }
    records.sort();
    (records, rejected)
}

fn corpus_line(corpus_index: usize, line: usize) -> Vec<u8> {
    let content = std::fs::read(corpus(CORPORA[corpus_index])).expect("read corpus");
    split_lines(&content)[line - 1].clone()
}

/// Re-serializes JSON with sorted keys, so equal records compare equal.
fn canonical_json(text: &str) -> String {
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("sink wrote invalid JSON ({e}): {text}"));
    value.to_string()
}

fn count_lines(path: &std::path::Path) -> usize {
    std::fs::read(path)
        .map(|content| content.iter().filter(|b| **b == b'\n').count())
        .unwrap_or(0)
}
