//! Opening the access log and splitting it into lines, with the byte
//! offsets that the checkpoint records.
//!
//! A line is everything up to a `\n`, without that `\n`. Other bytes,
//! including `\r` and bytes that are not UTF-8, stay as they are, and an
//! empty line in the middle is still a line, so no part of the file is
//! skipped. Bytes after the last `\n` stay pending until their `\n` arrives:
//! the caller decides whether they form a final line ([`LineReader::take_partial`])
//! or wait for more data, as in follow mode.
//!
//! A line may be longer than Kafka accepts. The reader keeps only its first
//! `max_line_bytes` bytes and skips the rest, so memory stays bounded, but it
//! reports the full length so that the line can be dead-lettered or
//! truncated instead of sent.

use std::fs::{self, File};
use std::io::{self, BufRead, Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Opens the access log at `path` for reading. Only a regular file is
/// accepted, because lines are tracked by byte offset and the file is
/// fingerprinted by reading its first bytes again. A directory fails with
/// [`io::ErrorKind::IsADirectory`], and any other type with
/// [`io::ErrorKind::InvalidInput`] and a message that names the type. The
/// type is checked before opening, because opening a named pipe blocks
/// until a writer opens it, and again after, in case the path was
/// replaced in between.
pub(crate) fn open_log_file(path: &Path) -> io::Result<File> {
    check_regular(&fs::metadata(path)?)?;
    let file = File::open(path)?;
    check_regular(&file.metadata()?)?;
    Ok(file)
}

/// Returns whether a follower waits for the path to become readable after
/// `error` from [`open_log_file`], as `tail -F` does: the file may be
/// missing between a rotation's rename and create, or unreadable until
/// the rotation sets its owner and mode.
pub(crate) fn may_become_readable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::IsADirectory
    )
}

/// Fails when `metadata` is not that of a regular file.
fn check_regular(metadata: &fs::Metadata) -> io::Result<()> {
    let file_type = metadata.file_type();
    if file_type.is_file() {
        return Ok(());
    }
    if file_type.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a directory, not a file",
        ));
    }
    let kind = if file_type.is_fifo() {
        "a pipe"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    let message = format!(
        "it is {kind}, and the shipper reads only regular files, by byte offset; \
         write the lines to a file first and ship that file"
    );
    Err(io::Error::new(io::ErrorKind::InvalidInput, message))
}

/// One line of the log and where it sits in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    /// Byte offset of the line's first byte.
    pub(crate) start: u64,
    /// Byte offset just past the line's `\n`, or past its last byte when it
    /// has none. Reading resumes here.
    pub(crate) end: u64,
    /// Length of the whole line in bytes, without the `\n`.
    pub(crate) length: u64,
    /// The line's bytes, or its first `max_line_bytes` bytes when it is
    /// longer.
    pub(crate) bytes: Vec<u8>,
}

impl Line {
    /// Returns whether the reader dropped bytes after `max_line_bytes`.
    pub(crate) fn is_cut(&self) -> bool {
        (self.bytes.len() as u64) < self.length
    }
}

/// Splits a byte stream into [`Line`]s and counts the bytes consumed.
pub(crate) struct LineReader<R> {
    reader: R,
    max_line_bytes: usize,
    /// Offset in the file of the next byte to read.
    position: u64,
    /// Offset of the first byte of the pending line.
    line_start: u64,
    /// Bytes of the pending line kept so far, at most `max_line_bytes`.
    pending: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps `reader`, whose next byte is at `position` in the file. Lines
    /// longer than `max_line_bytes` keep only their first `max_line_bytes`.
    pub(crate) fn new(reader: R, position: u64, max_line_bytes: usize) -> Self {
        Self {
            reader,
            max_line_bytes,
            position,
            line_start: position,
            pending: Vec::new(),
        }
    }

