//! Dead letters of inputs too large to dead-letter whole: the host cuts
//! them to fit the producer's and the broker's limits and carries on.

use std::process::Command;
use std::time::Duration;

use crate::util::kafka::{
    committed_and_end, create_topics_with_config, host_run_command, produce, read_to_end,
    replay_dlq, run_host_until_committed, unique_name, Received, TestTopics,
};
use crate::util::{default_plugin, wait_until, ChildProcess};

/// A line of the Common Log Format that the default plugin enriches.
const NORMAL_LINE: &[u8] =
    b"199.72.81.55 - - [01/Jul/1995:00:00:01 -0400] \"GET /history/apollo/ HTTP/1.0\" 200 6245";

/// Length of the long line: under librdkafka's default `message.max.bytes`
/// of 1,000,000, so it reaches the raw topic, but its dead letter with
/// headers would not fit.
const NEAR_MAX_LINE_BYTES: usize = 999_900;

/// Returns a CLF line of `length` bytes with a long path.
fn long_line(length: usize) -> Vec<u8> {
    let head = b"199.72.81.55 - - [01/Jul/1995:00:00:02 -0400] \"GET /";
    let tail = b" HTTP/1.0\" 200 6245";
    let mut line = head.to_vec();
    line.resize(length - tail.len(), b'a');
    line.extend_from_slice(tail);
    line
}

/// Creates topics (the dead-letter one with `dlq_config`), produces a
/// normal line, `long` and another normal line, runs the host with `extra`
/// arguments until it committed all three, and returns the enriched
/// records and the dead letters.
fn run_host(
    label: &str,
    long: &[u8],
    dlq_config: &[(&str, &str)],
    extra: &[&str],
) -> (TestTopics, Vec<Received>, Vec<Received>) {
    let records = [(None, NORMAL_LINE), (None, long), (None, NORMAL_LINE)];
    run_host_on(label, &records, dlq_config, extra)
}

/// Runs the host as [`run_host`] does on `records`.
fn run_host_on(
    label: &str,
    records: &[(Option<&[u8]>, &[u8])],
    dlq_config: &[(&str, &str)],
    extra: &[&str],
) -> (TestTopics, Vec<Received>, Vec<Received>) {
    let topics = TestTopics {
        raw: unique_name(&format!("{label}-raw")),
        enriched: unique_name(&format!("{label}-enriched")),
        dlq: unique_name(&format!("{label}-dlq")),
    };
    create_topics_with_config(&[&topics.raw, &topics.enriched], 1, &[]);
    create_topics_with_config(&[&topics.dlq], 1, dlq_config);
    produce(&topics.raw, records);

    let dir = tempfile::tempdir().expect("temp dir");
    let group = unique_name(label);
    let mut command: Command = host_run_command(&topics, &group, &default_plugin());
    command
        .arg("--component-cache")
        .arg(dir.path().join("components"))
        .args(extra);
    run_host_until_committed(command, dir.path(), &group, &topics.raw);
    assert_eq!(
        committed_and_end(&group, &topics.raw),
        vec![(0, Some(records.len() as i64), records.len() as i64)],
        "committed offsets"
    );
    let enriched = read_to_end(&topics.enriched, Duration::from_secs(30));
    let letters = read_to_end(&topics.dlq, Duration::from_secs(30));
    (topics, enriched, letters)
}

/// Checks that `letters` is one dead letter of `long` whose value is the
/// first bytes of `long`, at most `max_value_bytes`.
fn assert_cut_dead_letter(long: &[u8], letters: &[Received], max_value_bytes: usize) {
    assert_eq!(letters.len(), 1, "dead letters");
    let letter = &letters[0];
    assert!(
        letter.value.len() <= max_value_bytes,
        "dead letter value of {} bytes",
        letter.value.len()
    );
    assert!(!letter.value.is_empty(), "dead letter value is empty");
    assert!(long.starts_with(&letter.value), "value is not a prefix");
    assert_eq!(letter.header("weblog.line.length"), long.len().to_string());
    assert_eq!(letter.header("weblog.line.truncated"), "true");
    assert_eq!(letter.header("weblog.source.offset"), "1");
    assert!(letter.header("weblog.error.reason").len() <= 4_200);
}

