//! The results of one `weblog-bench run`: stored as `results.json` and
//! rendered as the Markdown tables that BENCHMARKS.md quotes.

use std::fmt::Write as _;

use serde::Serialize;

use crate::latency::LatencyReport;

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Results {
    pub(crate) machine: Machine,
    /// Lines in the replay file that the Rust pipelines process.
    pub(crate) lines: u64,
    /// Lines of the replay file that the seed pipeline processes.
    pub(crate) seed_lines: u64,
    pub(crate) stages: Vec<StageResult>,
    pub(crate) pipelines: Vec<PipelineResult>,
}

/// The machine and its load during the run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpu_model: String,
    pub(crate) cores: usize,
    pub(crate) memory_gib: f64,
    pub(crate) load_before: String,
    pub(crate) load_after: String,
    pub(crate) commit: String,
}

/// One stage drained a backlog on its own.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StageResult {
    /// Pipeline the stage belongs to, or `shared` for the Rust shipper
    /// and sink that every Rust pipeline uses.
    pub(crate) pipeline: String,
    /// `ship`, `enrich` or `sink`.
    pub(crate) stage: String,
    pub(crate) program: String,
    pub(crate) records: u64,
    pub(crate) seconds: f64,
    pub(crate) records_per_second: f64,
    pub(crate) cpu_seconds_per_million: f64,
    pub(crate) peak_rss_mib: f64,
}

/// One pipeline from the file to its output topic, shipper and enrichment
/// stage at once, and its latency to the output topic.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PipelineResult {
    pub(crate) name: String,
    pub(crate) label: String,
    /// Input lines of the end-to-end run.
    pub(crate) lines: u64,
    /// Inputs whose records reached the output topic.
    pub(crate) delivered: u64,
    /// Inputs that became dead letters (weblog) or were skipped as
    /// unparsable (seed).
    pub(crate) not_enriched: u64,
    pub(crate) end_to_end_seconds: f64,
    pub(crate) end_to_end_records_per_second: f64,
    pub(crate) latency: LatencyReport,
}

impl StageResult {
    /// Builds a row from a record count, a duration and the CPU time and
    /// peak memory of the process over it.
    pub(crate) fn new(
        pipeline: &str,
        stage: &str,
        program: &str,
        records: u64,
        seconds: f64,
        cpu_seconds: f64,
        peak_rss_bytes: u64,
    ) -> Self {
        Self {
            pipeline: pipeline.to_string(),
            stage: stage.to_string(),
            program: program.to_string(),
            records,
            seconds,
            records_per_second: per_second(records, seconds),
            cpu_seconds_per_million: if records == 0 {
                0.0
            } else {
                cpu_seconds * 1e6 / records as f64
            },
            peak_rss_mib: peak_rss_bytes as f64 / (1 << 20) as f64,
        }
    }
}

/// Returns `records / seconds`, or 0 for a span too short to measure.
pub(crate) fn per_second(records: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        records as f64 / seconds
    } else {
        0.0
    }
}

impl Results {
    fn stage(&self, pipeline: &str, stage: &str) -> Option<&StageResult> {
        self.stages
            .iter()
            .find(|row| row.pipeline == pipeline && row.stage == stage)
    }

    fn pipeline(&self, name: &str) -> Option<&PipelineResult> {
        self.pipelines.iter().find(|row| row.name == name)
    }

    /// Renders the ratios, the pipeline table and the stage table.
    pub(crate) fn to_markdown(&self) -> String {
        let mut out = String::new();
        self.write_ratios(&mut out);
        self.write_pipelines(&mut out);
        self.write_stages(&mut out);
        let machine = &self.machine;
        let _ = writeln!(
            out,
            "\nMachine: {} cores of `{}`, {:.1} GiB RAM; load average {} before, {} after; \
             commit {}.",
            machine.cores,
            machine.cpu_model,
            machine.memory_gib,
            machine.load_before,
            machine.load_after,
            machine.commit
        );
        out
    }

