//! The checkpoint file: how much of the output file is durable, and, per
//! topic and partition, the offset of the next record to write.
//!
//! The checkpoint sits beside the output, at `<output>.checkpoint`, and is
//! the source of truth for what the file contains. It is JSON, replaced
//! atomically: the new content goes to `<output>.checkpoint.tmp`, which is
//! fsynced, renamed over the old one, and the directory is fsynced so that
//! the rename survives a power loss. A reader therefore sees the old or the
//! new checkpoint, never a mix.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use weblog_common::durable;

/// Version of the file format, raised when a field changes meaning.
pub(crate) const CHECKPOINT_VERSION: u32 = 1;

/// Next offset to read, per topic and partition.
pub(crate) type Offsets = BTreeMap<(String, i32), i64>;

/// Content of the checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Format version, [`CHECKPOINT_VERSION`].
    pub(crate) version: u32,
    /// File name of the current output file (the `--output` path without
    /// its directory), so that a checkpoint is never applied to another
    /// output.
    pub(crate) output: String,
    /// Bytes of the current output file that are durable and accounted for
    /// in `offsets`. Bytes past this length were written after the last
    /// checkpoint, and a restart truncates them.
    pub(crate) length: u64,
    /// Number of rotated files: `<output>.000001` up to this sequence
    /// number are closed and complete.
    pub(crate) rotations: u64,
    /// Per topic and partition, the offset of the next record to write.
    pub(crate) offsets: Vec<PartitionOffset>,
}

/// Position in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionOffset {
    /// Kafka topic.
    pub(crate) topic: String,
    /// Partition of `topic`.
    pub(crate) partition: i32,
    /// Offset of the first record not yet in the output files.
    pub(crate) next_offset: i64,
}

impl Checkpoint {
    /// Returns the checkpoint of a new, empty output file named `output`.
    pub(crate) fn empty(output: &str) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            output: output.to_string(),
            length: 0,
            rotations: 0,
            offsets: Vec::new(),
        }
    }

    /// Returns the offsets as a map.
    pub(crate) fn offset_map(&self) -> Offsets {
        self.offsets
            .iter()
            .map(|entry| ((entry.topic.clone(), entry.partition), entry.next_offset))
            .collect()
    }

    /// Replaces the offsets with `offsets`.
    pub(crate) fn set_offsets(&mut self, offsets: &Offsets) {
        self.offsets = offsets
            .iter()
            .map(|((topic, partition), next_offset)| PartitionOffset {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next_offset,
            })
            .collect();
    }

    /// Reads the checkpoint at `path`. Returns `None` when there is no file
    /// yet. Fails when the file is not a checkpoint of this version or
    /// belongs to another output file than `output`.
    pub(crate) fn load(path: &Path, output: &str) -> anyhow::Result<Option<Self>> {
        let content = match fs::read(path) {
            Ok(content) => content,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| format!("failed to read checkpoint {path:?}"))
            }
        };
        let checkpoint: Self = serde_json::from_slice(&content).with_context(|| {
            format!(
                "failed to parse checkpoint {path:?}; it is replaced atomically, so it was \
                 changed by hand or the disk is damaged: restore it from a backup, or move \
                 it and its output file away to start a new output file, which the sink \
                 fills from the consumer group's committed offsets"
            )
        })?;
        if checkpoint.version != CHECKPOINT_VERSION {
            bail!(
                "invalid checkpoint {path:?}: format version {} is not the supported {}",
                checkpoint.version,
                CHECKPOINT_VERSION
            );
        }
        if checkpoint.output != output {
            bail!(
                "invalid checkpoint {path:?}: it belongs to output file {:?}, not {output:?}; \
                 rename the output file and its checkpoint back (to {0:?} and \
                 {0}.checkpoint) and pass that --output, or move this checkpoint away to \
                 start anew: the sink then requires {output:?} to be missing or empty and \
                 fills it from the consumer group's committed offsets, which match the \
                 checkpoint unless a commit failed",
                checkpoint.output
            );
        }
        Ok(Some(checkpoint))
    }

    /// Replaces the checkpoint at `path` atomically and durably.
    pub(crate) fn store(&self, path: &Path) -> anyhow::Result<()> {
        let content =
            serde_json::to_vec_pretty(self).context("failed to serialize the checkpoint")?;
        durable::replace_file(path, &content)
            .with_context(|| format!("failed to store checkpoint {path:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut checkpoint = Checkpoint::empty("out.jsonl");
        checkpoint.length = 4096;
        checkpoint.rotations = 3;
        let offsets = Offsets::from([
            (("enriched".to_string(), 0), 17),
            (("enriched".to_string(), 2), 5),
        ]);
        checkpoint.set_offsets(&offsets);
        checkpoint
    }

    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl.checkpoint");

        sample().store(&path).expect("store");
        let loaded = Checkpoint::load(&path, "out.jsonl")
            .expect("load")
            .expect("checkpoint exists");

        assert_eq!(loaded, sample());
        assert_eq!(loaded.offset_map()[&("enriched".to_string(), 0)], 17);
        assert_eq!(loaded.offset_map()[&("enriched".to_string(), 2)], 5);
        assert!(!durable::with_suffix(&path, ".tmp").exists());
    }

    #[test]
    fn store_replaces_previous_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl.checkpoint");
        sample().store(&path).expect("store first");

        let mut next = sample();
        next.length = 8192;
        next.store(&path).expect("store second");

        let loaded = Checkpoint::load(&path, "out.jsonl").expect("load");
        assert_eq!(loaded.map(|checkpoint| checkpoint.length), Some(8192));
    }

    #[test]
    fn missing_checkpoint_is_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl.checkpoint");

        assert_eq!(Checkpoint::load(&path, "out.jsonl").expect("load"), None);
    }

    #[test]
    fn corrupt_checkpoint_names_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl.checkpoint");
        fs::write(&path, b"{\"version\":").expect("write corrupt checkpoint");

        let error = Checkpoint::load(&path, "out.jsonl").expect_err("corrupt");

        let message = format!("{error:#}");
        assert!(message.contains("failed to parse checkpoint"), "{message}");
        assert!(message.contains("out.jsonl.checkpoint"), "{message}");
        assert!(message.contains("restore it from a backup"), "{message}");
    }

    #[test]
    fn checkpoint_of_other_output_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl.checkpoint");
        sample().store(&path).expect("store");

        let error = Checkpoint::load(&path, "other.jsonl").expect_err("other output");

        let message = format!("{error:#}");
        assert!(message.contains("\"out.jsonl\""), "{message}");
        assert!(message.contains("\"other.jsonl\""), "{message}");
        assert!(message.contains("rename the output file"), "{message}");
        assert!(message.contains("committed offsets"), "{message}");
    }

    #[test]
    fn other_version_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl.checkpoint");
        let mut checkpoint = sample();
        checkpoint.version = CHECKPOINT_VERSION + 1;
        checkpoint.store(&path).expect("store");

        let error = Checkpoint::load(&path, "out.jsonl").expect_err("other version");

        assert!(format!("{error:#}").contains("format version 2"));
    }
}
