//! The plugin sandbox against plugins that misbehave on purpose: the test
//! plugins in `tests/fixtures/plugins`. Each hostile behaviour runs through
//! `weblog-host enrich-file`, and the tests check that the host finishes,
//! reports each offending record with the right failure kind and reason,
//! and enriches every other record of the same batch exactly once, in
//! order. With the `kafka-tests` feature, the same poison record also goes
//! through `weblog-host run` into the dead-letter topic.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{binary, fixture_plugin, run_bounded};

/// Lines of the poison file; line 4 contains the trigger.
const POISON_LINES: usize = 10;
const POISON_LINE: usize = 4;
const TRIGGER: &str = "POISON";

/// Limit after which a run counts as hung. Every run here takes seconds.
const HANG_LIMIT: Duration = Duration::from_secs(120);

/// Short deadline and memory cap, so that failures come fast.
const FAST_LIMITS: [&str; 4] = ["--plugin-timeout-ms", "200", "--plugin-memory-mib", "16"];

fn hostile_plugin() -> PathBuf {
    fixture_plugin("weblog_test_hostile")
}

/// Result of one enrich-file run.
struct EnrichRun {
    success: bool,
    lines: Vec<Value>,
    stderr: String,
    elapsed: Duration,
}

/// Runs enrich-file with the hostile plugin in `mode` over `input`.
fn enrich(input: &Path, mode: &str, extra: &[&str]) -> EnrichRun {
    let mut command = Command::new(binary("weblog-host"));
    command
        .arg("enrich-file")
        .arg("--plugin")
        .arg(hostile_plugin())
        .arg("--input")
        .arg(input)
        .args(["--plugin-config", &format!("mode={mode}")])
        .args(extra);
    let started = Instant::now();
    let output = run_bounded(&mut command, HANG_LIMIT);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8(output.stdout).expect("enrich-file writes UTF-8");
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    EnrichRun {
        success: output.status.success(),
        lines,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed,
    }
}

/// Text of input line `number` (from 1) of the poison file.
fn poison_file_line(number: usize, poison: &[usize]) -> String {
    if poison.contains(&number) {
        format!("line {number} {TRIGGER}")
    } else {
        format!("line {number}")
    }
}

/// Writes `count` lines with the trigger on the lines in `poison`.
fn write_input(dir: &Path, count: usize, poison: &[usize]) -> PathBuf {
    let path = dir.join("input.log");
    let content: String = (1..=count)
        .map(|number| poison_file_line(number, poison) + "\n")
        .collect();
    std::fs::write(&path, content).expect("write input");
    path
}

/// Runs `mode` on the 10-line poison file, triggered by line 4 only.
fn enrich_poison_file(mode: &str, extra: &[&str]) -> EnrichRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = write_input(dir.path(), POISON_LINES, &[POISON_LINE]);
    let mut args = vec!["--plugin-config", "trigger=POISON"];
    args.extend_from_slice(extra);
    enrich(&input, mode, &args)
}

/// Checks that the output has one object per input line, in order, that
/// the lines in `poison` are rejected with `kind` and every other line is
/// enriched exactly once. Returns the rejection reasons in line order.
fn assert_poison_rejected(
    run: &EnrichRun,
    count: usize,
    poison: &[usize],
    kind: &str,
) -> Vec<String> {
    assert!(run.success, "enrich-file failed: {}", run.stderr);
    assert_eq!(run.lines.len(), count, "{:?}\n{}", run.lines, run.stderr);
    let mut reasons = Vec::new();
    for (index, line) in run.lines.iter().enumerate() {
        let number = index + 1;
        assert_eq!(line["line"], Value::from(number), "{line}");
        if poison.contains(&number) {
            assert_eq!(line["kind"], kind, "line {number}: {line}");
            assert!(line.get("records").is_none(), "line {number}: {line}");
            let reason = line["rejected"]
                .as_str()
                .expect("a rejected line has a reason");
            reasons.push(reason.to_string());
        } else {
            let records = line["records"]
                .as_array()
                .unwrap_or_else(|| panic!("line {number} not enriched: {line}\n{}", run.stderr));
            assert_eq!(records.len(), 1, "line {number}: {line}");
            assert_eq!(records[0]["offset"], Value::from(index), "{line}");
            assert_eq!(
                records[0]["line"],
                poison_file_line(number, poison),
                "{line}"
            );
        }
    }
    let summary = format!(
        "lines: {count}, enriched: {}, rejected: {}",
        count - poison.len(),
        poison.len()
    );
    assert!(run.stderr.contains(&summary), "{}", run.stderr);
    if !poison.is_empty() {
        assert!(
            run.stderr
                .contains(&format!("\n  {kind}: {}\n", poison.len())),
            "{}",
            run.stderr
        );
    }
    reasons
}

