//! `weblog-host run --exactly-once` against a real broker: a clean run, and
//! runs killed with SIGKILL at seeded random moments, compared with the
//! default at-least-once mode under the same kills. Outputs are read with
//! `isolation.level=read_committed`, as a downstream consumer reads them.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::util::kafka::{
    caught_up, committed_and_end, fully_committed, host_run_command, produce, read_all_outputs,
    unique_name, Received, TestTopics, TopicReader,
};
use crate::util::{
    corpus, default_plugin, sigkill_seed, split_lines, wait_until, ChildProcess, SeededRandom,
};

const BAD_LINE: &[u8] = b"\xff\xfe not an access log line";

/// Partitions of the raw topic in these tests.
const PARTITIONS: i32 = 3;

/// Min SIGKILLs per kill test; it goes on killing until every line is
/// produced.
const MIN_KILLS: usize = 12;

/// Lines the kill tests produce: the NASA sample twice.
const KILL_LINES: usize = 20_000;

/// Lines per produce call while the kill tests run.
const KILL_CHUNK_LINES: usize = 100;

/// Pause between two produce calls in the kill tests, so that the input
/// arrives over 16 s or more while the kills happen.
const KILL_CHUNK_PAUSE: Duration = Duration::from_millis(80);

/// How long a host may take to consume and commit everything.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(90);

/// Which delivery mode a host runs in.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

/// What a kill test run observed.
struct KillRun {
    kills: usize,
    inputs: usize,
    outputs: usize,
    duplicates: usize,
    lost: usize,
    /// Outputs that a read_uncommitted reader sees on top of `outputs`:
    /// in exactly-once mode, those of transactions aborted after a kill.
    uncommitted_extra: usize,
}

/// A clean run with `--exactly-once` writes one output per input, in the
/// enriched or dead-letter topic, and commits the offsets to the end.
#[test]
fn exactly_once_clean_run() {
    let topics = TestTopics::create("eos-clean", PARTITIONS);
    let mut lines = corpus_lines(3_000);
    lines.extend(std::iter::repeat_n(BAD_LINE.to_vec(), 30));
    produce_lines(&topics.raw, &lines);

    let dir = tempfile::tempdir().expect("temp dir");
    let group = unique_name("eos-clean");
    let command = host_command(&topics, &group, Mode::ExactlyOnce, &dir);
    let mut host = ChildProcess::spawn("host", command, dir.path());
    drain_and_stop(&mut host, &group, &topics.raw);
    assert!(
        host.stderr().contains("transactions initialized"),
        "{}",
        host.stderr()
    );

    let outputs = read_all_outputs(&topics, lines.len());
    let counts = count_sources(&outputs);
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated: {duplicated:?}");
    assert_eq!(counts.len(), lines.len(), "inputs with an output");
    assert_eq!(outputs.len(), lines.len(), "outputs");
    let dead_letters = outputs
        .iter()
        .filter(|record| record.headers.contains_key("weblog.error.kind"))
        .count();
    assert!(dead_letters >= 30, "only {dead_letters} dead letters");
    for (partition, committed, end) in committed_and_end(&group, &topics.raw) {
        for offset in 0..end {
            assert!(
                counts.contains_key(&(partition, offset)),
                "no output for {partition}@{offset}"
            );
        }
        assert!(
            caught_up(committed, end),
            "partition {partition}: committed {committed:?} of {end}"
        );
    }
}

/// A second host with the same transactional id fences the first, which
/// stops with status 1 and an error naming its transactional id, while the
/// second goes on and commits everything. The second host has a group of
/// its own, so that the first keeps its partition and meets the fence at
/// its next transaction.
#[test]
fn shared_transactional_id_fences_older() {
    let topics = TestTopics::create("eos-fence", 1);
    let lines = corpus_lines(2_000);
    produce_lines(&topics.raw, &lines);
    let dir = tempfile::tempdir().expect("temp dir");
    let group = unique_name("eos-fence");
    let transactional_id = format!("{group}-tx");
    let newer_group = format!("{group}-newer");
    let command_in = |group: &str| {
        let mut command = host_run_command(&topics, group, &default_plugin());
        command
            .args(["--exactly-once", "--transactional-id", &transactional_id])
            .arg("--component-cache")
            .arg(dir.path().join("components"));
        command
    };
    let mut older = ChildProcess::spawn("older", command_in(&group), dir.path());
    wait_for_partitions(&older);
    let mut newer = ChildProcess::spawn("newer", command_in(&newer_group), dir.path());
    let initialized = wait_until(Duration::from_secs(60), || {
        newer.stderr().contains("transactions initialized")
    });
    assert!(initialized, "newer: {}", newer.stderr());

    // The older host notices the fence at its next transaction.
    let mut extra = 0;
    let exited = wait_until(Duration::from_secs(60), || {
        produce(
            &topics.raw,
            &[(None, lines[extra % lines.len()].as_slice())],
        );
        extra += 1;
        older.has_exited()
    });
    assert!(exited, "older still runs: {}", older.stderr());
    let status = older.wait();
    assert_eq!(status.code(), Some(1), "older: {}", older.stderr());
    let stderr = older.stderr();
    assert!(stderr.contains("fenced"), "{stderr}");
    assert!(stderr.contains(&transactional_id), "{stderr}");

    drain_and_stop(&mut newer, &newer_group, &topics.raw);
    let ends = committed_and_end(&newer_group, &topics.raw);
    assert_eq!(
        ends,
        vec![(
            0,
            Some((lines.len() + extra) as i64),
            (lines.len() + extra) as i64
        )]
    );
}

