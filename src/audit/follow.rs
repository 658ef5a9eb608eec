//! Following an audit log on disk like `tail -F`, across rotations, without losing or repeating a line.
//!
//! ```text
//! Follower::open(FollowConfig, Arc<IngestCounters>) -> Result<Follower, FollowError>
//! follower.next_batch(timeout) -> Result<Batch, FollowError>   blocks at most `timeout`; may return an empty batch
//! batch.lines() -> (&FollowedLine, &[u8])                      complete lines, without their newline, in file order
//! FollowedLine { start, end: Position, replayed }              `replayed`: already handled before a restart
//! batch.gaps                                                   losses found while reading (also counted and logged)
//! batch.end() -> Option<Position>                              where reading stood after the batch
//! follower.commit(resume, handled)                             saves the checkpoint (no-op without --checkpoint)
//! follower.file_path(FileKey) -> Option<&Path>
//! ```
//!
//! The consumer calls `commit` only after it has handled (written the alerts of) every line up to `handled`;
//! `resume` is where a restart reads again from, to rebuild state it does not save (open sequences): equal to
//! `handled` for a stateless consumer, earlier otherwise. After a restart, lines up to `handled` come back marked
//! `replayed`, so their alerts are not written twice. Blocking I/O on the calling thread: async callers run it
//! in `spawn_blocking` or a thread feeding a channel.
//!
//! How files are followed: every file of the log (the active file and its backups, plain or gzip) is known by its
//! identity (`identity`: device, inode and the first bytes of its content) and read once, in order of
//! modification. The current file is read to its end before the next one is started, and it is left only when a
//! newer file has data (the writer moved on) or it was deleted — and then read once more to its end. Files are
//! opened when first seen, so a backup deleted before its turn is still read. A gzip or copy of a file already
//! known is recognised by its content and skipped. A line is handed on only once its newline is written (the last
//! line of a finished file excepted); lines longer than `max_line_bytes` are skipped and reported as gaps.
//! Changes are noticed through inotify (`notify`), with a directory poll every `poll_interval` as a fallback.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime};

use flate2::read::MultiGzDecoder;
use notify::Watcher;

use super::checkpoint::{Checkpoint, CheckpointError, CheckpointStore, SavedPosition};
use super::counters::{GapKind, IngestCounters};
use super::identity::{FINGERPRINT_BYTES, FileIdentity, read_gzip_head, read_plain_head};

/// Where to start when there is no (usable) checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Every line of every file of the log.
    Beginning,
    /// Only lines written from now on.
    End,
}

#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The audit log file, or a directory holding the log and its backups.
    pub path: PathBuf,
    /// File names to follow when `path` is a directory.
    pub glob: String,
    pub start_at: StartAt,
    pub checkpoint: Option<PathBuf>,
    /// Longer lines are skipped and reported.
    pub max_line_bytes: usize,
    /// How often the directory is listed even without change notifications.
    pub poll_interval: Duration,
    /// Wait for inotify change notifications (where the filesystem has them), not only for `poll_interval`.
    pub notifications: bool,
}

impl FollowConfig {
    pub const DEFAULT_GLOB: &str = "audit*.log*";

    pub fn new(path: impl Into<PathBuf>) -> Self {
        FollowConfig {
            path: path.into(),
            glob: Self::DEFAULT_GLOB.to_string(),
            start_at: StartAt::End,
            checkpoint: None,
            max_line_bytes: 8 * 1024 * 1024,
            // Also the fallback's latency: a new line is seen within this even without notifications.
            poll_interval: Duration::from_millis(100),
            notifications: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// One file (one generation of it, when copytruncate replaces its content) for as long as it is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey(u64);

/// A place in the log: a byte offset in a file and the number of lines before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub file: FileKey,
    pub offset: u64,
    pub line: u64,
}

#[derive(Debug, Clone)]
pub struct FollowedLine {
    bytes: Range<usize>,
    /// Where the line starts, and where it ends (after its newline).
    pub start: Position,
    pub end: Position,
    /// Handled before the last restart: feed it to rebuild state, but do not alert on it again.
    pub replayed: bool,
}

/// Events that could not be read: `bytes` of `path` from `offset` on (`None`: an unknown amount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub kind: GapKind,
    pub path: PathBuf,
    pub offset: u64,
    pub bytes: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    lines: Vec<FollowedLine>,
    pub gaps: Vec<Gap>,
    end: Option<Position>,
}

/// A batch is handed on once it holds this much.
const BATCH_BYTES: usize = 1024 * 1024;
const BATCH_LINES: usize = 4096;
const READ_CHUNK: usize = 256 * 1024;

impl Batch {
    pub fn lines(&self) -> impl ExactSizeIterator<Item = (&FollowedLine, &[u8])> {
        self.lines
            .iter()
            .map(|line| (line, &self.data[line.bytes.clone()]))
    }

    /// Neither lines nor gaps.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.gaps.is_empty()
    }

    /// Where reading stood after this batch (past skipped lines too); `None` when nothing was read.
    pub fn end(&self) -> Option<Position> {
        self.end
    }

