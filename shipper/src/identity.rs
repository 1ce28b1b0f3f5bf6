//! Telling log files apart across rotations and restarts.
//!
//! A path names different files over time, so a file is identified by its
//! device and inode numbers. File systems reuse inode numbers once a file is
//! deleted, so the identity also carries a fingerprint: a SHA-256 hash of
//! the file's first bytes, up to [`FINGERPRINT_BYTES`]. A file that is
//! shorter than the fingerprint's length, or whose first bytes hash
//! differently, is another file, or the same file truncated and written
//! again.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Max bytes at the start of a file that the fingerprint covers. Access-log
/// lines start with a client address and a timestamp, so the first 1 KiB
/// of two different logs differ in practice.
pub(crate) const FINGERPRINT_BYTES: usize = 1024;

/// Device, inode and fingerprint of one log file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileIdentity {
    /// Device number (`st_dev`) of the file system holding the file.
    pub(crate) device: u64,
    /// Inode number (`st_ino`).
    pub(crate) inode: u64,
    /// Hash of the first bytes.
    pub(crate) fingerprint: Fingerprint,
}

/// SHA-256 of a file's first `bytes` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    /// Number of bytes hashed, at most [`FINGERPRINT_BYTES`].
    pub(crate) bytes: u64,
    /// Lowercase hex SHA-256 of those bytes.
    pub(crate) sha256: String,
}

impl Fingerprint {
    /// Hashes `head`, the first bytes of a file.
    pub(crate) fn of(head: &[u8]) -> Self {
        let digest = Sha256::digest(head);
        let sha256 = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Self {
            bytes: head.len() as u64,
            sha256,
        }
    }

    /// Returns whether the first bytes of `file` hash to this fingerprint.
    /// A file shorter than the fingerprint never matches.
    pub(crate) fn matches(&self, file: &File) -> io::Result<bool> {
        let Some(head) = read_head(file, self.bytes as usize)? else {
            return Ok(false);
        };
        Ok(Self::of(&head) == *self)
    }
}

impl FileIdentity {
    /// Identifies `file`, fingerprinting its first `head_bytes` bytes
    /// (capped at [`FINGERPRINT_BYTES`]) or fewer when it is shorter.
    pub(crate) fn of_file(file: &File, head_bytes: u64) -> io::Result<Self> {
        let metadata = file.metadata()?;
        let wanted = head_bytes.min(FINGERPRINT_BYTES as u64).min(metadata.len());
        let head = read_head(file, wanted as usize)?.unwrap_or_default();
        Ok(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            fingerprint: Fingerprint::of(&head),
        })
    }

    /// Returns whether `metadata` describes the same device and inode.
    pub(crate) fn same_inode(&self, metadata: &std::fs::Metadata) -> bool {
        self.device == metadata.dev() && self.inode == metadata.ino()
    }
}

/// Reads the first `length` bytes of `file` without moving its position.
/// Returns `None` when the file is shorter.
pub(crate) fn read_head(file: &File, length: usize) -> io::Result<Option<Vec<u8>>> {
    let mut head = vec![0; length];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => Ok(Some(head)),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn fingerprint_is_sha256_hex() {
        let fingerprint = Fingerprint::of(b"abc");
        assert_eq!(fingerprint.bytes, 3);
        assert_eq!(
            fingerprint.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn identity_covers_at_most_one_kib() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.log");
        std::fs::write(&path, vec![b'x'; 5000]).expect("write log");
        let file = File::open(&path).expect("open log");
        let identity = FileIdentity::of_file(&file, u64::MAX).expect("identify");
        assert_eq!(identity.fingerprint.bytes, FINGERPRINT_BYTES as u64);
        let metadata = std::fs::metadata(&path).expect("stat");
        assert!(identity.same_inode(&metadata));
    }

    #[test]
    fn fingerprint_matches_grown_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("growing.log");
        let mut writer = File::create(&path).expect("create log");
        writer.write_all(b"first line\n").expect("write");
        let file = File::open(&path).expect("open log");
        let fingerprint = FileIdentity::of_file(&file, u64::MAX)
            .expect("identify")
            .fingerprint;
        assert_eq!(fingerprint.bytes, 11);

        writer.write_all(b"second line\n").expect("write");
        assert!(fingerprint.matches(&file).expect("read head"));
    }

    #[test]
    fn fingerprint_rejects_rewritten_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rewritten.log");
        std::fs::write(&path, b"old content\n").expect("write log");
        let file = File::open(&path).expect("open log");
        let fingerprint = FileIdentity::of_file(&file, u64::MAX)
            .expect("identify")
            .fingerprint;

        std::fs::write(&path, b"new").expect("truncate and write");
        assert!(!fingerprint.matches(&file).expect("shorter file"));
        std::fs::write(&path, b"new content\n").expect("rewrite");
        assert!(!fingerprint.matches(&file).expect("other bytes"));
    }
}
