//! The follower's checkpoint file: where to resume reading, how far alerts were already written, and which
//! files were read to their end. Saved atomically (write a temporary file, fsync, rename, fsync the directory),
//! so a crash leaves either the old or the new checkpoint, never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::identity::FileIdentity;

const VERSION: u32 = 1;

/// A byte offset in one file, with the number of lines before it (so locations stay meaningful after a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPosition {
    pub file: FileIdentity,
    /// Where the file was when saved; informational (files are found again by identity).
    pub path: PathBuf,
    pub offset: u64,
    pub line: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// Reading resumes here: state that is not saved (open sequences) is rebuilt from this point on.
    pub resume: SavedPosition,
    /// Everything up to here was handled (alerts written); lines up to it are re-read only to rebuild state.
    pub handled: SavedPosition,
    /// Files read to their end before `resume`, still present when saved.
    pub finished: Vec<FileIdentity>,
}

impl Checkpoint {
    pub fn new(resume: SavedPosition, handled: SavedPosition, finished: Vec<FileIdentity>) -> Self {
        Checkpoint {
            version: VERSION,
            resume,
            handled,
            finished,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read the checkpoint {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the checkpoint {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot save the checkpoint {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// One checkpoint file.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    path: PathBuf,
}

impl CheckpointStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CheckpointStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved checkpoint; `None` when there is none yet.
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let checkpoint: Checkpoint =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if checkpoint.version != VERSION {
            return Err(corrupt(format!(
                "version {} (this vigil reads version {VERSION})",
                checkpoint.version
            )));
        }
        Ok(Some(checkpoint))
    }

    pub fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        self.write_atomically(checkpoint)
            .map_err(|source| CheckpointError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn write_atomically(&self, checkpoint: &Checkpoint) -> io::Result<()> {
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut file = File::create(&temporary)?;
        serde_json::to_writer(&mut file, checkpoint)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        // The rename is durable only once the directory is.
        let directory = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(directory)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(offset: u64) -> SavedPosition {
        SavedPosition {
            file: FileIdentity::new(1, 2, b"{\"kind\":\"Event\"}"),
            path: "/var/log/audit.log".into(),
            offset,
            line: 3,
        }
    }

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path().join("checkpoint.json"));
        assert_eq!(store.load().unwrap(), None);
        let checkpoint = Checkpoint::new(position(10), position(20), vec![position(0).file]);
        store.save(&checkpoint).unwrap();
        assert_eq!(store.load().unwrap(), Some(checkpoint));
        assert!(
            !dir.path().join("checkpoint.json.tmp").exists(),
            "the temporary file was renamed"
        );
    }

    #[test]
    fn corrupt_files_are_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path().join("checkpoint.json"));
        for contents in [
            &b"{\"version\":1,"[..],
            b"\x00\x01garbage",
            b"{\"version\":7}",
        ] {
            fs::write(store.path(), contents).unwrap();
            assert!(
                matches!(store.load(), Err(CheckpointError::Corrupt { .. })),
                "{contents:?}"
            );
        }
    }
}
