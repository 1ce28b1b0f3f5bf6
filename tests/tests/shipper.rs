//! weblog-shipper against a real broker: exact bytes in order, clear
//! errors for a missing file or topic, following a file through appends
//! and rotations, resuming from the checkpoint after SIGTERM and SIGKILL,
//! and lines too large for the topic.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::kafka::{
    bootstrap, create_topics, create_topics_with_config, unique_name, Received, TopicReader,
};
use crate::util::{binary, run, ChildProcess, SeededRandom};

fn shipper(topic: &str, file: &std::path::Path) -> std::process::Output {
    run(Command::new(binary("weblog-shipper"))
        .args([
            "--bootstrap-servers",
            &bootstrap(),
            "--topic",
            topic,
            "--file",
        ])
        .arg(file))
}

/// Each line arrives as its raw bytes without the `\n`: a `\r`, bytes that
/// are not UTF-8, an empty line and a last line without newline included.
#[test]
fn ships_exact_bytes_in_order() {
    let topic = unique_name("shipper-bytes");
    create_topics(&[&topic], 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("odd.log");
    std::fs::write(&path, b"first\r\n\nthird \xff\xfe\nlast without newline").expect("write");

    let output = shipper(&topic, &path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("sent 4 lines"), "{stdout}");

    let mut reader = TopicReader::new(&topic);
    reader.read_at_least(4, std::time::Duration::from_secs(30));
    reader.poll_for(std::time::Duration::from_millis(500));
    let values: Vec<&[u8]> = reader.received.iter().map(|r| r.value.as_slice()).collect();
    assert_eq!(
        values,
        vec![
            &b"first\r"[..],
            b"",
            b"third \xff\xfe",
            b"last without newline"
        ]
    );
}

/// A missing file is an error that names it, and nothing is sent.
#[test]
fn missing_file_names_path() {
    let topic = unique_name("shipper-missing");
    let output = shipper(&topic, std::path::Path::new("/nonexistent/access.log"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("/nonexistent/access.log"), "{stderr}");
    assert!(stderr.contains("No such file"), "{stderr}");
}

/// Standard input from a pipe is rejected before the shipper opens it or
/// connects, with the file type and what to do instead.
#[test]
fn stdin_pipe_is_rejected() {
    let topic = unique_name("shipper-stdin");
    // `output` closes the write end at once, so the shipper's standard
    // input is an empty pipe.
    let output = run(Command::new(binary("weblog-shipper"))
        .args(["--bootstrap-servers", &bootstrap(), "--topic", &topic])
        .args(["--file", "/dev/stdin"])
        .stdin(std::process::Stdio::piped()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "failed to open log file \"/dev/stdin\": it is a pipe, and the shipper reads \
             only regular files, by byte offset; write the lines to a file first and ship \
             that file"
        ),
        "{stderr}"
    );
}

/// A topic that does not exist is an error naming it, not a hang.
#[test]
fn missing_topic_names_topic() {
    let topic = unique_name("shipper-no-topic");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("one.log");
    std::fs::write(&path, b"line\n").expect("write");
    let output = shipper(&topic, &path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&topic), "{stderr}");
}

/// Max wait for records to arrive in a topic.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Max wait for the shipper to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Poll interval of the followed file in these tests, short so that they
/// run quickly.
const TEST_POLL_INTERVAL_MS: &str = "20";

/// Returns the command that follows `file` into `topic` with `checkpoint`.
fn follow_command(topic: &str, file: &Path, checkpoint: &Path) -> Command {
    let mut command = Command::new(binary("weblog-shipper"));
    command
        .args(["--bootstrap-servers", &bootstrap(), "--topic", topic])
        .args(["--follow", "--poll-interval-ms", TEST_POLL_INTERVAL_MS])
        .arg("--file")
        .arg(file)
        .arg("--checkpoint")
        .arg(checkpoint);
    command
}

/// Returns `count` lines `<prefix>-<n>` numbered from `first`, each with
/// its `\n`.
fn numbered(prefix: &str, first: usize, count: usize) -> Vec<u8> {
    let mut content = Vec::new();
    for number in first..first + count {
        content.extend(format!("{prefix}-{number:04}\n").as_bytes());
    }
    content
}

/// Returns the values of `numbered(prefix, first, count)` without `\n`.
fn numbered_values(prefix: &str, first: usize, count: usize) -> Vec<Vec<u8>> {
    (first..first + count)
        .map(|number| format!("{prefix}-{number:04}").into_bytes())
        .collect()
}

fn append(path: &Path, content: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap_or_else(|error| panic!("failed to open {path:?} for append: {error}"));
    file.write_all(content)
        .unwrap_or_else(|error| panic!("failed to append to {path:?}: {error}"));
}

/// Reads until `reader` has received `count` records, panicking with the
/// shipper's log if they do not arrive.
fn await_records(reader: &mut TopicReader, count: usize, shipper: &mut ChildProcess) {
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    while reader.received.len() < count && Instant::now() < deadline {
        shipper.assert_running();
        reader.poll_for(Duration::from_millis(100));
    }
    assert!(
        reader.received.len() >= count,
        "{} of {count} records arrived within {ARRIVAL_TIMEOUT:?}; shipper log:\n{}",
        reader.received.len(),
        shipper.stderr()
    );
}

fn values(received: &[Received]) -> Vec<Vec<u8>> {
    received.iter().map(|record| record.value.clone()).collect()
}

/// Stops the shipper with SIGTERM, checks that it exits 0, and returns
/// its stdout.
fn stop_cleanly(shipper: &mut ChildProcess) -> String {
    // A shipper that has nothing left to send may still be starting, and a
    // SIGTERM before it handles signals would end it without a clean stop.
    let started = crate::util::wait_until(STOP_TIMEOUT, || {
        shipper.stderr().contains("shipping log file")
    });
    assert!(started, "shipper never started: {}", shipper.stderr());
    let (status, stdout) = shipper.terminate(STOP_TIMEOUT);
    assert!(
        status.success(),
        "shipper exited with {status}:\n{}",
        shipper.stderr()
    );
    stdout
}

/// A shipper following `access.log` in a temporary directory into a
/// one-partition topic of its own, and a reader of that topic.
struct Followed {
    dir: tempfile::TempDir,
    path: PathBuf,
    checkpoint: PathBuf,
    topic: String,
    shipper: ChildProcess,
    reader: TopicReader,
}

impl Followed {
    /// Writes `count` numbered lines with `prefix`, starts the shipper and
    /// waits until the lines arrive.
    fn start(prefix: &str, count: usize) -> Self {
        let topic = unique_name(&format!("shipper-{prefix}"));
        create_topics(&[&topic], 1);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        let checkpoint = dir.path().join("shipper.checkpoint");
        append(&path, &numbered(prefix, 1, count));

        let command = follow_command(&topic, &path, &checkpoint);
        let shipper = ChildProcess::spawn("shipper", command, dir.path());
        let mut followed = Self {
            reader: TopicReader::new(&topic),
            dir,
            path,
            checkpoint,
            topic,
            shipper,
        };
        followed.await_records(count);
        followed
    }

    fn await_records(&mut self, count: usize) {
        await_records(&mut self.reader, count, &mut self.shipper);
    }

    /// Asserts that lines 1 to `count` with `prefix` arrived once each, in
    /// order, and nothing else.
    fn assert_arrived(&self, prefix: &str, count: usize) {
        assert_eq!(
            values(&self.reader.received),
            numbered_values(prefix, 1, count)
        );
    }

    /// Stops the shipper cleanly, reads what else arrives, and returns the
    /// shipper's stdout.
    fn stop(&mut self) -> String {
        let stdout = stop_cleanly(&mut self.shipper);
        self.reader.poll_for(Duration::from_millis(500));
        stdout
    }
}

/// Appended lines arrive once each and in order, and a last line without
/// `\n` waits until its `\n` is written.
#[test]
fn follow_ships_appended_lines() {
    let mut followed = Followed::start("append", 2);

    append(&followed.path, b"append-0003\nappend-00");
    followed.await_records(3);
    // Several polls pass with the half-written line in the file.
    followed.reader.poll_for(Duration::from_millis(300));
    assert_eq!(
        followed.reader.received.len(),
        3,
        "the partial line was sent"
    );
    append(&followed.path, b"04\n");
    append(&followed.path, &numbered("append", 5, 3));
    followed.await_records(7);
    let stdout = followed.stop();

    assert!(stdout.starts_with("sent 7 lines"), "{stdout}");
    followed.assert_arrived("append", 7);
}

/// A rotation by rename: lines written to the old file after the rename,
/// while the path is missing, come before the new file's lines, and each
/// line arrives once.
#[test]
fn follow_survives_rename_rotation() {
    let mut followed = Followed::start("rename", 10);
    let path = followed.path.clone();
    let rotated = followed.dir.path().join("access.log.1");

    append(&path, &numbered("rename", 11, 2));
    std::fs::rename(&path, &rotated).expect("rotate by rename");
    // The path stays missing for several polls, and the web server still
    // writes to the file it has open.
    std::thread::sleep(Duration::from_millis(300));
    append(&rotated, &numbered("rename", 13, 2));
    std::thread::sleep(Duration::from_millis(300));
    append(&path, &numbered("rename", 15, 6));
    followed.await_records(20);
    append(&path, &numbered("rename", 21, 2));
    followed.await_records(22);
    followed.stop();

    followed.assert_arrived("rename", 22);
    let log = followed.shipper.stderr();
    assert!(log.contains("log file is gone from its path"), "{log}");
    assert!(log.contains("log file was rotated"), "{log}");
}

/// A directory at the followed path after a rotation is waited out with a
/// warning naming the path and the cause, as `tail -F` does, and the file
/// created there next is shipped.
#[test]
fn follow_waits_out_directory_at_path() {
    let mut followed = Followed::start("dir", 2);
    std::fs::rename(&followed.path, followed.dir.path().join("access.log.1")).expect("rotate");
    std::fs::create_dir(&followed.path).expect("create a directory at the path");

    let warned = crate::util::wait_until(STOP_TIMEOUT, || {
        let stderr = followed.shipper.stderr();
        stderr.contains("failed to open log file; retrying every poll interval")
            && stderr.contains("it is a directory, not a file")
    });
    assert!(warned, "no warning: {}", followed.shipper.stderr());
    followed.shipper.assert_running();

    std::fs::remove_dir(&followed.path).expect("remove the directory");
    append(&followed.path, &numbered("dir", 3, 2));
    followed.await_records(4);
    let stdout = followed.stop();
    assert!(stdout.starts_with("sent 4 lines"), "{stdout}");
    followed.assert_arrived("dir", 4);
    let warnings = followed
        .shipper
        .stderr()
        .matches("it is a directory, not a file")
        .count();
    assert_eq!(warnings, 1, "{}", followed.shipper.stderr());
}

/// A rotation by copy-truncate, once to a size below the read offset and
/// once rewritten past it before the next poll: each line arrives once,
/// in order.
#[test]
fn follow_survives_copy_truncate() {
    let mut followed = Followed::start("copy", 10);
    let path = followed.path.clone();

    copy_truncate(&path, &followed.dir.path().join("access.log.1"));
    append(&path, &numbered("copy", 11, 3));
    followed.await_records(13);
    // Let the shipper go idle at the end of the file first.
    followed.reader.poll_for(Duration::from_millis(200));
    copy_truncate(&path, &followed.dir.path().join("access.log.2"));
    append(&path, &numbered("copy", 14, 30));
    followed.await_records(43);
    followed.stop();

    followed.assert_arrived("copy", 43);
    let log = followed.shipper.stderr();
    assert!(log.contains("log file was truncated"), "{log}");
}

/// Copies the file to `copy`, then truncates it, as logrotate's
/// copytruncate does.
fn copy_truncate(path: &Path, copy: &Path) {
    std::fs::copy(path, copy).expect("copy log");
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open log for truncate")
        .set_len(0)
        .expect("truncate log");
}

/// After a clean stop, a restart resumes at the checkpoint: lines appended
/// while it was down, including those in a file rotated away meanwhile,
/// arrive once each, in order.
#[test]
fn restart_resumes_after_rotation_while_down() {
    let mut followed = Followed::start("resume", 5);
    let path = followed.path.clone();
    followed.stop();

    append(&path, &numbered("resume", 6, 3));
    std::fs::rename(&path, followed.dir.path().join("access.log.1")).expect("rotate");
    append(&path, &numbered("resume", 9, 4));
    let command = follow_command(&followed.topic, &path, &followed.checkpoint);
    followed.shipper = ChildProcess::spawn("second", command, followed.dir.path());
    followed.await_records(12);
    followed.stop();

    followed.assert_arrived("resume", 12);
    let log = followed.shipper.stderr();
    assert!(log.contains("rotated while the shipper was down"), "{log}");
}

/// Bytes per line in the SIGKILL test, `\n` included. Fixed so that a
/// checkpoint offset converts to a line count.
const KILL_LINE_BYTES: usize = 64;

/// Returns line `index` of the SIGKILL test, `KILL_LINE_BYTES` long.
fn kill_test_line(index: usize) -> Vec<u8> {
    let mut line = format!("kill-test line {index:06} ").into_bytes();
    line.resize(KILL_LINE_BYTES - 1, b'.');
    line.push(b'\n');
    line
}

/// Returns the byte offset in the checkpoint at `path`, 0 when there is no
/// checkpoint or no file in it yet.
fn checkpoint_offset(path: &Path) -> u64 {
    let Ok(content) = std::fs::read(path) else {
        return 0;
    };
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&content).expect("checkpoint is valid JSON");
    let files = checkpoint["files"].as_array().expect("files is a list");
    assert!(files.len() <= 1, "one file without rotation: {checkpoint}");
    files
        .first()
        .map(|file| file["offset"].as_u64().expect("offset is a number"))
        .unwrap_or(0)
}

