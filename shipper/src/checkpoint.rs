//! The checkpoint file: per log file, the byte offset up to which Kafka has
//! acknowledged every line, so that a restart resumes there.
//!
//! The file is JSON, replaced atomically: the new content goes to a
//! temporary file next to it, which is fsynced, renamed over the old one,
//! and the directory is fsynced so that the rename survives a power loss.
//! A reader therefore sees the old or the new checkpoint, never a mix.
//! Which offsets go in is decided by `progress`; matching them to files at
//! start by `follow`.
//!
//! One shipper at a time uses a checkpoint, because it takes an exclusive
//! lock on `<checkpoint>.lock` for its lifetime ([`CheckpointLock`]). A
//! second shipper on the same checkpoint fails at start, instead of
//! shipping the same lines and overwriting the first one's offsets.

use std::ffi::OsString;
use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use weblog_common::durable;

use crate::identity::FileIdentity;

/// Version of the file format, raised when a field changes meaning.
pub(crate) const CHECKPOINT_VERSION: u32 = 1;

/// Content of the checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Format version, [`CHECKPOINT_VERSION`].
    pub(crate) version: u32,
    /// Absolute path of the followed log file, so that one checkpoint is
    /// never applied to another log.
    pub(crate) log_file: String,
    /// Files with lines not yet acknowledged, oldest first: the current
    /// file, and a rotated one while its last lines are still in flight.
    pub(crate) files: Vec<FileCheckpoint>,
}

/// Progress in one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileCheckpoint {
    /// Identity of the file.
    pub(crate) identity: FileIdentity,
    /// Byte offset up to which every line is acknowledged; a restart reads
    /// on from here.
    pub(crate) offset: u64,
    /// Byte offset up to which lines were sent when the checkpoint was
    /// written. The lines between `offset` and here may be sent twice.
    pub(crate) sent_offset: u64,
    /// Number of lines between `offset` and `sent_offset`.
    pub(crate) unacknowledged_lines: u64,
}

/// The one field read before the rest of a checkpoint file.
#[derive(Deserialize)]
struct VersionHeader {
    version: u32,
}

impl Checkpoint {
    /// Returns an empty checkpoint for the log at `log_file`, an absolute
    /// path.
    pub(crate) fn empty(log_file: &Path) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            log_file: log_file.to_string_lossy().into_owned(),
            files: Vec::new(),
        }
    }

    /// Reads the checkpoint at `path`. Returns `None` when there is no file
    /// yet. Fails when the file is not a checkpoint of this version or
    /// belongs to another log than `log_file`.
    pub(crate) fn load(path: &Path, log_file: &Path) -> anyhow::Result<Option<Self>> {
        let content = match fs::read(path) {
            Ok(content) => content,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| format!("failed to read checkpoint {path:?}"))
            }
        };
        let parse_context = || {
            format!(
                "failed to parse checkpoint {path:?}; it is replaced atomically, so it was \
                 changed by hand or the disk is damaged: move it away to ship the log from \
                 its start again"
            )
        };
        // The version comes first, because another version may have other
        // fields, and a missing field would hide the real cause.
        let header: VersionHeader = serde_json::from_slice(&content).with_context(parse_context)?;
        if header.version != CHECKPOINT_VERSION {
            bail!(
                "invalid checkpoint {path:?}: format version {} is not the supported {}",
                header.version,
                CHECKPOINT_VERSION
            );
        }
        let checkpoint: Self = serde_json::from_slice(&content).with_context(parse_context)?;
        let expected = log_file.to_string_lossy();
        if checkpoint.log_file != expected {
            bail!(
                "invalid checkpoint {path:?}: it belongs to log file {:?}, not {expected:?}; \
                 pass a --checkpoint of its own for each log file",
                checkpoint.log_file
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

/// Exclusive lock on `<checkpoint>.lock`, held until dropped. The operating
/// system releases it when the process ends, even after SIGKILL, so a stale
/// lock file left behind never blocks a restart.
// NOTE: the lock file stays after the run. Removing it would let a shipper
// that opened it just before the removal lock a file no other shipper sees.
#[derive(Debug)]
pub(crate) struct CheckpointLock {
    _file: File,
}

impl CheckpointLock {
    /// Locks the checkpoint at `checkpoint`. Fails, naming the lock file,
    /// when another process holds the lock or the file cannot be created.
    pub(crate) fn acquire(checkpoint: &Path) -> anyhow::Result<Self> {
        let path = lock_path(checkpoint);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open checkpoint lock file {path:?}"))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => bail!(
                "checkpoint {checkpoint:?} is in use: another shipper holds the lock on \
                 {path:?}; stop that shipper, or give this one its own --checkpoint"
            ),
            Err(TryLockError::Error(error)) => {
                Err(error).with_context(|| format!("failed to lock checkpoint lock file {path:?}"))
            }
        }
    }
}

