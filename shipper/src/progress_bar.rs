//! Progress shown to the operator while the shipper runs: a progress bar
//! on a terminal, else a periodic `shipping progress` log line.
//!
//! The send loop stores its counts in [`COUNTERS`] as lines are read and
//! acknowledged. A task of its own reads them on a timer and draws the bar
//! or logs the line, so the send loop only stores numbers and never
//! writes to the terminal. The
//! counters are process-wide because one shipper process ships one file.
//!
//! NOTE: log events also go to stderr, so a warning printed while the bar
//! is drawn leaves a stale copy of the bar above it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Time between two progress log lines when `--progress-interval-ms` is not
/// given: often enough to see a stalled run within a minute, rare enough
/// not to fill the logs of a shipper that follows a file for weeks.
pub(crate) const DEFAULT_PROGRESS_INTERVAL_MS: u64 = 10_000;

/// Time between two redraws of the bar. indicatif limits its own redraws
/// to 20 per second, so faster updates would be dropped.
const BAR_REFRESH: Duration = Duration::from_millis(100);

/// Display of progress on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    /// A bar when stderr is a terminal and the file is read once, else log
    /// lines.
    Auto,
    /// A bar on stderr, drawn only when stderr is a terminal; log lines
    /// instead with --follow.
    Bar,
    /// An info log line every --progress-interval-ms.
    Log,
    /// Nothing.
    Off,
}

/// Progress flags of the shipper.
#[derive(Args, Clone, Debug)]
pub(crate) struct ProgressArgs {
    /// How to show progress: auto (a bar when stderr is a terminal and
    /// --follow is off, else log lines), bar, log or off.
    #[arg(
        long,
        env = "WEBLOG_SHIPPER_PROGRESS",
        value_enum,
        default_value_t = ProgressMode::Auto
    )]
    pub(crate) progress: ProgressMode,

    /// Milliseconds between two progress log lines.
    #[arg(
        long,
        env = "WEBLOG_SHIPPER_PROGRESS_INTERVAL_MS",
        value_name = "MS",
        default_value_t = DEFAULT_PROGRESS_INTERVAL_MS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) progress_interval_ms: u64,
}

/// Counts of the running shipment, stored by the send loop.
#[derive(Debug)]
pub(crate) struct Counters {
    lines_read: AtomicU64,
    /// Bytes of every line read, over all files, with their `\n`.
    bytes_read: AtomicU64,
    /// Byte offset in its file after the last line read.
    read_offset: AtomicU64,
    lines_acknowledged: AtomicU64,
    bytes_acknowledged: AtomicU64,
    lines_dead_lettered: AtomicU64,
}

/// Counts of this process's shipment.
pub(crate) static COUNTERS: Counters = Counters {
    lines_read: AtomicU64::new(0),
    bytes_read: AtomicU64::new(0),
    read_offset: AtomicU64::new(0),
    lines_acknowledged: AtomicU64::new(0),
    bytes_acknowledged: AtomicU64::new(0),
    lines_dead_lettered: AtomicU64::new(0),
};

impl Counters {
    /// Stores the counts of lines and bytes read, over all files, and the
    /// offset in its file after the last line.
    pub(crate) fn set_read(&self, lines: u64, bytes: u64, offset: u64) {
        self.lines_read.store(lines, Ordering::Relaxed);
        self.bytes_read.store(bytes, Ordering::Relaxed);
        self.read_offset.store(offset, Ordering::Relaxed);
    }

