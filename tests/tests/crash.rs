//! The whole pipeline under SIGKILL: shipper, host and sink run together
//! on the three real corpora (every line of each) while the test kills one
//! of them at seeded random moments and restarts it, at least
//! [`MIN_KILLS`] times each. Then it accounts for every input line in the
//! sink's output files or the dead-letter topic.
//!
//! The shipper follows a file that the test appends the corpora to, so the
//! kills land while lines flow. Its at-least-once window means the raw
//! topic can hold a line more than once, and each such copy is a record of
//! its own for the host. So the checks compare the outputs with the raw
//! topic's content, enriched once per record, and separately check that no
//! input line is missing from the outputs.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::kafka::{
    bootstrap, committed_and_end_at, create_topics_at, fully_committed_at, read_to_end_at,
    unique_name, Received, TestTopics,
};
use crate::util::{
    binary, canonical_json, corpus, corpus_outcomes, default_plugin, sigkill_seed,
    sink_output_lines, split_lines, wait_until, ChildProcess, LineOutcome, SeededRandom, CORPORA,
};

/// Min SIGKILLs of each process per run; the test goes on killing until
/// the whole input is written.
const MIN_KILLS: usize = 10;

/// Partitions of each topic.
const PARTITIONS: i32 = 3;

/// Lines appended to the followed file at once.
const WRITE_CHUNK_LINES: usize = 200;

/// Pause between two appends, so that the 23,456 lines arrive over about
/// 25 s while the kills happen.
const WRITE_CHUNK_PAUSE: Duration = Duration::from_millis(200);

/// Range of the pause before each kill, in milliseconds.
const KILL_PAUSE_MS: (u64, u64) = (150, 900);

/// How long each stage may take to catch up once the kills stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Rotation size of the sink's file, so that some kills land in rotations.
const SINK_ROTATE_BYTES: &str = "1048576";

/// Delivery mode of the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

/// The three processes of the pipeline.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    Shipper,
    Host,
    Sink,
}

pub const ROLES: [Role; 3] = [Role::Shipper, Role::Host, Role::Sink];

/// What one run counted, printed and asserted by the tests.
#[derive(Debug)]
pub struct Tally {
    pub seed: u64,
    /// SIGKILLs of shipper, host and sink.
    pub kills: [usize; 3],
    pub lines_in: usize,
    /// Records in the raw topic; more than `lines_in` by the shipper's
    /// duplicates.
    pub raw_records: usize,
    /// Lines in the sink's output files.
    pub lines_out: usize,
    pub dead_letters: usize,
    /// Raw records sent twice by the shipper.
    pub shipper_duplicates: usize,
    /// Outputs beyond one per raw record: from the host's at-least-once
    /// replays, or from the sink.
    pub pipeline_duplicates: usize,
    /// Outputs that some raw record should have yielded but are missing.
    pub missing_from_raw: usize,
    /// Input lines without their outputs.
    pub lost: usize,
    /// Outputs that no raw record accounts for.
    pub unexpected: usize,
    /// Sink lines that differ from the enriched topic's records, as a
    /// multiset difference in either direction.
    pub sink_mismatch: usize,
    /// Raw records whose output count in the topics differs from the
    /// expected one (exactly-once) or falls short of it (at-least-once).
    pub wrong_source_counts: usize,
    /// Records the sink dead-lettered, which should be none.
    pub sink_dead_letters: usize,
}

/// With `--exactly-once` the sink's files contain each raw record's
/// enriched records once and the dead-letter topic each rejected one once,
/// so the only duplicates are the shipper's, and no input line is lost.
#[test]
fn exactly_once_pipeline_survives_sigkill() {
    let tally = run_with_kills(Mode::ExactlyOnce);
    assert!(tally.kills.iter().all(|k| *k >= MIN_KILLS), "{tally:?}");
    tally.assert_exactly_once();
}