    fn is_full(&self) -> bool {
        self.data.len() >= BATCH_BYTES || self.lines.len() >= BATCH_LINES
    }

    fn gap(&mut self, counters: &IngestCounters, gap: Gap) {
        counters.gap(gap.kind, &gap.path, gap.offset, gap.bytes);
        self.gaps.push(gap);
    }
}

enum Source {
    Plain(File),
    Gzip(Box<MultiGzDecoder<io::BufReader<File>>>),
    /// A gzip backup that failed to decompress: nothing more to read.
    Broken,
}

impl Source {
    /// Opens a listed file, if it still is the file listed (not replaced by a rotation in between).
    fn open_listed(candidate: &Candidate) -> io::Result<Source> {
        let file = File::open(&candidate.path)?;
        let metadata = file.metadata()?;
        if (metadata.dev(), metadata.ino()) != (candidate.device, candidate.inode) {
            return Err(io::Error::other("replaced since it was listed"));
        }
        Ok(Source::from_file(file, candidate.compressed))
    }

    fn from_file(file: File, compressed: bool) -> Source {
        if compressed {
            Source::Gzip(Box::new(MultiGzDecoder::new(io::BufReader::new(file))))
        } else {
            Source::Plain(file)
        }
    }

    /// Moves to `offset` of the (decompressed) content.
    fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        match self {
            Source::Plain(file) => file.seek(SeekFrom::Start(offset)).map(drop),
            Source::Gzip(decoder) => {
                let skipped = io::copy(&mut decoder.by_ref().take(offset), &mut io::sink())?;
                if skipped < offset {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the compressed file is shorter than the checkpoint offset",
                    ));
                }
                Ok(())
            }
            Source::Broken => Ok(()),
        }
    }
}

impl Read for Source {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(file) => file.read(buffer),
            Source::Gzip(decoder) => decoder.read(buffer),
            Source::Broken => Ok(0),
        }
    }
}

struct TrackedFile {
    path: PathBuf,
    device: u64,
    inode: u64,
    /// Its content will not change: a gzip backup, or the copy copytruncate made.
    fixed_content: bool,
    compressed: bool,
    /// The first `FINGERPRINT_BYTES` of its content, as far as known.
    head: Vec<u8>,
    /// Its inode now holds other content (it was truncated): never matched by inode again.
    replaced: bool,
    /// Opened when first seen; taken by the reader.
    source: Option<Source>,
    size: u64,
    modified: SystemTime,
    /// Present in the latest directory listing.
    seen: bool,
    done: bool,
}

impl TrackedFile {
    fn identity(&self) -> FileIdentity {
        FileIdentity::new(self.device, self.inode, &self.head)
    }
}

struct Reader {
    key: FileKey,
    source: Source,
    /// The end of the last complete line.
    offset: u64,
    line: u64,
    /// The line being read (no newline yet).
    partial: Vec<u8>,
    /// Bytes of an oversized line skipped so far; its content is not kept.
    oversized: Option<u64>,
}

impl Reader {
    fn position(&self) -> Position {
        Position {
            file: self.key,
            offset: self.offset,
            line: self.line,
        }
    }

    /// Bytes read past the last complete line.
    fn unfinished_len(&self) -> u64 {
        self.oversized.unwrap_or(self.partial.len() as u64)
    }
}

/// What a line is handed to, besides the batch.
struct Sink<'a> {
    batch: &'a mut Batch,
    counters: &'a IngestCounters,
    path: &'a Path,
    max_line_bytes: usize,
    replay_until: &'a mut Option<Position>,
}

impl Sink<'_> {
    fn line(&mut self, parts: [&[u8]; 2], start: Position, end: Position) {
        let replayed = match *self.replay_until {
            Some(until) if until.file == end.file => {
                if end.offset >= until.offset {
                    *self.replay_until = None;
                }
                end.offset <= until.offset
            }
            Some(_) => true,
            None => false,
        };
        let from = self.batch.data.len();
        for part in parts {
            self.batch.data.extend_from_slice(part);
        }
        let bytes = from..self.batch.data.len();
        self.batch.lines.push(FollowedLine {
            bytes,
            start,
            end,
            replayed,
        });
    }

    fn oversized(&mut self, start: Position, length: u64) {
        self.batch.gap(
            self.counters,
            Gap {
                kind: GapKind::OversizedLine,
                path: self.path.to_path_buf(),
                offset: start.offset,
                bytes: Some(length),
            },
        );
    }
}