    /// Reads the next complete line. Returns `None` at the current end of
    /// the stream. Bytes after the last `\n` stay pending, so a later call
    /// continues the line once the stream has grown.
    pub(crate) fn read_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if available.is_empty() {
                return Ok(None);
            }
            let newline = available.iter().position(|byte| *byte == b'\n');
            let content = newline.unwrap_or(available.len());
            let room = self.max_line_bytes.saturating_sub(self.pending.len());
            self.pending
                .extend_from_slice(&available[..content.min(room)]);
            let consumed = newline.map_or(content, |at| at + 1);
            self.reader.consume(consumed);
            self.position += consumed as u64;
            if newline.is_some() {
                let length = self.position - 1 - self.line_start;
                return Ok(Some(self.finish_line(length)));
            }
        }
    }

    /// Returns the pending bytes after the last `\n` as a final line, or
    /// `None` when there are none.
    pub(crate) fn take_partial(&mut self) -> Option<Line> {
        let length = self.partial_bytes();
        if length == 0 {
            return None;
        }
        Some(self.finish_line(length))
    }

    /// Returns the count of bytes after the last `\n` read so far.
    pub(crate) fn partial_bytes(&self) -> u64 {
        self.position - self.line_start
    }

    /// Returns the offset in the file of the next byte to read, which
    /// includes the pending bytes.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Returns the underlying reader.
    pub(crate) fn get_ref(&self) -> &R {
        &self.reader
    }

    fn finish_line(&mut self, length: u64) -> Line {
        let line = Line {
            start: self.line_start,
            end: self.position,
            length,
            bytes: std::mem::take(&mut self.pending),
        };
        self.line_start = self.position;
        line
    }
}

