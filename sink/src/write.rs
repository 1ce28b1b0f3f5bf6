//! The output file: appending batches, keeping the checkpoint beside them,
//! recovering after a crash, and rotating.
//!
//! A batch goes through these steps, in this order: its lines are appended
//! and fsynced, then the checkpoint records the new file length together
//! with the offsets after the batch. The checkpoint is what counts. At
//! start the file is truncated to the checkpointed length, which removes
//! any line written after the last checkpoint, including a line cut short
//! by a crash, and the consumer resumes at the checkpointed offsets. So
//! each record is in the files exactly once, whenever the sink is killed.
//!
//! Rotation renames `<output>` to `<output>.NNNNNN`, where `NNNNNN` is a
//! sequence number from 000001 up, zero-padded to six digits so that the
//! names sort in write order. The order of the steps keeps a crash at any
//! point recoverable:
//!
//! 1. the current file is fsynced and checkpointed (after its last batch);
//! 2. it is renamed to the next sequence number, and the directory fsynced;
//! 3. the checkpoint switches to the new sequence number and length 0;
//! 4. a new, empty `<output>` is created, and the directory fsynced.
//!
//! A restart that finds the renamed file of step 2 without the checkpoint
//! of step 3 completes steps 3 and 4. A restart after step 3 creates the
//! missing file of step 4.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

use weblog_common::durable::{sync_parent_dir, with_suffix};
use weblog_common::usage::usage_error;

use crate::checkpoint::{Checkpoint, Offsets};
use crate::lock::{lock_output, OutputLock};

/// When to rotate the output file. A rule that is `None` never applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rotation {
    /// Rotate once the file has at least this many bytes. The check runs
    /// after each batch, so a file can exceed this by one batch.
    pub(crate) max_bytes: Option<u64>,
    /// Rotate once this much time has passed since the first byte of the
    /// file was written in this run. A restart counts from the restart.
    pub(crate) interval: Option<Duration>,
}

/// The open output file and its checkpoint.
pub(crate) struct SinkWriter {
    path: PathBuf,
    checkpoint_path: PathBuf,
    file: File,
    /// The checkpoint as last stored.
    checkpoint: Checkpoint,
    /// Bytes in the current file, including those not yet checkpointed.
    length: u64,
    rotation: Rotation,
    /// When the first byte of the current file was written in this run.
    first_write: Option<Instant>,
    /// Keeps other sinks off the output while this writer is open.
    _lock: OutputLock,
}

