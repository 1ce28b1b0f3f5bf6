//! weblog-sink against a real broker: the file contains each record once,
//! offsets are committed, and invalid records go to the dead-letter topic.

use std::process::Command;
use std::time::Duration;

use crate::util::kafka::{
    bootstrap, committed_and_end, create_topics, produce, unique_name, TopicReader,
};
use crate::util::{binary, wait_until, ChildProcess};

/// Valid records are appended once each in partition order; the invalid
/// one is dead-lettered with its reason; every offset is committed.
#[test]
fn writes_records_and_commits() {
    let topic = unique_name("sink-in");
    let dlq = unique_name("sink-dlq");
    create_topics(&[&topic, &dlq], 1);
    let records: Vec<String> = (0..500).map(|i| format!("{{\"n\":{i}}}")).collect();
    let mut messages: Vec<(Option<&[u8]>, &[u8])> =
        records.iter().map(|r| (None, r.as_bytes())).collect();
    messages.insert(250, (None, b"{not json"));
    produce(&topic, &messages);

    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out.jsonl");
    let group = unique_name("sink");
    let mut command = Command::new(binary("weblog-sink"));
    command
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--topic", &topic, "--dlq-topic", &dlq, "--group-id", &group])
        .arg("--output")
        .arg(&output);
    let mut sink = ChildProcess::spawn("sink", command, dir.path());

    let done = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&output).map_or(0, |text| text.lines().count()) >= 500
    });
    assert!(done, "sink did not write 500 records: {}", sink.stderr());
    let (status, stdout) = sink.terminate(Duration::from_secs(30));
    assert!(status.success(), "sink exit {status}: {}", sink.stderr());
    assert!(stdout.contains("wrote 500 records"), "{stdout}");

    let written: Vec<String> = std::fs::read_to_string(&output)
        .expect("read output")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(written, records);
    assert_eq!(committed_and_end(&group, &topic), vec![(0, Some(501), 501)]);

    let mut letters = TopicReader::new(&dlq);
    letters.read_at_least(1, Duration::from_secs(30));
    assert_eq!(letters.received.len(), 1);
    assert_eq!(letters.received[0].value, b"{not json");
    assert_eq!(
        letters.received[0].header("weblog.error.kind"),
        "invalid-output"
    );
    assert_eq!(letters.received[0].header("weblog.source.offset"), "250");
}
