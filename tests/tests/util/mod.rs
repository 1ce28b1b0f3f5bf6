//! Helpers shared by the integration tests: paths of the binaries, the
//! plugins and the real corpora, and child processes that are killed when a
//! test fails.

#![allow(dead_code)]

// The host's swap bench makes new plugin builds the same way.
#[cfg(feature = "kafka-tests")]
pub mod broker;
#[path = "../../../host/benches/support/custom_section.rs"]
pub mod custom_section;
#[cfg(feature = "kafka-tests")]
pub mod kafka;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository root")
        .to_path_buf()
}

/// Path of a workspace binary built by `cargo build --workspace --bins`.
pub fn binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("WEBLOG_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"))
            .join("debug"),
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "binary {path:?} not found; build it with `cargo build --workspace --bins` \
         or set WEBLOG_BIN_DIR"
    );
    path
}

/// Path of the default plugin built for wasm32-wasip2.
pub fn default_plugin() -> PathBuf {
    let path = repo_root().join("plugins/target/wasm32-wasip2/release/weblog_access_log.wasm");
    assert!(
        path.is_file(),
        "plugin {path:?} not found; build it with `make plugin`"
    );
    path
}

/// Path of the anonymize plugin built for wasm32-wasip2.
pub fn anonymize_plugin() -> PathBuf {
    let path = repo_root().join("plugins/target/wasm32-wasip2/release/weblog_anonymize.wasm");
    assert!(
        path.is_file(),
        "plugin {path:?} not found; build it with `make plugin`"
    );
    path
}

/// Path of a test plugin from `tests/fixtures/plugins`, by the file name
/// of its component without `.wasm` (`weblog_test_hostile`).
///
/// The first call in a test run builds that workspace for wasm32-wasip2,
/// which takes under a second when `make test-plugins` already built it.
pub fn fixture_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let workspace = repo_root().join("tests/fixtures/plugins");
    let target_dir = workspace.join("target");
    let built = BUILT.get_or_init(|| build_fixture_plugins(&workspace, &target_dir));
    if let Err(error) = built {
        panic!("{error}");
    }
    let path = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "test plugin {path:?} not found after building {workspace:?}"
    );
    path
}