impl SinkWriter {
    /// Opens the output at `path` and its checkpoint at
    /// `<path>.checkpoint`, bringing both back to the last checkpoint.
    ///
    /// Without a checkpoint, `path` must be missing or empty, because
    /// nothing tells which records an existing file contains. With one,
    /// an interrupted rotation is completed and the bytes written after the
    /// checkpoint are truncated. A file shorter than its checkpoint was
    /// changed by something other than the sink, which is an error. Fails
    /// before touching the output when another sink holds its lock.
    pub(crate) fn open(path: &Path, rotation: Rotation) -> anyhow::Result<Self> {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            return Err(usage_error(format!(
                "invalid output path {path:?}: it must end in a UTF-8 file name"
            )));
        };
        let lock = lock_output(path)?;
        let checkpoint_path = checkpoint_path(path);
        let checkpoint = match Checkpoint::load(&checkpoint_path, name)? {
            Some(checkpoint) => checkpoint,
            None => start_checkpoint(path, &checkpoint_path, name)?,
        };
        let checkpoint = complete_rotation(path, &checkpoint_path, checkpoint)?;
        truncate_to_checkpoint(path, checkpoint.length)?;

        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("failed to open output file {path:?}"))?;
        let length = checkpoint.length;
        tracing::info!(
            path = ?path,
            length,
            rotations = checkpoint.rotations,
            "output file opened at its checkpoint"
        );
        Ok(Self {
            path: path.to_path_buf(),
            checkpoint_path,
            file,
            checkpoint,
            length,
            rotation,
            first_write: (length > 0).then(Instant::now),
            _lock: lock,
        })
    }

    /// Returns the checkpointed offsets: per topic and partition, the next
    /// record to write.
    pub(crate) fn offsets(&self) -> Offsets {
        self.checkpoint.offset_map()
    }

    /// Appends `lines`, which must end in `\n`, and waits until they are on
    /// disk. They count only after [`Self::store_checkpoint`].
    pub(crate) fn append(&mut self, lines: &[u8]) -> anyhow::Result<()> {
        let path = &self.path;
        self.file
            .write_all(lines)
            .with_context(|| format!("failed to write to output file {path:?}"))?;
        self.file
            .sync_data()
            .with_context(|| format!("failed to fsync output file {path:?}"))?;
        weblog_common::metrics::counter!(crate::metrics::FSYNCS).increment(1);
        if self.length == 0 && !lines.is_empty() {
            self.first_write = Some(Instant::now());
        }
        self.length += lines.len() as u64;
        Ok(())
    }

    /// Records the current length with `offsets`, the positions after every
    /// record appended so far, in the checkpoint.
    pub(crate) fn store_checkpoint(&mut self, offsets: &Offsets) -> anyhow::Result<()> {
        let mut checkpoint = self.checkpoint.clone();
        checkpoint.length = self.length;
        checkpoint.set_offsets(offsets);
        checkpoint.store(&self.checkpoint_path)?;
        self.checkpoint = checkpoint;
        Ok(())
    }

    /// Returns when the current file is due for rotation by time, or `None`
    /// when it is empty, no interval is set or the deadline is past what
    /// [`Instant`] can represent.
    pub(crate) fn rotation_deadline(&self) -> Option<Instant> {
        self.first_write?.checked_add(self.rotation.interval?)
    }

    /// Rotates the current file if a rule of [`Rotation`] says so at `now`.
    /// Must be called only after [`Self::store_checkpoint`], so that the
    /// rotated file is complete. Returns whether it rotated.
    pub(crate) fn rotate_if_due(&mut self, now: Instant) -> anyhow::Result<bool> {
        let by_size = self
            .rotation
            .max_bytes
            .is_some_and(|max| self.length >= max);
        let by_time = self
            .rotation_deadline()
            .is_some_and(|deadline| now >= deadline);
        if self.length == 0 || !(by_size || by_time) {
            return Ok(false);
        }
        self.rotate()?;
        Ok(true)
    }

    fn rotate(&mut self) -> anyhow::Result<()> {
        ensure!(
            self.length == self.checkpoint.length,
            "failed to rotate output file {:?}: {} bytes are not checkpointed",
            self.path,
            self.length - self.checkpoint.length
        );
        let path = &self.path;
        let sequence = self.checkpoint.rotations + 1;
        let rotated = rotated_path(path, sequence);
        if rotated.exists() {
            bail!(
                "failed to rotate output file {path:?}: {rotated:?} exists already; move the \
                 rotated files of another run out of the directory"
            );
        }
        fs::rename(path, &rotated)
            .with_context(|| format!("failed to rename output file {path:?} to {rotated:?}"))?;
        sync_parent_dir(path)?;

        let mut checkpoint = self.checkpoint.clone();
        checkpoint.rotations = sequence;
        checkpoint.length = 0;
        checkpoint.store(&self.checkpoint_path)?;
        self.checkpoint = checkpoint;

        self.file = create_output(path)?;
        self.length = 0;
        self.first_write = None;
        tracing::info!(path = ?path, rotated = ?rotated, "output file rotated");
        Ok(())
    }
}

/// Returns the checkpoint path of the output at `path`.
pub(crate) fn checkpoint_path(path: &Path) -> PathBuf {
    with_suffix(path, ".checkpoint")
}

/// Returns the path of rotated file number `sequence` of `path`.
pub(crate) fn rotated_path(path: &Path, sequence: u64) -> PathBuf {
    with_suffix(path, &format!(".{sequence:06}"))
}

/// Stores the first checkpoint of the output at `path`, which must be
/// missing or empty and have no rotated files.
fn start_checkpoint(path: &Path, checkpoint_path: &Path, name: &str) -> anyhow::Result<Checkpoint> {
    let length = file_length(path)?.unwrap_or(0);
    if length > 0 {
        bail!(
            "output file {path:?} has {length} bytes but no checkpoint {checkpoint_path:?}, \
             so the sink cannot tell which records it contains; move the file away or \
             pass another --output"
        );
    }
    let first_rotated = rotated_path(path, 1);
    if first_rotated.exists() {
        bail!(
            "rotated output file {first_rotated:?} exists but checkpoint {checkpoint_path:?} \
             is missing; move the rotated files away or pass another --output"
        );
    }
    let checkpoint = Checkpoint::empty(name);
    checkpoint.store(checkpoint_path)?;
    tracing::info!(checkpoint = ?checkpoint_path, "checkpoint created");
    Ok(checkpoint)
}

