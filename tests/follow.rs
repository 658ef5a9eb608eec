//! The audit log follower on real files: rotations as lumberjack (kube-apiserver) and logrotate make them,
//! copytruncate, gzip backups, restarts from a checkpoint, and every gap it reports.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use vigil::audit::checkpoint::CheckpointStore;
use vigil::audit::counters::{GapKind, IngestCounters};
use vigil::audit::event::parse_audit_line;
use vigil::audit::follow::{Batch, FollowConfig, Follower, StartAt};

/// A failure guard, not a timing assertion: reads normally complete within milliseconds.
const PATIENCE: Duration = Duration::from_secs(30);

fn event(n: u32) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"ev-{n:06}","stage":"ResponseComplete","verb":"get","user":{{"username":"alice"}},"stageTimestamp":"2026-12-04T10:00:00.000000Z"}}"#
    ) + "\n"
}

fn events(range: std::ops::RangeInclusive<u32>) -> String {
    range.map(event).collect()
}

fn ids(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("ev-{n:06}")).collect()
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn gzip(path: &Path) -> PathBuf {
    let target = PathBuf::from(format!("{}.gz", path.display()));
    let mut encoder = GzEncoder::new(File::create(&target).unwrap(), Compression::fast());
    encoder.write_all(&fs::read(path).unwrap()).unwrap();
    encoder.finish().unwrap();
    fs::remove_file(path).unwrap();
    target
}

struct Log {
    dir: tempfile::TempDir,
    counters: Arc<IngestCounters>,
}

impl Log {
    fn new() -> Self {
        Log {
            dir: tempfile::tempdir().unwrap(),
            counters: Arc::new(IngestCounters::default()),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn active(&self) -> PathBuf {
        self.path("audit.log")
    }

    fn config(&self, start_at: StartAt) -> FollowConfig {
        FollowConfig {
            start_at,
            checkpoint: Some(self.path("checkpoint.json")),
            ..FollowConfig::new(self.active())
        }
    }

    fn open(&self, start_at: StartAt) -> Follower {
        Follower::open(self.config(start_at), self.counters.clone()).unwrap()
    }

    /// Writes events 1–3 and returns a follower that has read (and committed) them.
    fn follower_past_first_three(&self) -> Follower {
        append(&self.active(), &events(1..=3));
        let mut follower = self.open(StartAt::Beginning);
        assert_eq!(read(&mut follower, 3).0, ids(1..=3));
        follower
    }
}

/// Reads until `count` lines arrived, committing after each batch as a stateless consumer does.
fn read(follower: &mut Follower, count: usize) -> (Vec<String>, Vec<Batch>) {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    let mut batches = Vec::new();
    while seen.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} lines arrived: {seen:?}",
            seen.len()
        );
        let batch = follower.next_batch(Duration::from_millis(200)).unwrap();
        for (_, line) in batch.lines() {
            let events = parse_audit_line(line).unwrap();
            seen.extend(
                events
                    .iter()
                    .map(|e| e["auditID"].as_str().unwrap().to_string()),
            );
        }
        if let Some(end) = batch.end() {
            follower.commit(end, end).unwrap();
        }
        batches.push(batch);
    }
    (seen, batches)
}

/// Nothing more arrives (the follower reads all there is before returning an empty batch).
fn assert_quiet(follower: &mut Follower) {
    for _ in 0..3 {
        let batch = follower.next_batch(Duration::from_millis(100)).unwrap();
        let lines: Vec<String> = batch
            .lines()
            .map(|(_, line)| String::from_utf8_lossy(line).into_owned())
            .collect();
        assert!(lines.is_empty(), "unexpected lines: {lines:?}");
    }
}

fn gaps(batches: &[Batch]) -> Vec<GapKind> {
    batches
        .iter()
        .flat_map(|batch| batch.gaps.iter().map(|gap| gap.kind))
        .collect()
}

#[test]
fn appended_lines_are_read_and_a_partial_line_waits_for_its_newline() {
    let log = Log::new();
    let mut follower = log.follower_past_first_three();
    let fourth = event(4);
    let (head, tail) = fourth.split_at(40);
    append(&log.active(), &(event(5) + head));
    assert_eq!(read(&mut follower, 1).0, ids(5..=5));
    assert_quiet(&mut follower);
    append(&log.active(), tail);
    assert_eq!(read(&mut follower, 1).0, ids(4..=4));
    assert_quiet(&mut follower);
}