fn build_fixture_plugins(workspace: &Path, target_dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .map_err(|error| format!("failed to run cargo in {workspace:?}: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "failed to build the test plugins in {workspace:?} ({}); \
         `make test-plugins` also adds the wasm32-wasip2 target:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The real access-log corpora, by file name.
pub const CORPORA: [&str; 3] = [
    "elastic-apache.log",
    "nasa-jul-aug95-random-sample.log",
    "basjes-hackers-access.log",
];

/// Path of a real corpus under the shared data folder.
pub fn corpus(name: &str) -> PathBuf {
    let path = repo_root().join("../shared/data/real").join(name);
    assert!(path.is_file(), "corpus {path:?} not found");
    path
}

/// Splits file content into lines the way the shipper and enrich-file do:
/// on `\n` only, without a trailing empty line.
pub fn split_lines(content: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = content.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if content.ends_with(b"\n") || content.is_empty() {
        lines.pop();
    }
    lines
}

/// Runs a command to completion and returns its output.
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("failed to run {command:?}: {error}"))
}

/// Runs a command to completion like [`run`], but kills it and panics
/// when it takes longer than `limit`, so that a hang fails the test.
pub fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {command:?}: {error}"));
    // Both pipes are drained on threads of their own, so that a child
    // writing more than a pipe buffer does not block.
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!(
                "{command:?} did not finish within {limit:?}:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Log filter for spawned binaries: their lifecycle events at info, the
/// libraries at warn. It matches the binaries' default.
const LIFECYCLE_LOG_FILTER: &str =
    "warn,weblog_common=info,weblog_host=info,weblog_shipper=info,weblog_sink=info";

/// A child process that is killed on drop, so that a failing test does not
/// leave it running. Its stderr goes to a file for the failure message.
pub struct ChildProcess {
    name: String,
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl ChildProcess {
    /// Starts `command` with stderr captured in `dir/<name>.stderr`.
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> Self {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr file");
        // Tests wait for lifecycle lines such as "consuming", so a RUST_LOG
        // from the caller's shell must not hide them.
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", LIFECYCLE_LOG_FILTER);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {name}: {error}"));
        Self {
            name: name.to_string(),
            child: Some(child),
            stderr_path,
        }
    }

    /// Sends `signal` (a name `kill` takes, such as `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("process not yet waited for");
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "failed to send SIG{signal} to {}",
            self.name
        );
    }

    /// Returns the process id.
    pub fn id(&self) -> u32 {
        self.child
            .as_ref()
            .expect("process not yet waited for")
            .id()
    }

    /// Returns the CPU time the process used so far (user plus system),
    /// from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.id()))
            .unwrap_or_else(|error| panic!("failed to read the stat of {}: {error}", self.name));
        // The command name in parentheses can contain spaces, so the fields
        // are counted from the last `)`: utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat[stat.rfind(')').expect("stat has a command name") + 2..]
            .split(' ')
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // The fields count USER_HZ ticks, 100 per second on Linux.
        Duration::from_millis(ticks * 10)
    }

    /// Returns what the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Panics with the process's stderr if it has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("process not yet waited for");
        if let Some(status) = child.try_wait().expect("poll child") {
            panic!(
                "{} exited early with {status}:\n{}",
                self.name,
                self.stderr()
            );
        }
    }

    /// Tells whether the process has exited, without waiting for it.
    pub fn has_exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("process not yet waited for");
        child.try_wait().expect("poll child").is_some()
    }

    /// Waits for the process to exit on its own and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("process not yet waited for");
        child
            .wait()
            .unwrap_or_else(|error| panic!("failed to wait for {}: {error}", self.name))
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns the
    /// status and stdout.
    pub fn terminate(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("process not yet waited for");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "failed to send SIGTERM to {}",
            self.name
        );
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("poll child") {
                let mut stdout = String::new();
                if let Some(mut out) = child.stdout.take() {
                    let _ = out.read_to_string(&mut stdout);
                }
                return (status, stdout);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGKILL, so the process gets no chance to clean up, and waits
    /// for it to exit; returns the status.
    pub fn kill_hard(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("process not yet waited for");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-KILL", &pid]).status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "failed to send SIGKILL to {}",
            self.name
        );
        child
            .wait()
            .unwrap_or_else(|error| panic!("failed to wait for {}: {error}", self.name))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` every 200 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    condition()
}

/// SplitMix64: a small seeded generator, so that random test moments
/// repeat from run to run.
pub struct SeededRandom(pub u64);

impl SeededRandom {
    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a number from `low` to `high`, both included.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// Returns the seed of a SIGKILL test: `WEBLOG_SIGKILL_SEED` when set (in
/// decimal, or hex with `0x`), else `default`.
pub fn sigkill_seed(default: u64) -> u64 {
    let Ok(text) = std::env::var("WEBLOG_SIGKILL_SEED") else {
        return default;
    };
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|error| panic!("invalid WEBLOG_SIGKILL_SEED {text:?}: {error}"))
}

/// Returns the sink's output files in write order: the rotated files
/// `PATH.000001`, `PATH.000002`, ... that exist, then `PATH`.
pub fn sink_output_files(output: &Path) -> Vec<PathBuf> {
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

/// Returns the lines of every sink output file in write order, empty when
/// none exists yet.
pub fn sink_output_lines(output: &Path) -> Vec<Vec<u8>> {
    sink_output_files(output)
        .iter()
        .flat_map(|file| split_lines(&std::fs::read(file).unwrap_or_default()))
        .collect()
}

/// The default plugin's outcome for one line, as `enrich-file` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineOutcome {
    /// The records emitted, each as canonical JSON (keys sorted).
    Enriched(Vec<String>),
    /// The line is dead-lettered.
    Rejected,
}

/// Runs `enrich-file` with the default plugin over each corpus and returns
/// the outcome per distinct line. Equal lines must get equal outcomes,
/// because the plugin has no clock and no other input.
pub fn corpus_outcomes() -> std::collections::HashMap<Vec<u8>, LineOutcome> {
    let mut outcomes = std::collections::HashMap::new();
    for name in CORPORA {
        let path = corpus(name);
        let lines = split_lines(&std::fs::read(&path).expect("read corpus"));
        let output = run(Command::new(binary("weblog-host"))
            .arg("enrich-file")
            .arg("--plugin")
            .arg(default_plugin())
            .arg("--input")
            .arg(&path));
        assert!(output.status.success(), "enrich-file failed on {name}");
        let stdout = String::from_utf8(output.stdout).expect("enrich-file writes UTF-8");
        for entry in stdout.lines() {
            let value: serde_json::Value = serde_json::from_str(entry).expect("enrich-file JSON");
            let number = value["line"].as_u64().expect("line number") as usize;
            let outcome = match value.get("records") {
                Some(serde_json::Value::Array(records)) => {
                    LineOutcome::Enriched(records.iter().map(ToString::to_string).collect())
                }
                _ => LineOutcome::Rejected,
            };
            let line = lines[number - 1].clone();
            if let Some(previous) = outcomes.insert(line, outcome.clone()) {
                assert_eq!(
                    previous, outcome,
                    "equal lines of {name} enriched differently"
                );
            }
        }
    }
    outcomes
}

/// Re-serializes a JSON text with sorted keys, so that equal records
/// compare equal.
pub fn canonical_json(text: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(text).unwrap_or_else(|error| {
        panic!("invalid JSON ({error}): {}", String::from_utf8_lossy(text))
    });
    value.to_string()
}