/// Completes a rotation that was interrupted after the rename and before
/// the checkpoint switched to the renamed file's sequence number.
fn complete_rotation(
    path: &Path,
    checkpoint_path: &Path,
    mut checkpoint: Checkpoint,
) -> anyhow::Result<Checkpoint> {
    let sequence = checkpoint.rotations + 1;
    let rotated = rotated_path(path, sequence);
    if file_length(&rotated)?.is_none() {
        return Ok(checkpoint);
    }
    if let Some(length) = file_length(path)?.filter(|length| *length > 0) {
        bail!(
            "output file {path:?} ({length} bytes) and rotated file {rotated:?} both exist, \
             but checkpoint {checkpoint_path:?} counts only {} rotations; the files were \
             changed by something other than the sink",
            checkpoint.rotations
        );
    }
    truncate_to_checkpoint(&rotated, checkpoint.length)?;
    checkpoint.rotations = sequence;
    checkpoint.length = 0;
    checkpoint.store(checkpoint_path)?;
    tracing::info!(rotated = ?rotated, "completed an interrupted rotation");
    Ok(checkpoint)
}

/// Truncates the file at `path` to `length`, the checkpointed length, or
/// creates it when it is missing and `length` is 0.
fn truncate_to_checkpoint(path: &Path, length: u64) -> anyhow::Result<()> {
    let Some(actual) = file_length(path)? else {
        if length > 0 {
            bail!(
                "output file {path:?} is missing, but the checkpoint says it has {length} \
                 bytes; restore the file or move the checkpoint away"
            );
        }
        create_output(path)?;
        return Ok(());
    };
    if actual < length {
        bail!(
            "output file {path:?} has {actual} bytes, fewer than the {length} in its \
             checkpoint; it was truncated or edited by something other than the sink. \
             Restore the file from a backup, or move the output file and its .checkpoint \
             away to start a new output file, which the sink fills from the consumer \
             group's committed offsets"
        );
    }
    if actual == length {
        return Ok(());
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("failed to open output file {path:?}"))?;
    file.set_len(length)
        .with_context(|| format!("failed to truncate output file {path:?} to {length} bytes"))?;
    file.sync_data()
        .with_context(|| format!("failed to fsync output file {path:?}"))?;
    tracing::warn!(
        path = ?path,
        removed_bytes = actual - length,
        "removed the bytes written after the last checkpoint; their records will be \
         consumed and written again"
    );
    Ok(())
}

/// Creates an empty output file at `path` for appending and makes its name
/// durable.
fn create_output(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("failed to create output file {path:?}"))?;
    sync_parent_dir(path)?;
    tracing::info!(path = ?path, "output file created");
    Ok(file)
}

