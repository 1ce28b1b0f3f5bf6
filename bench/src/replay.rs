//! `weblog-bench replay`: the benchmark input, the lines of the given
//! corpora one file after the other, repeated until the line count is
//! reached.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

/// Flags of `weblog-bench replay`.
#[derive(Args, Clone, Debug)]
pub(crate) struct ReplayArgs {
    /// Lines to write.
    #[arg(long)]
    lines: u64,

    /// File to write.
    #[arg(long)]
    output: PathBuf,

    /// Corpus files, read as bytes and split on '\n'.
    #[arg(required = true)]
    corpora: Vec<PathBuf>,
}

/// Writes the replay file.
pub(crate) fn write(args: &ReplayArgs) -> anyhow::Result<()> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for path in &args.corpora {
        let bytes = std::fs::read(path).with_context(|| format!("failed to read {path:?}"))?;
        lines.extend(
            bytes
                .split(|byte| *byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    anyhow::ensure!(!lines.is_empty(), "the corpora contain no line");
    let file = std::fs::File::create(&args.output)
        .with_context(|| format!("failed to create {:?}", args.output))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for line in lines.iter().cycle().take(args.lines as usize) {
        out.write_all(line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
        .with_context(|| format!("failed to write {:?}", args.output))?;
    tracing::info!(lines = args.lines, corpus_lines = lines.len(), output = ?args.output, "replay written");
    Ok(())
}

/// Returns the line count of the replay file and its first
/// `sample_lines` lines.
pub(crate) fn read_replay(path: &Path, sample_lines: usize) -> anyhow::Result<(u64, Vec<Vec<u8>>)> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).with_context(|| format!("failed to open {path:?}"))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut sample = Vec::new();
    let mut count = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("failed to read {path:?}"))?;
        if read == 0 {
            return Ok((count, sample));
        }
        count += 1;
        if sample.len() < sample_lines {
            let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
            sample.push(trimmed.to_vec());
        }
    }
}

/// Writes the first `lines` lines of `from` to `to`.
pub(crate) fn write_head(from: &Path, to: &Path, lines: u64) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let file = std::fs::File::open(from).with_context(|| format!("failed to open {from:?}"))?;
    let reader = std::io::BufReader::new(file);
    let out = std::fs::File::create(to).with_context(|| format!("failed to create {to:?}"))?;
    let mut writer = std::io::BufWriter::new(out);
    for line in reader.split(b'\n').take(lines as usize) {
        writer.write_all(&line?)?;
        writer.write_all(b"\n")?;
    }
    writer
        .flush()
        .with_context(|| format!("failed to write {to:?}"))
}
