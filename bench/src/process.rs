//! Child processes of the benchmark and what Linux reports about them: CPU
//! time from `/proc/PID/stat` and peak resident memory (`VmHWM`) from
//! `/proc/PID/status`, or from GNU time for a process that exits by itself.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a stopped process may take to exit after SIGTERM before it is
/// killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of a failed process's log quoted in the error.
const LOG_TAIL_LINES: usize = 20;

/// CPU time and peak memory of a process at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcSample {
    /// User plus system CPU time since the process started, in seconds.
    pub(crate) cpu_seconds: f64,
    /// Peak resident set size since the process started, in bytes.
    pub(crate) peak_rss_bytes: u64,
}

/// A running stage of the pipeline whose output goes to log files.
pub(crate) struct StageProcess {
    name: String,
    child: Child,
    stderr_path: PathBuf,
}

impl StageProcess {
    /// Starts `command` with stdout and stderr in `<log_dir>/<name>.out`
    /// and `<name>.log`.
    pub(crate) fn spawn(name: &str, mut command: Command, log_dir: &Path) -> anyhow::Result<Self> {
        let stdout_path = log_dir.join(format!("{name}.out"));
        let stderr_path = log_dir.join(format!("{name}.log"));
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("failed to create {stdout_path:?}"))?;
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("failed to create {stderr_path:?}"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("failed to start {name}: {command:?}"))?;
        tracing::debug!(name, pid = child.id(), "started");
        Ok(Self {
            name: name.to_string(),
            child,
            stderr_path,
        })
    }

    /// Returns the process's CPU time and peak memory so far.
    pub(crate) fn sample(&self) -> anyhow::Result<ProcSample> {
        sample_pid(self.child.id()).with_context(|| {
            format!(
                "failed to read /proc of {} ({})",
                self.name,
                self.child.id()
            )
        })
    }

    /// Returns " see PATH, which ends with:" and the last lines of the
    /// process's log, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!(" see {:?}, which ends with:\n{tail}", self.stderr_path)
    }

    /// Fails, naming the log file, when the process has exited.
    pub(crate) fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "{} exited early with {status};{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits for the process to exit by itself and fails unless it
    /// succeeded.
    pub(crate) fn wait(mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(
                    status.success(),
                    "{} failed with {status};{}",
                    self.name,
                    self.log_tail()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                anyhow::bail!(
                    "{} did not finish within {timeout:?};{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM, waits for a clean exit and fails unless it was one.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill").args(["-TERM", &pid]).status();
        if !matches!(signalled, Ok(status) if status.success()) {
            tracing::warn!(name = %self.name, pid, "failed to send SIGTERM, killing");
            let _ = self.child.kill();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(
                    status.success(),
                    "{} exited with {status} after SIGTERM;{}",
                    self.name,
                    self.log_tail()
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        anyhow::bail!(
            "{} did not stop within {STOP_TIMEOUT:?} of SIGTERM",
            self.name
        )
    }
}

impl Drop for StageProcess {
    fn drop(&mut self) {
        // A benchmark that fails half-way leaves no stage running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads the CPU time and `VmHWM` of process `pid`.
fn sample_pid(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name in field 2 may contain spaces, so count the fields
    // after its closing parenthesis: utime and stime are fields 14 and 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in /proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .context("short /proc/PID/stat")?
            .parse::<u64>()
            .context("invalid tick count in /proc/PID/stat")
    };
    // Field 3 (state) is the first after the name.
    let cpu_ticks = ticks(14 - 3)? + ticks(15 - 3)?;

    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let peak_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no VmHWM in /proc/PID/status")?
        .parse::<u64>()
        .context("invalid VmHWM in /proc/PID/status")?;
    Ok(ProcSample {
        cpu_seconds: cpu_ticks as f64 / clock_ticks_per_second() as f64,
        peak_rss_bytes: peak_kib * 1024,
    })
}

/// Returns `getconf CLK_TCK`, the unit of the times in `/proc/PID/stat`,
/// or 100 (the value on common Linux builds) when it cannot be read.
fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Wall time, CPU time and peak memory of a process that ran to its end,
/// as GNU time reports them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FinishedRun {
    pub(crate) wall: Duration,
    pub(crate) sample: ProcSample,
}

/// Runs `program` with `args` to its end under `/usr/bin/time`, with its
/// output in `<log_dir>/<name>.out` and `.log`, and returns what GNU time
/// measured. Fails when the program fails.
pub(crate) fn run_timed(
    name: &str,
    program: &Path,
    args: &[String],
    log_dir: &Path,
    timeout: Duration,
) -> anyhow::Result<FinishedRun> {
    let time_path = log_dir.join(format!("{name}.time"));
    let mut command = Command::new("/usr/bin/time");
    command
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(&time_path)
        .arg(program)
        .args(args);
    StageProcess::spawn(name, command, log_dir)?.wait(timeout)?;
    let text = std::fs::read_to_string(&time_path)
        .with_context(|| format!("failed to read GNU time output {time_path:?}"))?;
    parse_time_output(&text).with_context(|| format!("invalid GNU time output {text:?}"))
}

/// Parses the last line of `time -f "%e %U %S %M"`: wall, user and system
/// seconds and max RSS in KiB.
fn parse_time_output(text: &str) -> anyhow::Result<FinishedRun> {
    let line = text.lines().last().context("empty output")?;
    let values: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [wall, user, system, max_rss_kib] = values[..] else {
        anyhow::bail!("expected 4 values");
    };
    Ok(FinishedRun {
        wall: Duration::from_secs_f64(wall),
        sample: ProcSample {
            cpu_seconds: user + system,
            peak_rss_bytes: max_rss_kib as u64 * 1024,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_output_parsed() {
        let run = parse_time_output("1.50 0.70 0.20 20480\n").expect("valid");
        assert_eq!(run.wall, Duration::from_millis(1500));
        assert!((run.sample.cpu_seconds - 0.9).abs() < 1e-9);
        assert_eq!(run.sample.peak_rss_bytes, 20480 * 1024);
    }

    #[test]
    fn own_process_sampled() {
        let sample = sample_pid(std::process::id()).expect("own /proc entry");
        assert!(sample.peak_rss_bytes > 0);
    }
}