/// Returns `<checkpoint>.lock`.
fn lock_path(checkpoint: &Path) -> PathBuf {
    let mut name = OsString::from(checkpoint.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Fingerprint;

    fn sample(log_file: &Path) -> Checkpoint {
        let mut checkpoint = Checkpoint::empty(log_file);
        checkpoint.files.push(FileCheckpoint {
            identity: FileIdentity {
                device: 2049,
                inode: 77,
                fingerprint: Fingerprint::of(b"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700]"),
            },
            offset: 120,
            sent_offset: 300,
            unacknowledged_lines: 4,
        });
        checkpoint
    }

    #[test]
    fn checkpoint_round_trips() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shipper.checkpoint");
        let log = dir.path().join("access.log");
        let checkpoint = sample(&log);

        checkpoint.store(&path).expect("store");
        let loaded = Checkpoint::load(&path, &log).expect("load");

        assert_eq!(loaded, Some(checkpoint));
        assert!(!durable::with_suffix(&path, ".tmp").exists());
    }

    #[test]
    fn store_replaces_previous_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shipper.checkpoint");
        let log = dir.path().join("access.log");
        let mut checkpoint = sample(&log);
        checkpoint.store(&path).expect("first store");
        checkpoint.files[0].offset = 300;
        checkpoint.store(&path).expect("second store");

        let loaded = Checkpoint::load(&path, &log)
            .expect("load")
            .expect("exists");
        assert_eq!(loaded.files[0].offset, 300);
    }

    #[test]
    fn missing_checkpoint_is_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("none.checkpoint");
        let loaded = Checkpoint::load(&path, &dir.path().join("a.log")).expect("load");
        assert_eq!(loaded, None);
    }

    #[test]
    fn corrupt_checkpoint_names_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.checkpoint");
        std::fs::write(&path, b"{\"version\": 1, \"log_f").expect("write");
        let error = Checkpoint::load(&path, &dir.path().join("a.log")).expect_err("truncated");
        let message = format!("{error:#}");
        assert!(message.contains("failed to parse checkpoint"), "{message}");
        assert!(message.contains("bad.checkpoint"), "{message}");
    }

    #[test]
    fn checkpoint_of_other_log_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shipper.checkpoint");
        sample(&dir.path().join("access.log"))
            .store(&path)
            .expect("store");
        let error = Checkpoint::load(&path, &dir.path().join("error.log"))
            .expect_err("checkpoint of another log");
        let message = format!("{error:#}");
        assert!(message.contains("belongs to log file"), "{message}");
        assert!(message.contains("error.log"), "{message}");
    }

    #[test]
    fn other_version_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shipper.checkpoint");
        let log = dir.path().join("access.log");
        let mut checkpoint = sample(&log);
        checkpoint.version = 99;
        checkpoint.store(&path).expect("store");
        let error = Checkpoint::load(&path, &log).expect_err("unknown version");
        assert!(format!("{error:#}").contains("version 99"), "{error:#}");
    }

    #[test]
    fn other_version_is_rejected_before_fields() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("shipper.checkpoint");
        std::fs::write(&path, br#"{"version":99}"#).expect("write");
        let error = Checkpoint::load(&path, &dir.path().join("a.log")).expect_err("version 99");
        let expected = format!(
            "invalid checkpoint {path:?}: format version 99 is not the supported {CHECKPOINT_VERSION}"
        );
        assert_eq!(format!("{error:#}"), expected);
    }

    #[test]
    fn second_lock_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let checkpoint = dir.path().join("shipper.checkpoint");
        let held = CheckpointLock::acquire(&checkpoint).expect("first lock");

        let error = CheckpointLock::acquire(&checkpoint).expect_err("lock is held");
        let expected = format!(
            "checkpoint {checkpoint:?} is in use: another shipper holds the lock on {:?}; \
             stop that shipper, or give this one its own --checkpoint",
            lock_path(&checkpoint)
        );
        assert_eq!(format!("{error:#}"), expected);

        drop(held);
        CheckpointLock::acquire(&checkpoint).expect("lock is free again");
    }
}