/// The shipper is killed with SIGKILL at seeded random moments while lines
/// are appended, and restarted each time. No line is lost, and a line
/// arrives more than once only as often as it fell in a kill's window:
/// from the line the checkpoint covered after the kill to the last line
/// written before it. The total of those windows is the bound asserted.
#[test]
fn sigkill_loses_no_line() {
    const TOTAL_LINES: usize = 4_000;
    const KILLS: usize = 6;
    // WEBLOG_SIGKILL_SEED picks other kill moments, to explore.
    let seed = std::env::var("WEBLOG_SIGKILL_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x5eed_2026_u64);
    let mut random = SeededRandom(seed);

    let topic = unique_name("shipper-sigkill");
    create_topics(&[&topic], 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("access.log");
    let checkpoint = dir.path().join("shipper.checkpoint");
    std::fs::write(&path, b"").expect("create log");

    // About 800 lines a second, in bursts, for about five seconds.
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let written = Arc::clone(&written);
        let path = path.clone();
        let mut random = SeededRandom(seed ^ 0xffff);
        std::thread::spawn(move || {
            let mut next = 0;
            while next < TOTAL_LINES {
                let burst = (random.between(1, 15) as usize).min(TOTAL_LINES - next);
                let content: Vec<u8> = (next..next + burst).flat_map(kill_test_line).collect();
                append(&path, &content);
                next += burst;
                written.store(next, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(random.between(5, 15)));
            }
        })
    };

    // (first line not covered by the checkpoint, lines written) per kill.
    let mut windows: Vec<(usize, usize)> = Vec::new();
    for kill in 0..KILLS {
        let name = format!("shipper-{kill}");
        let command = follow_command(&topic, &path, &checkpoint);
        let mut shipper = ChildProcess::spawn(&name, command, dir.path());
        std::thread::sleep(Duration::from_millis(random.between(50, 1_200)));
        let status = shipper.kill_hard();
        assert_eq!(
            status.signal(),
            Some(9),
            "{name} exited on its own with {status}:\n{}",
            shipper.stderr()
        );
        let lines_written = written.load(Ordering::SeqCst);
        let offset = checkpoint_offset(&checkpoint) as usize;
        assert_eq!(offset % KILL_LINE_BYTES, 0, "offset {offset} splits a line");
        windows.push((offset / KILL_LINE_BYTES, lines_written));
    }

    let command = follow_command(&topic, &path, &checkpoint);
    let mut last = ChildProcess::spawn("shipper-last", command, dir.path());
    writer.join().expect("writer thread");
    let mut reader = TopicReader::new(&topic);
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    while distinct_lines(&reader.received) < TOTAL_LINES && Instant::now() < deadline {
        last.assert_running();
        reader.poll_for(Duration::from_millis(200));
    }
    stop_cleanly(&mut last);
    reader.poll_for(Duration::from_millis(1_000));

    let mut arrivals: BTreeMap<usize, usize> = BTreeMap::new();
    for record in &reader.received {
        *arrivals.entry(kill_test_index(&record.value)).or_default() += 1;
    }
    let missing: Vec<usize> = (0..TOTAL_LINES)
        .filter(|index| !arrivals.contains_key(index))
        .collect();
    assert!(missing.is_empty(), "lines lost: {missing:?}");
    assert_eq!(arrivals.len(), TOTAL_LINES, "unexpected lines arrived");

    let duplicates = reader.received.len() - TOTAL_LINES;
    let bound: usize = windows
        .iter()
        .map(|(from, to)| to.saturating_sub(*from))
        .sum();
    println!(
        "sigkill_loses_no_line: seed {seed:#x}, {KILLS} kills, {TOTAL_LINES} lines, \
         {duplicates} duplicates, bound {bound}, windows {windows:?}"
    );
    for (index, count) in &arrivals {
        let windows_with_line = windows
            .iter()
            .filter(|(from, to)| from <= index && index < to)
            .count();
        assert!(
            count - 1 <= windows_with_line,
            "line {index} arrived {count} times but lies in {windows_with_line} kill windows"
        );
    }
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates over the bound {bound}"
    );
    assert_eq!(
        checkpoint_offset(&checkpoint) as usize,
        TOTAL_LINES * KILL_LINE_BYTES,
        "the final checkpoint covers every line"
    );
}