    fn write_ratios(&self, out: &mut String) {
        let enrich = |name: &str| self.stage(name, "enrich").map(|row| row.records_per_second);
        let cpu = |name: &str| {
            self.stage(name, "enrich")
                .map(|row| row.cpu_seconds_per_million)
        };
        let e2e = |name: &str| {
            self.pipeline(name)
                .map(|row| row.end_to_end_records_per_second)
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "n/a".to_string(),
        };
        let rss = self
            .stage("weblog-wasm", "enrich")
            .map_or("n/a".to_string(), |row| {
                format!("{:.0} MiB", row.peak_rss_mib)
            });
        let rows = [
            (
                "weblog (WASM, at-least-once) / passthrough, enrich stage records/s",
                ratio(enrich("weblog-wasm"), enrich("passthrough")),
                ">= 0.90",
            ),
            (
                "weblog (WASM, at-least-once) / passthrough, file to output topic records/s",
                ratio(e2e("weblog-wasm"), e2e("passthrough")),
                ">= 0.90",
            ),
            (
                "weblog (WASM, at-least-once) / seed, enrich stage records/s",
                ratio(enrich("weblog-wasm"), enrich("seed")),
                ">= 100",
            ),
            (
                "weblog (WASM, at-least-once) / seed, file to output topic records/s",
                ratio(e2e("weblog-wasm"), e2e("seed")),
                ">= 100",
            ),
            (
                "WASM / native, enrich stage time per record",
                ratio(enrich("weblog-native"), enrich("weblog-wasm")),
                "<= 1.30",
            ),
            (
                "WASM / native, enricher CPU per record",
                ratio(cpu("weblog-wasm"), cpu("weblog-native")),
                "<= 1.30",
            ),
            (
                "exactly-once / at-least-once, enrich stage records/s",
                ratio(enrich("weblog-wasm-eos"), enrich("weblog-wasm")),
                "",
            ),
            (
                "weblog-host peak RSS (WASM, at-least-once)",
                rss,
                "< 150 MiB",
            ),
        ];
        let _ = writeln!(out, "| ratio | measured | target |\n|---|---:|---|");
        for (what, value, target) in rows {
            let _ = writeln!(out, "| {what} | {value} | {target} |");
        }
    }

    fn write_pipelines(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n| pipeline | enrich stage records/s | file to output topic records/s (lines) | \
             p50 / p99 ms at offered rate | enricher CPU s per M records | \
             enricher peak RSS MiB | delivered + not enriched |\n\
             |---|---:|---:|---|---:|---:|---|"
        );
        for pipeline in &self.pipelines {
            let stage = self.stage(&pipeline.name, "enrich");
            let latency = &pipeline.latency;
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} ({}) | {:.1} / {:.1} at {}/s ({} of {} arrived) | {} | {} | {} + {} = {} |",
                pipeline.label,
                stage.map_or("n/a".to_string(), |row| format!("{:.0}", row.records_per_second)),
                pipeline.end_to_end_records_per_second,
                pipeline.lines,
                latency.p50_ms,
                latency.p99_ms,
                latency.offered_rate,
                latency.received,
                latency.sent,
                stage.map_or("n/a".to_string(), |row| format!("{:.2}", row.cpu_seconds_per_million)),
                stage.map_or("n/a".to_string(), |row| format!("{:.0}", row.peak_rss_mib)),
                pipeline.delivered,
                pipeline.not_enriched,
                pipeline.delivered + pipeline.not_enriched,
            );
        }
    }

    fn write_stages(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n| pipeline | stage | program | records | seconds | records/s | \
             CPU s per M records | peak RSS MiB |\n|---|---|---|---:|---:|---:|---:|---:|"
        );
        for row in &self.stages {
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} | {:.2} | {:.0} | {:.2} | {:.0} |",
                row.pipeline,
                row.stage,
                row.program,
                row.records,
                row.seconds,
                row.records_per_second,
                row.cpu_seconds_per_million,
                row.peak_rss_mib
            );
        }
    }
}
