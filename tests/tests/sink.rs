//! weblog-sink against a real broker: the file contains each record once,
//! also when the sink is killed with SIGKILL and rotates its file, offsets
//! are committed, and invalid records go to the dead-letter topic.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::kafka::{
    bootstrap, committed_and_end, create_topics, produce, produce_to_partitions, unique_name,
    TopicReader,
};
use crate::util::{binary, run_bounded, sigkill_seed, wait_until, ChildProcess, SeededRandom};

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

/// Records in the SIGKILL test, spread over `KILL_PARTITIONS` partitions.
const KILL_RECORDS: usize = 20_000;

/// Partitions of the SIGKILL test's topic.
const KILL_PARTITIONS: i32 = 3;

/// Rotation size in the SIGKILL test: about 900 records, so the test
/// writes about 20 files and kills land in rotations too.
const KILL_ROTATE_BYTES: u64 = 16_384;

/// Returns `weblog-sink` for the SIGKILL test: small batches, rotation by
/// size, and static group membership, so that a restarted sink takes its
/// partitions back without waiting for the killed one's session to expire.
fn kill_test_command(topic: &str, dlq: &str, group: &str, output: &Path) -> Command {
    let mut command = Command::new(binary("weblog-sink"));
    command
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--topic", topic, "--dlq-topic", dlq, "--group-id", group])
        .args(["--batch-size", "50", "--batch-linger-ms", "10"])
        .args(["--rotate-bytes", &KILL_ROTATE_BYTES.to_string()])
        .args(["--kafka-option", &format!("group.instance.id={group}-0")])
        .args(["--kafka-option", "session.timeout.ms=6000"])
        .args(["--kafka-option", "heartbeat.interval.ms=500"])
        .arg("--output")
        .arg(output);
    command
}

/// Returns the next offsets in the sink's checkpoint per partition, empty
/// when there is no checkpoint yet.
fn checkpoint_offsets(path: &Path) -> BTreeMap<i64, i64> {
    let Ok(content) = std::fs::read(path) else {
        return BTreeMap::new();
    };
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&content).expect("checkpoint is valid JSON");
    let offsets = checkpoint["offsets"].as_array().expect("offsets is a list");
    offsets
        .iter()
        .map(|entry| {
            let partition = entry["partition"].as_i64().expect("partition is a number");
            let next = entry["next_offset"]
                .as_i64()
                .expect("next_offset is a number");
            (partition, next)
        })
        .collect()
}

/// Returns the rotated files in sequence order, then the current file.
fn output_files(output: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sequence in 1.. {
        let rotated = PathBuf::from(format!("{}.{sequence:06}", output.display()));
        if !rotated.exists() {
            break;
        }
        files.push(rotated);
    }
    files.push(output.to_path_buf());
    files
}