/// Checks that both normal lines were enriched.
fn assert_normal_lines_enriched(enriched: &[Received]) {
    assert_eq!(enriched.len(), 2, "enriched records");
    let offsets: Vec<&str> = enriched
        .iter()
        .map(|record| record.header("weblog.source.offset"))
        .collect();
    assert_eq!(offsets, ["0", "2"]);
}

fn near_max_line_is_cut(label: &str, extra: &[&str]) {
    let long = long_line(NEAR_MAX_LINE_BYTES);
    let (_, enriched, letters) = run_host(label, &long, &[], extra);
    assert_cut_dead_letter(&long, &letters, NEAR_MAX_LINE_BYTES - 1);
    assert_normal_lines_enriched(&enriched);
}

/// `replay-dlq` leaves a cut dead letter where it is: the plugin would see
/// the first bytes of a line instead of the line that was logged.
#[test]
fn replay_leaves_cut_dead_letter() {
    let long = long_line(NEAR_MAX_LINE_BYTES);
    let (topics, enriched, letters) = run_host("cut-replay", &long, &[], &[]);
    assert_cut_dead_letter(&long, &letters, NEAR_MAX_LINE_BYTES - 1);
    let group = unique_name("cut-replay");
    let stdout = replay_dlq(&topics, &group, &default_plugin(), &[]);
    assert_eq!(
        stdout.trim(),
        "replayed 0: enriched 0, dead-lettered again 0; left 1 dead letters that hold only \
         the first bytes of their input"
    );
    let enriched_after = read_to_end(&topics.enriched, Duration::from_secs(30));
    assert_eq!(enriched_after.len(), enriched.len(), "enriched records");
    let letters_after = read_to_end(&topics.dlq, Duration::from_secs(30));
    assert_eq!(letters_after.len(), 1, "dead letters");
    assert_eq!(
        committed_and_end(&format!("{group}-replay"), &topics.dlq),
        vec![(0, Some(1), 1)],
        "the replay committed past the cut dead letter"
    );
}

/// An input whose key alone takes more than half of the producer's
/// `message.max.bytes` is dead-lettered without its key, with the key's
/// length in a header, and the host carries on.
#[test]
fn oversize_key_is_dropped_from_dead_letter() {
    let key = vec![b'k'; 3_000];
    let records = [
        (None, NORMAL_LINE),
        (Some(key.as_slice()), NORMAL_LINE),
        (None, NORMAL_LINE),
    ];
    let (_, enriched, letters) = run_host_on(
        "oversize-key",
        &records,
        &[],
        &["--kafka-option", "message.max.bytes=2000"],
    );
    assert_normal_lines_enriched(&enriched);
    assert_eq!(letters.len(), 1, "dead letters");
    let letter = &letters[0];
    assert_eq!(letter.key, None);
    assert_eq!(letter.value, NORMAL_LINE);
    assert_eq!(letter.header("weblog.key.length"), "3000");
    assert_eq!(letter.header("weblog.error.kind"), "invalid-output");
    assert_eq!(letter.header("weblog.source.offset"), "1");
    let reason = letter.header("weblog.error.reason");
    assert!(reason.contains("message.max.bytes of 2000"), "{reason}");
}

/// A record that the enriched topic's `max.message.bytes` rejects goes to
/// the dead-letter topic alone: the records produced with it are still
/// enriched, because the host keeps its batches within the topic's limit.
#[test]
fn large_enriched_record_is_rejected_alone() {
    let topics = TestTopics {
        raw: unique_name("topic-limit-raw"),
        enriched: unique_name("topic-limit-enriched"),
        dlq: unique_name("topic-limit-dlq"),
    };
    create_topics_with_config(&[&topics.raw, &topics.dlq], 1, &[]);
    create_topics_with_config(&[&topics.enriched], 1, &[("max.message.bytes", "100000")]);
    // The path of the large line does not compress, and appears twice in
    // its enriched record, which makes that record over 100,000 bytes.
    let head = b"192.0.2.1 - - [04/Dec/2026:10:00:00 +0000] \"GET /".to_vec();
    let mut large = head.clone();
    large.extend(random_text(60_000).iter().map(|byte| b'a' + byte % 26));
    large.extend_from_slice(b" HTTP/1.1\" 200 10");
    let mut lines: Vec<Vec<u8>> = (0..600).map(|_| NORMAL_LINE.to_vec()).collect();
    lines.push(large.clone());
    lines.extend((0..600).map(|_| NORMAL_LINE.to_vec()));
    let records: Vec<(Option<&[u8]>, &[u8])> =
        lines.iter().map(|line| (None, line.as_slice())).collect();
    produce(&topics.raw, &records);

    let dir = tempfile::tempdir().expect("temp dir");
    let group = unique_name("topic-limit");
    let mut command: Command = host_run_command(&topics, &group, &default_plugin());
    command.arg("--no-component-cache");
    let stderr = run_host_until_committed(command, dir.path(), &group, &topics.raw);

    let letters = read_to_end(&topics.dlq, Duration::from_secs(30));
    assert_eq!(letters.len(), 1, "dead letters");
    assert_eq!(letters[0].value, large);
    assert_eq!(letters[0].header("weblog.source.offset"), "600");
    assert_eq!(letters[0].header("weblog.error.kind"), "invalid-output");
    let enriched = read_to_end(&topics.enriched, Duration::from_secs(30));
    assert_eq!(enriched.len(), 1_200, "enriched records");
    assert!(
        stderr.contains("keeping producer batches within the topic's max.message.bytes"),
        "{stderr}"
    );
}