/// Returns the line number of a SIGKILL test record.
fn kill_test_index(value: &[u8]) -> usize {
    let text = String::from_utf8_lossy(value);
    text.strip_prefix("kill-test line ")
        .and_then(|rest| rest.get(..6))
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("unexpected record {text:?}"))
}

fn distinct_lines(received: &[Received]) -> usize {
    let mut indexes: Vec<usize> = received
        .iter()
        .map(|record| kill_test_index(&record.value))
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    indexes.len()
}

/// Max size of a record batch in the topic of the oversize tests.
const SMALL_TOPIC_MAX_BYTES: &str = "2000";

/// Writes short lines around one line of `length` random printable bytes,
/// which lz4 cannot compress below the topic's max. Returns the path, the
/// long line and its byte offset.
fn log_with_long_line(dir: &Path, length: usize) -> (PathBuf, Vec<u8>, usize) {
    let mut random = SeededRandom(0x10a6);
    let long: Vec<u8> = (0..length)
        .map(|_| b'!' + random.between(0, 93) as u8)
        .collect();
    let mut content = numbered("around", 1, 3);
    let offset = content.len();
    content.extend(&long);
    content.push(b'\n');
    content.extend(numbered("around", 4, 3));
    let path = dir.join("access.log");
    std::fs::write(&path, &content).expect("write log");
    (path, long, offset)
}

