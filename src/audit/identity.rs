//! Which file is which, across renames, compression and restarts: device and inode, plus a fingerprint of the
//! first bytes of the (decompressed) content. The inode alone is not enough (inodes are reused, gzip makes a new
//! inode for old content, copytruncate keeps the inode for new content); the content prefix settles those cases.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

/// How many leading bytes identify a file's content. Audit lines carry a unique auditID within their first
/// ~100 bytes, so this is far more than enough to tell two logs apart.
pub const FINGERPRINT_BYTES: usize = 512;

/// A file's identity as saved in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
    /// FNV-1a of the first `fingerprint_len` content bytes (stable across Rust versions, unlike `DefaultHasher`).
    pub fingerprint: u64,
    pub fingerprint_len: u32,
}

impl FileIdentity {
    pub fn new(device: u64, inode: u64, head: &[u8]) -> Self {
        let head = &head[..head.len().min(FINGERPRINT_BYTES)];
        FileIdentity {
            device,
            inode,
            fingerprint: fnv1a(head),
            fingerprint_len: head.len() as u32,
        }
    }

    /// Whether a file with this device, inode and content prefix is the file this identity was taken of. An
    /// identity taken of an empty file has no content to compare and matches on the inode alone.
    pub fn matches(&self, device: u64, inode: u64, head: &[u8]) -> bool {
        let length = self.fingerprint_len as usize;
        if length == 0 {
            return (device, inode) == (self.device, self.inode);
        }
        head.len() >= length && fnv1a(&head[..length]) == self.fingerprint
    }

    pub fn same_inode(&self, device: u64, inode: u64) -> bool {
        (device, inode) == (self.device, self.inode)
    }
}

/// The first `FINGERPRINT_BYTES` of a plain file, read without moving its cursor.
pub fn read_plain_head(file: &File) -> io::Result<Vec<u8>> {
    let mut head = vec![0; FINGERPRINT_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// The first `FINGERPRINT_BYTES` of a gzip file's content; as much as decodes when the file is cut short (it
/// may still be being compressed).
pub fn read_gzip_head(path: &Path) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
    let decoder = MultiGzDecoder::new(io::BufReader::new(File::open(path)?));
    let mut limited = decoder.take(FINGERPRINT_BYTES as u64);
    let mut chunk = [0u8; FINGERPRINT_BYTES];
    loop {
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if !head.is_empty() => break,
            Err(error) => return Err(error),
        }
    }
    Ok(head)
}

/// Device and inode of an open file or a path's metadata.
pub fn device_inode(metadata: &std::fs::Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_identifies_a_file_whatever_its_inode() {
        let head = b"{\"kind\":\"Event\",\"auditID\":\"a\"}\n".repeat(40);
        let identity = FileIdentity::new(1, 10, &head);
        assert_eq!(identity.fingerprint_len as usize, FINGERPRINT_BYTES);
        assert!(identity.matches(1, 10, &head));
        assert!(
            identity.matches(1, 99, &head),
            "a gzip or copy of the same content"
        );
        let mut other = head.clone();
        other[3] = b'X';
        assert!(!identity.matches(1, 10, &other), "same inode, new content");
        assert!(!identity.matches(1, 10, &head[..100]), "too short to tell");
    }

    #[test]
    fn empty_files_are_known_by_inode() {
        let identity = FileIdentity::new(1, 10, b"");
        assert!(identity.matches(1, 10, b"anything"));
        assert!(!identity.matches(1, 11, b""));
    }
}
