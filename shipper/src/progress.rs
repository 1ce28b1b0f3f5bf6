//! Turning acknowledgements into checkpoint offsets.
//!
//! Kafka acknowledges records per partition, so acknowledgements of lines
//! sent to different partitions arrive out of order. Each line gets a
//! sequence number when it is sent, and a file's offset advances only over
//! the contiguous prefix of acknowledged lines: a line is never counted as
//! shipped while an earlier one may still fail.
//!
//! Each file the reader opens is a generation. A file truncated in place
//! starts a new generation with the same inode. An older generation stays
//! in the checkpoint until its last line is acknowledged. The entries a run
//! resumes from stay in the checkpoint as loaded until the reader opens
//! their files, so a crash before that resumes at the same offsets again.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use crate::checkpoint::{Checkpoint, FileCheckpoint};
use crate::identity::FileIdentity;

/// Values in the order they were sent, each marked once acknowledged.
#[derive(Debug)]
pub(crate) struct AckWindow<T> {
    /// Sequence number of the front entry.
    first: u64,
    entries: VecDeque<(T, bool)>,
}

impl<T> AckWindow<T> {
    pub(crate) fn new() -> Self {
        Self {
            first: 0,
            entries: VecDeque::new(),
        }
    }

    /// Adds `value` behind every other and returns its sequence number.
    pub(crate) fn push(&mut self, value: T) -> u64 {
        self.entries.push_back((value, false));
        self.first + self.entries.len() as u64 - 1
    }

    /// Marks the value with sequence number `sequence` as acknowledged.
    /// Returns `false` when no such value waits.
    pub(crate) fn complete(&mut self, sequence: u64) -> bool {
        let Some(index) = sequence.checked_sub(self.first) else {
            return false;
        };
        match self.entries.get_mut(index as usize) {
            Some(entry) => {
                entry.1 = true;
                true
            }
            None => false,
        }
    }

    /// Returns the number of values not yet popped.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Removes and returns the front value if it is acknowledged.
    pub(crate) fn pop_completed(&mut self) -> Option<T> {
        if !self.entries.front()?.1 {
            return None;
        }
        self.first += 1;
        self.entries.pop_front().map(|(value, _)| value)
    }
}

/// Offsets of one generation.
#[derive(Debug)]
struct FileProgress {
    identity: FileIdentity,
    acknowledged_offset: u64,
    sent_offset: u64,
    unacknowledged_lines: u64,
}

/// Offsets of every generation still in the checkpoint, and whether they
/// changed since the last checkpoint was taken.
#[derive(Debug)]
pub(crate) struct Progress {
    log_file: String,
    /// Loaded entries whose files the reader has not opened yet.
    inherited: Vec<FileCheckpoint>,
    /// Generation and end offset of each line sent.
    window: AckWindow<(u64, u64)>,
    files: BTreeMap<u64, FileProgress>,
    changed: bool,
}

impl Progress {
    /// Tracks the log at `log_file`, an absolute path, whose reading
    /// resumes from the `inherited` checkpoint entries.
    pub(crate) fn new(log_file: &Path, inherited: Vec<FileCheckpoint>) -> Self {
        Self {
            log_file: log_file.to_string_lossy().into_owned(),
            inherited,
            window: AckWindow::new(),
            files: BTreeMap::new(),
            changed: true,
        }
    }

    /// Starts a generation read from `offset` on. Reading of every older
    /// generation has ended.
    pub(crate) fn open(&mut self, generation: u64, identity: FileIdentity, offset: u64) {
        self.inherited.retain(|entry| {
            (entry.identity.device, entry.identity.inode) != (identity.device, identity.inode)
        });
        self.files.insert(
            generation,
            FileProgress {
                identity,
                acknowledged_offset: offset,
                sent_offset: offset,
                unacknowledged_lines: 0,
            },
        );
        self.drop_finished();
        self.changed = true;
    }