/// A plugin that loops forever on one record is stopped at the CPU
/// deadline. The record is a timeout, and the rest of its batch is enriched.
#[test]
fn infinite_loop_times_out() {
    let run = enrich_poison_file("loop", &FAST_LIMITS);
    let reasons = assert_poison_rejected(&run, POISON_LINES, &[POISON_LINE], "timeout");
    assert_eq!(
        reasons,
        vec!["plugin call exceeded the CPU deadline of 200 ms"]
    );
    assert!(run.elapsed < HANG_LIMIT, "took {:?}", run.elapsed);
}

/// A plugin that allocates without bound hits the memory cap; Rust's
/// allocation failure message on stderr ends up in the reason.
#[test]
fn unbounded_allocation_hits_memory_limit() {
    let run = enrich_poison_file("alloc", &FAST_LIMITS);
    let reasons = assert_poison_rejected(&run, POISON_LINES, &[POISON_LINE], "memory-limit");
    let reason = &reasons[0];
    assert!(
        reason.starts_with("plugin exceeded the memory limit of 16 MiB: "),
        "{reason}"
    );
    assert!(
        reason.contains("plugin stderr: memory allocation of 1048576 bytes failed"),
        "{reason}"
    );
}

/// A Rust plugin that recurses without end overflows its shadow stack at
/// the bottom of linear memory. The stack pointer wraps, so the next access
/// is out of bounds, which traps for that record only.
#[test]
fn stack_overflow_is_trap() {
    let run = enrich_poison_file("recurse", &FAST_LIMITS);
    let reasons = assert_poison_rejected(&run, POISON_LINES, &[POISON_LINE], "trap");
    let reason = &reasons[0];
    assert!(reason.starts_with("plugin trapped: "), "{reason}");
    assert!(
        reason.ends_with("wasm trap: out of bounds memory access"),
        "{reason}"
    );
}

/// A panic on the poison record is a trap whose reason carries the panic
/// message from stderr, on one line and without the wasm backtrace. The
/// records after it are enriched, so the trapped instance was replaced.
#[test]
fn panic_message_reaches_reason() {
    let run = enrich_poison_file("panic", &FAST_LIMITS);
    let reasons = assert_poison_rejected(&run, POISON_LINES, &[POISON_LINE], "trap");
    let reason = &reasons[0];
    assert!(
        reason.starts_with("plugin trapped: wasm trap: wasm `unreachable` instruction executed"),
        "{reason}"
    );
    assert!(reason.contains("panicked at"), "{reason}");
    assert!(reason.contains("poison record at offset 3"), "{reason}");
    assert!(!reason.contains('\n'), "{reason}");
    assert!(!reason.contains("wasm backtrace"), "{reason}");
    assert!(!reason.contains("RUST_BACKTRACE"), "{reason}");
    assert!(
        run.stderr.contains("poison record at offset 3"),
        "the summary names the reason: {}",
        run.stderr
    );
}

/// Several poison records in one batch, two of them adjacent, are each
/// isolated; the records between them are enriched once.
#[test]
fn several_poison_records_in_one_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let poison = [2, 3, 9];
    let input = write_input(dir.path(), 12, &poison);
    let mut args = vec!["--plugin-config", "trigger=POISON"];
    args.extend_from_slice(&FAST_LIMITS);
    let run = enrich(&input, "panic", &args);
    let reasons = assert_poison_rejected(&run, 12, &poison, "trap");
    for (reason, offset) in reasons.iter().zip([1, 2, 8]) {
        assert!(
            reason.contains(&format!("poison record at offset {offset}")),
            "{reason}"
        );
    }
}