/// In the default at-least-once mode nothing is lost either; outputs can
/// appear more than once, and the test counts and prints them.
#[test]
fn at_least_once_pipeline_survives_sigkill() {
    let tally = run_with_kills(Mode::AtLeastOnce);
    assert!(tally.kills.iter().all(|k| *k >= MIN_KILLS), "{tally:?}");
    tally.assert_at_least_once();
}

/// Runs the pipeline in `mode` under kills and counts what arrived.
fn run_with_kills(mode: Mode) -> Tally {
    // WEBLOG_SIGKILL_SEED picks other kill moments, to explore.
    let seed = sigkill_seed(match mode {
        Mode::AtLeastOnce => 0xa10_c4a5_2026,
        Mode::ExactlyOnce => 0xe05_c4a5_2026,
    });
    let label = match mode {
        Mode::AtLeastOnce => "crash-alo",
        Mode::ExactlyOnce => "crash-eos",
    };
    eprintln!("{label}: seed {seed:#x}");
    let mut random = SeededRandom(seed);
    let lines = corpus_lines();
    let mut pipeline = Pipeline::start(
        label,
        mode,
        bootstrap(),
        PipelineOptions {
            static_membership: true,
            host_args: Vec::new(),
        },
    );

    let writer = {
        let path = pipeline.log_path.clone();
        let lines = lines.clone();
        std::thread::spawn(move || append_in_chunks(&path, &lines))
    };
    let mut kills = [0usize; 3];
    while kills.iter().any(|k| *k < MIN_KILLS) || !writer.is_finished() {
        std::thread::sleep(Duration::from_millis(
            random.between(KILL_PAUSE_MS.0, KILL_PAUSE_MS.1),
        ));
        let behind: Vec<usize> = (0..ROLES.len()).filter(|i| kills[*i] < MIN_KILLS).collect();
        let candidates = if behind.is_empty() {
            vec![0, 1, 2]
        } else {
            behind
        };
        let pick = candidates[random.between(0, candidates.len() as u64 - 1) as usize];
        pipeline.kill_and_restart(ROLES[pick]);
        kills[pick] += 1;
    }
    writer.join().expect("writer thread");
    pipeline.drain();
    pipeline.tally(seed, kills, &lines)
}

/// Returns every line of the three corpora, in corpus order.
pub fn corpus_lines() -> Vec<Vec<u8>> {
    CORPORA
        .iter()
        .flat_map(|name| split_lines(&std::fs::read(corpus(name)).expect("read corpus")))
        .collect()
}