    /// Replaces a generation's identity, whose fingerprint grows with the
    /// file's first bytes.
    pub(crate) fn identify(&mut self, generation: u64, identity: FileIdentity) {
        if let Some(file) = self.files.get_mut(&generation) {
            file.identity = identity;
            self.changed = true;
        }
    }

    /// Records a line of `generation` ending at `end` as sent and returns
    /// its sequence number.
    pub(crate) fn send(&mut self, generation: u64, end: u64) -> u64 {
        if let Some(file) = self.files.get_mut(&generation) {
            file.sent_offset = end;
            file.unacknowledged_lines += 1;
            self.changed = true;
        }
        self.window.push((generation, end))
    }

    /// Records the line with `sequence` as acknowledged (or dead-lettered)
    /// and advances offsets over the acknowledged prefix.
    pub(crate) fn acknowledge(&mut self, sequence: u64) {
        self.window.complete(sequence);
        while let Some((generation, end)) = self.window.pop_completed() {
            if let Some(file) = self.files.get_mut(&generation) {
                file.acknowledged_offset = end;
                file.unacknowledged_lines -= 1;
                self.changed = true;
            }
        }
        self.drop_finished();
    }

    /// Returns the number of lines sent and not yet in the acknowledged
    /// prefix: in flight, or acknowledged behind a line that is.
    pub(crate) fn unacknowledged_lines(&self) -> usize {
        self.window.len()
    }

    /// Returns the checkpoint if anything changed since the last call.
    pub(crate) fn take_changed(&mut self) -> Option<Checkpoint> {
        if !self.changed {
            return None;
        }
        self.changed = false;
        Some(self.checkpoint())
    }

