//! `vigil scan`: offline detection over audit log files (or stdin). Streams the input through the engine, so memory
//! stays flat however large the file, except for rules that need the whole input (`| tail`, `sample`), which are
//! evaluated once everything is read.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::alert;
use crate::audit::event::MalformedReason;
use crate::audit::lines::{Line, read_capped_line};
use crate::crd::{AlertEvent, Severity};
use crate::engine::{Detector, HeldEvents, Input, Match, Rule};
use crate::eql::{CompiledQuery, Node};
use crate::projection::{ProjectedEvent, Projection};

pub mod follow;

/// What a match is reported under.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    /// The rule's metadata.name (`query` for `--query`).
    pub name: String,
    pub display_name: Option<String>,
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct ScanConfig {
    pub input: Input,
    pub output: OutputFormat,
    /// Longer lines are skipped and counted.
    pub max_line_bytes: usize,
}

/// An input that could not be read (exit code 3), or output that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read {name}: {source}")]
    Unreadable { name: String, source: io::Error },
    #[error("cannot write the output: {0}")]
    Output(io::Error),
}

/// What one scan did, for the summary line on stderr.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub events: u64,
    pub matches: u64,
    /// Skipped lines by reason.
    pub skipped: BTreeMap<&'static str, u64>,
}

impl Summary {
    pub fn skipped_lines(&self) -> u64 {
        self.skipped.values().sum()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scanned {} events in {} lines: {} matches, {} lines skipped",
            self.events,
            self.lines,
            self.matches,
            self.skipped_lines()
        )?;
        if !self.skipped.is_empty() {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(reason, n)| format!("{reason}: {n}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        Ok(())
    }
}

/// Where an event came from.
#[derive(Debug, Clone)]
struct Origin {
    file: Arc<str>,
    line: u64,
}

/// Sequence matches name earlier events; the metadata of at most this many events open sequences hold is kept.
const RECENT_EVENTS_KEPT: usize = 200_000;
/// How much of a malformed line is shown (its contents may be sensitive).
const MALFORMED_PREFIX_CHARS: usize = 16;

/// Scans `files` (`-` or none: stdin) with `rules`, writing matches to `out` and diagnostics to `diagnostics`.
pub fn scan(
    rules: Vec<(RuleInfo, CompiledQuery)>,
    files: &[PathBuf],
    config: &ScanConfig,
    out: &mut dyn Write,
    diagnostics: &mut dyn Write,
) -> Result<Summary, ScanError> {
    let (infos, queries): (Vec<RuleInfo>, Vec<CompiledQuery>) = rules.into_iter().unzip();
    let mut summary = Summary::default();
    let mut printer = Printer {
        infos: &infos,
        output: config.output,
        out,
    };
    match Detector::new(engine_rules(&infos, &queries)) {
        Ok(mut detector) => {
            let mut history = EventHistory::new();
            for_each_event(
                files,
                config,
                &Projection::new(&queries, config.input).showing(metadata_paths(config.input)),
                &mut summary,
                diagnostics,
                |id, origin, event, summary| {
                    let matches = detector.observe(id, event.projected());
                    summary.matches += matches.len() as u64;
                    history.observed(
                        &detector,
                        (id, origin),
                        &matches,
                        || metadata(config.input, event.shown()),
                        Some(&mut printer),
                    )
                },
            )?;
        }
        Err(_) => {
            // Some rule needs the whole input (`tail`, `sample`): read everything, then search as Elasticsearch
            // does, in its result order.
            let mut documents = Vec::new();
            let mut origins = Vec::new();
            for_each_event(
                files,
                config,
                &Projection::whole(config.input),
                &mut summary,
                diagnostics,
                |_, origin, event, _| {
                    documents.push(event.whole().clone());
                    origins.push(origin.clone());
                    Ok(())
                },
            )?;
            for (index, query) in queries.iter().enumerate() {
                for hit in query.search(&documents, None) {
                    summary.matches += 1;
                    let events: Vec<(&Origin, AlertEvent)> = hit
                        .events
                        .iter()
                        .flatten()
                        .map(|&i| (&origins[i], metadata(config.input, &documents[i])))
                        .collect();
                    let events: Vec<(&Origin, &AlertEvent)> = events
                        .iter()
                        .map(|(origin, event)| (*origin, event))
                        .collect();
                    printer.print(index, &events)?;
                }
            }
        }
    }
    Ok(summary)
}

/// The detector's rules: `queries` under the names of `infos`.
fn engine_rules(infos: &[RuleInfo], queries: &[CompiledQuery]) -> Vec<Rule> {
    infos
        .iter()
        .zip(queries)
        .map(|(info, query)| Rule {
            name: info.name.as_str().into(),
            query: query.clone(),
        })
        .collect()
}

/// Prints matches, naming earlier events from the metadata kept of the events open sequences hold.
struct EventHistory(HeldEvents<(Origin, AlertEvent)>);

impl EventHistory {
    fn new() -> Self {
        EventHistory(HeldEvents::new(RECENT_EVENTS_KEPT))
    }

