//! The start of reading: the checkpoint's offsets matched to the files that
//! exist now.
//!
//! The file at `--file` resumes at the offset of the checkpoint entry with
//! the same identity. When no entry matches, the file was replaced while
//! the shipper was down, so it is read from its start. An entry for another
//! inode is a file that was rotated away before its last lines were
//! acknowledged: it is looked for by inode and fingerprint in the same
//! directory, where a rename leaves it, and read to its end first.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::checkpoint::{Checkpoint, FileCheckpoint};
use crate::source::{may_become_readable, open_log_file};

/// A file to read and the offset to read it from.
#[derive(Debug)]
pub(crate) struct Start {
    pub(crate) file: File,
    /// Path the file was found at.
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    /// Whether the file is the one at `--file` (`false` for a rotated file
    /// that is read to its end and closed).
    pub(crate) at_path: bool,
    /// Checkpoint entry that `offset` comes from. It stays in the
    /// checkpoint until the reader has opened the file.
    pub(crate) resumed: Option<FileCheckpoint>,
}

/// Opens the files to read at start, oldest first: rotated files from the
/// checkpoint that still have lines to ship, then the file at `path`.
///
/// A missing or unreadable file, or a directory, at `path` is an error
/// unless `follow` is set, in which case the follower waits for a readable
/// file. Any other file that is not regular is an error.
pub(crate) fn plan_start(
    path: &Path,
    checkpoint: Option<&Checkpoint>,
    follow: bool,
) -> anyhow::Result<Vec<Start>> {
    let current = match open_log_file(path) {
        Ok(file) => Some(file),
        Err(error) if follow && may_become_readable(&error) => None,
        Err(error) => {
            return Err(error).with_context(|| format!("failed to open log file {path:?}"))
        }
    };
    let current_metadata = match &current {
        Some(file) => Some(
            file.metadata()
                .with_context(|| format!("failed to read the metadata of log file {path:?}"))?,
        ),
        None => None,
    };
    let entries: &[FileCheckpoint] = checkpoint.map_or(&[], |checkpoint| &checkpoint.files);

    let mut starts = Vec::new();
    let mut current_entry = None;
    if let (Some(file), Some(metadata)) = (&current, &current_metadata) {
        let matched = find_entry(entries, file, metadata)
            .with_context(|| format!("failed to fingerprint log file {path:?}"))?;
        current_entry = resume_entry(path, entries, matched, metadata);
    }

    for entry in entries {
        let same_inode = current_metadata
            .as_ref()
            .is_some_and(|metadata| entry.identity.same_inode(metadata));
        if same_inode {
            // An older generation of the file at `path`, truncated since:
            // its remaining bytes are gone.
            continue;
        }
        if let Some(start) = find_rotated(path, entry)? {
            starts.push(start);
        }
    }

    if let Some(file) = current {
        starts.push(Start {
            file,
            path: path.to_path_buf(),
            offset: current_entry.map_or(0, |entry| entry.offset),
            at_path: true,
            resumed: current_entry.cloned(),
        });
    }
    Ok(starts)
}

/// Returns the last entry with the inode and fingerprint of `file`.
fn find_entry<'a>(
    entries: &'a [FileCheckpoint],
    file: &File,
    metadata: &fs::Metadata,
) -> io::Result<Option<&'a FileCheckpoint>> {
    for entry in entries.iter().rev() {
        if entry.identity.same_inode(metadata) && entry.identity.fingerprint.matches(file)? {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Returns the entry whose offset the file at `path` resumes from, or
/// `None` to read it from offset 0, and logs why.
fn resume_entry<'a>(
    path: &Path,
    entries: &[FileCheckpoint],
    matched: Option<&'a FileCheckpoint>,
    metadata: &fs::Metadata,
) -> Option<&'a FileCheckpoint> {
    let Some(entry) = matched else {
        if !entries.is_empty() {
            tracing::info!(
                ?path,
                inode = metadata.ino(),
                "log file is not the one in the checkpoint, so it was replaced while the \
                 shipper was down: reading it from offset 0"
            );
        }
        return None;
    };
    if metadata.len() < entry.offset {
        tracing::info!(
            ?path,
            offset = entry.offset,
            size = metadata.len(),
            "log file is shorter than its checkpoint offset, so it was truncated: reading it \
             from offset 0"
        );
        return None;
    }
    tracing::info!(
        ?path,
        offset = entry.offset,
        lines_in_doubt = entry.unacknowledged_lines,
        bytes_in_doubt = entry.sent_offset.saturating_sub(entry.offset),
        "resuming log file at its checkpoint; lines in doubt may arrive twice"
    );
    Some(entry)
}

