//! `weblog-bench replay`: the benchmark input, the lines of the given
//! corpora one file after the other, repeated until the line count is
//! reached.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

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