impl Reader {
    /// Splits `bytes` (what follows everything read so far) into lines.
    fn consume(&mut self, mut bytes: &[u8], sink: &mut Sink<'_>) {
        while let Some(newline) = memchr::memchr(b'\n', bytes) {
            let piece = &bytes[..newline];
            let length = self.unfinished_len() + newline as u64;
            let start = self.position();
            self.offset += length + 1;
            self.line += 1;
            let end = self.position();
            if self.oversized.is_some() || length > sink.max_line_bytes as u64 {
                sink.oversized(start, length);
            } else {
                sink.line([&self.partial, piece], start, end);
            }
            self.partial.clear();
            self.oversized = None;
            bytes = &bytes[newline + 1..];
        }
        if let Some(skipped) = &mut self.oversized {
            *skipped += bytes.len() as u64;
        } else if self.partial.len() + bytes.len() > sink.max_line_bytes {
            self.oversized = Some((self.partial.len() + bytes.len()) as u64);
            self.partial = Vec::new();
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// The file is finished: a last line without a newline is complete after all.
    fn finish(&mut self, sink: &mut Sink<'_>) {
        let length = self.unfinished_len();
        if length == 0 {
            return;
        }
        let start = self.position();
        self.offset += length;
        self.line += 1;
        if self.oversized.is_some() {
            sink.oversized(start, length);
        } else {
            let partial = std::mem::take(&mut self.partial);
            sink.line([&partial, &[]], start, self.position());
        }
        self.oversized = None;
    }
}

/// A file of the log as listed.
struct Candidate {
    path: PathBuf,
    device: u64,
    inode: u64,
    size: u64,
    modified: SystemTime,
    compressed: bool,
}

impl Candidate {
    fn head(&self) -> io::Result<Vec<u8>> {
        if self.compressed {
            read_gzip_head(&self.path)
        } else {
            read_plain_head(&File::open(&self.path)?)
        }
    }
}

/// How a newly listed file relates to the files already known.
enum Kinship {
    /// Its content is that of a known file (a gzip or a copy of it).
    Known(FileKey),
    /// Too little is written yet to tell.
    Undecided,
    New,
}

pub struct Follower {
    config: FollowConfig,
    directory: PathBuf,
    pattern: String,
    /// The configured file, in file mode.
    active: Option<PathBuf>,
    counters: Arc<IngestCounters>,
    store: Option<CheckpointStore>,
    files: BTreeMap<FileKey, TrackedFile>,
    next_key: u64,
    /// Files in the order they are read, the current one last.
    order: Vec<FileKey>,
    pending: VecDeque<FileKey>,
    current: Option<Reader>,
    /// Device and inode of files whose content is a tracked file's (a gzip or copy of it), and which file.
    aliases: HashMap<(u64, u64), FileKey>,
    /// The current file will not grow any more: once read to its end, move on.
    current_complete: bool,
    replay_until: Option<Position>,
    /// Gaps found before the first batch.
    opening_gaps: Vec<Gap>,
    last_listing: Option<Instant>,
    wakeups: Option<(notify::RecommendedWatcher, Receiver<()>)>,
    chunk: Vec<u8>,
}

impl Follower {
    pub fn open(
        config: FollowConfig,
        counters: Arc<IngestCounters>,
    ) -> Result<Follower, FollowError> {
        let (directory, pattern, active) = layout(&config.path, &config.glob);
        if !directory.is_dir() {
            return Err(FollowError::Io {
                path: directory,
                source: io::Error::new(io::ErrorKind::NotFound, "no such directory"),
            });
        }
        let wakeups = if config.notifications {
            watch(&directory)
        } else {
            None
        };
        let store = config.checkpoint.clone().map(CheckpointStore::new);
        let checkpoint = match store.as_ref().map(CheckpointStore::load).transpose() {
            Ok(checkpoint) => checkpoint.flatten(),
            Err(error) => {
                counters.corrupt_checkpoint();
                tracing::warn!(
                    "{error}; starting at the {} instead",
                    match config.start_at {
                        StartAt::Beginning => "beginning",
                        StartAt::End => "end",
                    }
                );
                None
            }
        };
        let mut follower = Follower {
            config,
            directory,
            pattern,
            active,
            counters,
            store,
            files: BTreeMap::new(),
            next_key: 0,
            order: Vec::new(),
            pending: VecDeque::new(),
            current: None,
            aliases: HashMap::new(),
            current_complete: false,
            replay_until: None,
            opening_gaps: Vec::new(),
            last_listing: None,
            wakeups,
            chunk: vec![0; READ_CHUNK],
        };
        let listed = follower
            .list()?
            .into_iter()
            .filter_map(|candidate| candidate.head().ok().map(|head| (candidate, head)))
            .collect();
        match checkpoint {
            Some(checkpoint) => follower.resume(&checkpoint, listed)?,
            None => follower.start_fresh(listed)?,
        }
        follower.last_listing = Some(Instant::now());
        Ok(follower)
    }

    /// The next lines (and gaps), waiting at most `timeout` for some to be written.
    pub fn next_batch(&mut self, timeout: Duration) -> Result<Batch, FollowError> {
        let deadline = Instant::now() + timeout;
        let mut batch = Batch::default();
        for gap in self.opening_gaps.drain(..) {
            batch.gaps.push(gap);
        }
        loop {
            self.check_truncation(&mut batch)?;
            if !self.read_current(&mut batch)? {
                return Ok(batch);
            }
            if self.current.is_some() && self.current_complete {
                self.finish_current(&mut batch);
                continue;
            }
            if self.current.is_none() && self.start_next(&mut batch)? {
                continue;
            }
            let listing_due = self
                .last_listing
                .is_none_or(|at| at.elapsed() >= self.config.poll_interval);
            if !batch.is_empty() && !listing_due {
                return Ok(batch);
            }
            self.refresh(&mut batch)?;
            if self.current_complete || (self.current.is_none() && !self.pending.is_empty()) {
                continue;
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(batch);
            }
            self.wait((deadline - now).min(self.config.poll_interval));
        }
    }

    /// Saves the checkpoint: a restart reads again from `resume`, and treats lines up to `handled` as handled.
    pub fn commit(&mut self, resume: Position, handled: Position) -> Result<(), FollowError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let saved = |position: Position| {
            self.files.get(&position.file).map(|file| SavedPosition {
                file: file.identity(),
                path: file.path.clone(),
                offset: position.offset,
                line: position.line,
            })
        };
        let (Some(resume_at), Some(handled_at)) = (saved(resume), saved(handled)) else {
            // The file was forgotten (deleted and read to its end); the previous checkpoint stays.
            return Ok(());
        };
        let finished = self
            .order
            .iter()
            .take_while(|key| **key != resume.file)
            .filter_map(|key| self.files.get(key))
            .filter(|file| file.seen && !file.replaced)
            .map(TrackedFile::identity)
            .collect();
        store.save(&Checkpoint::new(resume_at, handled_at, finished))?;
        Ok(())
    }

    pub fn file_path(&self, key: FileKey) -> Option<&Path> {
        self.files.get(&key).map(|file| file.path.as_path())
    }

    pub fn counters(&self) -> &Arc<IngestCounters> {
        &self.counters
    }

    fn wait(&mut self, duration: Duration) {
        match &self.wakeups {
            Some((_, wakeups)) => {
                if wakeups.recv_timeout(duration).is_ok() {
                    while wakeups.try_recv().is_ok() {}
                }
            }
            None => std::thread::sleep(duration),
        }
    }

    /// Reads the current file until the batch is full (false) or the file's end (true).
    fn read_current(&mut self, batch: &mut Batch) -> Result<bool, FollowError> {
        let Follower {
            current,
            files,
            chunk,
            config,
            counters,
            replay_until,
            ..
        } = self;
        let Some(reader) = current else {
            return Ok(true);
        };
        let Some(file) = files.get_mut(&reader.key) else {
            return Ok(true);
        };
        let mut sink = Sink {
            batch,
            counters,
            path: &file.path,
            max_line_bytes: config.max_line_bytes,
            replay_until,
        };
        let at_end = loop {
            if sink.batch.is_full() {
                break false;
            }
            let read = match reader.source.read(chunk) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if file.compressed => {
                    let offset = reader.offset + reader.unfinished_len();
                    tracing::warn!(path = %file.path.display(), "cannot decompress: {error}");
                    sink.batch.gap(
                        counters,
                        Gap {
                            kind: GapKind::CorruptBackup,
                            path: file.path.clone(),
                            offset,
                            bytes: None,
                        },
                    );
                    reader.source = Source::Broken;
                    reader.partial.clear();
                    reader.oversized = None;
                    break true;
                }
                Err(source) => {
                    return Err(FollowError::Io {
                        path: file.path.clone(),
                        source,
                    });
                }
            };
            if read == 0 {
                break true;
            }
            let bytes = &chunk[..read];
            let consumed = reader.offset + reader.unfinished_len();
            if file.head.len() < FINGERPRINT_BYTES && consumed == file.head.len() as u64 {
                let wanted = (FINGERPRINT_BYTES - file.head.len()).min(read);
                file.head.extend_from_slice(&bytes[..wanted]);
            }
            reader.consume(bytes, &mut sink);
        };
        sink.batch.end = Some(reader.position());
        Ok(at_end)
    }