/// Looks in the directory of `path` for the rotated file of `entry`.
/// Returns where to read it from, or `None` when it is gone or has no
/// unread bytes.
fn find_rotated(path: &Path, entry: &FileCheckpoint) -> anyhow::Result<Option<Start>> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let listing = fs::read_dir(directory)
        .with_context(|| format!("failed to list log directory {directory:?}"))?;
    for item in listing {
        let item = item.with_context(|| format!("failed to list log directory {directory:?}"))?;
        let candidate = item.path();
        let Ok(metadata) = fs::metadata(&candidate) else {
            continue;
        };
        if !metadata.is_file() || !entry.identity.same_inode(&metadata) {
            continue;
        }
        let file = File::open(&candidate)
            .with_context(|| format!("failed to open rotated log file {candidate:?}"))?;
        let same_content = entry
            .identity
            .fingerprint
            .matches(&file)
            .with_context(|| format!("failed to fingerprint rotated log file {candidate:?}"))?;
        if !same_content {
            continue;
        }
        if metadata.len() <= entry.offset {
            tracing::debug!(
                path = ?candidate,
                offset = entry.offset,
                "rotated log file is shipped"
            );
            return Ok(None);
        }
        tracing::info!(
            path = ?candidate,
            offset = entry.offset,
            size = metadata.len(),
            "shipping the rest of a log file that was rotated while the shipper was down"
        );
        return Ok(Some(Start {
            file,
            path: candidate,
            offset: entry.offset,
            at_path: false,
            resumed: Some(entry.clone()),
        }));
    }
    tracing::warn!(
        ?directory,
        inode = entry.identity.inode,
        offset = entry.offset,
        sent_offset = entry.sent_offset,
        "rotated log file from the checkpoint is not in the log directory; lines it had \
         after the offset are not shipped"
    );
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::FileIdentity;

    /// Returns a checkpoint entry for the file at `path` at `offset`.
    fn entry(path: &Path, offset: u64) -> FileCheckpoint {
        let file = File::open(path).expect("open log");
        FileCheckpoint {
            identity: FileIdentity::of_file(&file, offset).expect("identify"),
            offset,
            sent_offset: offset + 10,
            unacknowledged_lines: 1,
        }
    }

    fn checkpoint(path: &Path, files: Vec<FileCheckpoint>) -> Checkpoint {
        let mut checkpoint = Checkpoint::empty(path);
        checkpoint.files = files;
        checkpoint
    }

    #[test]
    fn resumed_entries_are_returned() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"one\ntwo\n").expect("write log");
        let old = entry(&path, 4);
        std::fs::rename(&path, dir.path().join("access.log.1")).expect("rotate");
        std::fs::write(&path, b"three\nfour\n").expect("write new log");
        let current = entry(&path, 6);
        let saved = checkpoint(&path, vec![old.clone(), current.clone()]);

        let starts = plan_start(&path, Some(&saved), true).expect("plan");
        let resumed: Vec<Option<FileCheckpoint>> =
            starts.into_iter().map(|start| start.resumed).collect();
        assert_eq!(resumed, vec![Some(old), Some(current)]);
    }

    fn summary(starts: &[Start]) -> Vec<(String, u64, bool)> {
        starts
            .iter()
            .map(|start| {
                let name = start.path.file_name().expect("file name");
                (
                    name.to_string_lossy().into_owned(),
                    start.offset,
                    start.at_path,
                )
            })
            .collect()
    }

    #[test]
    fn matching_file_resumes_at_offset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"one\ntwo\nthree\n").expect("write log");
        let saved = checkpoint(&path, vec![entry(&path, 8)]);

        let starts = plan_start(&path, Some(&saved), true).expect("plan");
        assert_eq!(summary(&starts), vec![("access.log".to_string(), 8, true)]);
    }

    #[test]
    fn replaced_file_starts_at_zero() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"one\ntwo\n").expect("write log");
        let saved = checkpoint(&path, vec![entry(&path, 8)]);
        // A new file at the path, with another inode and other content.
        std::fs::remove_file(&path).expect("remove log");
        std::fs::write(&path, b"fresh\n").expect("write new log");

        let starts = plan_start(&path, Some(&saved), true).expect("plan");
        assert_eq!(summary(&starts), vec![("access.log".to_string(), 0, true)]);
    }

    #[test]
    fn reused_inode_with_other_content_starts_at_zero() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"one\ntwo\n").expect("write log");
        let saved = checkpoint(&path, vec![entry(&path, 8)]);
        // Same inode, rewritten: what a copy-truncate does while down.
        std::fs::write(&path, b"abc\ndef\nghi\n").expect("rewrite log");

        let starts = plan_start(&path, Some(&saved), true).expect("plan");
        assert_eq!(summary(&starts), vec![("access.log".to_string(), 0, true)]);
    }

    #[test]
    fn rotated_file_is_finished_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"one\ntwo\n").expect("write log");
        let saved = checkpoint(&path, vec![entry(&path, 4)]);
        std::fs::rename(&path, dir.path().join("access.log.1")).expect("rotate");
        std::fs::write(&path, b"three\n").expect("write new log");

        let starts = plan_start(&path, Some(&saved), true).expect("plan");
        assert_eq!(
            summary(&starts),
            vec![
                ("access.log.1".to_string(), 4, false),
                ("access.log".to_string(), 0, true)
            ]
        );
    }

    #[test]
    fn shipped_rotated_file_is_skipped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"one\ntwo\n").expect("write log");
        let saved = checkpoint(&path, vec![entry(&path, 8)]);
        std::fs::rename(&path, dir.path().join("access.log.1")).expect("rotate");

        let starts = plan_start(&path, Some(&saved), true).expect("plan");
        assert!(starts.is_empty(), "{:?}", summary(&starts));
    }

    #[test]
    fn missing_rotated_file_is_skipped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"one\ntwo\n").expect("write log");
        let saved = checkpoint(&path, vec![entry(&path, 4)]);
        std::fs::remove_file(&path).expect("remove log");
        std::fs::write(&path, b"three\n").expect("write new log");

        let starts = plan_start(&path, Some(&saved), true).expect("plan");
        assert_eq!(summary(&starts), vec![("access.log".to_string(), 0, true)]);
    }

    #[test]
    fn shorter_file_starts_at_zero() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, b"one\n").expect("write log");
        let mut saved_entry = entry(&path, 4);
        saved_entry.offset = 100;
        let saved = checkpoint(&path, vec![saved_entry]);

        let starts = plan_start(&path, Some(&saved), true).expect("plan");
        assert_eq!(summary(&starts), vec![("access.log".to_string(), 0, true)]);
    }

    #[test]
    fn missing_file_is_waited_for_when_following() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        let starts = plan_start(&path, None, true).expect("plan");
        assert!(starts.is_empty());
    }

    #[test]
    fn missing_file_fails_without_follow() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing.log");
        let error = plan_start(&path, None, false).expect_err("file is missing");
        let message = format!("{error:#}");
        assert!(message.starts_with("failed to open log file"), "{message}");
        assert!(message.contains("missing.log"), "{message}");
        assert!(message.contains("No such file or directory"), "{message}");
    }

    #[test]
    fn directory_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = plan_start(dir.path(), None, false).expect_err("path is a directory");
        assert!(format!("{error:#}").contains("directory"), "{error:#}");
    }
}