/// A line over the topic's max.message.bytes, which only the broker
/// checks, goes to the dead-letter topic with its first bytes and headers.
/// The lines around it arrive once each, and the run exits 0.
#[test]
fn oversize_line_is_dead_lettered() {
    let topic = unique_name("shipper-oversize");
    let dlq = unique_name("shipper-oversize-dlq");
    create_topics_with_config(
        &[&topic],
        1,
        &[("max.message.bytes", SMALL_TOPIC_MAX_BYTES)],
    );
    create_topics(&[&dlq], 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, long, offset) = log_with_long_line(dir.path(), 6_000);

    let output = run(Command::new(binary("weblog-shipper"))
        .args(["--bootstrap-servers", &bootstrap(), "--topic", &topic])
        .args(["--dlq-topic", &dlq, "--oversize-keep-bytes", "100"])
        .arg("--file")
        .arg(&path));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.starts_with("sent 6 lines"), "{stdout}");
    assert!(stdout.contains("dead-lettered 1 lines"), "{stdout}");

    let mut raw = TopicReader::new(&topic);
    raw.read_at_least(6, ARRIVAL_TIMEOUT);
    raw.poll_for(Duration::from_millis(500));
    let mut arrived = values(&raw.received);
    arrived.sort();
    let mut expected = numbered_values("around", 1, 6);
    expected.sort();
    assert_eq!(arrived, expected);

    let mut dead = TopicReader::new(&dlq);
    dead.read_at_least(1, ARRIVAL_TIMEOUT);
    dead.poll_for(Duration::from_millis(500));
    assert_eq!(dead.received.len(), 1);
    let letter = &dead.received[0];
    assert_eq!(letter.value, long[..100]);
    assert_eq!(letter.header("weblog.error.kind"), "line-too-long");
    assert_eq!(
        letter.header("weblog.source.file"),
        path.to_str().expect("UTF-8")
    );
    assert_eq!(letter.header("weblog.source.offset"), offset.to_string());
    assert_eq!(letter.header("weblog.line.length"), "6000");
    let reason = letter.header("weblog.error.reason");
    assert!(reason.contains("by the broker"), "{reason}");
    assert!(reason.contains("too large"), "{reason}");
}

