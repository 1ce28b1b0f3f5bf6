//! Durable small-file writes for checkpoints.
//!
//! A checkpoint is replaced atomically: the new content goes to a temporary
//! file next to it, which is fsynced and renamed over the old one, and then
//! the directory is fsynced so that the rename survives a power loss. A
//! reader therefore sees the old or the new content, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Replaces the file at `path` with `content`, atomically and durably.
pub fn replace_file(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let temporary = with_suffix(path, ".tmp");
    write_synced(&temporary, content)
        .with_context(|| format!("failed to write temporary file {temporary:?}"))?;
    fs::rename(&temporary, path)
        .with_context(|| format!("failed to rename {temporary:?} to {path:?}"))?;
    sync_parent_dir(path)
}

/// Returns `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Fsyncs the directory that contains `path`, so that a new, renamed or
/// removed entry in it is durable.
pub fn sync_parent_dir(path: &Path) -> anyhow::Result<()> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .with_context(|| format!("failed to fsync directory {directory:?}"))
}

fn write_synced(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_overwrites_and_cleans_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        replace_file(&path, b"one").expect("first write");
        replace_file(&path, b"two").expect("second write");
        assert_eq!(fs::read(&path).expect("read back"), b"two");
        assert!(!with_suffix(&path, ".tmp").exists(), "temporary file left");
    }

    #[test]
    fn missing_directory_names_path() {
        let error = replace_file(Path::new("/nonexistent/dir/state.json"), b"x")
            .expect_err("directory does not exist");
        assert!(
            format!("{error:#}").contains("/nonexistent/dir/state.json.tmp"),
            "{error:#}"
        );
    }
}