/// When the broker rejects an input's dead letter and the small dead
/// letter as well, the host stops at once with the error and leaves the
/// input uncommitted, instead of running on without committing while its
/// health checks pass.
#[test]
fn rejected_small_dead_letter_stops_host() {
    let topics = TestTopics {
        raw: unique_name("small-limits-raw"),
        enriched: unique_name("small-limits-enriched"),
        dlq: unique_name("small-limits-dlq"),
    };
    create_topics_with_config(&[&topics.raw], 1, &[]);
    create_topics_with_config(&[&topics.enriched], 1, &[]);
    create_topics_with_config(&[&topics.dlq], 1, &[("max.message.bytes", "1200")]);
    let long = random_text(1_500);
    produce(&topics.raw, &[(None, long.as_slice())]);

    let dir = tempfile::tempdir().expect("temp dir");
    let group = unique_name("small-limits");
    let mut command: Command = host_run_command(&topics, &group, &default_plugin());
    command.arg("--no-component-cache");
    let mut host = ChildProcess::spawn("host", command, dir.path());
    let exited = wait_until(Duration::from_secs(90), || host.has_exited());
    assert!(exited, "host still runs: {}", host.stderr());

    let status = host.wait();
    let stderr = host.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("committing stopped, stopping the pipeline"),
        "{stderr}"
    );
    assert!(
        stderr.contains("offsets from this batch on stay uncommitted"),
        "{stderr}"
    );
    assert_eq!(
        committed_and_end(&group, &topics.raw),
        vec![(0, None, 1)],
        "committed offsets"
    );
}

/// A line just under the producer's max record size, whose dead letter
/// with headers is over it, is dead-lettered with its first bytes.
#[test]
fn near_max_line_dead_letter_is_cut() {
    near_max_line_is_cut("near-max-alo", &[]);
}

/// The same with `--exactly-once`.
#[test]
fn near_max_line_dead_letter_is_cut_exactly_once() {
    near_max_line_is_cut("near-max-eos", &["--exactly-once"]);
}

/// Returns `length` bytes of seeded random printable ASCII: not a CLF
/// line, so the plugin rejects it, and not compressible by lz4, so the
/// broker checks about its full size.
fn random_text(length: usize) -> Vec<u8> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'!' + (state % 94) as u8
        })
        .collect()
}

fn small_dlq_topic_gets_small_letter(label: &str, extra: &[&str]) {
    let long = random_text(5_000);
    let (_, enriched, letters) = run_host(label, &long, &[("max.message.bytes", "2000")], extra);
    assert_cut_dead_letter(&long, &letters, 1024);
    let reason = letters[0].header("weblog.error.reason");
    assert!(
        reason.contains("the broker rejected its dead letter too"),
        "{reason}"
    );
    assert_normal_lines_enriched(&enriched);
}

/// A dead letter that the dead-letter topic's `max.message.bytes` rejects
/// is sent again with the first KiB of its input.
#[test]
fn small_dlq_topic_gets_small_dead_letter() {
    small_dlq_topic_gets_small_letter("small-dlq-alo", &[]);
}

/// The same with `--exactly-once`.
#[test]
fn small_dlq_topic_gets_small_dead_letter_exactly_once() {
    small_dlq_topic_gets_small_letter("small-dlq-eos", &["--exactly-once"]);
}