/// With `--oversize truncate`, the line over the topic's max goes to the
/// raw topic cut short with a marker, between the lines around it.
#[test]
fn oversize_line_is_truncated() {
    let topic = unique_name("shipper-truncate-long");
    create_topics_with_config(
        &[&topic],
        1,
        &[("max.message.bytes", SMALL_TOPIC_MAX_BYTES)],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, long, _) = log_with_long_line(dir.path(), 6_000);

    let output = run(Command::new(binary("weblog-shipper"))
        .args(["--bootstrap-servers", &bootstrap(), "--topic", &topic])
        .args(["--oversize", "truncate", "--oversize-keep-bytes", "50"])
        .arg("--file")
        .arg(&path));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("sent 7 lines"), "{stdout}");
    assert!(stdout.contains("1 of them truncated"), "{stdout}");

    let mut raw = TopicReader::new(&topic);
    raw.read_at_least(7, ARRIVAL_TIMEOUT);
    raw.poll_for(Duration::from_millis(500));
    assert_eq!(raw.received.len(), 7);
    let mut truncated = long[..50].to_vec();
    truncated.extend(b" [weblog: line truncated from 6000 bytes]");
    let cut: Vec<&Received> = raw
        .received
        .iter()
        .filter(|record| record.value == truncated)
        .collect();
    assert_eq!(cut.len(), 1, "{:?}", values(&raw.received));
    assert_eq!(cut[0].header("weblog.line.length"), "6000");
}

