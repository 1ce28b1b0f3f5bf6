//! Batch latency before, during and after a hot swap of the plugin, and the
//! time from a plugin file change to the first batch on the new plugin.
//!
//! The bench runs what the pipeline runs around a swap, without Kafka. The
//! calling thread enriches batches of [`BATCH_SIZE`] corpus lines back to
//! back and pushes each into the canary sample. Meanwhile the swap task of
//! [`weblog_host::swap`] watches the plugin file on a tokio runtime. [`SWAPS`] times, a new build of the default plugin is
//! renamed into place over the plugin file. Each build differs from the last
//! only in a custom section, so its digest is new and the engine compiles it
//! from scratch (the component cache is off), on another thread, while the
//! batches go on.
//!
//! A batch's latency is its [`Plugin::enrich`] call, wall time. Batches are
//! grouped by when they start:
//! - before: in the [`STEADY`] window before a file change;
//! - during: after the file change, until the replacement arrives;
//! - after: from the swap on, for [`STEADY`].
//!
//! Run with `make bench` (or `cargo bench -p weblog-host --bench swap`
//! after `make plugin`). It prints one table; it asserts nothing about
//! time.

// The plugin's native bench and the host's plugin bench draw the same lines.
#[path = "../../plugins/access-log/benches/support/corpus_sample.rs"]
mod corpus_sample;
#[path = "support/custom_section.rs"]
mod custom_section;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corpus_sample::corpus_sample;
use custom_section::with_custom_section;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weblog_host::canary::{RecentRecords, CANARY_SAMPLE_SIZE};
use weblog_host::plugin::Plugin;
use weblog_host::sandbox::{create_engine_compiling_on_one_thread, SandboxLimits};
use weblog_host::swap::{spawn_swap_task, FileSignature, SwapCounts, SwapSettings};
use weblog_host::InputRecord;

/// Lines per plugin call, the host's default batch size.
const BATCH_SIZE: usize = 256;

/// Distinct lines the batches cycle through.
const SAMPLE_LINES: usize = 64 * BATCH_SIZE;

/// Swaps per run.
const SWAPS: usize = 3;

/// Length of the windows before a file change and after a swap.
const STEADY: Duration = Duration::from_secs(3);

/// Maximum wait for a swap before the bench gives up.
const SWAP_TIMEOUT: Duration = Duration::from_secs(120);

/// When a batch ran, relative to the swaps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Before,
    During,
    After,
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the repository root")
        .to_path_buf();
    let component = root.join("plugins/target/wasm32-wasip2/release/weblog_access_log.wasm");
    let original = std::fs::read(&component).unwrap_or_else(|error| {
        panic!("failed to read plugin {component:?} ({error}); build it with `make plugin`")
    });
    let batches = corpus_batches(&root.join("../shared/data/real"));

    let dir = tempfile::tempdir().expect("failed to create a temp dir");
    let plugin_path = dir.path().join("plugin.wasm");
    install(&plugin_path, &original);

    let engine = create_engine_compiling_on_one_thread().expect("failed to create the engine");
    let limits = SandboxLimits::default();
    let loaded_file = FileSignature::read(&plugin_path).ok();
    let mut plugin = Plugin::load(&engine, &plugin_path, Vec::new(), limits)
        .unwrap_or_else(|error| panic!("failed to load plugin: {error:#}"));
    let recent = RecentRecords::new(CANARY_SAMPLE_SIZE);

    // One worker runs the watch task. The compile runs on tokio's blocking
    // pool, as in the host.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("failed to start the tokio runtime");
    let shutdown = CancellationToken::new();
    let (_reload_sender, reload_requests) = mpsc::channel(1);
    let settings = SwapSettings {
        engine: engine.clone(),
        path: plugin_path.clone(),
        plugin_config: Vec::new(),
        limits,
        cache: None,
    };
    let reference = plugin.fork().expect("failed to fork the plugin");
    let replacements = runtime
        .block_on(async {
            spawn_swap_task(
                settings,
                loaded_file,
                reference,
                recent.clone(),
                Arc::new(SwapCounts::default()),
                reload_requests,
                shutdown.clone(),
            )
        })
        .expect("failed to start the swap task");

    let mut samples: Vec<(Phase, Duration)> = Vec::new();
    let mut to_first_batch = Vec::new();
    let mut prepared = Vec::new();
    let mut next = batches.iter().cycle();
    let mut run_batch = |plugin: &mut Plugin| {
        let batch = next.next().expect("the cycle never ends");
        recent.push_batch(batch);
        let started = Instant::now();
        let outcomes = plugin.enrich(batch);
        let elapsed = started.elapsed();
        assert_eq!(outcomes.len(), batch.len(), "one outcome per record");
        elapsed
    };

    let warm_until = Instant::now() + STEADY;
    while Instant::now() < warm_until {
        run_batch(&mut plugin);
    }
    for swap in 1..=SWAPS {
        let steady_until = Instant::now() + STEADY;
        while Instant::now() < steady_until {
            samples.push((Phase::Before, run_batch(&mut plugin)));
        }

        let payload = format!("build {swap}");
        let build = with_custom_section(&original, "weblog-bench-build", payload.as_bytes());
        let changed = Instant::now();
        install(&plugin_path, &build);
        let replacement = loop {
            if let Some(replacement) = replacements.take() {
                break replacement;
            }
            assert!(
                changed.elapsed() < SWAP_TIMEOUT,
                "no swap {} s after the file change",
                SWAP_TIMEOUT.as_secs()
            );
            samples.push((Phase::During, run_batch(&mut plugin)));
        };
        prepared.push(replacement.prepared_in);
        plugin = replacement.plugin;
        samples.push((Phase::After, run_batch(&mut plugin)));
        to_first_batch.push(changed.elapsed());

        let after_until = Instant::now() + STEADY;
        while Instant::now() < after_until {
            samples.push((Phase::After, run_batch(&mut plugin)));
        }
    }
    shutdown.cancel();

    print_report(&samples, &to_first_batch, &prepared);
}