    /// Stores the counts of lines and bytes acknowledged in the raw topic
    /// and of lines dead-lettered.
    pub(crate) fn set_acknowledged(&self, lines: u64, bytes: u64, dead_lettered: u64) {
        self.lines_acknowledged.store(lines, Ordering::Relaxed);
        self.bytes_acknowledged.store(bytes, Ordering::Relaxed);
        self.lines_dead_lettered
            .store(dead_lettered, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            lines_read: self.lines_read.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            read_offset: self.read_offset.load(Ordering::Relaxed),
            lines_acknowledged: self.lines_acknowledged.load(Ordering::Relaxed),
            bytes_acknowledged: self.bytes_acknowledged.load(Ordering::Relaxed),
            lines_dead_lettered: self.lines_dead_lettered.load(Ordering::Relaxed),
        }
    }
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    at: Instant,
    lines_read: u64,
    bytes_read: u64,
    read_offset: u64,
    lines_acknowledged: u64,
    bytes_acknowledged: u64,
    lines_dead_lettered: u64,
}

/// Rates between two snapshots, per second.
#[derive(Debug, PartialEq)]
struct Rates {
    lines_acknowledged: f64,
    bytes_read: f64,
}

impl Rates {
    /// Computes the rates from `since` to `now`. Bytes count from the
    /// total read, not from the offset, which starts again at 0 in a new
    /// file after a rotation.
    fn between(since: &Snapshot, now: &Snapshot) -> Self {
        let seconds = now.at.duration_since(since.at).as_secs_f64();
        let per_second = |from: u64, to: u64| {
            if seconds > 0.0 {
                to.saturating_sub(from) as f64 / seconds
            } else {
                0.0
            }
        };
        Self {
            lines_acknowledged: per_second(since.lines_acknowledged, now.lines_acknowledged),
            bytes_read: per_second(since.bytes_read, now.bytes_read),
        }
    }
}

/// The task that shows progress, until [`ProgressReporter::finish`].
pub(crate) struct ProgressReporter {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ProgressReporter {
    /// Starts showing the progress of shipping `file`, or returns `None`
    /// with `--progress off`. A followed file never gets a bar, because it
    /// has no end to measure against.
    pub(crate) fn start(args: &ProgressArgs, file: &Path, follow: bool) -> Option<Self> {
        let use_bar = match args.progress {
            ProgressMode::Off => return None,
            ProgressMode::Log => false,
            ProgressMode::Bar => !follow,
            ProgressMode::Auto => !follow && std::io::stderr().is_terminal(),
        };
        let stop = CancellationToken::new();
        let file = file.to_path_buf();
        let task = if use_bar {
            tokio::spawn(draw_bar(file, stop.clone()))
        } else {
            let interval = Duration::from_millis(args.progress_interval_ms);
            tokio::spawn(log_lines(file, follow, interval, stop.clone()))
        };
        Some(Self { stop, task })
    }

    /// Shows the final counts and stops. Call once the shipment has ended,
    /// so the counts are final.
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(error = %error, "progress task failed");
        }
    }
}

/// Redraws a bar of the read offset against the file size until `stop`.
async fn draw_bar(file: PathBuf, stop: CancellationToken) {
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} \
         {binary_bytes_per_sec} ETA {eta} {msg}",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    let bar = ProgressBar::new(file_size(&file).unwrap_or(0)).with_style(style);
    let mut ticker = tokio::time::interval(BAR_REFRESH);
    loop {
        let stopped = tokio::select! {
            () = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let now = COUNTERS.snapshot();
        if let Some(size) = file_size(&file) {
            bar.set_length(size.max(now.read_offset));
        }
        bar.set_position(now.read_offset);
        bar.set_message(format!(
            "{}/{} lines acknowledged",
            now.lines_acknowledged, now.lines_read
        ));
        if stopped {
            bar.finish();
            return;
        }
    }
}

/// Logs the counts every `interval` until `stop`, then once more with the
/// final counts and the averages over the whole run.
async fn log_lines(file: PathBuf, follow: bool, interval: Duration, stop: CancellationToken) {
    let start = COUNTERS.snapshot();
    let mut previous = start;
    let mut ticker = tokio::time::interval(interval);
    // The first tick completes at once, before anything is shipped.
    ticker.tick().await;
    loop {
        let stopped = tokio::select! {
            () = stop.cancelled() => true,
            _ = ticker.tick() => false,
        };
        let now = COUNTERS.snapshot();
        let since = if stopped { start } else { previous };
        log_progress(&file, follow, &since, &now, stopped);
        if stopped {
            return;
        }
        previous = now;
    }
}