/// Appends `lines` to `path` in chunks with a pause after each.
pub fn append_in_chunks(path: &Path, lines: &[Vec<u8>]) {
    for chunk in lines.chunks(WRITE_CHUNK_LINES) {
        let mut content = Vec::new();
        for line in chunk {
            content.extend_from_slice(line);
            content.push(b'\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open followed file");
        file.write_all(&content).expect("append to followed file");
        std::thread::sleep(WRITE_CHUNK_PAUSE);
    }
}

/// Settings of a [`Pipeline`] beyond its mode.
#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// Whether host and sink use static group membership, so that a
    /// restarted one takes its partitions back at once.
    pub static_membership: bool,
    /// Arguments added to every host command.
    pub host_args: Vec<String>,
}

/// The running processes and everything they share across restarts.
pub struct Pipeline {
    mode: Mode,
    bootstrap: String,
    options: PipelineOptions,
    dir: tempfile::TempDir,
    topics: TestTopics,
    sink_dlq: String,
    /// The file the shipper follows.
    pub log_path: PathBuf,
    output: PathBuf,
    host_group: String,
    sink_group: String,
    /// Processes by [`Role`] index.
    processes: Vec<ChildProcess>,
    restarts: usize,
}

impl Pipeline {
    /// Creates the topics at `bootstrap` and the followed file, and starts
    /// the processes.
    pub fn start(label: &str, mode: Mode, bootstrap: String, options: PipelineOptions) -> Self {
        let topics = TestTopics {
            raw: unique_name(&format!("{label}-raw")),
            enriched: unique_name(&format!("{label}-enriched")),
            dlq: unique_name(&format!("{label}-dlq")),
        };
        let names = [&topics.raw, &topics.enriched, &topics.dlq].map(String::as_str);
        create_topics_at(&bootstrap, &names, PARTITIONS, 1, &[]);
        let sink_dlq = unique_name(&format!("{label}-sink-dlq"));
        create_topics_at(&bootstrap, &[&sink_dlq], 1, 1, &[]);
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("access.log");
        std::fs::write(&log_path, b"").expect("create followed file");
        let mut pipeline = Self {
            mode,
            bootstrap,
            options,
            output: dir.path().join("enriched.jsonl"),
            dir,
            topics,
            sink_dlq,
            log_path,
            host_group: unique_name(&format!("{label}-host")),
            sink_group: unique_name(&format!("{label}-sink")),
            processes: Vec::new(),
            restarts: 0,
        };
        for role in ROLES {
            let process = pipeline.spawn(role);
            pipeline.processes.push(process);
        }
        pipeline
    }

    fn spawn(&mut self, role: Role) -> ChildProcess {
        let name = format!("{role:?}-{}", self.restarts).to_lowercase();
        self.restarts += 1;
        let command = match role {
            Role::Shipper => self.shipper_command(),
            Role::Host => self.host_command(),
            Role::Sink => self.sink_command(),
        };
        ChildProcess::spawn(&name, command, self.dir.path())
    }

    /// Kills the process with SIGKILL, checks that it had not exited on
    /// its own, and starts it again.
    pub fn kill_and_restart(&mut self, role: Role) {
        self.assert_running(&ROLES);
        let process = &mut self.processes[role as usize];
        let status = process.kill_hard();
        assert_eq!(
            status.signal(),
            Some(9),
            "{role:?} exited on its own with {status}:\n{}",
            process.stderr()
        );
        self.processes[role as usize] = self.spawn(role);
    }

    /// Waits until the shipper's checkpoint covers the followed file, the
    /// host committed the raw topic and the sink wrote everything, and
    /// stops each process with SIGTERM in that order.
    pub fn drain(&mut self) {
        let length = std::fs::metadata(&self.log_path)
            .expect("followed file")
            .len();
        let checkpoint = self.dir.path().join("shipper.checkpoint");
        let shipped = wait_until(DRAIN_TIMEOUT, || {
            self.assert_running(&ROLES);
            shipper_checkpoint_offset(&checkpoint) == length
        });
        assert!(
            shipped,
            "shipper checkpoint at {} of {length} bytes",
            shipper_checkpoint_offset(&checkpoint)
        );
        self.stop(Role::Shipper, "shipping log file");

        let committed = wait_until(DRAIN_TIMEOUT, || {
            self.assert_running(&[Role::Host, Role::Sink]);
            fully_committed_at(&self.bootstrap, &self.host_group, &self.topics.raw)
        });
        assert!(
            committed,
            "host offsets {:?}",
            committed_and_end_at(&self.bootstrap, &self.host_group, &self.topics.raw)
        );
        self.stop(Role::Host, "consuming");

        let enriched = read_to_end_at(&self.bootstrap, &self.topics.enriched, DRAIN_TIMEOUT).len();
        let written = wait_until(DRAIN_TIMEOUT, || {
            self.assert_running(&[Role::Sink]);
            sink_output_lines(&self.output).len() >= enriched
        });
        assert!(
            written,
            "sink wrote {} of {enriched} records",
            sink_output_lines(&self.output).len()
        );
        self.stop(Role::Sink, "sink started");
    }

    /// The sink's output file.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// Returns what the running process of `role` wrote to stderr so far.
    pub fn stderr(&self, role: Role) -> String {
        self.processes[role as usize].stderr()
    }

    /// Returns the CPU time the running process of `role` used so far.
    pub fn cpu_time(&self, role: Role) -> Duration {
        self.processes[role as usize].cpu_time()
    }

    /// Panics with its stderr when one of `roles` has exited.
    pub fn assert_running(&mut self, roles: &[Role]) {
        for role in roles {
            self.processes[*role as usize].assert_running();
        }
    }

    /// Waits for the process to log `started`, so that it handles signals,
    /// then stops it with SIGTERM and checks it exits with status 0.
    fn stop(&mut self, role: Role, started: &str) {
        let process = &mut self.processes[role as usize];
        let ready = wait_until(DRAIN_TIMEOUT, || process.stderr().contains(started));
        assert!(ready, "{role:?} never started: {}", process.stderr());
        let (status, _) = process.terminate(Duration::from_secs(30));
        assert!(
            status.success(),
            "{role:?} exit {status}: {}",
            process.stderr()
        );
    }

    /// Reads the topics and the sink's files and counts what arrived.
    pub fn tally(&self, seed: u64, kills: [usize; 3], lines: &[Vec<u8>]) -> Tally {
        let outcomes = corpus_outcomes();
        let read = |topic: &str| read_to_end_at(&self.bootstrap, topic, DRAIN_TIMEOUT);
        let raw = read(&self.topics.raw);
        let enriched = read(&self.topics.enriched);
        let dlq = read(&self.topics.dlq);
        let sink_dead_letters = read(&self.sink_dlq).len();
        let sink_lines: Vec<String> = sink_output_lines(&self.output)
            .iter()
            .map(|line| canonical_json(line))
            .collect();

        // What the raw topic holds, enriched once per record, and what the
        // input lines need at least.
        let (from_raw, from_raw_dlq) = expected_outputs(raw.iter().map(|r| &r.value), &outcomes);
        let (from_lines, from_lines_dlq) = expected_outputs(lines.iter(), &outcomes);
        let sink = multiset(sink_lines.iter().map(|line| line.clone().into_bytes()));
        let topic = multiset(
            enriched
                .iter()
                .map(|r| canonical_json(&r.value).into_bytes()),
        );
        let letters = multiset(dlq.iter().map(|r| r.value.clone()));

        let lost = shortfall(&from_lines, &sink) + shortfall(&from_lines_dlq, &letters);
        let unexpected = excess_keys(&sink, &from_raw) + excess_keys(&letters, &from_raw_dlq);
        Tally {
            seed,
            kills,
            lines_in: lines.len(),
            raw_records: raw.len(),
            lines_out: sink_lines.len(),
            dead_letters: dlq.len(),
            shipper_duplicates: raw.len().saturating_sub(lines.len()),
            pipeline_duplicates: shortfall(&sink, &from_raw) + shortfall(&letters, &from_raw_dlq),
            missing_from_raw: shortfall(&from_raw, &sink) + shortfall(&from_raw_dlq, &letters),
            lost,
            unexpected,
            sink_mismatch: shortfall(&sink, &topic) + shortfall(&topic, &sink),
            wrong_source_counts: self.wrong_source_counts(&raw, &enriched, &dlq, &outcomes),
            sink_dead_letters,
        }
        .print(self.mode)
    }

    /// Counts raw records whose outputs in the enriched and dead-letter
    /// topics, found by their `weblog.source.*` headers, are not one set
    /// (exactly-once) or fewer than one set (at-least-once).
    fn wrong_source_counts(
        &self,
        raw: &[Received],
        enriched: &[Received],
        dlq: &[Received],
        outcomes: &HashMap<Vec<u8>, LineOutcome>,
    ) -> usize {
        let mut found: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        for record in enriched.iter().chain(dlq) {
            *found.entry(record.source()).or_default() += 1;
        }
        raw.iter()
            .filter(|record| {
                let per_copy = match &outcomes[&record.value] {
                    LineOutcome::Enriched(records) => records.len(),
                    LineOutcome::Rejected => 1,
                };
                let got = found
                    .get(&(record.partition, record.offset))
                    .copied()
                    .unwrap_or(0);
                match self.mode {
                    Mode::ExactlyOnce => got != per_copy,
                    Mode::AtLeastOnce => got < per_copy,
                }
            })
            .count()
    }

    fn shipper_command(&self) -> Command {
        let mut command = Command::new(binary("weblog-shipper"));
        command
            .args([
                "--bootstrap-servers",
                &self.bootstrap,
                "--topic",
                &self.topics.raw,
            ])
            .args(["--follow", "--poll-interval-ms", "50"])
            .args(["--dlq-topic", &self.topics.dlq])
            .arg("--file")
            .arg(&self.log_path)
            .arg("--checkpoint")
            .arg(self.dir.path().join("shipper.checkpoint"));
        command
    }

    /// Returns the host with static group membership and, with
    /// `--exactly-once`, a transactional id kept across restarts, so that
    /// a restart takes over at once.
    fn host_command(&self) -> Command {
        let group = &self.host_group;
        let mut command = Command::new(binary("weblog-host"));
        command
            .arg("run")
            .args(["--bootstrap-servers", &self.bootstrap])
            .args(["--input-topic", &self.topics.raw])
            .args(["--output-topic", &self.topics.enriched])
            .args(["--dlq-topic", &self.topics.dlq])
            .args(["--group-id", group])
            .arg("--plugin")
            .arg(default_plugin())
            .arg("--component-cache")
            .arg(self.dir.path().join("components"));
        if self.options.static_membership {
            add_static_membership(&mut command, group);
        }
        command.args(&self.options.host_args);
        if self.mode == Mode::ExactlyOnce {
            command
                .arg("--exactly-once")
                .args(["--transactional-id", &format!("{group}-tx")]);
        }
        command
    }

    fn sink_command(&self) -> Command {
        let group = &self.sink_group;
        let mut command = Command::new(binary("weblog-sink"));
        command
            .args(["--bootstrap-servers", &self.bootstrap])
            .args([
                "--topic",
                &self.topics.enriched,
                "--dlq-topic",
                &self.sink_dlq,
            ])
            .args(["--group-id", group])
            .args(["--batch-size", "200", "--batch-linger-ms", "20"])
            .args(["--rotate-bytes", SINK_ROTATE_BYTES])
            .arg("--output")
            .arg(&self.output);
        if self.options.static_membership {
            add_static_membership(&mut command, group);
        }
        command
    }
}

impl Tally {
    /// Asserts that no input line is lost and that every raw record has at
    /// least its outputs; duplicates are allowed.
    pub fn assert_at_least_once(&self) {
        assert_eq!(self.lost, 0, "input lines lost");
        assert_eq!(self.missing_from_raw, 0, "raw records without outputs");
        assert_eq!(self.unexpected, 0, "outputs no raw record explains");
        assert_eq!(self.wrong_source_counts, 0, "raw records short of outputs");
        assert_eq!(
            self.sink_mismatch, 0,
            "sink file differs from the enriched topic"
        );
        assert_eq!(self.sink_dead_letters, 0, "records the sink dead-lettered");
        assert_eq!(self.raw_records, self.lines_in + self.shipper_duplicates);
    }

    /// Asserts that no input line is lost and that the outputs equal the
    /// raw topic's records, each enriched once.
    pub fn assert_exactly_once(&self) {
        assert_eq!(self.lost, 0, "input lines lost");
        assert_eq!(self.missing_from_raw, 0, "raw records without outputs");
        assert_eq!(self.unexpected, 0, "outputs no raw record explains");
        assert_eq!(
            self.pipeline_duplicates, 0,
            "duplicates after the raw topic"
        );
        assert_eq!(
            self.wrong_source_counts, 0,
            "raw records with wrong output counts"
        );
        assert_eq!(
            self.sink_mismatch, 0,
            "sink file differs from the enriched topic"
        );
        assert_eq!(self.sink_dead_letters, 0, "records the sink dead-lettered");
        assert_eq!(self.raw_records, self.lines_in + self.shipper_duplicates);
    }

    /// Prints the counts on stderr, where `--nocapture` shows them.
    fn print(self, mode: Mode) -> Self {
        let [shipper, host, sink] = self.kills;
        eprintln!(
            "{mode:?} (seed {:#x}): kills shipper {shipper}, host {host}, sink {sink}; \
             lines in {}, raw records {}, lines out {}, dead letters {}, duplicates: \
             shipper {}, host and sink {}; lost {}, missing from raw {}, unexpected {}, \
             sink mismatch {}, wrong source counts {}, sink dead letters {}",
            self.seed,
            self.lines_in,
            self.raw_records,
            self.lines_out,
            self.dead_letters,
            self.shipper_duplicates,
            self.pipeline_duplicates,
            self.lost,
            self.missing_from_raw,
            self.unexpected,
            self.sink_mismatch,
            self.wrong_source_counts,
            self.sink_dead_letters
        );
        self
    }
}

/// Adds static group membership with a short session to a host or sink
/// command.
fn add_static_membership(command: &mut Command, group: &str) {
    command
        .args(["--kafka-option", &format!("group.instance.id={group}-0")])
        .args(["--kafka-option", "session.timeout.ms=6000"])
        .args(["--kafka-option", "heartbeat.interval.ms=500"]);
}

/// Returns the byte offset up to which the shipper's checkpoint at `path`
/// covers its one file, 0 before the first checkpoint.
fn shipper_checkpoint_offset(path: &Path) -> u64 {
    let Ok(content) = std::fs::read(path) else {
        return 0;
    };
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&content).expect("checkpoint is valid JSON");
    checkpoint["files"]
        .as_array()
        .and_then(|files| files.first())
        .map_or(0, |file| {
            file["offset"].as_u64().expect("offset is a number")
        })
}

