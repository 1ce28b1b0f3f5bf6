//! Cost per line of the default access-log plugin, natively and as a
//! WebAssembly component called through [`Plugin::enrich`], measured side
//! by side in one run over the same lines from the three real corpora
//! beside the repository (`../shared/data/real`).
//!
//! Run with `make bench`, which builds the component first. Every
//! iteration enriches the same [`SAMPLE_LINES`] lines, natively or in
//! batches of 1, 64, 256 or 1024 lines per plugin call, so the time per
//! line is the iteration time divided by [`SAMPLE_LINES`].
//!
//! Time is the benchmark thread's CPU time, not wall time: the plugin runs
//! on the calling thread, and CPU time leaves out the time the thread
//! waits for a core on a busy machine.

// The plugin's native bench measures the same lines.
#[path = "../../plugins/access-log/benches/support/corpus_sample.rs"]
mod corpus_sample;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corpus_sample::corpus_sample;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::value::RawValue;
use weblog_access_log::config::PluginConfig;
use weblog_host::plugin::Plugin;
use weblog_host::sandbox::{create_engine, SandboxLimits};
use weblog_host::InputRecord;

/// Lines enriched per iteration, a multiple of every batch size.
const SAMPLE_LINES: usize = 1024;

/// Lines per plugin call.
const BATCH_SIZES: [usize; 4] = [1, 64, 256, 1024];

/// CPU time of the calling thread, as criterion's measurement.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = cpu_time::ThreadTime;
    type Value = Duration;

    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }

    fn end(&self, started: Self::Intermediate) -> Self::Value {
        started.elapsed()
    }

    fn add(&self, left: &Self::Value, right: &Self::Value) -> Self::Value {
        *left + *right
    }

    fn zero(&self) -> Self::Value {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Self::Value) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, as with wall time, so its formatter fits.
        WallTime.formatter()
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the repository root")
        .to_path_buf()
}

/// Environment variable with the path of another component to measure in
/// place of the default plugin's release build, for example a build of an
/// older commit.
const PLUGIN_PATH_VARIABLE: &str = "WEBLOG_BENCH_PLUGIN";

fn load_plugin() -> Plugin {
    let path = match std::env::var_os(PLUGIN_PATH_VARIABLE) {
        Some(path) => PathBuf::from(path),
        None => repo_root().join("plugins/target/wasm32-wasip2/release/weblog_access_log.wasm"),
    };
    assert!(
        path.is_file(),
        "plugin {path:?} not found; build it with `make plugin` or set {PLUGIN_PATH_VARIABLE}"
    );
    let engine = create_engine().expect("create the wasmtime engine");
    Plugin::load(&engine, &path, Vec::new(), SandboxLimits::default())
        .unwrap_or_else(|error| panic!("failed to load plugin {path:?}: {error:#}"))
}

fn enrich_per_line(criterion: &mut Criterion<ThreadCpuTime>) {
    let lines = corpus_sample(&repo_root().join("../shared/data/real"), SAMPLE_LINES);
    let records: Vec<InputRecord> = lines
        .iter()
        .enumerate()
        .map(|(offset, line)| InputRecord {
            topic: "bench".to_owned(),
            partition: 0,
            offset: offset as i64,
            timestamp_ms: None,
            key: None,
            value: line.clone(),
        })
        .collect();
    let mut plugin = load_plugin();
    let config = PluginConfig::default();

    let mut group = criterion.benchmark_group("enrich");
    group
        .throughput(Throughput::Elements(SAMPLE_LINES as u64))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(40);

    group.bench_function("native", |bencher| {
        bencher.iter(|| {
            for line in &lines {
                let _ = black_box(weblog_access_log::output::enrich_line(line, &config));
            }
        });
    });
    // The host checks that every emitted record is one JSON object before
    // it produces it. This is that check done natively, to tell the cost of
    // the check from the cost of the sandbox.
    group.bench_function("native-with-output-check", |bencher| {
        bencher.iter(|| {
            for line in &lines {
                if let Ok(text) = weblog_access_log::output::enrich_line(line, &config) {
                    let checked: &RawValue =
                        serde_json::from_str(&text).expect("the plugin writes valid JSON");
                    black_box(checked);
                }
            }
        });
    });
    for batch_size in BATCH_SIZES {
        group.bench_function(format!("wasm/batch-{batch_size}"), |bencher| {
            bencher.iter(|| {
                for batch in records.chunks(batch_size) {
                    black_box(plugin.enrich(batch));
                }
            });
        });
    }
    group.finish();
}

fn cpu_time_criterion() -> Criterion<ThreadCpuTime> {
    Criterion::default().with_measurement(ThreadCpuTime)
}

criterion_group! {
    name = benches;
    config = cpu_time_criterion();
    targets = enrich_per_line
}
criterion_main!(benches);
