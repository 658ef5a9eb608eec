//! `vigil scan --follow`: detection on an audit log as it is written (like `tail -F`), with the operator's file
//! follower, so it can be tried without a cluster.
//!
//! With `--checkpoint`, a restart neither misses nor repeats an alert: the checkpoint is saved after each batch's
//! alerts are flushed, and reading resumes at the first event of the oldest sequence still open (its state is
//! not saved, so it is rebuilt by reading those events again); lines handled before the restart come back marked
//! `replayed` and feed the engine without printing again.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use bumpalo::Bump;

use crate::audit::counters::IngestCounters;
use crate::audit::follow::{FileKey, FollowConfig, FollowError, Follower, Position};
use crate::audit::users::IgnoredUsers;
use crate::engine::Detector;
use crate::eql::{CompileError, CompiledQuery};
use crate::projection::Projection;

use super::{
    EventHistory, Origin, Printer, RuleInfo, ScanConfig, ScanError, engine_rules, metadata,
    metadata_paths,
};

/// How long one wait for new lines lasts; only bounds how long a batch-less loop turn takes.
const WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FollowScanError {
    #[error("rule {name}: {error}")]
    NotStreamable { name: Arc<str>, error: CompileError },
    #[error(transparent)]
    Follow(#[from] FollowError),
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// Follows the log, printing matches to `out` and gaps and skipped lines to `diagnostics`; returns only on error.
pub fn follow(
    rules: Vec<(RuleInfo, CompiledQuery)>,
    follow: FollowConfig,
    ignored: &IgnoredUsers,
    config: &ScanConfig,
    out: &mut dyn Write,
    diagnostics: &mut dyn Write,
) -> Result<Infallible, FollowScanError> {
    let (infos, queries): (Vec<RuleInfo>, Vec<CompiledQuery>) = rules.into_iter().unzip();
    let projection = Projection::new(&queries, config.input)
        .showing(metadata_paths(config.input))
        .reading([IgnoredUsers::path_read()]);
    let mut detector = Detector::new(engine_rules(&infos, &queries))
        .map_err(|(name, error)| FollowScanError::NotStreamable { name, error })?;
    let counters = Arc::new(IngestCounters::default());
    let mut follower = Follower::open(follow, counters.clone())?;
    let mut printer = Printer {
        infos: &infos,
        output: config.output,
        out,
    };
    let mut names: HashMap<FileKey, Arc<str>> = HashMap::new();
    // Where each event not yet behind the checkpoint starts, by event id (ascending).
    let mut starts: VecDeque<(u64, Position)> = VecDeque::new();
    let mut history = EventHistory::new();
    // Holds the projected objects of one line at a time.
    let mut arena = Bump::new();
    let mut next_id = 0u64;
    let mut committed: Option<Position> = None;
    let output_error = |error: io::Error| FollowScanError::Scan(ScanError::Output(error));
    loop {
        let batch = follower.next_batch(WAIT)?;
        for gap in &batch.gaps {
            let bytes = gap
                .bytes
                .map_or_else(|| "an unknown number of".to_string(), |b| b.to_string());
            writeln!(
                diagnostics,
                "{}:{}: gap ({}): {bytes} bytes lost",
                gap.path.display(),
                gap.offset,
                gap.kind.as_str()
            )
            .map_err(output_error)?;
        }
        for (line, bytes) in batch.lines() {
            let file = names
                .entry(line.start.file)
                .or_insert_with(|| {
                    follower.file_path(line.start.file).map_or_else(
                        || "<unknown>".into(),
                        |path| path.display().to_string().into(),
                    )
                })
                .clone();
            let origin = Origin {
                file,
                line: line.end.line,
            };
            arena.reset();
            let read = match projection.read_line(bytes, &arena) {
                Ok(read) => read,
                Err(reason) => {
                    counters.malformed(reason, &origin.file, line.start.offset);
                    if counters.malformed_count(reason) == 1 {
                        writeln!(
                            diagnostics,
                            "{}:{} (offset {}): skipped: {reason} (further ones are only counted)",
                            origin.file, origin.line, line.start.offset
                        )
                        .map_err(output_error)?;
                    }
                    continue;
                }
            };
            for event in read.events() {
                if ignored.ignores(event.projected()) {
                    counters.ignored_event();
                    continue;
                }
                let id = next_id;
                next_id += 1;
                starts.push_back((id, line.start));
                let matches = detector.observe(id, event.projected());
                // A replayed line's alerts were printed before the restart.
                let printer = (!line.replayed).then_some(&mut printer);
                history
                    .observed(
                        &detector,
                        (id, &origin),
                        &matches,
                        || metadata(config.input, event.shown()),
                        printer,
                    )
                    .map_err(FollowScanError::Scan)?;
            }
        }
        printer.out.flush().map_err(output_error)?;
        let Some(handled) = batch.end() else {
            continue;
        };
        if committed == Some(handled) {
            continue;
        }
        let resume = match detector.oldest_held_event() {
            Some(held) => {
                let first = starts.partition_point(|(id, _)| *id < held);
                starts.drain(..first);
                starts.front().map_or(handled, |(_, start)| *start)
            }
            None => {
                starts.clear();
                handled
            }
        };
        follower.commit(resume, handled)?;
        committed = Some(handled);
    }
}
