//! The lines the benchmarks enrich: drawn in turn from the three real
//! corpora, so that every sample mixes their log styles. The plugin's
//! native bench and the host's bench include this file with `#[path]`, so
//! both measure the same lines.

use std::path::Path;

/// File names of the real corpora in the shared data folder.
const CORPORA: [&str; 3] = [
    "elastic-apache.log",
    "nasa-jul-aug95-random-sample.log",
    "basjes-hackers-access.log",
];

/// Returns `count` non-empty lines taken round-robin from the corpora in
/// `folder`, without their `\n`.
pub(crate) fn corpus_sample(folder: &Path, count: usize) -> Vec<Vec<u8>> {
    let corpora: Vec<Vec<Vec<u8>>> = CORPORA
        .iter()
        .map(|name| {
            let path = folder.join(name);
            let content = std::fs::read(&path).unwrap_or_else(|error| {
                panic!("failed to read corpus {}: {error}", path.display())
            });
            content
                .split(|byte| *byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        })
        .collect();
    (0..count)
        .map(|index| {
            let corpus = &corpora[index % corpora.len()];
            corpus[(index / corpora.len()) % corpus.len()].clone()
        })
        .collect()
}