/// Counts equal items.
fn multiset(items: impl Iterator<Item = Vec<u8>>) -> BTreeMap<Vec<u8>, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    counts
}

/// Returns the enriched records (canonical JSON) and the dead letters
/// (raw bytes) that `values` yield, one outcome per value.
fn expected_outputs<'a>(
    values: impl Iterator<Item = &'a Vec<u8>>,
    outcomes: &HashMap<Vec<u8>, LineOutcome>,
) -> (BTreeMap<Vec<u8>, usize>, BTreeMap<Vec<u8>, usize>) {
    let mut records = BTreeMap::new();
    let mut letters = BTreeMap::new();
    for value in values {
        let outcome = outcomes.get(value).unwrap_or_else(|| {
            panic!(
                "raw record not in any corpus: {}",
                String::from_utf8_lossy(value)
            )
        });
        match outcome {
            LineOutcome::Enriched(list) => {
                for record in list {
                    *records.entry(record.clone().into_bytes()).or_default() += 1;
                }
            }
            LineOutcome::Rejected => *letters.entry(value.clone()).or_default() += 1,
        }
    }
    (records, letters)
}

/// Returns how many items `needed` has beyond `have`.
fn shortfall(needed: &BTreeMap<Vec<u8>, usize>, have: &BTreeMap<Vec<u8>, usize>) -> usize {
    needed
        .iter()
        .map(|(item, n)| n.saturating_sub(have.get(item).copied().unwrap_or(0)))
        .sum()
}

/// Returns how many items of `have` are absent from `allowed` altogether.
fn excess_keys(have: &BTreeMap<Vec<u8>, usize>, allowed: &BTreeMap<Vec<u8>, usize>) -> usize {
    have.iter()
        .filter(|(item, _)| !allowed.contains_key(*item))
        .map(|(_, n)| n)
        .sum()
}