impl<R: BufRead + Seek> LineReader<R> {
    /// Moves to `position` in the file and drops the pending bytes, for a
    /// file that was truncated.
    pub(crate) fn restart_at(&mut self, position: u64) -> io::Result<()> {
        self.reader.seek(SeekFrom::Start(position))?;
        self.position = position;
        self.line_start = position;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    fn split(input: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = LineReader::new(input, 0, 100);
        let mut lines = Vec::new();
        while let Some(line) = reader.read_line().expect("reading a slice never fails") {
            lines.push(line.bytes);
        }
        if let Some(line) = reader.take_partial() {
            lines.push(line.bytes);
        }
        lines
    }

    #[test]
    fn crlf_keeps_carriage_return() {
        assert_eq!(split(b"a\r\nb\r\n"), vec![b"a\r".to_vec(), b"b\r".to_vec()]);
    }

    #[test]
    fn final_newline_adds_no_empty_line() {
        assert_eq!(split(b"a\nb\n"), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn last_line_without_newline_counts() {
        assert_eq!(split(b"a\nb"), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn empty_middle_line_is_kept() {
        assert_eq!(
            split(b"a\n\nb\n"),
            vec![b"a".to_vec(), Vec::new(), b"b".to_vec()]
        );
    }

    #[test]
    fn lone_newline_is_one_empty_line() {
        assert_eq!(split(b"\n"), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn empty_input_has_no_lines() {
        assert!(split(b"").is_empty());
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        assert_eq!(
            split(b"\xff\xfe\x00x\n\xc3\x28"),
            vec![b"\xff\xfe\x00x".to_vec(), b"\xc3\x28".to_vec()]
        );
    }

    #[test]
    fn offsets_cover_the_newline() {
        let mut reader = LineReader::new(&b"ab\n\ncd"[..], 10, 100);
        let first = reader.read_line().expect("slice").expect("line");
        assert_eq!((first.start, first.end, first.length), (10, 13, 2));
        let second = reader.read_line().expect("slice").expect("line");
        assert_eq!((second.start, second.end, second.length), (13, 14, 0));
        assert_eq!(reader.read_line().expect("slice"), None);
        assert_eq!(reader.position(), 16);
        let last = reader.take_partial().expect("pending bytes");
        assert_eq!((last.start, last.end, last.length), (14, 16, 2));
        assert_eq!(reader.take_partial(), None);
    }

    #[test]
    fn line_at_max_length_is_whole() {
        let mut reader = LineReader::new(&b"abcd\nabcd"[..], 0, 4);
        let line = reader.read_line().expect("slice").expect("line");
        assert_eq!(line.bytes, b"abcd");
        assert!(!line.is_cut());
        assert_eq!(reader.read_line().expect("slice"), None);
        let line = reader.take_partial().expect("last line");
        assert_eq!(line.bytes, b"abcd");
        assert!(!line.is_cut());
    }

    #[test]
    fn long_line_keeps_prefix_and_length() {
        let mut reader = LineReader::new(&b"ab\nabcdefgh\nxy\n"[..], 0, 4);
        let first = reader.read_line().expect("slice").expect("line");
        assert_eq!(first.bytes, b"ab");
        let long = reader.read_line().expect("slice").expect("line");
        assert_eq!(long.bytes, b"abcd");
        assert_eq!(long.length, 8);
        assert_eq!((long.start, long.end), (3, 12));
        assert!(long.is_cut());
        let after = reader.read_line().expect("slice").expect("line");
        assert_eq!(after.bytes, b"xy");
        assert_eq!(after.start, 12);
    }

    #[test]
    fn long_line_spanning_reads_is_cut_once() {
        // A one-byte buffer makes every byte a separate read.
        let input = std::io::BufReader::with_capacity(1, &b"0123456789\nz\n"[..]);
        let mut reader = LineReader::new(input, 0, 3);
        let long = reader.read_line().expect("slice").expect("line");
        assert_eq!(long.bytes, b"012");
        assert_eq!(long.length, 10);
        let next = reader.read_line().expect("slice").expect("line");
        assert_eq!(next.bytes, b"z");
        assert_eq!(next.start, 11);
    }

    #[test]
    fn partial_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("growing.log");
        let mut writer = std::fs::File::create(&path).expect("create log");
        writer.write_all(b"one\ntw").expect("write");
        let file = std::fs::File::open(&path).expect("open log");
        let mut reader = LineReader::new(std::io::BufReader::new(file), 0, 100);

        let one = reader.read_line().expect("read").expect("first line");
        assert_eq!(one.bytes, b"one");
        assert_eq!(reader.read_line().expect("read"), None);
        assert_eq!(reader.position(), 6);

        writer.write_all(b"o\n").expect("write");
        let two = reader.read_line().expect("read").expect("second line");
        assert_eq!(two.bytes, b"two");
        assert_eq!((two.start, two.end), (4, 8));
    }

    #[test]
    fn missing_file_error_is_not_found() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = open_log_file(&dir.path().join("missing.log")).expect_err("file is missing");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn directory_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = open_log_file(dir.path()).expect_err("path is a directory");
        assert_eq!(error.kind(), io::ErrorKind::IsADirectory);
        assert_eq!(error.to_string(), "it is a directory, not a file");
    }

    #[test]
    fn pipe_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo failed: {status}");

        // A reader's open blocks until the pipe has a writer, so the test
        // holds one.
        let _writer = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open the pipe for writing");
        let error = open_log_file(&path).expect_err("path is a pipe");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            error.to_string(),
            "it is a pipe, and the shipper reads only regular files, by byte offset; \
             write the lines to a file first and ship that file"
        );
    }

    #[test]
    fn unreadable_path_may_become_readable() {
        use io::ErrorKind;

        for kind in [
            ErrorKind::NotFound,
            ErrorKind::PermissionDenied,
            ErrorKind::IsADirectory,
        ] {
            assert!(may_become_readable(&io::Error::from(kind)), "{kind:?}");
        }
        for kind in [ErrorKind::InvalidInput, ErrorKind::Other] {
            assert!(!may_become_readable(&io::Error::from(kind)), "{kind:?}");
        }
    }

    #[test]
    fn restart_drops_pending_bytes() {
        let mut reader = LineReader::new(Cursor::new(b"abc\ndef".to_vec()), 0, 100);
        reader.read_line().expect("cursor").expect("line");
        assert_eq!(reader.read_line().expect("cursor"), None);
        reader.restart_at(0).expect("seek cursor");
        assert_eq!(reader.position(), 0);
        let again = reader.read_line().expect("cursor").expect("line");
        assert_eq!(again.bytes, b"abc");
        assert_eq!(again.start, 0);
    }
}
