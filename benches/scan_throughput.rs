//! Single-thread throughput of `vigil scan`'s detection path on a generated audit log, next to two baselines:
//! parsing each line into a `serde_json::Value`, and a hand-written matcher that deserialises only the four fields
//! the default rule reads. Prints the median events/s of several rounds and the ratio to the hand-written matcher.
//!
//! `cargo bench --bench scan_throughput` runs it (about half a minute).
//! `cargo bench --bench scan_throughput -- --write-log FILE --mib N` writes an N MiB generated log instead, for
//! timing the release binary end to end (`benches/scan-end-to-end.sh`).

// Shared with the tests, which use other parts of it.
#[allow(dead_code)]
#[path = "support/audit_log.rs"]
mod audit_log;

use std::borrow::Cow;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use vigil::audit::event::parse_audit_line;
use vigil::engine::{self, Detector, Input, Rule};
use vigil::eql::CompiledQuery;
use vigil::projection::Projection;
use vigil::scan::{self, OutputFormat, RuleInfo, ScanConfig};

use audit_log::AuditLogGenerator;

const SEED: u64 = 0x5EED_A0D1;
const EVENTS: usize = 40_000;
const ROUNDS: usize = 7;

/// One measured case: runs over the log once and returns its match count.
type Case<'a> = Box<dyn Fn() -> u64 + 'a>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg != "--bench")
        .collect();
    if let Some(position) = args.iter().position(|arg| arg == "--write-log") {
        let path = args.get(position + 1).ok_or("--write-log needs a file")?;
        let mib: u64 = match args.iter().position(|arg| arg == "--mib") {
            Some(at) => args.get(at + 1).ok_or("--mib needs a number")?.parse()?,
            None => 100,
        };
        return write_log(Path::new(path), mib << 20);
    }
    // Like criterion, a free argument keeps only the cases whose name holds it ((b), the reference, always runs).
    let filter = args.iter().find(|arg| !arg.starts_with("--")).cloned();
    run_benchmarks(filter.as_deref())
}

fn write_log(path: &Path, bytes: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut generator = AuditLogGenerator::new(SEED);
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    let (mut written, mut lines) = (0u64, 0u64);
    while written < bytes {
        let line = generator.event_line();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        written += line.len() as u64 + 1;
        lines += 1;
    }
    out.flush()?;
    eprintln!(
        "wrote {lines} events, {written} bytes to {}",
        path.display()
    );
    Ok(())
}

fn run_benchmarks(filter: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let log = AuditLogGenerator::new(SEED).log(EVENTS);
    let lines: Vec<&[u8]> = log
        .as_bytes()
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .collect();
    let log_file = std::env::temp_dir().join(format!("vigil-bench-{}.log", std::process::id()));
    std::fs::write(&log_file, &log)?;
    println!(
        "{} events, {:.0} bytes per event on average; median of {ROUNDS} rounds, one thread\n",
        lines.len(),
        log.len() as f64 / lines.len() as f64
    );

    let default_rules = vec![compile(&vigil::rules::default_rule()?)?];
    let example_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/rules");
    let example_rules = vigil::rules::load_rule_paths(&[example_dir])?
        .iter()
        .map(compile)
        .collect::<Result<Vec<_>, _>>()?;

    let cases: Vec<(&str, Case)> = vec![
        (
            "(a) serde_json::Value parse only",
            Box::new(|| parse_only(&lines)),
        ),
        (
            "(b) hand-written serde matcher, default rule",
            Box::new(|| hand_written_default_rule(&lines)),
        ),
        (
            "(c) vigil engine path, default rule",
            Box::new(|| engine_path(&default_rules, &lines)),
        ),
        (
            "(d) vigil engine path, 35 example rules",
            Box::new(|| engine_path(&example_rules, &lines)),
        ),
        (
            "    vigil scan on the file, default rule",
            Box::new(|| scan_file(&default_rules, &log_file)),
        ),
        (
            "    vigil scan on the file, 35 example rules",
            Box::new(|| scan_file(&example_rules, &log_file)),
        ),
        (
            "    engine on whole events, default rule",
            Box::new(|| whole_events(&default_rules, &lines)),
        ),
        (
            "    engine on whole events, 35 example rules",
            Box::new(|| whole_events(&example_rules, &lines)),
        ),
    ];
    let mut results = Vec::new();
    for (name, case) in &cases {
        if filter.is_some_and(|filter| !name.contains(filter) && !name.starts_with("(b)")) {
            continue;
        }
        let matches = case(); // warm-up
        let mut times: Vec<Duration> = (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(case());
                start.elapsed()
            })
            .collect();
        times.sort();
        let events_per_second = lines.len() as f64 / times[ROUNDS / 2].as_secs_f64();
        results.push((name, events_per_second, matches));
    }
    let hand_written = results
        .iter()
        .find(|(name, _, _)| name.starts_with("(b)"))
        .map_or(f64::NAN, |(_, events_per_second, _)| *events_per_second);
    println!(
        "{:<46} {:>12} {:>9} {:>8}",
        "case", "events/s", "vs (b)", "matches"
    );
    println!("{}", "-".repeat(78));
    for (name, events_per_second, matches) in &results {
        println!(
            "{name:<46} {:>12.0} {:>8.0}% {matches:>8}",
            events_per_second,
            100.0 * events_per_second / hand_written
        );
    }
    std::fs::remove_file(&log_file)?;
    Ok(())
}

