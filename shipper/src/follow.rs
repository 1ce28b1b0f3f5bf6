//! Reading the log on a thread of its own: once to its end, or following it
//! like `tail -F` through appends and rotations.
//!
//! Following polls instead of using file-system events (inotify, through
//! the `notify` crate), because an event-driven follower needs the poll
//! anyway. inotify drops events when its queue overflows, and it does not
//! report writes made on another host of a network file system. A watch on
//! the file is also lost when a rotation renames it. One `stat` of the path
//! plus a read of at most 1 KiB per poll interval costs next to nothing,
//! and the interval (250 ms by default) bounds the time a new line waits
//! before it is read.
//!
//! At the end of the file the follower stats the path and tells apart:
//! - another inode at the path: the file was rotated by rename (or deleted
//!   and created again). The old file is read to its end, then the new one
//!   from offset 0.
//! - no file at the path: logged once, the open file is still read, and the
//!   path is polled until a file appears. A path that cannot be opened
//!   because of its permissions or because it is a directory is polled the
//!   same way, with a warning per cause.
//! - the same inode, smaller than the read offset or with other first bytes:
//!   the file was truncated in place (copy-truncate) and is read again from
//!   offset 0 as a new generation.
//!
//! Bytes after the last `\n` wait for their `\n` while the file is
//! followed. They are sent as a final line when the file ends for good: at
//! the end of a one-shot read, or when a rotated or truncated file is left.
//! A resumable one-shot read ([`Follower::leave_partial_line`]) leaves them
//! in the file at the path instead, for the next run to read whole.
//! A line appended to a rotated file after the follower moved on to the new
//! file is not read, as with `tail -F`.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::identity::{FileIdentity, FINGERPRINT_BYTES};
use crate::resume::Start;
use crate::source::{may_become_readable, open_log_file, Line, LineReader};

/// Size of the read buffer. Large reads keep the number of read calls small
/// when a big file is shipped once.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Max events waiting between the reader thread and the sender. Each line
/// is at most `message.max.bytes` long (1 MB by default), so this bounds the
/// memory of lines read ahead to 64 such lines.
const EVENT_QUEUE_CAPACITY: usize = 64;

/// Event from the reader, in file order.
#[derive(Debug)]
pub(crate) enum SourceEvent {
    /// Reading of a new generation starts at `offset`, and every older
    /// generation has ended.
    Opened {
        generation: u64,
        path: Arc<Path>,
        identity: FileIdentity,
        offset: u64,
    },
    /// The fingerprint of a generation covers more of its first bytes.
    Identified {
        generation: u64,
        identity: FileIdentity,
    },
    /// One line of a generation.
    Line { generation: u64, line: Line },
    /// The one-shot read reached the end of the file. The last
    /// `unterminated_bytes` of the file at the path, after its last `\n`,
    /// were left unread (see [`Follower::leave_partial_line`]).
    End { unterminated_bytes: u64 },
    /// Reading failed. Nothing follows.
    Failed(anyhow::Error),
}

/// Result of one [`Follower::step`].
#[derive(Debug)]
pub(crate) enum Step {
    Event(SourceEvent),
    /// Nothing new; poll again later.
    Idle,
    /// The one-shot read is done.
    Finished,
}

/// Result of checking the path of the file being followed.
#[derive(Debug, PartialEq, Eq)]
enum PathState {
    Unchanged,
    Grown,
    Absent,
    Replaced,
    Truncated,
}

/// The file being read.
struct OpenLog {
    generation: u64,
    path: Arc<Path>,
    reader: LineReader<BufReader<File>>,
    identity: FileIdentity,
    /// Whether this is the file at the followed path; `false` once it was
    /// rotated away, so it is read to its end and closed.
    at_path: bool,
}

impl OpenLog {
    fn file(&self) -> &File {
        self.reader.get_ref().get_ref()
    }
}

/// Reads the log's files in order and turns them into [`SourceEvent`]s.
pub(crate) struct Follower {
    path: PathBuf,
    follow: bool,
    max_line_bytes: usize,
    starts: VecDeque<Start>,
    current: Option<OpenLog>,
    events: VecDeque<SourceEvent>,
    next_generation: u64,
    /// Whether the absence of the path was logged since a file was last
    /// opened, so that it is logged once.
    absence_logged: bool,
    /// Error of the last failed open of the path that is logged, such as
    /// permission denied, so that each cause is logged once while the
    /// path stays unreadable.
    open_failure: Option<String>,
    /// Whether the last step was idle, so the path is checked before the
    /// next read.
    woke_from_idle: bool,
    /// Whether a one-shot read leaves the bytes after the last `\n` of the
    /// file at the path unread.
    leave_partial_line: bool,
    /// Count of the bytes it left.
    unterminated_bytes: u64,
}