    /// Takes what `detector` made of the event it last observed (`id`, from `origin`): prints its `matches` to
    /// `printer` (none: a replayed line, printed before) and keeps its metadata (read by `metadata`, only if
    /// needed) while an open sequence holds it.
    fn observed(
        &mut self,
        detector: &Detector,
        (id, origin): (u64, &Origin),
        matches: &[Match],
        metadata: impl FnOnce() -> AlertEvent,
        printer: Option<&mut Printer<'_>>,
    ) -> Result<(), ScanError> {
        // Later hits can only name events an open sequence holds: only theirs are kept.
        let keep = detector.holds_last_event();
        if !keep && (matches.is_empty() || printer.is_none()) {
            return Ok(());
        }
        let this = (origin.clone(), metadata());
        if let Some(printer) = printer {
            for found in matches {
                let events: Vec<(&Origin, &AlertEvent)> = found
                    .events
                    .iter()
                    .flatten()
                    .filter_map(|event_id| match *event_id == id {
                        true => Some(&this),
                        false => self.0.get(*event_id),
                    })
                    .map(|(origin, event)| (origin, event))
                    .collect();
                printer.print(found.rule, &events)?;
            }
        }
        if keep {
            self.0.keep(detector, id, this);
        }
        Ok(())
    }
}

fn metadata(input: Input, event: &dyn Node) -> AlertEvent {
    match input {
        Input::Audit => alert::event_metadata(event),
        Input::Ecs => match event.get("kubernetes").and_then(|k8s| k8s.get("audit")) {
            Some(audit) => alert::event_metadata(audit),
            None => alert::event_metadata(&Value::Null),
        },
    }
}

/// Where [`metadata`] reads in the events of `input`.
fn metadata_paths(input: Input) -> impl Iterator<Item = Vec<String>> {
    // The `kubernetes.audit` object of an ECS document holds what the raw event holds.
    let prefix: &[&str] = match input {
        Input::Audit => &[],
        Input::Ecs => &["kubernetes", "audit"],
    };
    alert::metadata_paths(prefix)
}

/// Reads every input line by line, hands each event (with a running id and its origin) to `handle`, and reports
/// skipped lines on `diagnostics`.
fn for_each_event(
    files: &[PathBuf],
    config: &ScanConfig,
    projection: &Projection,
    summary: &mut Summary,
    diagnostics: &mut dyn Write,
    mut handle: impl FnMut(u64, &Origin, ProjectedEvent<'_, '_>, &mut Summary) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    let stdin_only = [PathBuf::from("-")];
    let files = if files.is_empty() {
        &stdin_only[..]
    } else {
        files
    };
    let mut next_id = 0u64;
    let mut buffer = Vec::new();
    // Holds the projected objects of one line at a time.
    let mut arena = bumpalo::Bump::new();
    for path in files {
        let name: Arc<str> = if path.as_os_str() == "-" {
            "<stdin>".into()
        } else {
            path.display().to_string().into()
        };
        let unreadable = |source| ScanError::Unreadable {
            name: name.to_string(),
            source,
        };
        let mut reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(io::stdin().lock())
        } else {
            Box::new(io::BufReader::with_capacity(
                1024 * 1024,
                std::fs::File::open(path).map_err(unreadable)?,
            ))
        };
        let mut line_number = 0u64;
        let mut handle_line = |text: Result<&[u8], MalformedReason>,
                               summary: &mut Summary|
         -> Result<(), ScanError> {
            line_number += 1;
            summary.lines += 1;
            let origin = Origin {
                file: name.clone(),
                line: line_number,
            };
            arena.reset();
            match text.and_then(|text| projection.read_line(text, &arena)) {
                Ok(line) => {
                    for event in line.events() {
                        summary.events += 1;
                        handle(next_id, &origin, event, summary)?;
                        next_id += 1;
                    }
                    Ok(())
                }
                Err(reason) => {
                    *summary.skipped.entry(reason.as_str()).or_default() += 1;
                    let prefix: String = String::from_utf8_lossy(text.unwrap_or_default())
                        .chars()
                        .take(MALFORMED_PREFIX_CHARS)
                        .collect();
                    writeln!(
                        diagnostics,
                        "{}:{}: skipped: {reason} (starts with {prefix:?})",
                        origin.file, origin.line
                    )
                    .map_err(ScanError::Output)
                }
            }
        };
        loop {
            // A line wholly in the reader's buffer is read where it is; others are gathered into `buffer`.
            let in_place = match reader.fill_buf() {
                Ok(available) => {
                    memchr::memchr(b'\n', available).filter(|end| *end <= config.max_line_bytes)
                }
                Err(_) => None,
            };
            if let Some(end) = in_place {
                // Returns the same bytes: nothing was consumed since.
                let available = reader.fill_buf().map_err(unreadable)?;
                handle_line(Ok(&available[..end]), summary)?;
                reader.consume(end + 1);
                continue;
            }
            match read_capped_line(&mut reader, &mut buffer, config.max_line_bytes)
                .map_err(unreadable)?
            {
                Line::End => break,
                Line::Oversized => handle_line(Err(MalformedReason::Oversized), summary)?,
                Line::Complete => handle_line(Ok(&buffer), summary)?,
            }
        }
    }
    Ok(())
}

