//! `weblog-bench run`: every pipeline on one broker and the same input.
//!
//! First each stage drains a backlog on its own: the shipper ships the
//! replay file, each enrichment stage consumes that raw topic into topics
//! of its own, and the sink writes the at-least-once host's output to a
//! file. Then each pipeline runs from the file to its output topic, the
//! shipper and the enrichment stage at once on fresh topics, and while the
//! enrichment stage still runs the latency producer offers lines at a
//! fixed rate. The seed pipeline gets the first `--seed-lines` lines of
//! the same file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use weblog_common::KafkaArgs;

use crate::kafka::Probe;
use crate::latency::{self, LatencyRun};
use crate::machine::load_average;
use crate::pipelines::{
    program_name, sink_program, stage_program, Enricher, Pipeline, Programs, Topics, PIPELINES,
};
use crate::process::{run_timed, StageProcess};
use crate::replay::{read_replay, write_head};
use crate::report::{per_second, Machine, PipelineResult, Results, StageResult};
use crate::watch::{watch, LineCounter, Progress, WatchOptions};

/// Lines of the replay file kept in memory for the latency producer.
const LATENCY_SAMPLE_LINES: usize = 30_000;

/// Flags of `weblog-bench run`.
#[derive(Args, Clone, Debug)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Replay file of access-log lines (`weblog-bench replay` writes one).
    #[arg(long)]
    replay: PathBuf,

    /// Lines of the replay file that the seed pipeline processes.
    #[arg(long, default_value_t = 100_000)]
    seed_lines: u64,

    /// Offered rate of the latency runs, in lines per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u32,

    /// Offered rate of the seed's latency run, in lines per second.
    #[arg(long, default_value_t = 2_000)]
    seed_rate: u32,

    /// Duration of each latency run, in seconds.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,

    /// Directory of the weblog binaries and weblog-bench.
    #[arg(long)]
    bin_dir: PathBuf,

    /// The default plugin component.
    #[arg(long)]
    plugin: PathBuf,

    /// Python with confluent-kafka installed, for the seed pipeline.
    #[arg(long)]
    python: PathBuf,

    /// Directory of the seed's shipper.py, enricher.py and sink.py.
    #[arg(long)]
    seed_dir: PathBuf,

    /// Directory for logs, sink files and results.json / results.md.
    #[arg(long)]
    out_dir: PathBuf,

    /// Max time of one stage or pipeline run, in seconds.
    #[arg(long, default_value_t = 900)]
    stage_timeout_secs: u64,
}

/// State shared by the steps of one run.
struct Bench {
    args: RunArgs,
    programs: Programs,
    probe: Probe,
    /// Prefix of every topic and group of this run.
    run_id: String,
    log_dir: PathBuf,
    lines: u64,
    seed_input: PathBuf,
    sample: Vec<Vec<u8>>,
    results: Results,
}

/// Runs everything and writes `results.json` and `results.md`.
pub(crate) fn run(args: RunArgs) -> anyhow::Result<()> {
    let log_dir = args.out_dir.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("failed to create {log_dir:?}"))?;
    let (lines, sample) = read_replay(&args.replay, LATENCY_SAMPLE_LINES)?;
    anyhow::ensure!(lines > 0, "the replay file {:?} is empty", args.replay);
    let seed_input = args.out_dir.join("seed-input.log");
    let seed_lines = args.seed_lines.min(lines);
    write_head(&args.replay, &seed_input, seed_lines)?;
    let run_id = format!(
        "bench-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs()
    );
    let programs = Programs {
        bootstrap: args.kafka.bootstrap_servers.clone(),
        bin_dir: args.bin_dir.clone(),
        plugin: args.plugin.clone(),
        python: args.python.clone(),
        seed_dir: args.seed_dir.clone(),
        component_cache: args.out_dir.join("components"),
    };
    let mut bench = Bench {
        probe: Probe::new(&args.kafka)?,
        programs,
        run_id,
        log_dir,
        lines,
        seed_input,
        sample,
        results: Results {
            machine: Machine::describe(),
            lines,
            seed_lines,
            ..Results::default()
        },
        args,
    };
    tracing::info!(lines, seed_lines, run = %bench.run_id, "benchmark started");

    bench.stages_alone()?;
    for pipeline in PIPELINES {
        let result = bench
            .whole_pipeline(&pipeline)
            .with_context(|| format!("failed to run pipeline {}", pipeline.name))?;
        bench.results.pipelines.push(result);
    }
    bench.results.machine.load_after = load_average();
    bench.write_results()
}

