//! Dead letters that the host writes after Kafka rejected an output, and
//! `weblog-host replay-dlq`, which sends dead letters through a plugin
//! again.

use std::process::Command;
use std::time::Duration;

use crate::util::kafka::{
    create_topics_with_config, host_run_command, produce, read_to_end, unique_name, TestTopics,
};
use crate::util::{corpus, default_plugin, split_lines, wait_until, ChildProcess};

/// Bytes the enriched topic accepts per record batch in the rejection
/// tests: less than any enriched record of the NASA corpus with its
/// headers, more than its raw lines.
const SMALL_MAX_MESSAGE_BYTES: &str = "200";

/// Returns the first `count` lines of the NASA corpus that are shorter
/// than 100 bytes, so that their dead letters fit the topics.
fn short_lines(count: usize) -> Vec<Vec<u8>> {
    let content = std::fs::read(corpus("nasa-jul-aug95-random-sample.log")).expect("read corpus");
    split_lines(&content)
        .into_iter()
        .filter(|line| line.len() < 100)
        .take(count)
        .collect()
}

/// Creates topics where the enriched one rejects every enriched record as
/// too large, produces `lines`, runs the host with `extra` arguments until
/// it committed everything and returns the dead letters.
fn run_against_small_topic(
    label: &str,
    lines: &[Vec<u8>],
    extra: &[&str],
) -> Vec<crate::util::kafka::Received> {
    let topics = TestTopics {
        raw: unique_name(&format!("{label}-raw")),
        enriched: unique_name(&format!("{label}-enriched")),
        dlq: unique_name(&format!("{label}-dlq")),
    };
    create_topics_with_config(&[&topics.raw, &topics.dlq], 1, &[]);
    create_topics_with_config(
        &[&topics.enriched],
        1,
        &[("max.message.bytes", SMALL_MAX_MESSAGE_BYTES)],
    );
    let records: Vec<(Option<&[u8]>, &[u8])> =
        lines.iter().map(|line| (None, line.as_slice())).collect();
    produce(&topics.raw, &records);

    let dir = tempfile::tempdir().expect("temp dir");
    let group = unique_name(label);
    let mut command: Command = host_run_command(&topics, &group, &default_plugin());
    command
        .arg("--component-cache")
        .arg(dir.path().join("components"))
        .args(extra);
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let committed = wait_until(Duration::from_secs(90), || {
        host.assert_running();
        crate::util::kafka::committed_and_end(&group, &topics.raw)
            .iter()
            .all(|(_, committed, end)| *committed == Some(*end))
    });
    assert!(committed, "host did not commit: {}", host.stderr());
    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());
    assert!(
        read_to_end(&topics.enriched, Duration::from_secs(30)).is_empty(),
        "the enriched topic accepted a record"
    );
    read_to_end(&topics.dlq, Duration::from_secs(30))
}

/// Checks that each line has one dead letter naming the broker's
/// rejection.
fn assert_rejected_by_broker(lines: &[Vec<u8>], letters: &[crate::util::kafka::Received]) {
    assert_eq!(letters.len(), lines.len(), "dead letters");
    for (line, letter) in lines.iter().zip(letters) {
        assert_eq!(&letter.value, line);
        assert_eq!(letter.header("weblog.error.kind"), "invalid-output");
        let reason = letter.header("weblog.error.reason");
        assert!(reason.contains("broker rejected"), "{reason}");
        assert_eq!(letter.header("weblog.plugin.name"), "access-log");
        assert_eq!(letter.header("weblog.error.attempts"), "1");
        assert!(!letter.header("weblog.host.instance").is_empty());
    }
}

/// In the default mode, an enriched record that the broker rejects as too
/// large sends its input to the dead-letter topic with the broker's error,
/// and the host commits past it.
#[test]
fn broker_rejection_dead_letters_input() {
    let lines = short_lines(20);
    let letters = run_against_small_topic("reject-alo", &lines, &[]);
    assert_rejected_by_broker(&lines, &letters);
}

/// With `--exactly-once` the rejection aborts the transaction, and the
/// next attempt of the batch dead-letters the rejected inputs.
#[test]
fn broker_rejection_dead_letters_input_exactly_once() {
    let lines = short_lines(20);
    let letters = run_against_small_topic("reject-eos", &lines, &["--exactly-once"]);
    assert_rejected_by_broker(&lines, &letters);
}