#[test]
fn without_change_notifications_the_directory_is_polled() {
    let log = Log::new();
    append(&log.active(), &events(1..=2));
    let config = FollowConfig {
        notifications: false,
        poll_interval: Duration::from_millis(20),
        ..log.config(StartAt::Beginning)
    };
    let mut follower = Follower::open(config, log.counters.clone()).unwrap();
    assert_eq!(read(&mut follower, 2).0, ids(1..=2));
    append(&log.active(), &events(3..=3));
    fs::rename(log.active(), log.path("audit.log.1")).unwrap();
    append(&log.active(), &events(4..=4));
    assert_eq!(read(&mut follower, 2).0, ids(3..=4));
}

#[test]
fn start_at_end_skips_what_is_there() {
    let log = Log::new();
    append(&log.active(), &events(1..=3));
    append(
        &log.path("audit-2026-12-04T09-00-00.000.log"),
        &events(100..=101),
    );
    let mut follower = log.open(StartAt::End);
    assert_quiet(&mut follower);
    append(&log.active(), &events(4..=5));
    assert_eq!(read(&mut follower, 2).0, ids(4..=5));
}

#[test]
fn lumberjack_rotation_with_gzip_is_followed_without_repeats() {
    let log = Log::new();
    let mut follower = log.follower_past_first_three();
    // The writer's last lines land just before the rename, then the backup is compressed and the new file
    // written: the follower finishes the old file through its open handle and skips the gzip (same content).
    append(&log.active(), &events(4..=5));
    let backup = log.path("audit-2026-12-04T10-00-00.000.log");
    fs::rename(log.active(), &backup).unwrap();
    gzip(&backup);
    append(&log.active(), &events(6..=7));
    assert_eq!(read(&mut follower, 4).0, ids(4..=7));
    assert_quiet(&mut follower);
}

#[test]
fn logrotate_rename_and_create_keeps_reading_the_renamed_file_until_the_writer_moves_on() {
    let log = Log::new();
    append(&log.active(), &events(1..=2));
    let mut follower = log.open(StartAt::Beginning);
    assert_eq!(read(&mut follower, 2).0, ids(1..=2));
    let mut writer = OpenOptions::new().append(true).open(log.active()).unwrap();
    fs::rename(log.active(), log.path("audit.log.1")).unwrap();
    File::create(log.active()).unwrap();
    // Until reopened, the writer still writes to the renamed file.
    writer.write_all(events(3..=4).as_bytes()).unwrap();
    assert_eq!(read(&mut follower, 2).0, ids(3..=4));
    append(&log.active(), &events(5..=6));
    assert_eq!(read(&mut follower, 2).0, ids(5..=6));
    assert_quiet(&mut follower);
}

#[test]
fn two_rotations_between_reads_are_read_in_order() {
    let log = Log::new();
    append(&log.active(), &events(1..=2));
    let mut follower = log.open(StartAt::Beginning);
    assert_eq!(read(&mut follower, 2).0, ids(1..=2));
    append(&log.active(), &events(3..=4));
    fs::rename(log.active(), log.path("audit-2026-12-04T10-00-00.000.log")).unwrap();
    append(&log.active(), &events(5..=6));
    std::thread::sleep(Duration::from_millis(20)); // distinct modification times, as rotations have
    fs::rename(log.active(), log.path("audit-2026-12-04T10-01-00.000.log")).unwrap();
    append(&log.active(), &events(7..=8));
    assert_eq!(read(&mut follower, 6).0, ids(3..=8));
    assert_quiet(&mut follower);
}

#[test]
fn copytruncate_continues_in_the_copy_then_the_new_content() {
    let log = Log::new();
    append(&log.active(), &events(1..=2));
    let mut follower = log.open(StartAt::Beginning);
    assert_eq!(read(&mut follower, 2).0, ids(1..=2));
    append(&log.active(), &events(3..=4)); // not read before the copy
    fs::copy(log.active(), log.path("audit.log.1")).unwrap();
    File::create(log.active()).unwrap(); // truncates
    append(&log.active(), &events(5..=5));
    let (seen, batches) = read(&mut follower, 3);
    assert_eq!(seen, ids(3..=5));
    assert_eq!(gaps(&batches), vec![], "the copy held everything");
    assert_quiet(&mut follower);
}