/// SIGKILL at seeded random moments with `--exactly-once`: a read_committed
/// reader finds every input's output exactly once.
#[test]
fn exactly_once_survives_sigkill() {
    let run = run_with_kills(Mode::ExactlyOnce);
    assert!(run.kills >= 10, "only {} kills", run.kills);
    assert_eq!(run.lost, 0, "inputs without an output");
    assert_eq!(run.duplicates, 0, "inputs with more than one output");
    assert_eq!(run.outputs, run.inputs, "outputs");
}

/// The same kills in the default at-least-once mode lose nothing, but may
/// write some outputs twice; the test prints how many.
#[test]
fn at_least_once_survives_sigkill() {
    let run = run_with_kills(Mode::AtLeastOnce);
    assert!(run.kills >= 10, "only {} kills", run.kills);
    assert_eq!(run.lost, 0, "inputs without an output");
    assert_eq!(run.outputs, run.inputs + run.duplicates, "outputs");
}

/// Produces `KILL_LINES` lines in chunks while it kills the host at seeded
/// moments after it got its partitions, at least `MIN_KILLS` times and
/// until every line is produced. Restarts it each time with the same group
/// and transactional id, lets a last run drain the topic and counts the
/// outputs per input.
fn run_with_kills(mode: Mode) -> KillRun {
    // WEBLOG_SIGKILL_SEED picks other kill moments, to explore.
    let seed = sigkill_seed(0xe05_2026);
    let mut random = SeededRandom(seed);
    let label = match mode {
        Mode::AtLeastOnce => "alo-kill",
        Mode::ExactlyOnce => "eos-kill",
    };
    let topics = TestTopics::create(label, PARTITIONS);
    let mut lines = corpus_lines(KILL_LINES / 2);
    lines.extend(lines.clone());
    let producer = {
        let raw = topics.raw.clone();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for chunk in lines.chunks(KILL_CHUNK_LINES) {
                produce_lines(&raw, chunk);
                std::thread::sleep(KILL_CHUNK_PAUSE);
            }
        })
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let group = unique_name(label);
    // Committed inputs when each restarted host got its partitions, to
    // show the kills spread over the run.
    let mut progress = Vec::new();
    let mut kills = 0;
    while kills < MIN_KILLS || !producer.is_finished() {
        let name = format!("host-{kills}");
        let command = host_command(&topics, &group, mode, &dir);
        let mut host = ChildProcess::spawn(&name, command, dir.path());
        wait_for_partitions(&host);
        progress.push(committed_total(&group, &topics.raw));
        std::thread::sleep(Duration::from_millis(random.between(100, 1_500)));
        let status = host.kill_hard();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{name} exited on its own with {status}:\n{}",
            host.stderr()
        );
        kills += 1;
    }
    producer.join().expect("producer thread");

    let command = host_command(&topics, &group, mode, &dir);
    let mut last = ChildProcess::spawn("host-last", command, dir.path());
    drain_and_stop(&mut last, &group, &topics.raw);

    let outputs = read_all_outputs(&topics, lines.len());
    let counts = count_sources(&outputs);
    let ends = committed_and_end(&group, &topics.raw);
    let inputs: i64 = ends.iter().map(|(_, _, end)| end).sum();
    assert_eq!(inputs as usize, lines.len(), "raw records: {ends:?}");
    let lost = ends
        .iter()
        .flat_map(|(partition, _, end)| (0..*end).map(move |offset| (*partition, offset)))
        .filter(|source| !counts.contains_key(source))
        .count();
    let duplicates = counts.values().map(|n| n - 1).sum();
    let uncommitted = read_uncommitted_count(&topics, outputs.len());
    let run = KillRun {
        kills,
        inputs: lines.len(),
        outputs: outputs.len(),
        duplicates,
        lost,
        uncommitted_extra: uncommitted - outputs.len(),
    };
    eprintln!(
        "{label} (seed {seed:#x}): kills {}, inputs {}, outputs {}, duplicates {}, \
         lost {}, extra outputs seen by read_uncommitted {}; committed at each restart \
         {progress:?}",
        run.kills, run.inputs, run.outputs, run.duplicates, run.lost, run.uncommitted_extra
    );
    run
}