/// A plugin that traps on every record loses every record to a trap, each
/// with its own dead letter, and the host still finishes.
#[test]
fn trap_on_every_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = write_input(dir.path(), POISON_LINES, &[]);
    let run = enrich(&input, "trap", &FAST_LIMITS);
    let all: Vec<usize> = (1..=POISON_LINES).collect();
    let reasons = assert_poison_rejected(&run, POISON_LINES, &all, "trap");
    for reason in &reasons {
        assert_eq!(
            reason,
            "plugin trapped: wasm trap: wasm `unreachable` instruction executed"
        );
    }
    assert!(
        run.stderr.contains(
            "\n    10 x plugin trapped: wasm trap: wasm `unreachable` instruction executed"
        ),
        "{}",
        run.stderr
    );
}

/// A plugin that loops on every record of a large batch does not keep the
/// host busy for one deadline per split. Once failed calls have used 16
/// deadlines, the records not yet tried alone are dead-lettered as
/// timeouts, and their reason starts with "not tried on its own".
#[test]
fn loop_on_every_record_stops_at_budget() {
    let dir = tempfile::tempdir().expect("temp dir");
    let count = 64;
    let input = write_input(dir.path(), count, &[]);
    let run = enrich(&input, "loop", &["--plugin-timeout-ms", "100"]);
    let all: Vec<usize> = (1..=count).collect();
    let reasons = assert_poison_rejected(&run, count, &all, "timeout");
    assert_eq!(
        reasons[0],
        "plugin call exceeded the CPU deadline of 100 ms"
    );
    let last = &reasons[count - 1];
    assert!(last.starts_with("not tried on its own: "), "{last}");
    assert!(
        last.ends_with("plugin call exceeded the CPU deadline of 100 ms"),
        "{last}"
    );
    let untried = reasons
        .iter()
        .filter(|reason| reason.starts_with("not tried on its own"))
        .count();
    assert!(
        untried > count / 2,
        "{untried} of {count} records untried: {reasons:?}"
    );
}

/// A plugin gets no files, directory listing, environment variables,
/// arguments, TCP connections or name lookups, and its clock reads zero.
#[test]
fn sandbox_escape_gets_nothing() {
    const SECRET: &str = "weblog-sandbox-secret";
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, SECRET).expect("write secret");
    let input = write_input(dir.path(), 1, &[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("listener address").port();

    let mut command = Command::new(binary("weblog-host"));
    command
        .env("WEBLOG_SANDBOX_SECRET", SECRET)
        .arg("enrich-file")
        .arg("--plugin")
        .arg(hostile_plugin())
        .arg("--input")
        .arg(&input)
        .args(["--plugin-config", "mode=escape"])
        .arg("--plugin-config")
        .arg(format!("file={}", secret_file.display()))
        .args(["--plugin-config", "env=WEBLOG_SANDBOX_SECRET"])
        .args(["--plugin-config", &format!("port={port}")]);
    let output = run_bounded(&mut command, HANG_LIMIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains(SECRET), "{stdout}");
    let line: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let probe = &line["records"][0];
    for field in ["file", "root", "env", "tcp", "lookup"] {
        let result = probe[field].as_str().unwrap_or_default();
        assert!(result.starts_with("error: "), "{field}: {probe}");
    }
    assert_eq!(probe["env_count"], 0, "{probe}");
    assert_eq!(probe["args_count"], 0, "{probe}");
    assert_eq!(probe["clock_secs"], 0, "{probe}");
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
        "the plugin reached the listener: {accepted:?}"
    );
}

/// A 100 MiB output record is refused as invalid output, not produced.
#[test]
fn huge_output_is_invalid_output() {
    let run = enrich_poison_file("huge-output", &["--plugin-memory-mib", "160"]);
    let reasons = assert_poison_rejected(&run, POISON_LINES, &[POISON_LINE], "invalid-output");
    assert_eq!(
        reasons,
        vec![
            "plugin emitted an invalid record at index 0: \
             104857600 bytes is over the max of 1048576 bytes"
        ]
    );
}

/// Output that is not JSON is invalid output for that record only.
#[test]
fn invalid_json_is_invalid_output() {
    let run = enrich_poison_file("invalid-json", &FAST_LIMITS);
    let reasons = assert_poison_rejected(&run, POISON_LINES, &[POISON_LINE], "invalid-output");
    assert!(
        reasons[0].starts_with("plugin emitted an invalid record at index 0: not valid JSON"),
        "{}",
        reasons[0]
    );
}

