//! The output file: appending a batch of lines and making it durable.
//!
//! A batch counts as written only after `write`, `flush` and `sync_data`
//! have all returned, and the caller commits offsets only after that. When
//! the file is created, its directory is fsynced too, so the new name
//! survives a crash.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Bytes read per step while looking back for the last `\n`.
const TAIL_CHUNK_BYTES: u64 = 64 << 10;

/// An open output file in append mode.
pub(crate) struct SinkWriter {
    path: PathBuf,
    file: File,
}

impl SinkWriter {
    /// Opens `path` for appending, creating it when missing.
    ///
    /// A file that does not end in `\n` was cut short by a crash during a
    /// write. The sink commits nothing before a write completes, so the
    /// records of that partial line will be consumed again. The partial
    /// line is truncated away, so that they do not follow a broken line.
    pub(crate) async fn open(path: &Path) -> anyhow::Result<Self> {
        let created = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .await;
        let file = match created {
            Ok(file) => {
                sync_parent_dir(path).await?;
                tracing::info!(path = ?path, "output file created");
                file
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                truncate_partial_line(path).await?;
                OpenOptions::new()
                    .append(true)
                    .open(path)
                    .await
                    .with_context(|| format!("failed to open output file {path:?}"))?
            }
            Err(error) => {
                return Err(error).with_context(|| format!("failed to create output file {path:?}"))
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends `lines`, which must end in `\n`, and waits until they are on
    /// disk.
    pub(crate) async fn append(&mut self, lines: &[u8]) -> anyhow::Result<()> {
        let path = &self.path;
        self.file
            .write_all(lines)
            .await
            .with_context(|| format!("failed to write to output file {path:?}"))?;
        // tokio writes in the background, and flush waits for that write.
        self.file
            .flush()
            .await
            .with_context(|| format!("failed to write to output file {path:?}"))?;
        self.file
            .sync_data()
            .await
            .with_context(|| format!("failed to fsync output file {path:?}"))
    }
}

/// Fsyncs the directory that contains `path`, so that a new entry in it is
/// durable.
async fn sync_parent_dir(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let dir = File::open(parent)
        .await
        .with_context(|| format!("failed to open directory {parent:?} to fsync it"))?;
    dir.sync_all()
        .await
        .with_context(|| format!("failed to fsync directory {parent:?}"))
}

/// Truncates `path` after its last `\n`, dropping a line cut short by a
/// crash. Does nothing to an empty file or one that ends in `\n`.
async fn truncate_partial_line(path: &Path) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .await
        .with_context(|| format!("failed to open output file {path:?}"))?;
    let length = file
        .metadata()
        .await
        .with_context(|| format!("failed to read the metadata of output file {path:?}"))?
        .len();
    let keep = find_line_end(&mut file, length)
        .await
        .with_context(|| format!("failed to read output file {path:?}"))?;
    if keep == length {
        return Ok(());
    }
    file.set_len(keep)
        .await
        .with_context(|| format!("failed to truncate the partial last line of {path:?}"))?;
    file.sync_data()
        .await
        .with_context(|| format!("failed to fsync output file {path:?}"))?;
    tracing::warn!(
        path = ?path,
        removed_bytes = length - keep,
        "removed a partial last line left by an interrupted write; its records will be \
         consumed and written again"
    );
    Ok(())
}

/// Returns the length of `file` up to and including its last `\n`, or 0
/// when it has none. `length` is the file's length.
async fn find_line_end(file: &mut File, length: u64) -> io::Result<u64> {
    let mut end = length;
    let mut chunk = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(TAIL_CHUNK_BYTES);
        chunk.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(&mut chunk).await?;
        if let Some(position) = chunk.iter().rposition(|&byte| byte == b'\n') {
            return Ok(start + position as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_file_and_appends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");

        let mut writer = SinkWriter::open(&path).await.expect("create file");
        writer.append(b"{\"a\":1}\n").await.expect("append");
        drop(writer);
        let mut writer = SinkWriter::open(&path).await.expect("reopen file");
        writer.append(b"{\"b\":2}\n").await.expect("append");

        let content = std::fs::read(&path).expect("read output");
        assert_eq!(content, b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[tokio::test]
    async fn partial_last_line_is_truncated() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n{\"b\":").expect("write partial file");

        let mut writer = SinkWriter::open(&path).await.expect("open file");
        writer.append(b"{\"b\":2}\n").await.expect("append");

        let content = std::fs::read(&path).expect("read output");
        assert_eq!(content, b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[tokio::test]
    async fn file_without_newline_is_emptied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, b"{\"a\":").expect("write partial file");

        SinkWriter::open(&path).await.expect("open file");

        assert_eq!(std::fs::read(&path).expect("read output"), b"");
    }

    #[tokio::test]
    async fn line_end_is_found_across_chunks() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let mut content = b"{}\n".to_vec();
        content.resize(3 + 3 * TAIL_CHUNK_BYTES as usize, b'x');
        std::fs::write(&path, &content).expect("write file");

        let mut file = File::open(&path).await.expect("open file");
        let end = find_line_end(&mut file, content.len() as u64)
            .await
            .expect("read");

        assert_eq!(end, 3);
    }

    #[tokio::test]
    async fn missing_directory_error_names_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing").join("out.jsonl");

        let error = SinkWriter::open(&path)
            .await
            .err()
            .expect("directory is missing");

        let message = format!("{error:#}");
        assert!(
            message.contains("failed to create output file"),
            "{message}"
        );
        assert!(message.contains("out.jsonl"), "{message}");
        assert!(message.contains("No such file or directory"), "{message}");
    }

    #[tokio::test]
    async fn directory_as_output_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");

        let error = SinkWriter::open(dir.path())
            .await
            .err()
            .expect("path is a directory");

        let message = format!("{error:#}");
        assert!(message.contains("Is a directory"), "{message}");
    }

    #[tokio::test]
    async fn full_disk_error_names_path() {
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        let path = Path::new("/dev/full");

        let mut writer = SinkWriter::open(path).await.expect("open /dev/full");
        let error = writer
            .append(b"{}\n")
            .await
            .expect_err("the device is full");

        let message = format!("{error:#}");
        assert!(message.contains("\"/dev/full\""), "{message}");
        assert!(message.contains("No space left on device"), "{message}");
    }
}
