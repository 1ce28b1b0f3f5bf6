//! `weblog-host enrich-file`: runs a plugin over a file without Kafka.
//!
//! Writes one JSON object per input line to the writer, in input order:
//! `{"line":N,"records":[...]}` for an enriched line and
//! `{"line":N,"rejected":"reason","kind":"trap"}` for one that would be
//! dead-lettered, with the failure kind of the `weblog.error.kind` header.
//! Lines are split on `\n` only and passed as raw bytes, so a `\r` stays.
//! Plugin authors test with it, and the end-to-end test uses its output as
//! the reference for what the pipeline must produce.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bindings::InputRecord;
use crate::outcome::EnrichOutcome;
use crate::plugin::Plugin;

/// Lines passed to the plugin per call.
pub const DEFAULT_BATCH_SIZE: usize = 256;

/// Distinct reasons counted per failure kind. Reasons that name a record
/// can differ on every line, so later ones are counted as "other reasons"
/// to keep memory bounded on large files.
const MAX_REASONS_PER_KIND: usize = 100;

/// Reasons per failure kind listed in the report, the most frequent first.
const MAX_REPORTED_REASONS: usize = 5;

/// Max characters of one reason in the report.
const MAX_REPORTED_REASON_CHARS: usize = 300;

/// Counts reported when a file is done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// Lines read from the input.
    pub lines: u64,
    /// Lines the plugin enriched (including those it filtered out).
    pub enriched: u64,
    /// Lines that would go to the dead-letter topic, by failure kind.
    pub failed: BTreeMap<&'static str, u64>,
    /// The same lines by failure kind and reason, for at most
    /// [`MAX_REASONS_PER_KIND`] distinct reasons per kind.
    pub reasons: BTreeMap<&'static str, BTreeMap<String, u64>>,
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
                let reason = serde_json::to_string(&failure.reason)
                    .context("failed to encode a rejection reason")?;
                text.push_str(&format!(
                    "{{\"line\":{},\"rejected\":{reason},\"kind\":\"{}\"}}\n",
                    summary.lines,
                    failure.kind.as_str()
                ));
                summary.count_failure(failure.kind.as_str(), failure.reason);
            }
        }
        out.write_all(text.as_bytes())
            .context("failed to write enrich-file output")?;
    }
    Ok(())
}

impl FileSummary {
    fn count_failure(&mut self, kind: &'static str, reason: String) {
        *self.failed.entry(kind).or_default() += 1;
        let reasons = self.reasons.entry(kind).or_default();
        if reasons.len() < MAX_REASONS_PER_KIND || reasons.contains_key(&reason) {
            *reasons.entry(reason).or_default() += 1;
        }
    }

    /// Formats the summary printed on stderr when the file is done: counts
    /// per failure kind, each followed by its most frequent reasons.
    pub fn report(&self) -> String {
        let failed: u64 = self.failed.values().sum();
        let mut text = format!(
            "lines: {}, enriched: {}, rejected: {failed}",
            self.lines, self.enriched
        );
        for (kind, count) in &self.failed {
            text.push_str(&format!("\n  {kind}: {count}"));
            if let Some(reasons) = self.reasons.get(kind) {
                text.push_str(&report_reasons(reasons, *count));
            }
        }
        if self.lines > 0 {
            let per_line = self.plugin_time.as_nanos() / u128::from(self.lines);
            text.push_str(&format!("\nplugin time: {per_line} ns per line"));
        }
        text
    }
}

/// Lists the most frequent reasons of one kind, one per line, and how many
/// lines had reasons not listed.
fn report_reasons(reasons: &BTreeMap<String, u64>, kind_count: u64) -> String {
    let mut by_count: Vec<(&String, &u64)> = reasons.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut text = String::new();
    let mut listed = 0;
    for (reason, count) in by_count.into_iter().take(MAX_REPORTED_REASONS) {
        let shown: String = reason.chars().take(MAX_REPORTED_REASON_CHARS).collect();
        let cut = if shown.len() < reason.len() {
            "..."
        } else {
            ""
        };
        text.push_str(&format!("\n    {count} x {shown}{cut}"));
        listed += count;
    }
    if kind_count > listed {
        text.push_str(&format!("\n    {} x other reasons", kind_count - listed));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_reasons_by_kind() {
        let mut summary = FileSummary {
            lines: 4,
            enriched: 1,
            ..FileSummary::default()
        };
        summary.count_failure("trap", "panicked: poison".into());
        summary.count_failure("trap", "panicked: poison".into());
        summary.count_failure("timeout", "deadline".into());
        let report = summary.report();
        assert!(
            report.starts_with("lines: 4, enriched: 1, rejected: 3\n"),
            "{report}"
        );
        assert!(
            report.contains("\n  timeout: 1\n    1 x deadline\n"),
            "{report}"
        );
        assert!(
            report.contains("\n  trap: 2\n    2 x panicked: poison\n"),
            "{report}"
        );
    }

    #[test]
    fn report_counts_reasons_past_the_limit_as_other() {
        let mut summary = FileSummary::default();
        for line in 0..MAX_REASONS_PER_KIND + 10 {
            summary.count_failure("trap", format!("poison at line {line}"));
        }
        assert_eq!(summary.reasons["trap"].len(), MAX_REASONS_PER_KIND);
        let report = summary.report();
        let other = MAX_REASONS_PER_KIND + 10 - MAX_REPORTED_REASONS;
        assert!(
            report.ends_with(&format!("\n    {other} x other reasons")),
            "{report}"
        );
    }
}
