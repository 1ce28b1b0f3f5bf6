//! Native cost of turning one raw access-log line into its JSON record,
//! measured over lines drawn in turn from the three real corpora beside the
//! repository (`../shared/data/real`).
//!
//! Run with `cargo bench` in `plugins/`. Each iteration enriches a fixed
//! sample of lines, so the time per line is the iteration time divided by
//! the sample size that criterion prints as the throughput.

#[path = "support/corpus_sample.rs"]
mod corpus_sample;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use corpus_sample::corpus_sample;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weblog_access_log::config::PluginConfig;
use weblog_access_log::output::enrich_line;
use weblog_access_log::parse::parse_line;

/// Lines enriched per iteration.
const SAMPLE_LINES: usize = 1024;

fn enrich_native(criterion: &mut Criterion) {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real");
    let lines = corpus_sample(&folder, SAMPLE_LINES);
    let config = PluginConfig::default();
    let mut group = criterion.benchmark_group("native");
    group
        .throughput(Throughput::Elements(SAMPLE_LINES as u64))
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("enrich_line", |bencher| {
        bencher.iter(|| {
            for line in &lines {
                let _ = black_box(enrich_line(black_box(line), &config));
            }
        });
    });
    // The scan alone, without enrichment and JSON, to show what each costs.
    group.bench_function("parse_line", |bencher| {
        bencher.iter(|| {
            for line in &lines {
                let text = std::str::from_utf8(black_box(line)).unwrap_or_default();
                let _ = black_box(parse_line(text));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, enrich_native);
criterion_main!(benches);