    /// Moves on from a file that will not grow: hands on its last line, and starts the next file.
    fn finish_current(&mut self, batch: &mut Batch) {
        self.current_complete = false;
        let Some(mut reader) = self.current.take() else {
            return;
        };
        if let Some(file) = self.files.get_mut(&reader.key) {
            let mut sink = Sink {
                batch,
                counters: &self.counters,
                path: &file.path,
                max_line_bytes: self.config.max_line_bytes,
                replay_until: &mut self.replay_until,
            };
            reader.finish(&mut sink);
            file.done = true;
            batch.end = Some(reader.position());
        }
        if self
            .replay_until
            .is_some_and(|until| until.file == reader.key)
        {
            self.replay_until = None;
        }
    }

    /// Starts reading the oldest pending file; false when there is none.
    fn start_next(&mut self, batch: &mut Batch) -> Result<bool, FollowError> {
        while let Some(key) = self.pending.pop_front() {
            let Some(file) = self.files.get_mut(&key) else {
                continue;
            };
            let Some(source) = file.source.take() else {
                continue;
            };
            self.order.push(key);
            let reader = Reader {
                key,
                source,
                offset: 0,
                line: 0,
                partial: Vec::new(),
                oversized: None,
            };
            batch.end = Some(reader.position());
            self.current_complete = file.fixed_content;
            self.current = Some(reader);
            return Ok(true);
        }
        Ok(false)
    }