fn compile(
    rule: &vigil::crd::DetectionRule,
) -> Result<(RuleInfo, CompiledQuery), engine::QueryError> {
    let query = engine::compile_query(&rule.spec.query, Input::Audit)?;
    let info = RuleInfo {
        name: rule.metadata.name.clone().unwrap_or_default(),
        display_name: rule.spec.display_name.clone(),
        severity: rule.spec.severity,
    };
    Ok((info, query))
}

/// (a): the cost of reading every field of every event.
fn parse_only(lines: &[&[u8]]) -> u64 {
    let mut objects = 0;
    for line in lines {
        if let Ok(Value::Object(_)) = serde_json::from_slice::<Value>(line) {
            objects += 1;
        }
    }
    objects
}

/// (b): the default rule written by hand against the four fields it reads; everything else is skipped.
fn hand_written_default_rule(lines: &[&[u8]]) -> u64 {
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        user: Option<User<'a>>,
        #[serde(borrow)]
        level: Option<Cow<'a, str>>,
        #[serde(borrow)]
        verb: Option<Cow<'a, str>>,
        #[serde(borrow, rename = "objectRef")]
        object_ref: Option<ObjectRef<'a>>,
    }
    #[derive(Deserialize)]
    struct User<'a> {
        #[serde(borrow)]
        username: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct ObjectRef<'a> {
        #[serde(borrow)]
        resource: Option<Cow<'a, str>>,
    }
    let mut matches = 0;
    for line in lines {
        let Ok(event) = serde_json::from_slice::<Event>(line) else {
            continue;
        };
        let username = event.user.and_then(|user| user.username);
        let anonymous = match username.as_deref() {
            None | Some("" | "system:anonymous" | "system:unauthenticated") => true,
            Some(_) => false,
        };
        let level = matches!(
            event.level.as_deref(),
            Some("RequestResponse" | "ResponseComplete" | "Request")
        );
        let verb = matches!(event.verb.as_deref(), Some("create" | "update" | "patch"));
        let pods = event
            .object_ref
            .and_then(|object| object.resource)
            .as_deref()
            == Some("pods");
        if anonymous && level && verb && pods {
            matches += 1;
        }
    }
    matches
}

/// (c), (d): what `vigil scan` does per line, without the file and the output: project the line, feed its events
/// to the detector, and read the alert metadata of matched events (and of events a sequence may name later).
fn engine_path(rules: &[(RuleInfo, CompiledQuery)], lines: &[&[u8]]) -> u64 {
    let queries: Vec<&CompiledQuery> = rules.iter().map(|(_, query)| query).collect();
    let projection = Projection::new(queries.iter().copied(), Input::Audit)
        .showing(vigil::alert::metadata_paths(&[]));
    let Ok(mut detector) = Detector::new(engine_rules(rules)) else {
        return 0;
    };
    let mut matches = 0;
    let mut id = 0;
    let mut arena = bumpalo::Bump::new();
    for line in lines {
        arena.reset();
        let Ok(line) = projection.read_line(line, &arena) else {
            continue;
        };
        for event in line.events() {
            let found = detector.observe(id, event.projected());
            let kept = detector.holds_last_event();
            if !found.is_empty() || kept {
                std::hint::black_box(vigil::alert::event_metadata(event.shown()));
            }
            matches += found.len() as u64;
            id += 1;
        }
    }
    matches
}

fn engine_rules(rules: &[(RuleInfo, CompiledQuery)]) -> Vec<Rule> {
    rules
        .iter()
        .map(|(info, query)| Rule {
            name: info.name.as_str().into(),
            query: query.clone(),
        })
        .collect()
}

/// `vigil scan` itself on the log file (in the page cache), output discarded.
fn scan_file(rules: &[(RuleInfo, CompiledQuery)], log_file: &Path) -> u64 {
    let config = ScanConfig {
        input: Input::Audit,
        output: OutputFormat::Json,
        max_line_bytes: 8 << 20,
    };
    scan::scan(
        rules.to_vec(),
        &[log_file.to_path_buf()],
        &config,
        &mut io::sink(),
        &mut io::sink(),
    )
    .map_or(0, |summary| summary.matches)
}

/// The engine on events parsed whole, as `vigil scan` did before it projected lines: what projection saves.
fn whole_events(rules: &[(RuleInfo, CompiledQuery)], lines: &[&[u8]]) -> u64 {
    let Ok(mut detector) = Detector::new(engine_rules(rules)) else {
        return 0;
    };
    let mut matches = 0;
    let mut id = 0;
    for line in lines {
        for event in parse_audit_line(line).unwrap_or_default() {
            matches += detector.observe(id, &event).len() as u64;
            id += 1;
        }
    }
    matches
}
