//! Watching a stage make progress: the record count it reports through
//! Kafka or its output file, sampled every [`POLL_INTERVAL`] together with
//! the CPU time and peak memory of the process being measured.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::process::{ProcSample, StageProcess};

/// Time between two progress samples; the error of every measured
/// duration is at most this.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A stage's progress at one sample.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    /// Records the stage has finished so far.
    pub(crate) records: u64,
    /// Whether the stage finished everything it will get.
    pub(crate) complete: bool,
}

/// Duration, CPU time and peak memory of a stage, from its last idle
/// sample to the first sample that showed its final record count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Measured {
    /// From the last sample with no record done (or the watch start) to
    /// the first sample with the final count.
    pub(crate) seconds: f64,
    /// CPU time of the measured process over the same span.
    pub(crate) cpu_seconds: f64,
    /// Peak resident memory of the measured process at the end.
    pub(crate) peak_rss_bytes: u64,
    /// When the final count was first seen.
    pub(crate) finished_at: Instant,
}

/// Options of one [`watch`].
pub(crate) struct WatchOptions {
    /// The stage fails when it is not complete by then.
    pub(crate) timeout: Duration,
    /// Count a stage complete only once its record count did not change
    /// for this long, for stages whose last records are known only by
    /// their stopping.
    pub(crate) stable_for: Duration,
}

/// Samples `progress` until it reports complete, failing when one of
/// `processes` exits or the timeout passes. `measured` is the index of the
/// process whose CPU time and memory are sampled, if any.
pub(crate) fn watch(
    name: &str,
    processes: &mut [&mut StageProcess],
    measured: Option<usize>,
    options: &WatchOptions,
    mut progress: impl FnMut() -> anyhow::Result<Progress>,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let sample = |processes: &[&mut StageProcess]| -> anyhow::Result<ProcSample> {
        measured.map_or(Ok(ProcSample::default()), |index| processes[index].sample())
    };
    let mut idle = (started, sample(processes)?);
    let mut samples: Vec<(Instant, u64, ProcSample)> = Vec::new();
    let mut changed_at = started;
    loop {
        for process in processes.iter_mut() {
            process.ensure_running()?;
        }
        let proc_sample = sample(processes)?;
        let now = Instant::now();
        let current = progress().with_context(|| format!("failed to check {name}"))?;
        if current.records == 0 {
            idle = (now, proc_sample);
        }
        if samples
            .last()
            .is_none_or(|(_, records, _)| *records != current.records)
        {
            changed_at = now;
        }
        samples.push((now, current.records, proc_sample));
        if current.complete && now.duration_since(changed_at) >= options.stable_for {
            let (finished_at, _, end) = *samples
                .iter()
                .find(|(_, records, _)| *records == current.records)
                .expect("the current sample is in the list");
            return Ok(Measured {
                seconds: finished_at.duration_since(idle.0).as_secs_f64(),
                cpu_seconds: end.cpu_seconds - idle.1.cpu_seconds,
                peak_rss_bytes: proc_sample.peak_rss_bytes,
                finished_at,
            });
        }
        anyhow::ensure!(
            started.elapsed() < options.timeout,
            "{name} did not finish within {:?}: {} records done",
            options.timeout,
            current.records
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Counts the lines of a file that another process appends to, reading
/// only what was added since the last call.
pub(crate) struct LineCounter {
    path: PathBuf,
    file: Option<File>,
    lines: u64,
    buffer: Vec<u8>,
}

impl LineCounter {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            lines: 0,
            buffer: vec![0; 1 << 20],
        }
    }

    /// Returns the number of complete lines written so far.
    pub(crate) fn count(&mut self) -> anyhow::Result<u64> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(error) => {
                    return Err(error).with_context(|| format!("failed to open {:?}", self.path))
                }
            }
        }
        let file = self.file.as_mut().expect("opened above");
        loop {
            let read = file
                .read(&mut self.buffer)
                .with_context(|| format!("failed to read {:?}", self.path))?;
            if read == 0 {
                return Ok(self.lines);
            }
            self.lines += self.buffer[..read]
                .iter()
                .filter(|byte| **byte == b'\n')
                .count() as u64;
        }
    }
}