    /// Lists the log's files, takes in new ones, forgets deleted ones, and decides whether the current file is
    /// complete (a newer file has data, or it was deleted).
    fn refresh(&mut self, batch: &mut Batch) -> Result<(), FollowError> {
        self.last_listing = Some(Instant::now());
        let listed = self.list()?;
        for file in self.files.values_mut() {
            file.seen = false;
        }
        let mut aliases_seen = HashMap::new();
        for candidate in listed {
            let inode = (candidate.device, candidate.inode);
            if let Some(key) = self.key_by_inode(inode) {
                if self.same_content(key, &candidate) {
                    if let Some(file) = self.files.get_mut(&key) {
                        file.seen = true;
                        file.path = candidate.path;
                        file.size = candidate.size;
                        file.modified = candidate.modified;
                    }
                    continue;
                }
                // The inode was reused for other content: the file we knew is gone.
                if let Some(file) = self.files.get_mut(&key) {
                    file.replaced = true;
                }
            }
            if let Some(&original) = self.aliases.get(&inode) {
                // The original stays known while a gzip of it exists, so that a restart skips the gzip too.
                aliases_seen.insert(inode, original);
                if let Some(file) = self.files.get_mut(&original) {
                    file.seen = true;
                }
                continue;
            }
            let Ok(head) = candidate.head() else {
                continue; // deleted since listed
            };
            match self.kinship(&head) {
                Kinship::Known(original) => {
                    aliases_seen.insert(inode, original);
                    if let Some(file) = self.files.get_mut(&original) {
                        file.seen = true;
                    }
                }
                Kinship::Undecided => {}
                Kinship::New => self.track_pending(candidate, head),
            }
        }
        self.aliases = aliases_seen;
        self.forget_deleted();
        self.sort_pending();
        self.check_complete();
        self.check_truncation(batch)
    }

    fn key_by_inode(&self, inode: (u64, u64)) -> Option<FileKey> {
        self.files
            .iter()
            .find(|(_, file)| !file.replaced && (file.device, file.inode) == inode)
            .map(|(key, _)| *key)
    }

    /// Whether a listed file still holds the content of the tracked file with its inode (finished files are
    /// closed, so their inode may have been reused).
    fn same_content(&self, key: FileKey, candidate: &Candidate) -> bool {
        let Some(file) = self.files.get(&key) else {
            return false;
        };
        if !file.done || (file.size, file.modified) == (candidate.size, candidate.modified) {
            return true;
        }
        // A finished file does not change: other content means the inode was reused.
        candidate
            .head()
            .is_ok_and(|head| head.starts_with(&file.head))
    }

    fn kinship(&self, head: &[u8]) -> Kinship {
        let mut undecided = false;
        for (key, file) in &self.files {
            let common = head.len().min(file.head.len());
            if common == 0 || head[..common] != file.head[..common] {
                continue;
            }
            // Audit lines are unique (auditID, timestamps): a shared complete line, or a full fingerprint, means
            // the same content; a shared beginning of a first line means nothing yet.
            if common == FINGERPRINT_BYTES || memchr::memchr(b'\n', &head[..common]).is_some() {
                return Kinship::Known(*key);
            }
            undecided = true;
        }
        if undecided {
            Kinship::Undecided
        } else {
            Kinship::New
        }
    }

    fn add_file(&mut self, candidate: Candidate, head: Vec<u8>, source: Option<Source>) -> FileKey {
        let key = FileKey(self.next_key);
        self.next_key += 1;
        self.files.insert(
            key,
            TrackedFile {
                fixed_content: candidate.compressed,
                compressed: candidate.compressed,
                path: candidate.path,
                device: candidate.device,
                inode: candidate.inode,
                head,
                replaced: false,
                source,
                size: candidate.size,
                modified: candidate.modified,
                seen: true,
                done: false,
            },
        );
        key
    }

    fn track_pending(&mut self, candidate: Candidate, head: Vec<u8>) {
        // Opened now, so that it can be read even if it is deleted before its turn.
        let Ok(source) = Source::open_listed(&candidate) else {
            return; // gone or replaced since listed: the next listing sees what is there
        };
        let key = self.add_file(candidate, head, Some(source));
        self.pending.push_back(key);
    }

    fn track_done(&mut self, candidate: Candidate, head: Vec<u8>) {
        let key = self.add_file(candidate, head, None);
        if let Some(file) = self.files.get_mut(&key) {
            file.done = true;
        }
        self.order.push(key);
    }

    /// Forgets finished files that are gone; unfinished ones stay (they are open, so still readable).
    fn forget_deleted(&mut self) {
        let current = self.current.as_ref().map(|reader| reader.key);
        let forgotten: HashSet<FileKey> = self
            .files
            .iter()
            .filter(|(key, file)| file.done && !file.seen && Some(**key) != current)
            .map(|(key, _)| *key)
            .collect();
        if forgotten.is_empty() {
            return;
        }
        self.files.retain(|key, _| !forgotten.contains(key));
        self.order.retain(|key| !forgotten.contains(key));
    }

