//! Dead letters that the host writes after Kafka rejected an output, and
//! `weblog-host replay-dlq`, which sends dead letters through a plugin
//! again.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::util::kafka::{
    create_topics_with_config, host_run_command, produce, read_to_end, replay_dlq,
    run_host_until_committed, unique_name, Received, TestTopics,
};
use crate::util::{corpus, default_plugin, fixture_plugin, split_lines};

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
    run_host_until_committed(command, dir.path(), &group, &topics.raw);
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

/// Settings that make the test plugin reject every record with a short
/// reason.
const REJECT_ALL: &str = "mode=huge-reject,size-bytes=32";

/// Runs the host with the rejecting test plugin until it committed
/// everything, so that every line ends up as a dead letter.
fn dead_letter_all(topics: &TestTopics, dir: &std::path::Path) {
    let group = unique_name("replay-host");
    let mut command = host_run_command(topics, &group, &fixture_plugin("weblog_test_hostile"));
    command
        .args(["--plugin-config", REJECT_ALL])
        .arg("--component-cache")
        .arg(dir.join("components"));
    run_host_until_committed(command, dir, &group, &topics.raw);
}

/// Returns the (topic, partition, offset) that a record's source headers
/// name.
fn origin(record: &Received) -> (String, i32, i64) {
    let (partition, offset) = record.source();
    (
        record.header("weblog.source.topic").to_string(),
        partition,
        offset,
    )
}

/// Dead letters of a rejecting plugin, replayed with the default plugin,
/// arrive enriched with the source headers of their raw records. Replayed
/// again with the rejecting plugin in another group and with
/// `--exactly-once`, they come back to the dead-letter topic with attempts
/// 2, and the replay stops instead of consuming its own dead letters.
#[test]
fn replay_enriches_or_dead_letters_again() {
    let topics = TestTopics::create("replay", 2);
    let lines = short_lines(30);
    let records: Vec<(Option<&[u8]>, &[u8])> =
        lines.iter().map(|line| (None, line.as_slice())).collect();
    produce(&topics.raw, &records);
    let dir = tempfile::tempdir().expect("temp dir");
    dead_letter_all(&topics, dir.path());
    let first_letters = read_to_end(&topics.dlq, Duration::from_secs(30));
    assert_eq!(
        first_letters.len(),
        lines.len(),
        "dead letters of the first run"
    );
    let raw_sources: BTreeSet<(String, i32, i64)> = first_letters.iter().map(origin).collect();
    assert_eq!(raw_sources.len(), lines.len());
    for letter in &first_letters {
        assert_eq!(letter.header("weblog.error.kind"), "rejected");
        assert_eq!(letter.header("weblog.error.attempts"), "1");
        assert_eq!(letter.header("weblog.source.topic"), topics.raw);
    }

    let group = unique_name("replay");
    let stdout = replay_dlq(&topics, &group, &default_plugin(), &[]);
    assert_eq!(
        stdout.trim(),
        format!(
            "replayed {0}: enriched {0}, dead-lettered again 0",
            lines.len()
        )
    );
    let enriched = read_to_end(&topics.enriched, Duration::from_secs(30));
    assert_eq!(enriched.len(), lines.len(), "enriched records");
    let enriched_sources: BTreeSet<(String, i32, i64)> = enriched.iter().map(origin).collect();
    assert_eq!(enriched_sources, raw_sources);
    for record in &enriched {
        assert_eq!(record.header("weblog.plugin.name"), "access-log");
        let json: serde_json::Value = serde_json::from_slice(&record.value).expect("JSON");
        assert!(json.is_object(), "{json}");
    }
    let again = replay_dlq(&topics, &group, &default_plugin(), &[]);
    assert_eq!(
        again.trim(),
        "replayed 0: enriched 0, dead-lettered again 0"
    );

    let other_group = unique_name("replay-reject");
    let stdout = replay_dlq(
        &topics,
        &other_group,
        &fixture_plugin("weblog_test_hostile"),
        &["--plugin-config", REJECT_ALL, "--exactly-once"],
    );
    assert_eq!(
        stdout.trim(),
        format!(
            "replayed {0}: enriched 0, dead-lettered again {0}",
            lines.len()
        )
    );
    let letters = read_to_end(&topics.dlq, Duration::from_secs(30));
    assert_eq!(
        letters.len(),
        2 * lines.len(),
        "dead letters after the replays"
    );
    let second: Vec<&Received> = letters
        .iter()
        .filter(|letter| letter.header("weblog.error.attempts") == "2")
        .collect();
    assert_eq!(second.len(), lines.len(), "dead letters with attempts 2");
    let second_sources: BTreeSet<(String, i32, i64)> =
        second.iter().map(|letter| origin(letter)).collect();
    assert_eq!(second_sources, raw_sources);
    let first_values: BTreeSet<&[u8]> = first_letters.iter().map(|l| l.value.as_slice()).collect();
    for letter in &second {
        assert!(
            first_values.contains(letter.value.as_slice()),
            "value changed"
        );
        assert_eq!(letter.header("weblog.error.kind"), "rejected");
        assert_eq!(letter.header("weblog.plugin.name"), "hostile");
    }
    // A replay in the same group reads only the 30 dead letters of attempt
    // 2. With --max-attempts 2 it leaves them in the topic.
    let capped = replay_dlq(
        &topics,
        &other_group,
        &fixture_plugin("weblog_test_hostile"),
        &["--plugin-config", REJECT_ALL, "--max-attempts", "2"],
    );
    assert_eq!(
        capped.trim(),
        format!(
            "replayed 0: enriched 0, dead-lettered again 0; left {} dead letters at \
             --max-attempts 2",
            lines.len()
        )
    );
    let after_cap = read_to_end(&topics.dlq, Duration::from_secs(30));
    assert_eq!(after_cap.len(), 2 * lines.len(), "no dead letter written");
}
