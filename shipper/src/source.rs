//! Reading the access log: opening it with errors that name the path, and
//! splitting it into lines without loading it whole.
//!
//! A line is everything up to a `\n`, without that `\n`. Other bytes,
//! including `\r` and bytes that are not UTF-8, stay as they are. The last
//! line counts even without a final `\n`, and an empty line in the middle
//! is still a line, so no part of the file is skipped.

use std::io;
use std::path::Path;

use anyhow::{bail, Context};
use tokio::fs::File;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};

/// Max length of one line, without its `\n`. Kafka's default max message
/// size is about 1 MB, so a longer line only turns up when the file is not a
/// line-oriented log. The cap keeps such a file from being read into memory
/// whole.
pub(crate) const MAX_LINE_BYTES: usize = 64 << 20;

/// Size of the read buffer. Large reads keep the number of blocking reads
/// that tokio hands to its thread pool small.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Opens the access log at `path` for reading, rejecting a directory.
pub(crate) async fn open_log_file(path: &Path) -> anyhow::Result<LineReader<BufReader<File>>> {
    let file = File::open(path)
        .await
        .with_context(|| format!("failed to open log file {path:?}"))?;
    let metadata = file
        .metadata()
        .await
        .with_context(|| format!("failed to read the metadata of log file {path:?}"))?;
    if metadata.is_dir() {
        bail!("failed to open log file {path:?}: it is a directory, not a file");
    }
    let reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    Ok(LineReader::new(reader, MAX_LINE_BYTES))
}

/// Splits a byte stream into lines, counting them.
pub(crate) struct LineReader<R> {
    reader: R,
    max_line_bytes: usize,
    line_number: u64,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Wraps `reader`. A line longer than `max_line_bytes` is an error.
    pub(crate) fn new(reader: R, max_line_bytes: usize) -> Self {
        Self {
            reader,
            max_line_bytes,
            line_number: 0,
        }
    }

    /// Reads the next line into `line`, replacing its content, without the
    /// `\n`. Returns `false` at the end of the stream, leaving `line` empty.
    pub(crate) async fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<bool> {
        line.clear();
        // One more byte than the max leaves room for the '\n'.
        let limit = self.max_line_bytes as u64 + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', line)
            .await?;
        if read == 0 {
            return Ok(false);
        }
        self.line_number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > self.max_line_bytes {
            line.clear();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "line {} is longer than the max of {} bytes",
                    self.line_number, self.max_line_bytes
                ),
            ));
        }
        Ok(true)
    }

    /// Returns the 1-based number of the last line read, or 0 before the
    /// first.
    pub(crate) fn line_number(&self) -> u64 {
        self.line_number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn split(input: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = LineReader::new(input, 100);
        let mut lines = Vec::new();
        let mut line = Vec::new();
        while reader
            .next_line(&mut line)
            .await
            .expect("reading a slice never fails")
        {
            lines.push(line.clone());
        }
        lines
    }

    #[tokio::test]
    async fn crlf_keeps_carriage_return() {
        let lines = split(b"a\r\nb\r\n").await;
        assert_eq!(lines, vec![b"a\r".to_vec(), b"b\r".to_vec()]);
    }

    #[tokio::test]
    async fn final_newline_adds_no_empty_line() {
        let lines = split(b"a\nb\n").await;
        assert_eq!(lines, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[tokio::test]
    async fn last_line_without_newline_counts() {
        let lines = split(b"a\nb").await;
        assert_eq!(lines, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[tokio::test]
    async fn empty_middle_line_is_kept() {
        let lines = split(b"a\n\nb\n").await;
        assert_eq!(lines, vec![b"a".to_vec(), Vec::new(), b"b".to_vec()]);
    }

    #[tokio::test]
    async fn lone_newline_is_one_empty_line() {
        assert_eq!(split(b"\n").await, vec![Vec::<u8>::new()]);
    }

    #[tokio::test]
    async fn empty_input_has_no_lines() {
        assert!(split(b"").await.is_empty());
    }

    #[tokio::test]
    async fn non_utf8_bytes_are_kept() {
        let lines = split(b"\xff\xfe\x00x\n\xc3\x28").await;
        assert_eq!(lines, vec![b"\xff\xfe\x00x".to_vec(), b"\xc3\x28".to_vec()]);
    }

    #[tokio::test]
    async fn line_numbers_count_from_one() {
        let mut reader = LineReader::new(&b"a\nb\n"[..], 100);
        let mut line = Vec::new();
        assert_eq!(reader.line_number(), 0);
        reader.next_line(&mut line).await.expect("slice");
        assert_eq!(reader.line_number(), 1);
        reader.next_line(&mut line).await.expect("slice");
        assert_eq!(reader.line_number(), 2);
        assert!(!reader.next_line(&mut line).await.expect("slice"));
        assert_eq!(reader.line_number(), 2);
    }

    #[tokio::test]
    async fn line_at_max_length_is_accepted() {
        let mut reader = LineReader::new(&b"abcd\nabcd"[..], 4);
        let mut line = Vec::new();
        assert!(reader.next_line(&mut line).await.expect("line fits"));
        assert_eq!(line, b"abcd");
        assert!(reader.next_line(&mut line).await.expect("line fits"));
        assert_eq!(line, b"abcd");
    }

    #[tokio::test]
    async fn line_over_max_length_is_rejected() {
        let mut reader = LineReader::new(&b"ab\nabcde\n"[..], 4);
        let mut line = Vec::new();
        assert!(reader.next_line(&mut line).await.expect("first line fits"));
        let error = reader
            .next_line(&mut line)
            .await
            .expect_err("second is too long");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[tokio::test]
    async fn missing_file_error_names_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing.log");
        let error = open_log_file(&path).await.err().expect("file is missing");
        let message = format!("{error:#}");
        assert!(message.contains("failed to open log file"), "{message}");
        assert!(message.contains("missing.log"), "{message}");
        assert!(message.contains("No such file or directory"), "{message}");
    }

    #[tokio::test]
    async fn directory_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = open_log_file(dir.path())
            .await
            .err()
            .expect("path is a directory");
        assert!(format!("{error:#}").contains("directory"), "{error:#}");
    }
}