    /// Oldest first; on equal times the configured file last, then by name.
    fn sort_pending(&mut self) {
        let files = &self.files;
        let active = self.active.as_deref();
        let mut keys: Vec<FileKey> = self.pending.drain(..).collect();
        keys.sort_by_key(|key| {
            files.get(key).map(|file| {
                (
                    file.modified,
                    Some(file.path.as_path()) == active,
                    file.path.clone(),
                )
            })
        });
        self.pending = keys.into();
    }

    /// The current file is complete when the writer moved on: a pending file was written since the current file's
    /// last write, or the current file was deleted.
    fn check_complete(&mut self) {
        let Some(Reader {
            source: Source::Plain(handle),
            ..
        }) = &self.current
        else {
            return;
        };
        let Ok(metadata) = handle.metadata() else {
            return;
        };
        // Pending files older than the current one (a backlog found at a restart) do not mean the writer moved on.
        let last_write = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let written_since = self
            .pending
            .iter()
            .filter_map(|key| self.files.get(key))
            .any(|file| file.modified >= last_write);
        if written_since || metadata.nlink() == 0 {
            self.current_complete = true;
        }
    }

    /// Notices copytruncate: the current file became shorter than what was read, or its beginning changed. Reading
    /// goes on in the copy when one is found, else from the start of the new content, with a gap reported.
    fn check_truncation(&mut self, batch: &mut Batch) -> Result<(), FollowError> {
        let Some(reader) = &self.current else {
            return Ok(());
        };
        let Source::Plain(handle) = &reader.source else {
            return Ok(());
        };
        let Some(file) = self.files.get(&reader.key) else {
            return Ok(());
        };
        if file.fixed_content {
            return Ok(());
        }
        let io_error = |source| FollowError::Io {
            path: file.path.clone(),
            source,
        };
        let size = handle.metadata().map_err(io_error)?.len();
        let consumed = reader.offset + reader.unfinished_len();
        let shorter = size < consumed;
        let rewritten = !shorter && {
            let head = read_plain_head(handle).map_err(io_error)?;
            let common = head.len().min(file.head.len());
            head[..common] != file.head[..common]
        };
        if !shorter && !rewritten {
            return Ok(());
        }
        self.on_truncated(batch)
    }

    fn on_truncated(&mut self, batch: &mut Batch) -> Result<(), FollowError> {
        let Some(mut reader) = self.current.take() else {
            return Ok(());
        };
        let Some(file) = self.files.get_mut(&reader.key) else {
            return Ok(());
        };
        file.replaced = true;
        file.done = true;
        let original = Candidate {
            path: file.path.clone(),
            device: file.device,
            inode: file.inode,
            size: 0,
            modified: file.modified,
            compressed: false,
        };
        let known_head = file.head.clone();
        let seen_size = file.size.max(reader.offset + reader.unfinished_len());
        let copy = self.list()?.into_iter().find_map(|candidate| {
            if (candidate.device, candidate.inode) == (original.device, original.inode)
                || candidate.compressed
                || candidate.size < reader.offset
            {
                return None;
            }
            let head = candidate.head().ok()?;
            (!known_head.is_empty() && head.starts_with(&known_head)).then_some((candidate, head))
        });
        // The new content of the truncated file, read from its start: the same inode even if the path has been
        // replaced meanwhile.
        let reopened = match &reader.source {
            Source::Plain(handle) => handle.try_clone(),
            _ => File::open(&original.path),
        };
        let mut new_content = Source::Plain(reopened.map_err(|source| FollowError::Io {
            path: original.path.clone(),
            source,
        })?);
        new_content.skip_to(0).map_err(|source| FollowError::Io {
            path: original.path.clone(),
            source,
        })?;
        let new_head = match &new_content {
            Source::Plain(handle) => read_plain_head(handle).unwrap_or_default(),
            _ => Vec::new(),
        };
        let original_path = original.path.clone();
        let new_key = self.add_file(original, new_head, Some(new_content));
        reader.partial.clear();
        reader.oversized = None;
        match copy {
            Some((copy, head)) => {
                let copy_size = copy.size;
                let mut source = Source::open_listed(&copy).map_err(|source| FollowError::Io {
                    path: copy.path.clone(),
                    source,
                })?;
                source
                    .skip_to(reader.offset)
                    .map_err(|source| FollowError::Io {
                        path: copy.path.clone(),
                        source,
                    })?;
                if seen_size > copy_size {
                    batch.gap(
                        &self.counters,
                        Gap {
                            kind: GapKind::Truncated,
                            path: original_path,
                            offset: copy_size,
                            bytes: Some(seen_size - copy_size),
                        },
                    );
                }
                let copy_key = self.add_file(copy, head, None);
                if let Some(copy_file) = self.files.get_mut(&copy_key) {
                    copy_file.fixed_content = true;
                }
                self.order.push(copy_key);
                reader.key = copy_key;
                reader.source = source;
                self.current = Some(reader);
                self.current_complete = true;
                self.pending.push_front(new_key);
            }
            None => {
                batch.gap(
                    &self.counters,
                    Gap {
                        kind: GapKind::Truncated,
                        path: original_path,
                        offset: reader.offset,
                        bytes: None,
                    },
                );
                self.pending.push_front(new_key);
                self.current_complete = false;
                self.start_next(batch)?;
            }
        }
        Ok(())
    }

