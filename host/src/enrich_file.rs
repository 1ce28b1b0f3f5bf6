//! `weblog-host enrich-file`: runs a plugin over a file without Kafka.
//!
//! Writes one JSON object per input line to the writer, in input order:
//! `{"line":N,"records":[...]}` for an enriched line and
//! `{"line":N,"rejected":"reason"}` for one that would be dead-lettered.
//! Lines are split on `\n` only and passed as raw bytes, so a `\r` stays.
//! Plugin authors test with it, and the end-to-end test uses its output as
//! the reference for what the pipeline must produce.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bindings::InputRecord;
use crate::outcome::EnrichOutcome;
use crate::plugin::Plugin;

/// Lines passed to the plugin per call.
pub const DEFAULT_BATCH_SIZE: usize = 256;

/// Counts reported when a file is done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// Lines read from the input.
    pub lines: u64,
    /// Lines the plugin enriched (including those it filtered out).
    pub enriched: u64,
    /// Lines that would go to the dead-letter topic, by failure kind.
    pub failed: std::collections::BTreeMap<&'static str, u64>,
    /// Time spent inside plugin calls.
    pub plugin_time: Duration,
}

/// Enriches every line of `input` with `plugin`, writing results to `out`.
pub fn enrich_file(
    plugin: &mut Plugin,
    input: &Path,
    batch_size: usize,
    out: &mut dyn Write,
) -> anyhow::Result<FileSummary> {
    let file = std::fs::File::open(input)
        .with_context(|| format!("failed to open input file {input:?}"))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let topic = format!("file:{}", input.display());
    let mut summary = FileSummary::default();
    let mut batch = Vec::with_capacity(batch_size);

    loop {
        let mut line = Vec::new();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("failed to read input file {input:?}"))?;
        if read > 0 {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            batch.push(InputRecord {
                topic: topic.clone(),
                partition: 0,
                offset: i64::try_from(summary.lines + batch.len() as u64).unwrap_or(i64::MAX),
                timestamp_ms: None,
                key: None,
                value: line,
            });
        }
        if batch.len() == batch_size || (read == 0 && !batch.is_empty()) {
            write_batch(plugin, &batch, &mut summary, out)?;
            batch.clear();
        }
        if read == 0 {
            break;
        }
    }
    out.flush().context("failed to write enrich-file output")?;
    Ok(summary)
}

fn write_batch(
    plugin: &mut Plugin,
    batch: &[InputRecord],
    summary: &mut FileSummary,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let outcomes = plugin.enrich(batch);
    summary.plugin_time += started.elapsed();

    let mut text = String::new();
    for outcome in outcomes {
        summary.lines += 1;
        text.clear();
        match outcome {
            EnrichOutcome::Enriched(records) => {
                summary.enriched += 1;
                // Records were checked to be JSON objects, so they are
                // inserted as they are.
                text.push_str(&format!("{{\"line\":{},\"records\":[", summary.lines));
                text.push_str(&records.join(","));
                text.push_str("]}\n");
            }
            EnrichOutcome::Failed(failure) => {
                *summary.failed.entry(failure.kind.as_str()).or_default() += 1;
                let reason = serde_json::to_string(&failure.reason)
                    .context("failed to encode a rejection reason")?;
                text.push_str(&format!(
                    "{{\"line\":{},\"rejected\":{reason}}}\n",
                    summary.lines
                ));
            }
        }
        out.write_all(text.as_bytes())
            .context("failed to write enrich-file output")?;
    }
    Ok(())
}

impl FileSummary {
    /// Formats the summary printed on stderr when the file is done.
    pub fn report(&self) -> String {
        let failed: u64 = self.failed.values().sum();
        let mut text = format!(
            "lines: {}, enriched: {}, rejected: {failed}",
            self.lines, self.enriched
        );
        for (kind, count) in &self.failed {
            text.push_str(&format!("\n  {kind}: {count}"));
        }
        if self.lines > 0 {
            let per_line = self.plugin_time.as_nanos() / u128::from(self.lines);
            text.push_str(&format!("\nplugin time: {per_line} ns per line"));
        }
        text
    }
}