/// A batch that gets the wrong number of outcomes back is split until the
/// record that causes it is alone.
#[test]
fn wrong_outcome_count_is_invalid_output() {
    let run = enrich_poison_file("wrong-count", &FAST_LIMITS);
    let reasons = assert_poison_rejected(&run, POISON_LINES, &[POISON_LINE], "invalid-output");
    assert_eq!(reasons, vec!["plugin returned 2 outcomes for 1 records"]);
}

/// A 100 MiB reject reason is cut to 4 KiB, so that it fits in a header.
#[test]
fn huge_reject_reason_is_cut() {
    let run = enrich_poison_file("huge-reject", &["--plugin-memory-mib", "160"]);
    let reasons = assert_poison_rejected(&run, POISON_LINES, &[POISON_LINE], "rejected");
    let reason = &reasons[0];
    let suffix = "... (cut from 104857600 bytes)";
    assert!(reason.ends_with(suffix), "{}", &reason[reason.len() - 60..]);
    assert_eq!(reason.len(), 4096 + suffix.len());
}

/// A plugin that writes a lot to stderr is not harmed by the bounded
/// capture: every record is enriched.
#[test]
fn noisy_stderr_does_not_fail_plugin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = write_input(dir.path(), POISON_LINES, &[]);
    let mut args = vec!["--plugin-config", "size-bytes=1048576"];
    args.extend_from_slice(&["--plugin-timeout-ms", "5000"]);
    let run = enrich(&input, "noisy", &args);
    let reasons = assert_poison_rejected(&run, POISON_LINES, &[], "none");
    assert!(reasons.is_empty());
}

/// A plugin built against weblog:enrich@0.2.0 is refused at load time
/// with an error that names both versions.
#[test]
fn incompatible_wit_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = write_input(dir.path(), 1, &[]);
    let plugin = fixture_plugin("weblog_test_wit_v0_2");
    let output = run_bounded(
        Command::new(binary("weblog-host"))
            .arg("enrich-file")
            .arg("--plugin")
            .arg(&plugin)
            .arg("--input")
            .arg(&input),
        HANG_LIMIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr.contains("built against weblog:enrich/plugin@0.2.0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("implements weblog:enrich/plugin@0.1.0"),
        "{stderr}"
    );
    assert!(stderr.contains("weblog_test_wit_v0_2.wasm"), "{stderr}");
}

#[cfg(feature = "kafka-tests")]
mod kafka {
    //! The poison record through `weblog-host run` and a real broker.

    use std::time::Duration;

    use serde_json::Value;
    use sha2::{Digest, Sha256};

    use super::{hostile_plugin, poison_file_line, POISON_LINE, POISON_LINES};
    use crate::util::kafka::{
        committed_and_end, host_run_command, produce, unique_name, Received, TestTopics,
        TopicReader,
    };
    use crate::util::ChildProcess;

    /// Outcome of running the poison records through `weblog-host run`.
    struct PoisonRun {
        topics: TestTopics,
        lines: Vec<String>,
        keys: Vec<String>,
        /// SHA-256 of the plugin component, in hex.
        digest: String,
        enriched: Vec<Received>,
        dlq: Vec<Received>,
    }