impl Follower {
    /// Reads `starts` in order; when `follow` is set, then follows `path`.
    /// Lines keep at most `max_line_bytes` bytes.
    pub(crate) fn new(
        path: &Path,
        follow: bool,
        max_line_bytes: usize,
        starts: Vec<Start>,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            follow,
            max_line_bytes,
            starts: starts.into(),
            current: None,
            events: VecDeque::new(),
            next_generation: 1,
            absence_logged: false,
            open_failure: None,
            woke_from_idle: false,
            leave_partial_line: false,
            unterminated_bytes: 0,
        }
    }

    /// Makes a one-shot read leave the bytes after the last `\n` of the file
    /// at the path unread, because its writer may still be writing that
    /// line, so that a run that resumes from a checkpoint reads it whole.
    /// Rotated files are still read to their last byte.
    pub(crate) fn leave_partial_line(mut self, leave: bool) -> Self {
        self.leave_partial_line = leave;
        self
    }

    /// Starts the reader thread, which sends events to the returned
    /// receiver, polling every `poll_interval` when idle. The thread ends
    /// after [`SourceEvent::End`] or [`SourceEvent::Failed`], or once the
    /// receiver is dropped.
    pub(crate) fn spawn(
        self,
        poll_interval: Duration,
    ) -> anyhow::Result<mpsc::Receiver<SourceEvent>> {
        let (sender, receiver) = mpsc::channel(EVENT_QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("log-reader".to_string())
            .spawn(move || self.run(&sender, poll_interval))
            .context("failed to start the log reader thread")?;
        Ok(receiver)
    }

    fn run(mut self, sender: &mpsc::Sender<SourceEvent>, poll_interval: Duration) {
        loop {
            let event = match self.step() {
                Ok(Step::Event(event)) => event,
                Ok(Step::Idle) => {
                    if sender.is_closed() {
                        return;
                    }
                    std::thread::sleep(poll_interval);
                    continue;
                }
                Ok(Step::Finished) => SourceEvent::End {
                    unterminated_bytes: self.unterminated_bytes,
                },
                Err(error) => SourceEvent::Failed(error),
            };
            let last = matches!(event, SourceEvent::End { .. } | SourceEvent::Failed(_));
            if sender.blocking_send(event).is_err() || last {
                return;
            }
        }
    }

    /// Reads until the next event, or until there is nothing new.
    pub(crate) fn step(&mut self) -> anyhow::Result<Step> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Step::Event(event));
            }
            let Some(current) = self.current.as_mut() else {
                if self.open_next()? {
                    continue;
                }
                return Ok(self.idle());
            };
            let followed = current.at_path && self.follow;
            // Bytes written after a truncation during the idle time would
            // otherwise be read from the old offset before the check at
            // the end of the file notices.
            if followed && std::mem::take(&mut self.woke_from_idle) {
                let state = self.check_path()?;
                if matches!(state, PathState::Replaced | PathState::Truncated) {
                    self.react(state)?;
                    continue;
                }
            }
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            let path = Arc::clone(&current.path);
            let read = current
                .reader
                .read_line()
                .with_context(|| format!("failed to read log file {path:?}"))?;
            if let Some(line) = read {
                self.push_line(line)?;
                continue;
            }
            if !followed {
                self.close_current()?;
                continue;
            }
            let state = self.check_path()?;
            if let Some(step) = self.react(state)? {
                return Ok(step);
            }
        }
    }

    /// Returns [`Step::Idle`] when following, [`Step::Finished`] otherwise.
    fn idle(&mut self) -> Step {
        if self.follow {
            self.woke_from_idle = true;
            Step::Idle
        } else {
            Step::Finished
        }
    }

    /// Acts on the state of the followed path at the end of the file.
    /// Returns the step to report, or `None` to read on.
    fn react(&mut self, state: PathState) -> anyhow::Result<Option<Step>> {
        match state {
            PathState::Unchanged => return Ok(Some(self.idle())),
            PathState::Grown => {}
            PathState::Absent => {
                if !self.absence_logged {
                    self.absence_logged = true;
                    tracing::info!(
                        path = ?self.path,
                        "log file is gone from its path; reading the open file and waiting \
                         for a new one"
                    );
                }
                return Ok(Some(self.idle()));
            }
            PathState::Replaced => {
                tracing::info!(
                    path = ?self.path,
                    "log file was rotated; reading the old file to its end"
                );
                if let Some(current) = self.current.as_mut() {
                    current.at_path = false;
                }
            }
            PathState::Truncated => self.restart_current()?,
        }
        Ok(None)
    }

    /// Opens the next file to read. Returns `false` when there is none yet.
    fn open_next(&mut self) -> anyhow::Result<bool> {
        if let Some(start) = self.starts.pop_front() {
            self.open(start)?;
            return Ok(true);
        }
        if !self.follow {
            return Ok(false);
        }
        let file = match open_log_file(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if !self.absence_logged {
                    self.absence_logged = true;
                    tracing::info!(path = ?self.path, "waiting for the log file to appear");
                }
                return Ok(false);
            }
            Err(error) if may_become_readable(&error) => {
                let cause = error.to_string();
                if self.open_failure.as_ref() != Some(&cause) {
                    tracing::warn!(
                        path = ?self.path,
                        error = %cause,
                        "failed to open log file; retrying every poll interval"
                    );
                    self.open_failure = Some(cause);
                }
                return Ok(false);
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("failed to open log file {:?}", self.path))
            }
        };
        tracing::info!(path = ?self.path, "following new log file from offset 0");
        self.open(Start {
            file,
            path: self.path.clone(),
            offset: 0,
            at_path: true,
            resumed: None,
        })?;
        Ok(true)
    }

    fn open(&mut self, start: Start) -> anyhow::Result<()> {
        let Start {
            mut file,
            path,
            offset,
            at_path,
            ..
        } = start;
        let identity = FileIdentity::of_file(&file, offset)
            .and_then(|identity| file.seek(SeekFrom::Start(offset)).map(|_| identity))
            .with_context(|| format!("failed to open log file {path:?} at offset {offset}"))?;
        let reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        let generation = self.next_generation;
        self.next_generation += 1;
        let path: Arc<Path> = Arc::from(path);
        self.events.push_back(SourceEvent::Opened {
            generation,
            path: Arc::clone(&path),
            identity: identity.clone(),
            offset,
        });
        self.current = Some(OpenLog {
            generation,
            path,
            reader: LineReader::new(reader, offset, self.max_line_bytes),
            identity,
            at_path,
        });
        if at_path {
            self.absence_logged = false;
            self.open_failure = None;
        }
        Ok(())
    }

    /// Queues `line`, preceded by a wider fingerprint while the file's
    /// first [`FINGERPRINT_BYTES`] are being read.
    fn push_line(&mut self, line: Line) -> anyhow::Result<()> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let covered = current.identity.fingerprint.bytes;
        let position = current.reader.position();
        if covered < FINGERPRINT_BYTES as u64 && position > covered {
            let identity = FileIdentity::of_file(current.file(), position)
                .with_context(|| format!("failed to fingerprint log file {:?}", current.path))?;
            if identity != current.identity {
                current.identity = identity.clone();
                self.events.push_back(SourceEvent::Identified {
                    generation: current.generation,
                    identity,
                });
            }
        }
        self.events.push_back(SourceEvent::Line {
            generation: current.generation,
            line,
        });
        Ok(())
    }

    /// Ends the current file, sending its bytes after the last `\n` as a
    /// final line, unless they are left for the next run.
    fn close_current(&mut self) -> anyhow::Result<()> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        if current.at_path && self.leave_partial_line {
            self.unterminated_bytes = current.reader.partial_bytes();
        } else if let Some(line) = current.reader.take_partial() {
            self.push_line(line)?;
        }
        self.current = None;
        Ok(())
    }

    /// Compares the path with the file being read.
    fn check_path(&self) -> anyhow::Result<PathState> {
        let Some(current) = &self.current else {
            return Ok(PathState::Absent);
        };
        let metadata = match fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(PathState::Absent),
            // NOTE: a path that cannot be stat'ed, such as one in a
            // directory that lost its search permission, still ends the
            // run, unlike one that cannot be opened.
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("failed to check log file path {:?}", self.path))
            }
        };
        if !current.identity.same_inode(&metadata) {
            return Ok(PathState::Replaced);
        }
        let position = current.reader.position();
        if metadata.len() < position {
            return Ok(PathState::Truncated);
        }
        // A file truncated and written past the old offset between two
        // polls differs from the old one only in its first bytes.
        let same_start = current
            .identity
            .fingerprint
            .matches(current.file())
            .with_context(|| format!("failed to fingerprint log file {:?}", self.path))?;
        if !same_start {
            return Ok(PathState::Truncated);
        }
        if metadata.len() > position {
            return Ok(PathState::Grown);
        }
        Ok(PathState::Unchanged)
    }

    /// Reads the current file again from offset 0 as a new generation,
    /// after its pending bytes are sent as a line of the old one.
    fn restart_current(&mut self) -> anyhow::Result<()> {
        if let Some(line) = self
            .current
            .as_mut()
            .and_then(|log| log.reader.take_partial())
        {
            self.push_line(line)?;
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        tracing::info!(
            path = ?current.path,
            offset = current.reader.position(),
            inode = current.identity.inode,
            "log file was truncated; reading it again from offset 0"
        );
        current
            .reader
            .restart_at(0)
            .with_context(|| format!("failed to seek log file {:?} to offset 0", current.path))?;
        let metadata = current
            .file()
            .metadata()
            .with_context(|| format!("failed to read the metadata of {:?}", current.path))?;
        current.identity = FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
            fingerprint: crate::identity::Fingerprint::of(b""),
        };
        current.generation = self.next_generation;
        self.next_generation += 1;
        self.events.push_back(SourceEvent::Opened {
            generation: current.generation,
            path: Arc::clone(&current.path),
            identity: current.identity.clone(),
            offset: 0,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::resume::plan_start;

    /// Event as a test compares it: a new generation or a line's text.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Opened(u64, u64),
        Line(u64, String),
    }

    /// Steps until the follower is idle or finished, returning what it saw.
    fn drain(follower: &mut Follower) -> Vec<Seen> {
        let mut seen = Vec::new();
        loop {
            match follower.step().expect("step") {
                Step::Event(SourceEvent::Opened {
                    generation, offset, ..
                }) => seen.push(Seen::Opened(generation, offset)),
                Step::Event(SourceEvent::Line { generation, line }) => seen.push(Seen::Line(
                    generation,
                    String::from_utf8(line.bytes).expect("test lines are UTF-8"),
                )),
                Step::Event(SourceEvent::Identified { .. }) => {}
                Step::Event(other) => panic!("unexpected event {other:?}"),
                Step::Idle | Step::Finished => return seen,
            }
        }
    }

    fn line(generation: u64, text: &str) -> Seen {
        Seen::Line(generation, text.to_string())
    }

    fn append(path: &Path, content: &[u8]) {
        let mut file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .expect("open log for append");
        file.write_all(content).expect("append");
    }

    fn follower(path: &Path) -> Follower {
        let starts = plan_start(path, None, true).expect("plan");
        Follower::new(path, true, 100, starts)
    }

    /// Returns the log path in `dir`, the path it was renamed to, and a
    /// follower that read its one line before the rename.
    fn follower_after_rename(dir: &Path) -> (PathBuf, PathBuf, Follower) {
        let path = dir.join("access.log");
        let rotated = dir.join("access.log.1");
        append(&path, b"one\n");
        let mut follower = follower(&path);
        drain(&mut follower);
        fs::rename(&path, &rotated).expect("rotate");
        (path, rotated, follower)
    }

    #[test]
    fn appended_lines_are_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        append(&path, b"one\ntwo\n");
        let mut follower = follower(&path);
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(1, 0), line(1, "one"), line(1, "two")]
        );

        append(&path, b"three\n");
        assert_eq!(drain(&mut follower), vec![line(1, "three")]);
        assert!(matches!(follower.step().expect("step"), Step::Idle));
    }

    #[test]
    fn partial_line_waits_for_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        append(&path, b"one\ntw");
        let mut follower = follower(&path);
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(1, 0), line(1, "one")]
        );
        append(&path, b"o\n");
        assert_eq!(drain(&mut follower), vec![line(1, "two")]);
    }

    #[test]
    fn resumable_one_shot_leaves_partial_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        append(&path, b"one\ntwo");
        let starts = plan_start(&path, None, false).expect("plan");
        let mut follower = Follower::new(&path, false, 100, starts).leave_partial_line(true);
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(1, 0), line(1, "one")]
        );
        assert!(matches!(follower.step().expect("step"), Step::Finished));
        assert_eq!(follower.unterminated_bytes, 3);
    }

    #[test]
    fn one_shot_sends_final_partial_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        append(&path, b"one\ntwo");
        let starts = plan_start(&path, None, false).expect("plan");
        let mut follower = Follower::new(&path, false, 100, starts);
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(1, 0), line(1, "one"), line(1, "two")]
        );
        assert!(matches!(follower.step().expect("step"), Step::Finished));
    }

    #[test]
    fn rename_rotation_finishes_old_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        append(&path, b"one\n");
        let mut follower = follower(&path);
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(1, 0), line(1, "one")]
        );

        append(&path, b"two\nunfinished");
        fs::rename(&path, &rotated).expect("rotate");
        append(&path, b"new one\n");
        assert_eq!(
            drain(&mut follower),
            vec![
                line(1, "two"),
                line(1, "unfinished"),
                Seen::Opened(2, 0),
                line(2, "new one")
            ]
        );
    }

    #[test]
    fn absent_path_keeps_reading_old_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, rotated, mut follower) = follower_after_rename(dir.path());
        assert_eq!(drain(&mut follower), vec![]);
        // The writer keeps the old file open until it reopens the path.
        append(&rotated, b"late\n");
        assert_eq!(drain(&mut follower), vec![line(1, "late")]);
        append(&path, b"new\n");
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(2, 0), line(2, "new")]
        );
    }

    #[test]
    fn missing_file_is_waited_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        let mut follower = follower(&path);
        assert_eq!(drain(&mut follower), vec![]);
        assert!(follower.absence_logged);
        append(&path, b"first\n");
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(1, 0), line(1, "first")]
        );
        assert!(!follower.absence_logged);
    }

    #[test]
    fn directory_at_path_is_waited_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, _rotated, mut follower) = follower_after_rename(dir.path());
        fs::create_dir(&path).expect("create a directory at the path");
        assert_eq!(drain(&mut follower), vec![]);
        assert_eq!(
            follower.open_failure.as_deref(),
            Some("it is a directory, not a file")
        );
        assert_eq!(drain(&mut follower), vec![]);

        fs::remove_dir(&path).expect("remove the directory");
        append(&path, b"new\n");
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(2, 0), line(2, "new")]
        );
        assert_eq!(follower.open_failure, None);
    }

    #[test]
    fn directory_at_start_is_waited_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        fs::create_dir(&path).expect("create a directory at the path");
        let mut follower = follower(&path);
        assert_eq!(drain(&mut follower), vec![]);
        assert_eq!(
            follower.open_failure.as_deref(),
            Some("it is a directory, not a file")
        );

        fs::remove_dir(&path).expect("remove the directory");
        append(&path, b"first\n");
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(1, 0), line(1, "first")]
        );
    }

    #[test]
    fn directory_fails_one_shot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = plan_start(dir.path(), None, false).expect_err("path is a directory");
        assert_eq!(
            format!("{error:#}"),
            format!(
                "failed to open log file {:?}: it is a directory, not a file",
                dir.path()
            )
        );
    }

    #[test]
    fn shrunk_file_is_read_from_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        append(&path, b"one\ntwo\nthree\n");
        let mut follower = follower(&path);
        drain(&mut follower);

        // copy-truncate: the copy is made elsewhere, then the file emptied.
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for truncate")
            .set_len(0)
            .expect("truncate");
        append(&path, b"four\n");
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(2, 0), line(2, "four")]
        );
    }

    #[test]
    fn rewritten_longer_file_is_read_from_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        append(&path, b"a\nb\n");
        let mut follower = follower(&path);
        drain(&mut follower);

        // Truncated and written past the old offset before the next poll.
        fs::write(&path, b"ccc\nddd\n").expect("rewrite");
        assert_eq!(
            drain(&mut follower),
            vec![Seen::Opened(2, 0), line(2, "ccc"), line(2, "ddd")]
        );
    }

    #[test]
    fn unchanged_file_is_idle() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        append(&path, b"one\n");
        let mut follower = follower(&path);
        drain(&mut follower);
        let current = follower.current.as_ref().expect("file is open");
        assert_eq!(current.reader.position(), 4);
        assert_eq!(follower.check_path().expect("check"), PathState::Unchanged);
        append(&path, b"two\n");
        assert_eq!(follower.check_path().expect("check"), PathState::Grown);
    }

    #[test]
    fn fingerprint_grows_with_first_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        append(&path, b"one\n");
        let mut follower = follower(&path);
        let mut covered = Vec::new();
        while let Step::Event(event) = follower.step().expect("step") {
            if let SourceEvent::Identified { identity, .. } = event {
                covered.push(identity.fingerprint.bytes);
            }
        }
        append(&path, b"two\n");
        while let Step::Event(event) = follower.step().expect("step") {
            if let SourceEvent::Identified { identity, .. } = event {
                covered.push(identity.fingerprint.bytes);
            }
        }
        assert_eq!(covered, vec![4, 8]);
    }
}