/// Runs a one-shot shipper of `file` into `topic` with `checkpoint`.
fn ship_with_checkpoint(topic: &str, file: &Path, checkpoint: &Path) -> std::process::Output {
    run(Command::new(binary("weblog-shipper"))
        .args(["--bootstrap-servers", &bootstrap(), "--topic", topic])
        .arg("--file")
        .arg(file)
        .arg("--checkpoint")
        .arg(checkpoint))
}

/// A one-shot run with a checkpoint leaves a last line without `\n` for
/// the next run, so a line written across two runs arrives as one record.
#[test]
fn checkpoint_run_leaves_partial_line() {
    let topic = unique_name("shipper-partial");
    create_topics(&[&topic], 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("a.log");
    let checkpoint = dir.path().join("a.ckpt");

    append(&path, b"partial line no newline");
    let first = ship_with_checkpoint(&topic, &path, &checkpoint);
    let stdout = String::from_utf8_lossy(&first.stdout);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(stdout.starts_with("sent 0 lines"), "{stdout}");
    assert!(
        stdout.contains("left 23 bytes of an unterminated last line for the next run"),
        "{stdout}"
    );
    assert!(stderr.contains("left 23 bytes"), "{stderr}");

    append(&path, b" continued\n");
    let second = ship_with_checkpoint(&topic, &path, &checkpoint);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(stdout.starts_with("sent 1 lines (33 bytes)"), "{stdout}");
    assert!(!stdout.contains("unterminated"), "{stdout}");

    let mut reader = TopicReader::new(&topic);
    reader.read_at_least(1, ARRIVAL_TIMEOUT);
    reader.poll_for(Duration::from_millis(500));
    assert_eq!(
        values(&reader.received),
        vec![b"partial line no newline continued".to_vec()]
    );
}

/// A second shipper on the checkpoint of a running one fails at start,
/// naming the lock file, and sends nothing.
#[test]
fn second_shipper_on_checkpoint_fails() {
    let mut followed = Followed::start("locked", 2);
    append(&followed.path, b"locked-0003\n");
    followed.await_records(3);

    let second = ship_with_checkpoint(&followed.topic, &followed.path, &followed.checkpoint);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    let lock = format!("{}.lock", followed.checkpoint.display());
    assert!(stderr.contains(&lock), "{stderr}");
    assert!(
        stderr.contains("another shipper holds the lock"),
        "{stderr}"
    );
    assert!(stderr.contains("its own --checkpoint"), "{stderr}");

    let stdout = followed.stop();
    assert!(stdout.starts_with("sent 3 lines"), "{stdout}");
    followed.assert_arrived("locked", 3);
}
