//! Names of the shipper's Prometheus metrics, their recorder, and the
//! per-file position gauges.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use weblog_common::metrics::{
    counter, describe_counter, describe_gauge, gauge, Counter, Gauge, PrometheusHandle, Unit,
};

/// Lines read from the log files.
pub(crate) const LINES_READ: &str = "weblog_shipper_lines_read_total";
/// Bytes of the lines read, newlines included.
pub(crate) const READ_BYTES: &str = "weblog_shipper_read_bytes_total";
/// Lines acknowledged by Kafka in the topic, whole or truncated.
pub(crate) const LINES_ACKED: &str = "weblog_shipper_lines_acked_total";
/// Lines too large for Kafka whose dead letter is acknowledged.
pub(crate) const LINES_DEAD_LETTERED: &str = "weblog_shipper_lines_dead_lettered_total";
/// Offset just past the last line read, by file.
pub(crate) const FILE_OFFSET: &str = "weblog_shipper_file_offset_bytes";
/// Size of the file being read, by file.
pub(crate) const FILE_SIZE: &str = "weblog_shipper_file_size_bytes";

/// Min time between two size checks of the file being read.
const SIZE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Installs the recorder and returns its handle.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = weblog_common::metrics::install("weblog-shipper", &[])?;
    describe_counter!(LINES_READ, "lines read from the log files");
    describe_counter!(READ_BYTES, Unit::Bytes, "bytes of the lines read");
    describe_counter!(LINES_ACKED, "lines acknowledged by Kafka");
    describe_counter!(LINES_DEAD_LETTERED, "oversized lines dead-lettered");
    describe_gauge!(FILE_OFFSET, Unit::Bytes, "offset past the last line read");
    describe_gauge!(FILE_SIZE, Unit::Bytes, "size of the file being read");
    Ok(handle)
}

/// Counts a line of `bytes` bytes read from `path`, which ends at `end`.
pub(crate) fn record_line_read(path: &Arc<Path>, bytes: u64, end: u64) {
    cached(&LINES_READ_COUNTER, LINES_READ).increment(1);
    cached(&READ_BYTES_COUNTER, READ_BYTES).increment(bytes);
    FILE_GAUGES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .update(path, end);
}

/// Counts a line acknowledged in the topic.
pub(crate) fn record_line_acked() {
    cached(&LINES_ACKED_COUNTER, LINES_ACKED).increment(1);
}

/// Counts a line whose dead letter is acknowledged.
pub(crate) fn record_line_dead_lettered() {
    cached(&LINES_DEAD_LETTERED_COUNTER, LINES_DEAD_LETTERED).increment(1);
}

// Per-line counters, looked up once instead of once per line. The
// recorder is installed before the first line is read.
static LINES_READ_COUNTER: OnceLock<Counter> = OnceLock::new();
static READ_BYTES_COUNTER: OnceLock<Counter> = OnceLock::new();
static LINES_ACKED_COUNTER: OnceLock<Counter> = OnceLock::new();
static LINES_DEAD_LETTERED_COUNTER: OnceLock<Counter> = OnceLock::new();

fn cached(cell: &'static OnceLock<Counter>, name: &'static str) -> &'static Counter {
    cell.get_or_init(|| counter!(name))
}

/// Gauges of the file being read, cached so that a line costs no label
/// lookup. The size is checked when the file changes, when the offset
/// passes the last size seen, and at most once a second otherwise.
static FILE_GAUGES: Mutex<FileGauges> = Mutex::new(FileGauges { current: None });

struct FileGauges {
    current: Option<CurrentFile>,
}

struct CurrentFile {
    path: Arc<Path>,
    offset: Gauge,
    size: Gauge,
    last_size: u64,
    checked: Option<Instant>,
}

impl FileGauges {
    fn update(&mut self, path: &Arc<Path>, end: u64) {
        let current = match &mut self.current {
            Some(current) if Arc::ptr_eq(&current.path, path) || current.path == *path => current,
            _ => {
                let label = path.display().to_string();
                self.current.insert(CurrentFile {
                    path: Arc::clone(path),
                    offset: gauge!(FILE_OFFSET, "file" => label.clone()),
                    size: gauge!(FILE_SIZE, "file" => label),
                    last_size: 0,
                    checked: None,
                })
            }
        };
        current.offset.set(end as f64);
        let due = current
            .checked
            .is_none_or(|checked| checked.elapsed() >= SIZE_CHECK_INTERVAL);
        if end > current.last_size || due {
            // A file rotated away keeps its last size: it no longer grows.
            if let Ok(metadata) = std::fs::metadata(path) {
                current.last_size = metadata.len();
                current.size.set(metadata.len() as f64);
            }
            current.checked = Some(Instant::now());
        }
    }
}
