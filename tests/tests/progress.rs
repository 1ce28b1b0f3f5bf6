//! weblog-shipper's progress log lines against a real broker: without a
//! terminal, `--progress auto` logs `shipping progress` lines, and the last
//! one carries the exact counts of the run, in one-shot and follow mode.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::kafka::{bootstrap, create_topics, unique_name, TopicReader};
use crate::util::{binary, corpus, run_bounded, split_lines, ChildProcess};

/// Returns the shipper's command for `file` into `topic`, logging JSON.
fn shipper(topic: &str, file: &Path) -> Command {
    let mut command = Command::new(binary("weblog-shipper"));
    command
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--topic", topic])
        .args(["--log-format", "json"])
        .arg("--file")
        .arg(file)
        .env_remove("WEBLOG_SHIPPER_PROGRESS")
        .env_remove("WEBLOG_SHIPPER_PROGRESS_INTERVAL_MS");
    command
}

/// Returns the `shipping progress` events in JSON log output.
fn progress_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["message"] == "shipping progress")
        .collect()
}

fn field(event: &Value, name: &str) -> u64 {
    event[name]
        .as_u64()
        .unwrap_or_else(|| panic!("field {name} missing in {event}"))
}

/// Checks that the counts never go back and never pass the totals, and
/// returns the last event, which must be marked as last.
fn check_lines(events: &[Value], total_lines: u64, size: u64) -> Value {
    let mut previous_acknowledged = 0;
    let mut previous_offset = 0;
    for event in events {
        let acknowledged = field(event, "lines_acknowledged");
        let offset = field(event, "offset");
        assert!(acknowledged >= previous_acknowledged, "{event}");
        assert!(offset >= previous_offset, "{event}");
        assert!(acknowledged <= field(event, "lines_read"), "{event}");
        assert!(field(event, "lines_read") <= total_lines, "{event}");
        assert!(offset <= size, "{event}");
        previous_acknowledged = acknowledged;
        previous_offset = offset;
    }
    let last = events.last().expect("at least the final progress line");
    assert_eq!(last["last"], true, "{last}");
    let earlier_last = events[..events.len() - 1]
        .iter()
        .filter(|event| event["last"] == true)
        .count();
    assert_eq!(earlier_last, 0, "only the final line is marked last");
    last.clone()
}

/// A one-shot run without a terminal logs progress lines, and the last one
/// counts every line and byte of the corpus at 100 percent.
#[test]
fn one_shot_logs_final_counts() {
    let topic = unique_name("progress-once");
    create_topics(&[&topic], 3);
    let path = corpus("elastic-apache.log");
    let content = std::fs::read(&path).expect("read corpus");
    let lines = split_lines(&content);
    let total_lines = lines.len() as u64;
    let total_bytes: u64 = lines.iter().map(|line| line.len() as u64).sum();
    let size = content.len() as u64;

    let mut command = shipper(&topic, &path);
    command.args(["--progress", "auto", "--progress-interval-ms", "20"]);
    let output = run_bounded(&mut command, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    let events = progress_lines(&stderr);
    let last = check_lines(&events, total_lines, size);
    assert_eq!(field(&last, "lines_read"), total_lines, "{last}");
    assert_eq!(field(&last, "lines_acknowledged"), total_lines, "{last}");
    assert_eq!(field(&last, "bytes_acknowledged"), total_bytes, "{last}");
    assert_eq!(field(&last, "lines_dead_lettered"), 0, "{last}");
    assert_eq!(field(&last, "offset"), size, "{last}");
    assert_eq!(field(&last, "size"), size, "{last}");
    assert_eq!(last["percent"].as_f64(), Some(100.0), "{last}");
}

/// `--progress off` logs no progress line.
#[test]
fn progress_off_logs_nothing() {
    let topic = unique_name("progress-off");
    create_topics(&[&topic], 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("access.log");
    std::fs::write(&path, "one\ntwo\n").expect("write log");

    let mut command = shipper(&topic, &path);
    command.args(["--progress", "off", "--progress-interval-ms", "1"]);
    let output = run_bounded(&mut command, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(progress_lines(&stderr).len(), 0, "{stderr}");
}

/// In follow mode a requested bar becomes log lines, and the line logged
/// at SIGTERM counts the lines appended while following.
#[test]
fn follow_logs_instead_of_bar() {
    let topic = unique_name("progress-follow");
    create_topics(&[&topic], 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("access.log");
    std::fs::write(&path, "first line\n").expect("write log");

    let mut command = shipper(&topic, &path);
    command
        .args(["--follow", "--poll-interval-ms", "20"])
        .arg("--checkpoint")
        .arg(dir.path().join("shipper.checkpoint"))
        .args(["--progress", "bar", "--progress-interval-ms", "50"]);
    let mut child = ChildProcess::spawn("shipper", command, dir.path());
    let mut reader = TopicReader::new(&topic);
    reader.read_at_least(1, Duration::from_secs(30));
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open log");
    log.write_all(b"second\nthird line\n").expect("append");
    reader.read_at_least(3, Duration::from_secs(30));
    assert_eq!(reader.received.len(), 3);
    child.assert_running();

    let (status, _) = child.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", child.stderr());
    let stderr = child.stderr();
    let size = std::fs::metadata(&path).expect("stat log").len();
    let events = progress_lines(&stderr);
    let last = check_lines(&events, 3, size);
    assert_eq!(field(&last, "lines_read"), 3, "{last}");
    assert_eq!(field(&last, "lines_acknowledged"), 3, "{last}");
    assert_eq!(field(&last, "bytes_acknowledged"), 26, "{last}");
    assert_eq!(field(&last, "offset"), size, "{last}");
    assert_eq!(last["percent"].as_f64(), Some(100.0), "{last}");
    assert!(
        last.get("eta_secs").is_none(),
        "no ETA when following: {last}"
    );
}