/// Cuts the corpus sample into input records of [`BATCH_SIZE`].
fn corpus_batches(folder: &Path) -> Vec<Vec<InputRecord>> {
    let records: Vec<InputRecord> = corpus_sample(folder, SAMPLE_LINES)
        .into_iter()
        .enumerate()
        .map(|(offset, value)| InputRecord {
            topic: "bench".to_owned(),
            partition: 0,
            offset: offset as i64,
            timestamp_ms: None,
            key: None,
            value,
        })
        .collect();
    records.chunks(BATCH_SIZE).map(<[_]>::to_vec).collect()
}

/// Writes `bytes` beside `path` and renames them over it, as a deploy does.
fn install(path: &Path, bytes: &[u8]) {
    let staged: PathBuf = path.with_extension("wasm.new");
    std::fs::write(&staged, bytes).expect("failed to write the staged plugin");
    std::fs::rename(&staged, path).expect("failed to rename the plugin into place");
}

fn print_report(samples: &[(Phase, Duration)], to_first_batch: &[Duration], prepared: &[Duration]) {
    println!("swap/batch-latency: {SWAPS} swaps, batches of {BATCH_SIZE} lines, wall time");
    println!("| phase | batches | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (phase, label) in [
        (Phase::Before, "before"),
        (Phase::During, "during"),
        (Phase::After, "after"),
    ] {
        let mut latencies: Vec<Duration> = samples
            .iter()
            .filter(|(sample_phase, _)| *sample_phase == phase)
            .map(|(_, latency)| *latency)
            .collect();
        latencies.sort_unstable();
        println!(
            "| {label} | {} | {:.3} | {:.3} | {:.3} |",
            latencies.len(),
            millis(percentile(&latencies, 50)),
            millis(percentile(&latencies, 99)),
            millis(latencies.last().copied().unwrap_or_default()),
        );
    }
    let list = |durations: &[Duration]| {
        durations
            .iter()
            .map(|duration| format!("{:.0}", millis(*duration)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "swap/file-change-to-first-batch ms: {}",
        list(to_first_batch)
    );
    println!("swap/trigger-to-checked-candidate ms: {}", list(prepared));
}

/// Returns the nearest-rank percentile of sorted `values`.
fn percentile(values: &[Duration], percent: usize) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = (values.len() * percent).div_ceil(100).max(1);
    values[rank - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
