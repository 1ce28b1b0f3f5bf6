//! `scripts/bench-pipeline.sh --smoke`: the whole-pipeline benchmark on a
//! few thousand lines, checked for a complete results file whose counts
//! match its input. No timing is checked; on a busy machine any figure is
//! possible.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::util::kafka::bootstrap;
use crate::util::{binary, repo_root, run_bounded};

/// Lines of the replay file in the smoke run.
const LINES: u64 = 3000;
/// Lines the seed pipeline gets.
const SEED_LINES: u64 = 1000;

/// Max time of the smoke run, far above its usual two to three minutes.
const RUN_LIMIT: Duration = Duration::from_secs(20 * 60);

/// Pipelines that every run measures, by name.
const PIPELINES: [&str; 5] = [
    "passthrough",
    "weblog-wasm",
    "weblog-native",
    "weblog-wasm-eos",
    "seed",
];

/// Every pipeline and stage appears in results.json, and each accounts
/// for every input line: delivered or not enriched, and every latency
/// record arrived.
#[test]
fn bench_smoke_accounts_for_every_line() {
    let out = tempfile::tempdir().expect("temp dir");
    let bin_dir = binary("weblog-bench")
        .parent()
        .expect("a binary has a directory")
        .to_path_buf();
    let output = run_bounded(
        Command::new(repo_root().join("scripts/bench-pipeline.sh"))
            .arg("--smoke")
            .env("KAFKA_BOOTSTRAP", bootstrap())
            .env("BENCH_LINES", LINES.to_string())
            .env("BENCH_SEED_LINES", SEED_LINES.to_string())
            .env("BENCH_BIN_DIR", &bin_dir)
            .env("BENCH_OUT", out.path()),
        RUN_LIMIT,
    );
    assert!(
        output.status.success(),
        "bench-pipeline.sh --smoke failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let text = std::fs::read_to_string(out.path().join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&text).expect("results.json is JSON");
    assert_eq!(results["lines"], LINES);
    assert_eq!(results["seed_lines"], SEED_LINES);

    let pipelines = results["pipelines"].as_array().expect("pipelines array");
    let names: Vec<&str> = pipelines
        .iter()
        .map(|row| row["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, PIPELINES);
    for row in pipelines {
        let name = row["name"].as_str().expect("name");
        let lines = if name == "seed" { SEED_LINES } else { LINES };
        assert_eq!(row["lines"], lines, "{name}");
        let delivered = row["delivered"].as_u64().expect("delivered");
        let not_enriched = row["not_enriched"].as_u64().expect("not_enriched");
        assert_eq!(delivered + not_enriched, lines, "{name}");
        assert!(delivered > 0, "{name} delivered nothing");
        let latency = &row["latency"];
        assert!(latency["sent"].as_u64().expect("sent") > 0, "{name}");
        assert_eq!(latency["received"], latency["sent"], "{name} latency run");
    }

    let stages = results["stages"].as_array().expect("stages array");
    let stage = |pipeline: &str, stage: &str| -> &Value {
        stages
            .iter()
            .find(|row| row["pipeline"] == pipeline && row["stage"] == stage)
            .unwrap_or_else(|| panic!("no {pipeline} {stage} row in {text}"))
    };
    assert_eq!(stage("shared", "ship")["records"], LINES);
    assert_eq!(stage("seed", "ship")["records"], SEED_LINES);
    for name in PIPELINES {
        let lines = if name == "seed" { SEED_LINES } else { LINES };
        assert_eq!(stage(name, "enrich")["records"], lines, "{name} enrich");
    }
    // The sinks write what was enriched: all lines but the rejected ones.
    let shared_sink = stage("shared", "sink")["records"]
        .as_u64()
        .expect("records");
    assert!(shared_sink > 0, "the shared sink wrote nothing");
    assert!(shared_sink <= LINES, "{shared_sink} sink records");
    let seed_sink = stage("seed", "sink")["records"].as_u64().expect("records");
    assert!(seed_sink > 0, "the seed sink wrote nothing");
    assert!(seed_sink <= SEED_LINES, "{seed_sink} seed sink records");

    let markdown = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
    for pipeline in pipelines {
        let label = pipeline["label"].as_str().expect("label");
        assert!(markdown.contains(label), "results.md lacks {label}");
    }
}