#[test]
fn truncation_without_a_copy_is_a_reported_gap() {
    let log = Log::new();
    append(&log.active(), &events(1..=2));
    let mut follower = log.open(StartAt::Beginning);
    assert_eq!(read(&mut follower, 2).0, ids(1..=2));
    File::create(log.active()).unwrap();
    append(&log.active(), &events(3..=3));
    let (seen, batches) = read(&mut follower, 1);
    assert_eq!(seen, ids(3..=3));
    assert_eq!(gaps(&batches), vec![GapKind::Truncated]);
    assert_eq!(log.counters.gap_count(GapKind::Truncated), 1);
}

#[test]
fn a_restart_resumes_at_the_checkpoint() {
    let log = Log::new();
    // Stopped: its checkpoint is after event 3.
    drop(log.follower_past_first_three());
    append(&log.active(), &events(4..=5));
    let mut follower = log.open(StartAt::Beginning);
    assert_eq!(read(&mut follower, 2).0, ids(4..=5));
    assert_quiet(&mut follower);
}

#[test]
fn rotations_while_stopped_are_caught_up_including_gzip_backups() {
    let log = Log::new();
    // Stopped: its checkpoint is after event 3.
    drop(log.follower_past_first_three());
    append(&log.active(), &events(4..=5));
    let first = log.path("audit-2026-12-04T10-00-00.000.log");
    fs::rename(log.active(), &first).unwrap();
    gzip(&first);
    append(&log.active(), &events(6..=7));
    std::thread::sleep(Duration::from_millis(20));
    fs::rename(log.active(), log.path("audit-2026-12-04T10-01-00.000.log")).unwrap();
    append(&log.active(), &events(8..=9));
    let mut follower = log.open(StartAt::Beginning);
    assert_eq!(read(&mut follower, 6).0, ids(4..=9));
    assert_quiet(&mut follower);
}

#[test]
fn a_checkpointed_file_deleted_while_stopped_is_a_reported_gap() {
    let log = Log::new();
    // Stopped: its checkpoint is after event 3.
    drop(log.follower_past_first_three());
    // Replaced by a new file (created before the old one is gone, so it cannot reuse its inode).
    append(&log.path("audit.log.new"), &events(4..=5));
    fs::rename(log.path("audit.log.new"), log.active()).unwrap();
    let mut follower = log.open(StartAt::End);
    let (seen, batches) = read(&mut follower, 2);
    assert_eq!(seen, ids(4..=5), "files found are read whole");
    assert_eq!(gaps(&batches), vec![GapKind::DeletedUnread]);
}

#[test]
fn a_file_truncated_while_stopped_is_a_reported_gap() {
    let log = Log::new();
    // Stopped: its checkpoint is after event 3.
    drop(log.follower_past_first_three());
    File::create(log.active()).unwrap();
    append(&log.active(), &events(4..=4));
    let mut follower = log.open(StartAt::End);
    let (seen, batches) = read(&mut follower, 1);
    assert_eq!(seen, ids(4..=4));
    assert_eq!(gaps(&batches), vec![GapKind::Truncated]);
}

#[test]
fn corrupt_or_missing_checkpoints_fall_back_to_start_at() {
    let log = Log::new();
    append(&log.active(), &events(1..=2));
    let mut follower = log.open(StartAt::Beginning);
    assert_eq!(read(&mut follower, 2).0, ids(1..=2), "no checkpoint yet");
    drop(follower);
    fs::write(log.path("checkpoint.json"), b"{\"version\":1,\"resu").unwrap();
    let mut follower = log.open(StartAt::Beginning);
    assert_eq!(log.counters.corrupt_checkpoints(), 1);
    assert_eq!(read(&mut follower, 2).0, ids(1..=2));
    drop(follower);
    fs::write(log.path("checkpoint.json"), b"\x00\xff").unwrap();
    let mut follower = log.open(StartAt::End);
    assert_eq!(log.counters.corrupt_checkpoints(), 2);
    assert_quiet(&mut follower);
}