    /// Restores the reading position from a checkpoint; files listed are the current one, finished, or new.
    fn resume(
        &mut self,
        checkpoint: &Checkpoint,
        listed: Vec<(Candidate, Vec<u8>)>,
    ) -> Result<(), FollowError> {
        let resume = &checkpoint.resume;
        let holds_resume = |candidate: &Candidate, head: &[u8]| {
            resume.file.matches(candidate.device, candidate.inode, head)
                && (candidate.compressed || candidate.size >= resume.offset)
        };
        // Prefer the same inode, then the plain file over a gzip of it.
        let resume_index = listed
            .iter()
            .enumerate()
            .filter(|(_, (candidate, head))| holds_resume(candidate, head))
            .min_by_key(|(_, (candidate, _))| {
                (
                    !resume.file.same_inode(candidate.device, candidate.inode),
                    candidate.compressed,
                )
            })
            .map(|(index, _)| index);
        if resume_index.is_none() {
            let truncated = listed.iter().any(|(candidate, _)| {
                resume.file.same_inode(candidate.device, candidate.inode) && !candidate.compressed
            });
            self.opening_gaps.push(Gap {
                kind: if truncated {
                    GapKind::Truncated
                } else {
                    GapKind::DeletedUnread
                },
                path: resume.path.clone(),
                offset: resume.offset,
                bytes: None,
            });
            tracing::warn!(
                path = %resume.path.display(),
                "the checkpointed file is no longer there as it was; reading the files found"
            );
        }
        let mut listed: Vec<(usize, Candidate, Vec<u8>)> = listed
            .into_iter()
            .enumerate()
            .map(|(index, (candidate, head))| (index, candidate, head))
            .collect();
        listed.sort_by_key(|(_, candidate, _)| (candidate.modified, candidate.path.clone()));
        let mut handled_key = None;
        // The resume file first, so that a gzip or copy of it listed earlier is recognised as one.
        if let Some(position) = resume_index.and_then(|resume_index| {
            listed
                .iter()
                .position(|(index, _, _)| *index == resume_index)
        }) {
            let (_, candidate, head) = listed.remove(position);
            let key = self.start_at(candidate, head, resume.offset, resume.line)?;
            if checkpoint.handled.file == resume.file {
                handled_key = Some(key);
            }
        }
        for (_, candidate, head) in listed {
            let finished = checkpoint
                .finished
                .iter()
                .any(|identity| identity.matches(candidate.device, candidate.inode, &head));
            if finished {
                self.track_done(candidate, head);
                continue;
            }
            if let Kinship::Known(original) = self.kinship(&head) {
                // A gzip or copy of a file taken in already.
                self.aliases
                    .insert((candidate.device, candidate.inode), original);
                continue;
            }
            let is_handled =
                checkpoint
                    .handled
                    .file
                    .matches(candidate.device, candidate.inode, &head);
            self.track_pending(candidate, head);
            if is_handled && handled_key.is_none() {
                handled_key = self.pending.back().copied();
            }
        }
        // Files finished before the resume file come before it in reading order (`commit` saves those).
        if let Some(reader) = &self.current {
            let resume_key = reader.key;
            self.order.retain(|key| *key != resume_key);
            self.order.push(resume_key);
        }
        self.sort_pending();
        for gap in &self.opening_gaps {
            self.counters
                .gap(gap.kind, &gap.path, gap.offset, gap.bytes);
        }
        self.replay_until = handled_key
            .map(|file| Position {
                file,
                offset: checkpoint.handled.offset,
                line: checkpoint.handled.line,
            })
            .filter(|until| Some(*until) != self.current.as_ref().map(Reader::position));
        Ok(())
    }