impl Bench {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.stage_timeout_secs)
    }

    fn input_lines(&self, pipeline: &Pipeline) -> u64 {
        if pipeline.is_seed() {
            self.results.seed_lines
        } else {
            self.lines
        }
    }

    fn input_file(&self, pipeline: &Pipeline) -> &Path {
        if pipeline.is_seed() {
            &self.seed_input
        } else {
            &self.args.replay
        }
    }

    fn create_topics(&self, prefix: &str) -> anyhow::Result<Topics> {
        let topics = Topics::new(&format!("{}-{prefix}", self.run_id));
        self.probe.create_topics(&topics.all())?;
        Ok(topics)
    }

    /// Measures each stage on its own, draining a backlog.
    fn stages_alone(&mut self) -> anyhow::Result<()> {
        let [passthrough, wasm, native, eos, seed] = PIPELINES;
        let shared = self.create_topics("stage")?;
        self.ship_alone(&wasm, &shared, "shared")?;
        for pipeline in [passthrough, wasm, native, eos] {
            let topics = Topics {
                raw: shared.raw.clone(),
                ..self.create_topics(&format!("stage-{}", pipeline.name))?
            };
            self.enrich_alone(&pipeline, &topics)?;
            if pipeline.name == wasm.name {
                self.sink_alone(&pipeline, &topics, "shared")?;
            }
        }
        let seed_topics = self.create_topics("stage-seed")?;
        self.ship_alone(&seed, &seed_topics, "seed")?;
        let enriched = self.enrich_alone(&seed, &seed_topics)?;
        self.sink_alone(&seed, &seed_topics, "seed")?;
        tracing::info!(enriched, "stages measured");
        Ok(())
    }

    fn ship_alone(
        &mut self,
        pipeline: &Pipeline,
        topics: &Topics,
        row: &str,
    ) -> anyhow::Result<()> {
        let lines = self.input_lines(pipeline);
        let (program, args) = self
            .programs
            .shipper(pipeline, topics, self.input_file(pipeline));
        let name = format!("{row}-ship");
        let finished = run_timed(&name, &program, &args, &self.log_dir, self.timeout())?;
        let shipped = self.probe.end_offsets(&topics.raw)?;
        anyhow::ensure!(
            shipped == lines,
            "{name} shipped {shipped} records of {lines} lines"
        );
        let result = StageResult::new(
            row,
            "ship",
            &program_name(&program, &args),
            lines,
            finished.wall.as_secs_f64(),
            finished.sample.cpu_seconds,
            finished.sample.peak_rss_bytes,
        );
        tracing::info!(stage = %name, records_per_second = result.records_per_second, "measured");
        self.results.stages.push(result);
        Ok(())
    }

    /// Drains `topics.raw` through the pipeline's enrichment stage and
    /// returns the number of enriched records.
    fn enrich_alone(&mut self, pipeline: &Pipeline, topics: &Topics) -> anyhow::Result<u64> {
        let lines = self.input_lines(pipeline);
        let group = format!("{}-{}-stage", self.run_id, pipeline.name);
        let name = format!("{}-enrich", pipeline.name);
        let command = self.programs.enricher(pipeline, topics, &group)?;
        let mut process = StageProcess::spawn(&name, command, &self.log_dir)?;
        let options = WatchOptions {
            timeout: self.timeout(),
            stable_for: stable_for(pipeline),
        };
        let probe = &mut self.probe;
        let measured = watch(&name, &mut [&mut process], Some(0), &options, || {
            enrich_progress(probe, pipeline, topics, &group, lines)
        })?;
        process.stop()?;

        let (enriched, not_enriched) = self.count_outputs(pipeline, topics, &name)?;
        anyhow::ensure!(
            enriched + not_enriched == lines,
            "{name}: {enriched} enriched + {not_enriched} not enriched, expected {lines}"
        );
        let result = StageResult::new(
            pipeline.name,
            "enrich",
            &stage_program(pipeline),
            lines,
            measured.seconds,
            measured.cpu_seconds,
            measured.peak_rss_bytes,
        );
        tracing::info!(stage = %name, records_per_second = result.records_per_second, enriched, "measured");
        self.results.stages.push(result);
        Ok(enriched)
    }

    /// Returns the enriched and not enriched record counts of a stopped
    /// enrichment stage.
    fn count_outputs(
        &self,
        pipeline: &Pipeline,
        topics: &Topics,
        name: &str,
    ) -> anyhow::Result<(u64, u64)> {
        match pipeline.enricher {
            Enricher::Passthrough => Ok((self.probe.end_offsets(&topics.enriched)?, 0)),
            Enricher::Host {
                exactly_once: false,
                ..
            } => Ok((
                self.probe.end_offsets(&topics.enriched)?,
                self.probe.end_offsets(&topics.dlq)?,
            )),
            // Transaction markers take offsets too, so count the records.
            Enricher::Host {
                exactly_once: true, ..
            } => Ok((
                self.probe.count_records(&topics.enriched)?,
                self.probe.count_records(&topics.dlq)?,
            )),
            Enricher::Seed => {
                let totals = SeedTotals::read(&self.log_dir.join(format!("{name}.out")))?;
                let produced = self.probe.end_offsets(&topics.enriched)?;
                anyhow::ensure!(
                    totals.produced == produced,
                    "{name} reported {} records produced, the topic has {produced}",
                    totals.produced
                );
                Ok((produced, totals.skipped))
            }
        }
    }

    /// Drains the enriched topic into a file with the pipeline's sink.
    fn sink_alone(
        &mut self,
        pipeline: &Pipeline,
        topics: &Topics,
        row: &str,
    ) -> anyhow::Result<()> {
        let expected = self.probe.end_offsets(&topics.enriched)?;
        let group = format!("{}-{}-sink", self.run_id, pipeline.name);
        let name = format!("{row}-sink");
        let output = self.args.out_dir.join(format!("{name}.jsonl"));
        remove_if_present(&output)?;
        let command = self.programs.sink(pipeline, topics, &group, &output);
        let mut process = StageProcess::spawn(&name, command, &self.log_dir)?;
        let options = WatchOptions {
            timeout: self.timeout(),
            stable_for: Duration::ZERO,
        };
        let mut counter = LineCounter::new(output.clone());
        let measured = watch(&name, &mut [&mut process], Some(0), &options, || {
            let records = counter.count()?;
            Ok(Progress {
                records,
                complete: records >= expected,
            })
        })?;
        process.stop()?;
        let written = LineCounter::new(output.clone()).count()?;
        anyhow::ensure!(
            written == expected,
            "{name} wrote {written} lines for {expected} enriched records"
        );
        // A full run writes about 500 MB here; the count is all it is for.
        remove_if_present(&output)?;
        let result = StageResult::new(
            row,
            "sink",
            &sink_program(pipeline),
            expected,
            measured.seconds,
            measured.cpu_seconds,
            measured.peak_rss_bytes,
        );
        tracing::info!(stage = %name, records_per_second = result.records_per_second, "measured");
        self.results.stages.push(result);
        Ok(())
    }

    /// Runs the shipper and the enrichment stage of `pipeline` at once on
    /// fresh topics, from the file to the output topic, then measures its
    /// latency while the enrichment stage still runs. The sink is measured
    /// alone only: the passthrough's raw copies are not JSON for a sink.
    fn whole_pipeline(&mut self, pipeline: &Pipeline) -> anyhow::Result<PipelineResult> {
        let lines = self.input_lines(pipeline);
        let topics = self.create_topics(&format!("e2e-{}", pipeline.name))?;
        let group = format!("{}-{}-e2e", self.run_id, pipeline.name);
        let name = format!("{}-e2e", pipeline.name);
        let command = self.programs.enricher(pipeline, &topics, &group)?;
        let mut enricher = StageProcess::spawn(&format!("{name}-enrich"), command, &self.log_dir)?;

        // One line through the stage first, so that the group join and
        // plugin loading are not part of the timed run.
        self.probe.produce_lines(&topics.raw, &self.sample[..1])?;
        let warm_up = WatchOptions {
            timeout: self.timeout(),
            stable_for: Duration::ZERO,
        };
        let probe = &mut self.probe;
        watch(
            &format!("{name} warm-up"),
            &mut [&mut enricher],
            None,
            &warm_up,
            || {
                let records = probe.end_offsets(&topics.enriched)?;
                Ok(Progress {
                    records,
                    complete: records >= 1,
                })
            },
        )?;

        let started = Instant::now();
        let (program, args) = self
            .programs
            .shipper(pipeline, &topics, self.input_file(pipeline));
        let mut ship_command = Command::new(&program);
        ship_command.args(&args);
        let shipper = StageProcess::spawn(&format!("{name}-ship"), ship_command, &self.log_dir)?;
        let options = WatchOptions {
            timeout: self.timeout(),
            stable_for: stable_for(pipeline),
        };
        let probe = &mut self.probe;
        let measured = watch(&name, &mut [&mut enricher], None, &options, || {
            enrich_progress(probe, pipeline, &topics, &group, lines + 1)
        })?;
        shipper.wait(self.timeout())?;
        let seconds = measured.finished_at.duration_since(started).as_secs_f64();

        // Counts exclude the warm-up line, which every pipeline enriches.
        let (enriched, not_enriched) = match pipeline.enricher {
            Enricher::Host {
                exactly_once: true, ..
            } => (
                self.probe.count_records(&topics.enriched)?,
                self.probe.count_records(&topics.dlq)?,
            ),
            Enricher::Host { .. } => (
                self.probe.end_offsets(&topics.enriched)?,
                self.probe.end_offsets(&topics.dlq)?,
            ),
            Enricher::Passthrough => (self.probe.end_offsets(&topics.enriched)?, 0),
            // The seed drops what it cannot parse, with a log line.
            Enricher::Seed => {
                let enriched = self.probe.end_offsets(&topics.enriched)?;
                (enriched, (lines + 1).saturating_sub(enriched))
            }
        };
        let delivered = enriched.saturating_sub(1);
        anyhow::ensure!(
            delivered + not_enriched == lines,
            "{name}: {delivered} delivered + {not_enriched} not enriched, expected {lines}"
        );
        tracing::info!(
            pipeline = pipeline.name,
            seconds,
            delivered,
            "end to end measured"
        );

        let latency = latency::measure(
            &self.args.kafka,
            &LatencyRun {
                input_topic: &topics.raw,
                output_topics: topics.outputs(pipeline),
                rate: match pipeline.is_seed() {
                    true => self.args.seed_rate,
                    false => self.args.rate,
                },
                duration: Duration::from_secs(self.args.latency_secs),
                lines: &self.sample,
            },
        )?;
        tracing::info!(
            pipeline = pipeline.name,
            p50_ms = latency.p50_ms,
            p99_ms = latency.p99_ms,
            "latency measured"
        );
        enricher.stop()?;
        Ok(PipelineResult {
            name: pipeline.name.to_string(),
            label: pipeline.label.to_string(),
            lines,
            delivered,
            not_enriched,
            end_to_end_seconds: seconds,
            end_to_end_records_per_second: per_second(lines, seconds),
            latency,
        })
    }

    fn write_results(&self) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(&self.results)?;
        let json_path = self.args.out_dir.join("results.json");
        std::fs::write(&json_path, json)
            .with_context(|| format!("failed to write {json_path:?}"))?;
        let markdown = self.results.to_markdown();
        let md_path = self.args.out_dir.join("results.md");
        std::fs::write(&md_path, &markdown)
            .with_context(|| format!("failed to write {md_path:?}"))?;
        println!("{markdown}");
        Ok(())
    }
}