#[test]
fn checkpoints_are_written_atomically_and_only_on_commit() {
    let log = Log::new();
    append(&log.active(), &events(1..=2));
    let mut follower = log.open(StartAt::Beginning);
    let batch = follower.next_batch(PATIENCE).unwrap();
    let ends: Vec<_> = batch.lines().map(|(line, _)| line.end).collect();
    assert_eq!(ends.len(), 2);
    let store = CheckpointStore::new(log.path("checkpoint.json"));
    assert_eq!(store.load().unwrap(), None, "nothing acknowledged yet");
    follower.commit(ends[0], ends[0]).unwrap();
    drop(follower);
    let mut follower = log.open(StartAt::End);
    assert_eq!(
        read(&mut follower, 1).0,
        ids(2..=2),
        "the unacknowledged line comes again"
    );
    assert!(!log.path("checkpoint.json.tmp").exists());
    let saved = store.load().unwrap().unwrap();
    assert_eq!(
        saved.handled.offset,
        fs::metadata(log.active()).unwrap().len()
    );
    assert_eq!(saved.handled.line, 2);
}

#[test]
fn lines_before_the_handled_position_come_back_marked_replayed() {
    let log = Log::new();
    append(&log.active(), &events(1..=4));
    let mut follower = log.open(StartAt::Beginning);
    let batch = follower.next_batch(PATIENCE).unwrap();
    let ends: Vec<_> = batch.lines().map(|(line, _)| line.end).collect();
    assert_eq!(ends.len(), 4);
    // A consumer holding an open sequence since line 2 resumes there, having handled up to line 3.
    follower.commit(ends[0], ends[2]).unwrap();
    drop(follower);
    let mut follower = log.open(StartAt::Beginning);
    let batch = follower.next_batch(PATIENCE).unwrap();
    let replayed: Vec<(u64, bool)> = batch
        .lines()
        .map(|(line, _)| (line.end.line, line.replayed))
        .collect();
    assert_eq!(replayed, vec![(2, true), (3, true), (4, false)]);
}

#[test]
fn a_10_mib_line_is_read_whole_or_skipped_as_configured() {
    let big = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"big","pad":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    ) + "\n";
    for (max_line_bytes, expect_big) in [(16 * 1024 * 1024, true), (8 * 1024 * 1024, false)] {
        let log = Log::new();
        append(&log.active(), &(event(1) + &big + &event(2)));
        let config = FollowConfig {
            max_line_bytes,
            ..log.config(StartAt::Beginning)
        };
        let mut follower = Follower::open(config, log.counters.clone()).unwrap();
        let expected = if expect_big {
            vec!["ev-000001", "big", "ev-000002"]
        } else {
            vec!["ev-000001", "ev-000002"]
        };
        let (seen, batches) = read(&mut follower, expected.len());
        assert_eq!(seen, expected);
        let oversized: Vec<_> = batches.iter().flat_map(|b| b.gaps.iter()).collect();
        if expect_big {
            assert!(oversized.is_empty());
        } else {
            assert_eq!(oversized.len(), 1);
            assert_eq!(oversized[0].kind, GapKind::OversizedLine);
            assert_eq!(oversized[0].offset, event(1).len() as u64);
            assert_eq!(oversized[0].bytes, Some(big.len() as u64 - 1));
        }
    }
}

#[test]
fn a_corrupt_gzip_backup_is_a_reported_gap() {
    let log = Log::new();
    let backup = log.path("audit-2026-12-04T09-00-00.000.log");
    append(&backup, &events(1..=200));
    let gz = gzip(&backup);
    let bytes = fs::read(&gz).unwrap();
    fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    append(&log.active(), &events(201..=201));
    let mut follower = log.open(StartAt::Beginning);
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    let mut kinds = Vec::new();
    while !seen.contains(&"ev-000201".to_string()) {
        assert!(Instant::now() < deadline, "{seen:?}");
        let batch = follower.next_batch(Duration::from_millis(200)).unwrap();
        kinds.extend(batch.gaps.iter().map(|gap| gap.kind));
        for (_, line) in batch.lines() {
            if let Ok(events) = parse_audit_line(line) {
                seen.push(events[0]["auditID"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(kinds, vec![GapKind::CorruptBackup]);
    assert!(
        seen.len() > 1 && seen.len() < 201,
        "the readable part, then the new file"
    );
}
