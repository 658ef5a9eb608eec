//! Counters of what audit ingestion skipped or lost, shared by the file follower and the webhook, for the
//! operator to export as metrics. Each malformed kind and each gap kind is also logged (malformed input once per
//! kind, so a flood of garbage does not flood the log; every gap, since each is a loss worth a line).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::event::MalformedReason;

/// Why events were lost or could not be read; `as_str` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapKind {
    /// The file became shorter than what had been read (copytruncate): lines written in the window between the
    /// copy and the truncation, or not yet read when it was truncated, are gone.
    Truncated,
    /// A file (the checkpointed one, or a backup) was deleted before it was read to its end.
    DeletedUnread,
    /// A line longer than `--max-line-bytes` was skipped.
    OversizedLine,
    /// A gzip backup could not be decompressed to its end.
    CorruptBackup,
}

impl GapKind {
    pub const ALL: [GapKind; 4] = [
        GapKind::Truncated,
        GapKind::DeletedUnread,
        GapKind::OversizedLine,
        GapKind::CorruptBackup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GapKind::Truncated => "truncated",
            GapKind::DeletedUnread => "deleted_unread",
            GapKind::OversizedLine => "oversized_line",
            GapKind::CorruptBackup => "corrupt_backup",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const MALFORMED_KINDS: [MalformedReason; 4] = [
    MalformedReason::Empty,
    MalformedReason::InvalidJson,
    MalformedReason::NotAuditEvent,
    MalformedReason::Oversized,
];

fn malformed_index(reason: MalformedReason) -> usize {
    match reason {
        MalformedReason::Empty => 0,
        MalformedReason::InvalidJson => 1,
        MalformedReason::NotAuditEvent => 2,
        MalformedReason::Oversized => 3,
    }
}

/// Lock-free counters; share one behind an `Arc`.
#[derive(Debug, Default)]
pub struct IngestCounters {
    malformed: [AtomicU64; 4],
    malformed_logged: [AtomicBool; 4],
    gaps: [AtomicU64; 4],
    gap_bytes: [AtomicU64; 4],
    ignored_events: AtomicU64,
    corrupt_checkpoints: AtomicU64,
}

impl IngestCounters {
    /// Counts a malformed line or body; the first of each kind is logged with where it was.
    pub fn malformed(&self, reason: MalformedReason, source: &str, offset: u64) {
        let index = malformed_index(reason);
        self.malformed[index].fetch_add(1, Ordering::Relaxed);
        if !self.malformed_logged[index].swap(true, Ordering::Relaxed) {
            tracing::warn!(
                source,
                offset,
                reason = reason.as_str(),
                "skipped malformed audit input: {reason} (further ones of this kind are only counted)"
            );
        }
    }

    /// Counts and logs a gap: `bytes` of `path` from `offset` on are lost (`None`: an unknown amount).
    pub fn gap(&self, kind: GapKind, path: &Path, offset: u64, bytes: Option<u64>) {
        self.gaps[kind.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(bytes) = bytes {
            self.gap_bytes[kind.index()].fetch_add(bytes, Ordering::Relaxed);
        }
        tracing::warn!(
            path = %path.display(),
            offset,
            bytes,
            kind = kind.as_str(),
            "audit events lost: {}",
            gap_description(kind)
        );
    }

    pub fn ignored_event(&self) {
        self.ignored_events.fetch_add(1, Ordering::Relaxed);
    }

    pub fn corrupt_checkpoint(&self) {
        self.corrupt_checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    pub fn malformed_count(&self, reason: MalformedReason) -> u64 {
        self.malformed[malformed_index(reason)].load(Ordering::Relaxed)
    }

    /// Malformed counts by metric label.
    pub fn malformed_counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        MALFORMED_KINDS
            .iter()
            .map(|reason| (reason.as_str(), self.malformed_count(*reason)))
    }

    pub fn gap_count(&self, kind: GapKind) -> u64 {
        self.gaps[kind.index()].load(Ordering::Relaxed)
    }

    /// Bytes known lost for `kind` (gaps of unknown size add nothing).
    pub fn gap_bytes(&self, kind: GapKind) -> u64 {
        self.gap_bytes[kind.index()].load(Ordering::Relaxed)
    }

    pub fn ignored_events(&self) -> u64 {
        self.ignored_events.load(Ordering::Relaxed)
    }

    pub fn corrupt_checkpoints(&self) -> u64 {
        self.corrupt_checkpoints.load(Ordering::Relaxed)
    }
}

fn gap_description(kind: GapKind) -> &'static str {
    match kind {
        GapKind::Truncated => "the file was truncated (copytruncate) before it was read to its end",
        GapKind::DeletedUnread => "a file was deleted before it was read to its end",
        GapKind::OversizedLine => "a line longer than --max-line-bytes was skipped",
        GapKind::CorruptBackup => "a compressed backup could not be decompressed to its end",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let counters = IngestCounters::default();
        counters.malformed(MalformedReason::Empty, "a.log", 0);
        counters.malformed(MalformedReason::Empty, "a.log", 1);
        counters.malformed(MalformedReason::InvalidJson, "a.log", 2);
        counters.gap(GapKind::Truncated, Path::new("a.log"), 10, Some(5));
        counters.gap(GapKind::Truncated, Path::new("a.log"), 10, None);
        assert_eq!(counters.malformed_count(MalformedReason::Empty), 2);
        assert_eq!(counters.malformed_count(MalformedReason::InvalidJson), 1);
        assert_eq!(counters.gap_count(GapKind::Truncated), 2);
        assert_eq!(counters.gap_bytes(GapKind::Truncated), 5);
        assert_eq!(counters.gap_count(GapKind::DeletedUnread), 0);
    }
}