/// Returns the length of the regular file at `path`, or `None` when it is
/// missing.
fn file_length(path: &Path) -> anyhow::Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => Err(usage_error(format!(
            "invalid output path {path:?}: it is a directory; pass a file path as --output"
        ))),
        Ok(metadata) => Ok(Some(metadata.len())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => {
            Err(error).with_context(|| format!("failed to read the metadata of {path:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(next: i64) -> Offsets {
        Offsets::from([(("enriched".to_string(), 0), next)])
    }

    fn load(path: &Path) -> Checkpoint {
        Checkpoint::load(&checkpoint_path(path), "out.jsonl")
            .expect("load checkpoint")
            .expect("checkpoint exists")
    }

    /// Opens a new output at `path` with one record appended and
    /// checkpointed.
    fn writer_with_record(path: &Path, rotation: Rotation) -> SinkWriter {
        let mut writer = SinkWriter::open(path, rotation).expect("create file");
        writer.append(b"{\"a\":1}\n").expect("append");
        writer.store_checkpoint(&offsets(1)).expect("checkpoint");
        writer
    }

    #[test]
    fn creates_file_and_checkpoint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");

        writer_with_record(&path, Rotation::default());

        assert_eq!(fs::read(&path).expect("read output"), b"{\"a\":1}\n");
        let checkpoint = load(&path);
        assert_eq!(checkpoint.length, 8);
        assert_eq!(checkpoint.rotations, 0);
        assert_eq!(checkpoint.offset_map(), offsets(1));
    }

    #[test]
    fn reopen_resumes_at_checkpoint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        drop(writer_with_record(&path, Rotation::default()));

        let mut writer = SinkWriter::open(&path, Rotation::default()).expect("reopen file");
        assert_eq!(writer.offsets(), offsets(1));
        writer.append(b"{\"b\":2}\n").expect("append");
        writer.store_checkpoint(&offsets(2)).expect("checkpoint");

        assert_eq!(
            fs::read(&path).expect("read output"),
            b"{\"a\":1}\n{\"b\":2}\n"
        );
        assert_eq!(load(&path).length, 16);
    }

    #[test]
    fn bytes_after_checkpoint_are_truncated() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let mut writer = writer_with_record(&path, Rotation::default());
        // A whole batch fsynced, then a partial one, both without a
        // checkpoint, as when the sink is killed before storing it.
        writer.append(b"{\"b\":2}\n{\"c\":").expect("append");
        drop(writer);

        let writer = SinkWriter::open(&path, Rotation::default()).expect("reopen file");

        assert_eq!(fs::read(&path).expect("read output"), b"{\"a\":1}\n");
        assert_eq!(writer.offsets(), offsets(1));
    }

    #[test]
    fn file_shorter_than_checkpoint_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        drop(writer_with_record(&path, Rotation::default()));
        fs::write(&path, b"{}\n").expect("edit file");

        let error = SinkWriter::open(&path, Rotation::default())
            .err()
            .expect("file was edited");

        let message = format!("{error:#}");
        assert!(
            message.contains("has 3 bytes, fewer than the 8"),
            "{message}"
        );
        assert!(message.contains("Restore the file"), "{message}");
    }

    #[test]
    fn file_without_checkpoint_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        fs::write(&path, b"{\"a\":1}\n").expect("write file");

        let error = SinkWriter::open(&path, Rotation::default())
            .err()
            .expect("no checkpoint");

        let message = format!("{error:#}");
        assert!(
            message.contains("has 8 bytes but no checkpoint"),
            "{message}"
        );
        assert!(message.contains("out.jsonl.checkpoint"), "{message}");
    }

    #[test]
    fn empty_file_without_checkpoint_is_adopted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        fs::write(&path, b"").expect("create empty file");

        let writer = SinkWriter::open(&path, Rotation::default()).expect("open file");

        assert!(writer.offsets().is_empty());
        assert_eq!(load(&path), Checkpoint::empty("out.jsonl"));
    }

    #[test]
    fn rotates_by_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let rotation = Rotation {
            max_bytes: Some(10),
            interval: None,
        };
        let mut writer = SinkWriter::open(&path, rotation).expect("create file");

        writer.append(b"{\"a\":1}\n").expect("append");
        writer.store_checkpoint(&offsets(1)).expect("checkpoint");
        assert!(!writer.rotate_if_due(Instant::now()).expect("check 8 bytes"));
        writer.append(b"{\"b\":2}\n").expect("append");
        writer.store_checkpoint(&offsets(2)).expect("checkpoint");
        assert!(writer
            .rotate_if_due(Instant::now())
            .expect("rotate 16 bytes"));
        writer.append(b"{\"c\":3}\n").expect("append");
        writer.store_checkpoint(&offsets(3)).expect("checkpoint");

        let first = fs::read(rotated_path(&path, 1)).expect("read rotated file");
        assert_eq!(first, b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(fs::read(&path).expect("read output"), b"{\"c\":3}\n");
        let checkpoint = load(&path);
        assert_eq!(checkpoint.rotations, 1);
        assert_eq!(checkpoint.length, 8);
        assert!(rotated_path(&path, 1).ends_with("out.jsonl.000001"));
    }

    #[test]
    fn rotates_by_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let interval = Duration::from_secs(60);
        let rotation = Rotation {
            max_bytes: None,
            interval: Some(interval),
        };
        let mut writer = SinkWriter::open(&path, rotation).expect("create file");
        assert_eq!(writer.rotation_deadline(), None);

        writer.append(b"{\"a\":1}\n").expect("append");
        writer.store_checkpoint(&offsets(1)).expect("checkpoint");
        let deadline = writer.rotation_deadline().expect("file has data");

        assert!(!writer
            .rotate_if_due(deadline - interval)
            .expect("check early"));
        assert!(writer.rotate_if_due(deadline).expect("rotate at deadline"));
        assert_eq!(writer.rotation_deadline(), None);
        assert!(!writer
            .rotate_if_due(deadline + interval)
            .expect("empty file"));
        assert_eq!(load(&path).rotations, 1);
    }

    #[test]
    fn huge_rotation_interval_has_no_deadline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let rotation = Rotation {
            max_bytes: None,
            interval: Some(Duration::MAX),
        };
        let mut writer = writer_with_record(&path, rotation);

        assert_eq!(writer.rotation_deadline(), None);
        let rotated = writer
            .rotate_if_due(Instant::now())
            .expect("check rotation");
        assert!(!rotated);
    }

    #[test]
    fn rotation_needs_checkpoint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let rotation = Rotation {
            max_bytes: Some(1),
            interval: None,
        };
        let mut writer = SinkWriter::open(&path, rotation).expect("create file");
        writer.append(b"{\"a\":1}\n").expect("append");

        let error = writer
            .rotate_if_due(Instant::now())
            .expect_err("not checkpointed");

        assert!(format!("{error:#}").contains("8 bytes are not checkpointed"));
        assert!(!rotated_path(&path, 1).exists());
    }

    #[test]
    fn rename_without_checkpoint_completes_rotation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        drop(writer_with_record(&path, Rotation::default()));
        // Killed after step 2: renamed, checkpoint not yet switched.
        fs::rename(&path, rotated_path(&path, 1)).expect("rename");

        let mut writer = SinkWriter::open(&path, Rotation::default()).expect("reopen");
        writer.append(b"{\"b\":2}\n").expect("append");
        writer.store_checkpoint(&offsets(2)).expect("checkpoint");

        let first = fs::read(rotated_path(&path, 1)).expect("read rotated file");
        assert_eq!(first, b"{\"a\":1}\n");
        assert_eq!(fs::read(&path).expect("read output"), b"{\"b\":2}\n");
        let checkpoint = load(&path);
        assert_eq!(checkpoint.rotations, 1);
        assert_eq!(checkpoint.length, 8);
        assert_eq!(checkpoint.offset_map(), offsets(2));
    }

    #[test]
    fn checkpoint_without_new_file_creates_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let rotation = Rotation {
            max_bytes: Some(1),
            interval: None,
        };
        let mut writer = writer_with_record(&path, rotation);
        writer.rotate_if_due(Instant::now()).expect("rotate");
        drop(writer);
        // Killed after step 3: checkpoint switched, new file not created.
        fs::remove_file(&path).expect("remove new file");

        let writer = SinkWriter::open(&path, rotation).expect("reopen");

        assert_eq!(fs::read(&path).expect("read output"), b"");
        assert_eq!(writer.offsets(), offsets(1));
        assert_eq!(load(&path).rotations, 1);
    }

    #[test]
    fn rotation_does_not_overwrite_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let rotation = Rotation {
            max_bytes: Some(1),
            interval: None,
        };
        let mut writer = writer_with_record(&path, rotation);
        fs::write(rotated_path(&path, 1), b"old\n").expect("write stray file");

        let error = writer
            .rotate_if_due(Instant::now())
            .expect_err("target exists");

        assert!(format!("{error:#}").contains("exists already"));
        assert_eq!(fs::read(rotated_path(&path, 1)).expect("read"), b"old\n");
    }

    #[test]
    fn missing_directory_error_names_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing").join("out.jsonl");

        let error = SinkWriter::open(&path, Rotation::default())
            .err()
            .expect("directory is missing");

        let message = format!("{error:#}");
        assert!(message.contains("missing\" of output file"), "{message}");
        assert!(message.contains("out.jsonl"), "{message}");
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn directory_as_output_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        fs::create_dir(&path).expect("create directory");

        let error = SinkWriter::open(&path, Rotation::default())
            .err()
            .expect("path is a directory");

        let message = format!("{error:#}");
        assert!(message.contains("is a directory"), "{message}");
    }
}