/// Returns the first `count` lines of the NASA sample.
fn corpus_lines(count: usize) -> Vec<Vec<u8>> {
    let content = std::fs::read(corpus("nasa-jul-aug95-random-sample.log")).expect("read corpus");
    let lines = split_lines(&content);
    assert!(lines.len() >= count, "corpus has {} lines", lines.len());
    lines.into_iter().take(count).collect()
}

fn produce_lines(topic: &str, lines: &[Vec<u8>]) {
    let records: Vec<(Option<&[u8]>, &[u8])> =
        lines.iter().map(|line| (None, line.as_slice())).collect();
    produce(topic, &records);
}

/// Returns `weblog-host run` in `mode` with a component cache in `dir`,
/// static group membership and a transactional id that stay the same
/// across restarts, so that a restart takes over at once.
fn host_command(topics: &TestTopics, group: &str, mode: Mode, dir: &tempfile::TempDir) -> Command {
    let mut command = host_run_command(topics, group, &default_plugin());
    command
        .arg("--component-cache")
        .arg(dir.path().join("components"))
        .args(["--kafka-option", &format!("group.instance.id={group}-0")])
        .args(["--kafka-option", "session.timeout.ms=6000"])
        .args(["--kafka-option", "heartbeat.interval.ms=500"]);
    if mode == Mode::ExactlyOnce {
        command
            .arg("--exactly-once")
            .args(["--transactional-id", &format!("{group}-tx")]);
    }
    command
}

/// Waits until `host` logs its partition assignment, because only then may
/// a test read the group's offsets. Before, the first group on a new broker
/// waits for the offsets topic. After a SIGKILL in exactly-once mode, the
/// offsets stay unstable until the restarted host aborts the open
/// transaction.
fn wait_for_partitions(host: &ChildProcess) {
    let assigned = wait_until(Duration::from_secs(60), || {
        host.stderr().contains("partitions assigned")
    });
    assert!(assigned, "host got no partitions: {}", host.stderr());
}

/// Waits until `host` committed `topic` to its end in `group`, then stops
/// it with SIGTERM and checks that it exits with status 0.
fn drain_and_stop(host: &mut ChildProcess, group: &str, topic: &str) {
    wait_for_partitions(host);
    let drained = wait_until(DRAIN_TIMEOUT, || fully_committed(group, topic));
    assert!(
        drained,
        "offsets {:?}: {}",
        committed_and_end(group, topic),
        host.stderr()
    );
    let (status, _) = host.terminate(Duration::from_secs(30));
    assert!(status.success(), "host exit {status}: {}", host.stderr());
}

/// Returns how many records a read_uncommitted reader finds in the
/// enriched and dead-letter topics, reading until it found `at_least` and
/// then a little longer.
fn read_uncommitted_count(topics: &TestTopics, at_least: usize) -> usize {
    let mut enriched = TopicReader::with_isolation(&topics.enriched, "read_uncommitted");
    let mut dlq = TopicReader::with_isolation(&topics.dlq, "read_uncommitted");
    let complete = wait_until(Duration::from_secs(60), || {
        enriched.poll_for(Duration::from_millis(300));
        dlq.poll_for(Duration::from_millis(100));
        enriched.received.len() + dlq.received.len() >= at_least
    });
    assert!(
        complete,
        "read_uncommitted found fewer outputs than read_committed"
    );
    enriched.poll_for(Duration::from_secs(2));
    dlq.poll_for(Duration::from_secs(1));
    enriched.received.len() + dlq.received.len()
}

/// Outputs per source (partition, offset).
fn count_sources(outputs: &[Received]) -> BTreeMap<(i32, i64), usize> {
    let mut counts = BTreeMap::new();
    for record in outputs {
        *counts.entry(record.source()).or_default() += 1;
    }
    counts
}

fn committed_total(group: &str, topic: &str) -> i64 {
    committed_and_end(group, topic)
        .iter()
        .filter_map(|(_, committed, _)| *committed)
        .sum()
}