/// The sink is killed with SIGKILL at seeded random moments while it
/// writes and rotates, and restarted each time. In the end the files
/// contain every record exactly once, each partition in order, and every
/// file is complete JSON Lines.
#[test]
fn sigkill_writes_each_record_once() {
    const KILLS: usize = 12;
    // WEBLOG_SIGKILL_SEED picks other kill moments, to explore.
    let seed = sigkill_seed(0x51_4b11_2026);
    let mut random = SeededRandom(seed);

    let topic = unique_name("sink-sigkill");
    let dlq = unique_name("sink-sigkill-dlq");
    create_topics(&[&topic, &dlq], KILL_PARTITIONS);
    let values: Vec<(i32, String)> = (0..KILL_RECORDS)
        .map(|n| {
            let partition = n as i32 % KILL_PARTITIONS;
            (partition, format!("{{\"n\":{n},\"p\":{partition}}}"))
        })
        .collect();
    let records: Vec<(i32, &[u8])> = values
        .iter()
        .map(|(partition, value)| (*partition, value.as_bytes()))
        .collect();
    produce_to_partitions(&topic, &records);

    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out.jsonl");
    let checkpoint = dir.path().join("out.jsonl.checkpoint");
    let group = unique_name("sink-sigkill");
    // Checkpointed records at each kill, to show the kills spread over the
    // run.
    let mut progress = Vec::new();
    for kill in 0..KILLS {
        let name = format!("sink-{kill}");
        let command = kill_test_command(&topic, &dlq, &group, &output);
        let mut sink = ChildProcess::spawn(&name, command, dir.path());
        std::thread::sleep(Duration::from_millis(random.between(300, 1_500)));
        let status = sink.kill_hard();
        assert_eq!(
            status.signal(),
            Some(9),
            "{name} exited on its own with {status}:\n{}",
            sink.stderr()
        );
        progress.push(checkpoint_offsets(&checkpoint).values().sum::<i64>());
    }

    let command = kill_test_command(&topic, &dlq, &group, &output);
    let mut last = ChildProcess::spawn("sink-last", command, dir.path());
    // The killed runs may already have written everything, so wait until
    // this one handles signals before the SIGTERM below.
    let started = wait_until(Duration::from_secs(30), || {
        last.stderr().contains("sink started")
    });
    assert!(started, "last sink never started: {}", last.stderr());
    let per_partition = (KILL_RECORDS as i64) / i64::from(KILL_PARTITIONS);
    let expected: BTreeMap<i64, i64> = (0..i64::from(KILL_PARTITIONS))
        .map(|partition| {
            let extra = i64::from(partition < (KILL_RECORDS as i64) % i64::from(KILL_PARTITIONS));
            (partition, per_partition + extra)
        })
        .collect();
    let done = wait_until(Duration::from_secs(60), || {
        checkpoint_offsets(&checkpoint) == expected
    });
    assert!(
        done,
        "checkpoint stuck at {:?}: {}",
        checkpoint_offsets(&checkpoint),
        last.stderr()
    );
    let (status, _) = last.terminate(Duration::from_secs(30));
    assert!(status.success(), "sink exit {status}: {}", last.stderr());

    let files = output_files(&output);
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut last_in_partition: BTreeMap<u64, u64> = BTreeMap::new();
    let mut total = 0;
    for (index, file) in files.iter().enumerate() {
        let content = std::fs::read_to_string(file).expect("read output file");
        assert!(
            content.is_empty() || content.ends_with('\n'),
            "{file:?} ends in a partial line"
        );
        if index + 1 < files.len() {
            assert!(
                content.len() as u64 >= KILL_ROTATE_BYTES,
                "rotated file {file:?} has only {} bytes",
                content.len()
            );
        }
        for line in content.lines() {
            let record: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("invalid JSON line {line:?} in {file:?}: {error}"));
            let n = record["n"].as_u64().expect("n is a number");
            let partition = record["p"].as_u64().expect("p is a number");
            *seen.entry(n).or_default() += 1;
            if let Some(previous) = last_in_partition.insert(partition, n) {
                assert!(
                    previous < n,
                    "partition {partition} out of order: {previous} before {n} in {file:?}"
                );
            }
            total += 1;
        }
    }
    let duplicates: Vec<(u64, usize)> = seen
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(n, count)| (*n, *count))
        .collect();
    let missing: Vec<u64> = (0..KILL_RECORDS as u64)
        .filter(|n| !seen.contains_key(n))
        .collect();
    println!(
        "sigkill_writes_each_record_once: seed {seed:#x}, {KILLS} kills, {KILL_RECORDS} \
         records, {total} lines in {} files, {} duplicates, {} missing, checkpointed \
         records at each kill {progress:?}",
        files.len(),
        duplicates.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "records lost: {missing:?}");
    assert!(
        duplicates.is_empty(),
        "records written twice: {duplicates:?}"
    );
    assert_eq!(seen.len(), KILL_RECORDS);
    assert_eq!(total, KILL_RECORDS);
    assert!(files.len() > 2, "only {} files: no rotation", files.len());

    let ends: Vec<(i32, Option<i64>, i64)> = expected
        .iter()
        .map(|(partition, end)| (*partition as i32, Some(*end), *end))
        .collect();
    assert_eq!(committed_and_end(&group, &topic), ends);
}