struct Printer<'a> {
    infos: &'a [RuleInfo],
    output: OutputFormat,
    out: &'a mut dyn Write,
}

/// One match as `--output json` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonMatch<'a> {
    rule: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    severity: Severity,
    files: Vec<&'a str>,
    lines: Vec<u64>,
    #[serde(rename = "auditIDs")]
    audit_ids: Vec<&'a str>,
    events: Vec<&'a AlertEvent>,
    message: String,
}

impl Printer<'_> {
    fn print(&mut self, rule: usize, events: &[(&Origin, &AlertEvent)]) -> Result<(), ScanError> {
        let info = &self.infos[rule];
        let alert_events: Vec<&AlertEvent> = events.iter().map(|(_, event)| *event).collect();
        let message = alert::message(&info.name, info.display_name.as_deref(), &alert_events);
        let written = match self.output {
            OutputFormat::Json => {
                let mut files: Vec<&str> = events.iter().map(|(origin, _)| &*origin.file).collect();
                files.dedup();
                let record = JsonMatch {
                    rule: &info.name,
                    display_name: info.display_name.as_deref(),
                    severity: info.severity,
                    files,
                    lines: events.iter().map(|(origin, _)| origin.line).collect(),
                    audit_ids: events
                        .iter()
                        .map(|(_, event)| event.audit_id.as_str())
                        .collect(),
                    events: events.iter().map(|(_, event)| *event).collect(),
                    message,
                };
                serde_json::to_writer(&mut *self.out, &record)
                    .map_err(io::Error::from)
                    .and_then(|()| self.out.write_all(b"\n"))
            }
            OutputFormat::Text => {
                let location: Vec<String> = events
                    .iter()
                    .map(|(origin, event)| {
                        format!("{}:{} auditID {}", origin.file, origin.line, event.audit_id)
                    })
                    .collect();
                writeln!(
                    self.out,
                    "[{}] {}\n    {}",
                    info.severity.as_str(),
                    message,
                    location.join("\n    ")
                )
            }
        };
        written.map_err(ScanError::Output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::compile_query;

    fn event_line(audit_id: &str, user: &str, verb: &str, padding: usize) -> String {
        serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
            "stage": "ResponseComplete", "verb": verb, "user": {"username": user},
            "userAgent": "x".repeat(padding), "stageTimestamp": "2026-12-04T10:00:00.000000Z"
        })
        .to_string()
    }

    /// Scans `lines` (the last one without a newline) with one rule, lines of up to 4 MiB: the summary, the
    /// `--output json` records, and the diagnostics.
    fn scan_lines(lines: &[String], query: &str) -> (Summary, Vec<Value>, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let rule = RuleInfo {
            name: "rule".into(),
            display_name: None,
            severity: Severity::Low,
        };
        let config = ScanConfig {
            input: Input::Audit,
            output: OutputFormat::Json,
            max_line_bytes: 4 << 20,
        };
        let query = compile_query(query, Input::Audit).unwrap();
        let (mut out, mut diagnostics) = (Vec::new(), Vec::new());
        let summary = scan(
            vec![(rule, query)],
            &[path],
            &config,
            &mut out,
            &mut diagnostics,
        )
        .unwrap();
        let records = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        (summary, records, String::from_utf8(diagnostics).unwrap())
    }

    /// Metadata of events an open sequence holds survives pruning, however many other events pass its stages.
    #[test]
    fn sequence_matches_name_events_kept_across_pruning() {
        let mut lines = vec![event_line("alice-get", "alice", "get", 0)];
        lines.extend(
            (0..3 * crate::engine::PRUNE_AT_LEAST)
                .map(|n| event_line(&format!("bob-{n}"), "bob", "get", 0)),
        );
        lines.push(event_line("alice-delete", "alice", "delete", 0));
        let (summary, records, _) = scan_lines(
            &lines,
            r#"sequence by user.name [any where event.action == "get"] [any where event.action == "delete"]"#,
        );
        assert_eq!(summary.matches, 1);
        assert_eq!(records[0]["lines"], serde_json::json!([1, lines.len()]));
        assert_eq!(
            records[0]["auditIDs"],
            serde_json::json!(["alice-get", "alice-delete"])
        );
    }

    /// Lines are read in place from the reader's buffer when they fit in it, and gathered otherwise (a line larger
    /// than the buffer, the last line without a newline); over-long lines are skipped. Either way every line is
    /// counted once, with its number, and matches name the right lines.
    #[test]
    fn lines_read_in_place_or_gathered_scan_alike() {
        let lines = [
            event_line("a", "alice", "delete", 0),
            // Larger than the reader's 1 MiB buffer, under the 4 MiB limit.
            event_line("long", "alice", "delete", 3 << 19),
            "not json".to_owned(),
            event_line("too-long", "alice", "delete", 5 << 20),
            event_line("b", "alice", "get", 0),
            event_line("c", "alice", "delete", 0),
        ];
        let (summary, records, diagnostics) =
            scan_lines(&lines, r#"any where event.action == "delete""#);
        assert_eq!((summary.lines, summary.events, summary.matches), (6, 4, 3));
        assert_eq!(summary.skipped.get("invalid_json"), Some(&1));
        assert_eq!(summary.skipped.get("oversized"), Some(&1));
        let matched: Vec<(&Value, &Value)> = records
            .iter()
            .map(|record| (&record["lines"], &record["auditIDs"]))
            .collect();
        assert_eq!(
            matched,
            [
                (&serde_json::json!([1]), &serde_json::json!(["a"])),
                (&serde_json::json!([2]), &serde_json::json!(["long"])),
                (&serde_json::json!([6]), &serde_json::json!(["c"])),
            ]
        );
        assert!(
            diagnostics.contains(":3: skipped: not valid JSON"),
            "{diagnostics}"
        );
        assert!(
            diagnostics.contains(":4: skipped: line longer"),
            "{diagnostics}"
        );
    }
}