/// Returns how long a stage's count must stay unchanged before it counts
/// as complete: the seed commits offsets only every 5 s, so its last
/// records are known by the output count no longer growing.
fn stable_for(pipeline: &Pipeline) -> Duration {
    if pipeline.is_seed() {
        Duration::from_secs(2)
    } else {
        Duration::ZERO
    }
}

/// Returns the progress of an enrichment stage that must consume `lines`.
fn enrich_progress(
    probe: &mut Probe,
    pipeline: &Pipeline,
    topics: &Topics,
    group: &str,
    lines: u64,
) -> anyhow::Result<Progress> {
    let committed = probe.committed(group, &topics.raw)?;
    if pipeline.is_seed() {
        // The seed commits on a timer, so its output shows its progress.
        return Ok(Progress {
            records: probe.end_offsets(&topics.enriched)?,
            complete: committed >= lines,
        });
    }
    Ok(Progress {
        records: committed,
        complete: committed >= lines,
    })
}

/// Totals that the seed's enricher.py prints as its last line on exit.
#[derive(serde::Deserialize)]
struct SeedTotals {
    produced: u64,
    skipped: u64,
}

impl SeedTotals {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("failed to read {path:?}"))?;
        let last = text
            .lines()
            .last()
            .with_context(|| format!("{path:?} is empty: enricher.py printed no totals"))?;
        serde_json::from_str(last).with_context(|| format!("invalid totals {last:?} in {path:?}"))
    }
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    for file in [path.to_path_buf(), path.with_extension("jsonl.checkpoint")] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("failed to remove {file:?}")),
        }
    }
    Ok(())
}