/// Logs one progress line with the rates between `since` and `now`.
fn log_progress(file: &Path, follow: bool, since: &Snapshot, now: &Snapshot, last: bool) {
    let rates = Rates::between(since, now);
    let read_bytes_per_second = rates.bytes_read;
    let size = file_size(file);
    let percent = size.map(|size| percent_of(now.read_offset, size));
    let eta_secs = match size {
        Some(size) if !follow && read_bytes_per_second > 0.0 => {
            let left = size.saturating_sub(now.read_offset) as f64;
            Some((left / read_bytes_per_second).ceil() as u64)
        }
        _ => None,
    };
    tracing::info!(
        path = ?file,
        lines_read = now.lines_read,
        lines_acknowledged = now.lines_acknowledged,
        bytes_acknowledged = now.bytes_acknowledged,
        lines_dead_lettered = now.lines_dead_lettered,
        offset = now.read_offset,
        size,
        percent,
        lines_per_second = rounded(rates.lines_acknowledged),
        read_bytes_per_second = rounded(read_bytes_per_second),
        eta_secs,
        last,
        "shipping progress"
    );
}

/// Returns the size of `file`, or `None` while it is missing.
// NOTE: after a rotation the path names the new file while the reader may
// still finish the old one, so until then the percentage compares the old
// file's offset with the new file's size.
fn file_size(file: &Path) -> Option<u64> {
    std::fs::metadata(file).ok().map(|metadata| metadata.len())
}

/// Returns `offset` as a percentage of `size`, to one decimal. An empty
/// file is 100 % read.
fn percent_of(offset: u64, size: u64) -> f64 {
    if size == 0 {
        return 100.0;
    }
    rounded(offset.min(size) as f64 * 100.0 / size as f64)
}

/// Rounds to one decimal, which is all a log reader needs.
fn rounded(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(at: Instant, lines: u64, bytes: u64, offset: u64) -> Snapshot {
        Snapshot {
            at,
            lines_read: lines,
            bytes_read: bytes,
            read_offset: offset,
            lines_acknowledged: lines,
            bytes_acknowledged: bytes,
            lines_dead_lettered: 0,
        }
    }

    #[test]
    fn byte_rate_counts_rotated_files() {
        // 1000 lines of 200 bytes in two files: the offset in the second
        // file is only 40000 bytes at the end.
        let start = Instant::now();
        let since = snapshot(start, 0, 0, 0);
        let now = snapshot(start + Duration::from_secs(2), 1000, 200_000, 40_000);
        let rates = Rates::between(&since, &now);
        assert_eq!(rates.lines_acknowledged, 500.0);
        assert_eq!(rates.bytes_read, 100_000.0);
    }

    #[test]
    fn rates_of_no_time_are_zero() {
        let at = Instant::now();
        let rates = Rates::between(&snapshot(at, 0, 0, 0), &snapshot(at, 5, 50, 50));
        assert_eq!(rates.lines_acknowledged, 0.0);
        assert_eq!(rates.bytes_read, 0.0);
    }

    #[test]
    fn percent_is_rounded_to_one_decimal() {
        assert_eq!(percent_of(1, 3), 33.3);
        assert_eq!(percent_of(2, 3), 66.7);
        assert_eq!(percent_of(3, 3), 100.0);
    }

    #[test]
    fn percent_of_empty_file_is_full() {
        assert_eq!(percent_of(0, 0), 100.0);
    }

    #[test]
    fn percent_stops_at_full() {
        // A file truncated after the read passed its new end.
        assert_eq!(percent_of(500, 100), 100.0);
    }
}