    /// Without a checkpoint: everything listed is read (`Beginning`), or all is skipped but new lines of the
    /// newest file (`End`).
    fn start_fresh(&mut self, mut listed: Vec<(Candidate, Vec<u8>)>) -> Result<(), FollowError> {
        listed.sort_by_key(|(candidate, _)| {
            (
                candidate.modified,
                Some(candidate.path.as_path()) == self.active.as_deref(),
                candidate.path.clone(),
            )
        });
        match self.config.start_at {
            StartAt::Beginning => {
                for (candidate, head) in listed {
                    if let Kinship::Known(original) = self.kinship(&head) {
                        self.aliases
                            .insert((candidate.device, candidate.inode), original);
                    } else {
                        self.track_pending(candidate, head);
                    }
                }
            }
            StartAt::End => {
                let newest = match &self.active {
                    Some(active) => listed.iter().position(|(c, _)| &c.path == active),
                    None => listed.iter().rposition(|(c, _)| !c.compressed),
                };
                for (index, (candidate, head)) in listed.into_iter().enumerate() {
                    if Some(index) == newest {
                        let (offset, line) =
                            last_line_end(&candidate.path).map_err(|source| FollowError::Io {
                                path: candidate.path.clone(),
                                source,
                            })?;
                        self.start_at(candidate, head, offset, line)?;
                    } else {
                        self.track_done(candidate, head);
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes `candidate` the current file, read from `offset`.
    fn start_at(
        &mut self,
        candidate: Candidate,
        head: Vec<u8>,
        offset: u64,
        line: u64,
    ) -> Result<FileKey, FollowError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FollowError::Io { path, source }
        };
        let mut source = Source::open_listed(&candidate).map_err(io_error(&candidate.path))?;
        source.skip_to(offset).map_err(io_error(&candidate.path))?;
        let fixed_content = candidate.compressed;
        let key = self.add_file(candidate, head, None);
        self.order.push(key);
        self.current = Some(Reader {
            key,
            source,
            offset,
            line,
            partial: Vec::new(),
            oversized: None,
        });
        self.current_complete = fixed_content;
        Ok(key)
    }

    /// The log's files in the directory, without empty ones (nothing to read yet, and a copy being made starts
    /// empty) and without the checkpoint.
    fn list(&self) -> Result<Vec<Candidate>, FollowError> {
        let entries = fs::read_dir(&self.directory).map_err(|source| FollowError::Io {
            path: self.directory.clone(),
            source,
        })?;
        let mut listed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if !glob_matches(&self.pattern, name) {
                continue;
            }
            let path = entry.path();
            if self
                .config
                .checkpoint
                .as_deref()
                .is_some_and(|checkpoint| is_checkpoint_file(checkpoint, &path))
            {
                continue;
            }
            let Ok(metadata) = fs::metadata(&path) else {
                continue;
            };
            if !metadata.is_file() || metadata.len() == 0 {
                continue;
            }
            listed.push(Candidate {
                compressed: name.ends_with(".gz"),
                device: metadata.dev(),
                inode: metadata.ino(),
                size: metadata.len(),
                modified: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path,
            });
        }
        Ok(listed)
    }
}

fn is_checkpoint_file(checkpoint: &Path, path: &Path) -> bool {
    let mut temporary = checkpoint.as_os_str().to_owned();
    temporary.push(".tmp");
    path == checkpoint || path.as_os_str() == temporary
}

/// The directory to list, the file-name pattern, and the configured file (file mode). In file mode the pattern
/// covers the file's backups as lumberjack (`audit-<time>.log[.gz]`) and logrotate (`audit.log.1[.gz]`) name them.
fn layout(path: &Path, glob: &str) -> (PathBuf, String, Option<PathBuf>) {
    if path.is_dir() {
        return (path.to_path_buf(), glob.to_string(), None);
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let pattern = match name.split_once('.') {
        Some((stem, rest)) => format!("{stem}*.{rest}*"),
        None => format!("{name}*"),
    };
    (directory, pattern, Some(path.to_path_buf()))
}

/// `*` matches any run of characters, `?` one character.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    n = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The end of the file's last complete line and the number of lines before it: where `--start-at end` begins,
/// so that a line being written is read whole.
fn last_line_end(path: &Path) -> io::Result<(u64, u64)> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0; READ_CHUNK];
    let (mut offset, mut end, mut lines) = (0u64, 0u64, 0u64);
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => return Ok((end, lines)),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        for newline in memchr::memchr_iter(b'\n', &buffer[..read]) {
            lines += 1;
            end = offset + newline as u64 + 1;
        }
        offset += read as u64;
    }
}

/// Change notifications for the directory; `None` (polling only) where the filesystem has none.
fn watch(directory: &Path) -> Option<(notify::RecommendedWatcher, Receiver<()>)> {
    // One pending wakeup is enough: the follower reads everything there is when it wakes.
    let (sender, receiver) = mpsc::sync_channel(1);
    let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        let _ = sender.try_send(());
    })
    .and_then(|mut watcher| {
        watcher
            .watch(directory, notify::RecursiveMode::NonRecursive)
            .map(|()| watcher)
    });
    match watcher {
        Ok(watcher) => Some((watcher, receiver)),
        Err(error) => {
            tracing::warn!(
                directory = %directory.display(),
                "no change notifications ({error}); polling instead"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("audit*.log*", "audit.log"));
        assert!(glob_matches(
            "audit*.log*",
            "audit-2026-12-04T10-00-00.000.log.gz"
        ));
        assert!(glob_matches("audit*.log*", "audit.log.1"));
        assert!(!glob_matches("audit*.log*", "audit-policy.yaml"));
        assert!(!glob_matches("audit*.log*", "checkpoint.json"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "abbc"));
    }

    #[test]
    fn file_mode_covers_the_backups() {
        let (directory, pattern, active) = layout(Path::new("/var/log/kube/audit.log"), "x*");
        assert_eq!(directory, Path::new("/var/log/kube"));
        assert_eq!(pattern, "audit*.log*");
        assert_eq!(
            active.as_deref(),
            Some(Path::new("/var/log/kube/audit.log"))
        );
    }
}