    /// Produces the 10 poison-file lines, runs the host with the hostile
    /// plugin and `settings` until all 10 offsets are committed, stops it
    /// and returns what reached the enriched and dead-letter topics.
    fn run_poison_through_host(test: &str, settings: &[&str]) -> PoisonRun {
        let topics = TestTopics::create(test, 1);
        let lines: Vec<String> = (1..=POISON_LINES)
            .map(|number| poison_file_line(number, &[POISON_LINE]))
            .collect();
        let keys: Vec<String> = (1..=POISON_LINES).map(|n| format!("k{n}")).collect();
        let records: Vec<(Option<&[u8]>, &[u8])> = keys
            .iter()
            .zip(&lines)
            .map(|(key, line)| (Some(key.as_bytes()), line.as_bytes()))
            .collect();
        produce(&topics.raw, &records);

        let plugin = hostile_plugin();
        let digest: String = Sha256::digest(std::fs::read(&plugin).expect("read plugin"))
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let group = unique_name(test);
        let mut command = host_run_command(&topics, &group, &plugin);
        command
            .args(["--plugin-config", "trigger=POISON"])
            .args(["--plugin-timeout-ms", "2000"]);
        for setting in settings {
            command.args(["--plugin-config", setting]);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut host = ChildProcess::spawn("host", command, dir.path());

        let mut enriched = TopicReader::new(&topics.enriched);
        let mut dlq = TopicReader::new(&topics.dlq);
        dlq.read_at_least(1, Duration::from_secs(60));
        enriched.read_at_least(POISON_LINES - 1, Duration::from_secs(60));
        let committed = crate::util::wait_until(Duration::from_secs(30), || {
            committed_and_end(&group, &topics.raw) == vec![(0, Some(10), 10)]
        });
        host.assert_running();
        // A record produced twice would have arrived by now.
        enriched.poll_for(Duration::from_secs(1));
        dlq.poll_for(Duration::from_secs(1));
        let (status, _) = host.terminate(Duration::from_secs(30));
        assert!(status.success(), "host exit {status}: {}", host.stderr());
        assert!(committed, "offsets not committed: {}", host.stderr());
        PoisonRun {
            topics,
            lines,
            keys,
            digest,
            enriched: enriched.received,
            dlq: dlq.received,
        }
    }

    /// Checks that every line but the poison one was enriched once, in
    /// order, with its key and the plugin's headers, and returns the one
    /// dead letter after checking its bytes, key and plugin headers.
    fn assert_only_poison_dead_lettered(run: &PoisonRun) -> &Received {
        let offsets: Vec<i64> = run
            .enriched
            .iter()
            .map(|record| {
                let json: Value = serde_json::from_slice(&record.value).expect("enriched JSON");
                json["offset"].as_i64().expect("offset field")
            })
            .collect();
        assert_eq!(offsets, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
        for record in &run.enriched {
            let offset: usize = record
                .header("weblog.source.offset")
                .parse()
                .expect("offset");
            assert_eq!(record.key.as_deref(), Some(run.keys[offset].as_bytes()));
            assert_eq!(record.header("weblog.plugin.name"), "hostile");
            assert_eq!(record.header("weblog.plugin.digest"), run.digest);
        }

        assert_eq!(run.dlq.len(), 1, "{:?}", run.dlq);
        let letter = &run.dlq[0];
        assert_eq!(letter.value, run.lines[POISON_LINE - 1].as_bytes());
        assert_eq!(letter.key.as_deref(), Some(&b"k4"[..]));
        assert_eq!(letter.header("weblog.plugin.name"), "hostile");
        assert_eq!(letter.header("weblog.plugin.version"), "0.1.0");
        assert_eq!(letter.header("weblog.plugin.digest"), run.digest);
        assert_eq!(letter.header("weblog.source.topic"), run.topics.raw);
        assert_eq!(letter.header("weblog.source.partition"), "0");
        assert_eq!(letter.header("weblog.source.offset"), "3");
        letter
    }

    /// The panicking record lands in the dead-letter topic with its
    /// original bytes and key, and with headers naming the plugin, its
    /// version, its component digest and the failure. Every other record of
    /// the batch is enriched once, and all offsets are committed.
    #[test]
    fn poison_record_is_dead_lettered() {
        let run = run_poison_through_host("sandbox-poison", &["mode=panic"]);
        let letter = assert_only_poison_dead_lettered(&run);
        assert_eq!(letter.header("weblog.error.kind"), "trap");
        let reason = letter.header("weblog.error.reason");
        assert!(reason.contains("poison record at offset 3"), "{reason}");
    }

    /// A record under the host's 1 MiB max but over the producer's
    /// message.max.bytes of 1,000,000 bytes is dead-lettered as invalid
    /// output, and the host keeps running.
    #[test]
    fn record_over_producer_limit_is_dead_lettered() {
        let run = run_poison_through_host(
            "sandbox-oversize",
            &["mode=huge-output", "size-bytes=1040000"],
        );
        let letter = assert_only_poison_dead_lettered(&run);
        assert_eq!(letter.header("weblog.error.kind"), "invalid-output");
        let reason = letter.header("weblog.error.reason");
        assert_eq!(
            reason,
            "plugin emitted a record at index 0 of 1040000 bytes, which with its key \
             and headers is over the producer's message.max.bytes of 1000000"
        );
    }
}