    /// Marks the offsets as changed again, after a checkpoint write failed.
    pub(crate) fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Returns the current checkpoint.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        // The reader opens files oldest first, so the inherited entries of
        // files not opened yet are newer than every generation.
        let mut checkpoint = Checkpoint::empty(Path::new(&self.log_file));
        checkpoint.files = self
            .files
            .values()
            .map(|file| FileCheckpoint {
                identity: file.identity.clone(),
                offset: file.acknowledged_offset,
                sent_offset: file.sent_offset,
                unacknowledged_lines: file.unacknowledged_lines,
            })
            .collect();
        checkpoint.files.extend(self.inherited.iter().cloned());
        checkpoint
    }

    /// Forgets older generations whose lines are all acknowledged.
    fn drop_finished(&mut self) {
        let Some(&newest) = self.files.keys().next_back() else {
            return;
        };
        let before = self.files.len();
        self.files
            .retain(|generation, file| *generation == newest || file.unacknowledged_lines > 0);
        if self.files.len() != before {
            self.changed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Fingerprint;

    fn identity(inode: u64) -> FileIdentity {
        FileIdentity {
            device: 1,
            inode,
            fingerprint: Fingerprint::of(b""),
        }
    }

    fn offsets(progress: &Progress) -> Vec<(u64, u64)> {
        progress
            .checkpoint()
            .files
            .iter()
            .map(|file| (file.identity.inode, file.offset))
            .collect()
    }

    #[test]
    fn window_pops_only_completed_prefix() {
        let mut window = AckWindow::new();
        let sequences: Vec<u64> = ["a", "b", "c"]
            .into_iter()
            .map(|v| window.push(v))
            .collect();
        assert_eq!(sequences, vec![0, 1, 2]);
        assert!(window.complete(1));
        assert_eq!(window.pop_completed(), None);
        assert!(window.complete(0));
        assert_eq!(window.pop_completed(), Some("a"));
        assert_eq!(window.pop_completed(), Some("b"));
        assert_eq!(window.pop_completed(), None);
        assert_eq!(window.len(), 1);
        assert!(!window.complete(0), "0 was popped");
        assert!(!window.complete(7), "7 was never pushed");
    }

    #[test]
    fn offset_waits_for_earlier_lines() {
        let mut progress = Progress::new(Path::new("/logs/access.log"), Vec::new());
        progress.open(1, identity(10), 0);
        let ends = [10, 25, 30, 42, 50];
        let sequences: Vec<u64> = ends.iter().map(|end| progress.send(1, *end)).collect();

        // Acknowledgements arrive out of order, as from several partitions.
        progress.acknowledge(sequences[1]);
        progress.acknowledge(sequences[3]);
        assert_eq!(offsets(&progress), vec![(10, 0)]);
        progress.acknowledge(sequences[0]);
        assert_eq!(offsets(&progress), vec![(10, 25)]);
        progress.acknowledge(sequences[4]);
        assert_eq!(offsets(&progress), vec![(10, 25)]);
        assert_eq!(progress.unacknowledged_lines(), 3);
        progress.acknowledge(sequences[2]);
        assert_eq!(offsets(&progress), vec![(10, 50)]);
        assert_eq!(progress.unacknowledged_lines(), 0);
    }

    #[test]
    fn checkpoint_counts_lines_in_doubt() {
        let mut progress = Progress::new(Path::new("/logs/access.log"), Vec::new());
        progress.open(1, identity(10), 100);
        let first = progress.send(1, 110);
        progress.send(1, 120);
        progress.send(1, 130);
        progress.acknowledge(first);

        let checkpoint = progress.checkpoint();
        assert_eq!(checkpoint.log_file, "/logs/access.log");
        let file = &checkpoint.files[0];
        assert_eq!(file.offset, 110);
        assert_eq!(file.sent_offset, 130);
        assert_eq!(file.unacknowledged_lines, 2);
    }

    #[test]
    fn rotated_file_stays_until_acknowledged() {
        let mut progress = Progress::new(Path::new("/logs/access.log"), Vec::new());
        progress.open(1, identity(10), 0);
        let old_line = progress.send(1, 40);
        progress.open(2, identity(11), 0);
        let new_line = progress.send(2, 8);

        progress.acknowledge(new_line);
        assert_eq!(offsets(&progress), vec![(10, 0), (11, 0)]);
        progress.acknowledge(old_line);
        assert_eq!(offsets(&progress), vec![(11, 8)]);
    }

    #[test]
    fn finished_file_leaves_at_rotation() {
        let mut progress = Progress::new(Path::new("/logs/access.log"), Vec::new());
        progress.open(1, identity(10), 0);
        let line = progress.send(1, 40);
        progress.acknowledge(line);
        progress.open(2, identity(11), 0);
        assert_eq!(offsets(&progress), vec![(11, 0)]);
    }

    #[test]
    fn loaded_entries_stay_until_opened() {
        let loaded = |inode, offset| FileCheckpoint {
            identity: identity(inode),
            offset,
            sent_offset: offset + 50,
            unacknowledged_lines: 2,
        };
        let inherited = vec![loaded(10, 100), loaded(11, 30)];
        let mut progress = Progress::new(Path::new("/logs/access.log"), inherited.clone());
        assert_eq!(progress.checkpoint().files, inherited);

        // The rotated file 10 is opened first, the file at the path later.
        progress.open(1, identity(10), 100);
        assert_eq!(offsets(&progress), vec![(10, 100), (11, 30)]);
        let line = progress.send(1, 140);
        progress.acknowledge(line);
        progress.open(2, identity(11), 30);
        assert_eq!(offsets(&progress), vec![(11, 30)]);
    }

    #[test]
    fn changes_are_taken_once() {
        let mut progress = Progress::new(Path::new("/logs/access.log"), Vec::new());
        progress.open(1, identity(10), 0);
        assert!(progress.take_changed().is_some());
        assert!(progress.take_changed().is_none());
        let line = progress.send(1, 5);
        assert!(progress.take_changed().is_some());
        progress.acknowledge(line);
        let checkpoint = progress.take_changed().expect("offset moved");
        assert_eq!(checkpoint.files[0].offset, 5);
    }
}