/// Returns a sink command that reads `topic` into `output` as `group`.
pub fn sink_command(topic: &str, dlq: &str, group: &str, output: &Path) -> Command {
    let mut command = Command::new(binary("weblog-sink"));
    command
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--topic", topic, "--dlq-topic", dlq, "--group-id", group])
        .arg("--output")
        .arg(output);
    command
}

/// A second sink on an output that a running sink writes exits with an
/// error naming the lock, and the first sink keeps writing.
#[test]
fn second_sink_on_same_output_is_rejected() {
    let topic = unique_name("sink-lock-in");
    let dlq = unique_name("sink-lock-dlq");
    create_topics(&[&topic, &dlq], 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out.jsonl");
    let first_group = unique_name("sink-lock");
    let command = sink_command(&topic, &dlq, &first_group, &output);
    let mut first = ChildProcess::spawn("first-sink", command, dir.path());
    let started = wait_until(Duration::from_secs(60), || {
        first.stderr().contains("sink started")
    });
    assert!(started, "first sink did not start: {}", first.stderr());

    let second_group = unique_name("other-sink");
    let mut command = sink_command(&topic, &dlq, &second_group, &output);
    let second = run_bounded(&mut command, Duration::from_secs(60));

    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another sink holds lock file"), "{stderr}");
    assert!(stderr.contains("out.jsonl.lock"), "{stderr}");
    assert!(stderr.contains("stop the other sink"), "{stderr}");
    assert!(!stderr.contains("output file opened"), "{stderr}");
    first.assert_running();

    let records: Vec<String> = (0..100).map(|i| format!("{{\"n\":{i}}}")).collect();
    let messages: Vec<(Option<&[u8]>, &[u8])> =
        records.iter().map(|r| (None, r.as_bytes())).collect();
    produce(&topic, &messages);
    let done = wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&output).map_or(0, |text| text.lines().count()) >= 100
    });
    assert!(
        done,
        "first sink did not write 100 records: {}",
        first.stderr()
    );
    let (status, stdout) = first.terminate(Duration::from_secs(30));
    assert!(status.success(), "sink exit {status}: {}", first.stderr());
    assert!(stdout.contains("wrote 100 records"), "{stdout}");
    let written: Vec<String> = std::fs::read_to_string(&output)
        .expect("read output")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(written, records);
}

/// An `--output` that is a directory is an invalid setting: the sink
/// exits with status 2, as for an invalid flag, and names the fix.
#[test]
fn output_directory_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = sink_command("any-topic", "any-dlq", "any-group", dir.path());

    let result = run_bounded(&mut command, Duration::from_secs(60));

    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("it is a directory"), "{stderr}");
    assert!(stderr.contains("pass a file path as --output"), "{stderr}");
}

/// A missing input or dead-letter topic stops the sink at start with an
/// error naming the topic, the broker and how to create it.
#[test]
fn missing_topics_fail_at_start() {
    let existing = unique_name("sink-topic-in");
    let missing = unique_name("sink-topic-missing");
    create_topics(&[&existing], 1);
    let cases = [
        ("--topic", missing.as_str(), existing.as_str()),
        ("--dlq-topic", existing.as_str(), missing.as_str()),
    ];
    for (flag, topic, dlq) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("out.jsonl");
        let mut command = sink_command(topic, dlq, &unique_name("sink-topic"), &output);

        let result = run_bounded(&mut command, Duration::from_secs(60));

        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!("topic {missing:?} does not exist")),
            "{flag}: {stderr}"
        );
        assert!(stderr.contains(&bootstrap()), "{flag}: {stderr}");
        assert!(
            stderr.contains("scripts/kafka.sh topics"),
            "{flag}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("pass another {flag}")),
            "{flag}: {stderr}"
        );
        assert!(!stderr.contains("sink started"), "{flag}: {stderr}");
    }
}
