//! The lock that keeps a second sink off an output file.
//!
//! Exactly-once delivery into the file holds only while one sink writes it:
//! two sinks append the same records twice, move the checkpoint to the
//! middle of each other's lines and share the temporary checkpoint file.
//! So each sink takes an exclusive lock on `<output>.lock` before it
//! touches the output, and holds it until the process exits. The lock is on
//! a file of its own because the checkpoint is replaced by a rename, which
//! would drop a lock held on it. The lock file is left in place after the
//! run: deleting it would let a sink that opened it just before the delete
//! lock a file that the next sink no longer sees.
//!
//! NOTE: the lock is advisory (`flock` on Unix), so it binds only sinks and
//! other programs that take it, and it does not hold on every network file
//! system.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use weblog_common::durable::with_suffix;
use weblog_common::usage::usage_error;

/// An exclusive lock on the output file, released when dropped.
#[derive(Debug)]
pub(crate) struct OutputLock {
    /// The open lock file: closing it releases the lock.
    _file: File,
}

/// Returns the lock file path of the output at `output`.
pub(crate) fn lock_path(output: &Path) -> PathBuf {
    with_suffix(output, ".lock")
}

/// Checks that the directory of `output` exists, then takes the exclusive
/// lock on `<output>.lock`. Fails when another process has it locked.
pub(crate) fn lock_output(output: &Path) -> anyhow::Result<OutputLock> {
    check_output_dir(output)?;
    let path = lock_path(output);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("failed to open lock file {path:?}"))?;
    match file.try_lock() {
        Ok(()) => Ok(OutputLock { _file: file }),
        Err(TryLockError::WouldBlock) => bail!(
            "output file {output:?} is in use: another sink holds lock file {path:?}; run one \
             sink per output file, so stop the other sink or pass another --output"
        ),
        Err(TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("failed to lock {path:?}"))
        }
    }
}

/// Fails with a message naming the directory when the directory that
/// should contain `output` is missing or is not a directory.
fn check_output_dir(output: &Path) -> anyhow::Result<()> {
    let dir = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(usage_error(format!(
            "invalid output path {output:?}: {dir:?} is not a directory"
        ))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => bail!(
            "directory {dir:?} of output file {output:?} does not exist; create it or pass \
             another --output"
        ),
        Err(error) => Err(error).with_context(|| format!("failed to read the metadata of {dir:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("out.jsonl");
        let _first = lock_output(&output).expect("first lock");

        let error = lock_output(&output).expect_err("output is locked");

        let message = format!("{error:#}");
        assert!(message.contains("another sink holds"), "{message}");
        assert!(message.contains("out.jsonl.lock"), "{message}");
        assert!(message.contains("one sink per output file"), "{message}");
    }

    #[test]
    fn lock_is_released_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("out.jsonl");
        drop(lock_output(&output).expect("first lock"));

        lock_output(&output).expect("lock after release");
    }

    #[test]
    fn missing_directory_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("nodir").join("out.jsonl");

        let error = lock_output(&output).expect_err("directory is missing");

        let message = format!("{error:#}");
        assert!(message.contains("nodir"), "{message}");
        assert!(message.contains("does not exist"), "{message}");
        assert!(!output.parent().expect("has a parent").exists());
    }
}
