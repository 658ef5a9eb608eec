//! `vigil scan --follow`, the real binary: malformed input, sequences across a restart, and the crash test — a
//! writer appends numbered audit events and rotates while vigil is SIGKILLed at random moments and restarted;
//! every event is emitted at least once, and the set after dedup by auditID is exactly what was written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;

/// A failure guard, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

fn event(n: u32, user: &str, verb: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"ev-{n:06}","stage":"ResponseComplete","verb":"{verb}","user":{{"username":"{user}"}},"objectRef":{{"resource":"secrets","namespace":"default"}},"stageTimestamp":"2026-12-04T10:00:{:02}.{:06}Z"}}"#,
        (n / 1000) % 60,
        n % 1000
    ) + "\n"
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// `vigil scan --follow` on `log`, stdout appended to `out` and stderr to `err`.
fn spawn_vigil(log: &Path, query: &str, out: &Path, err: &Path, extra: &[&str]) -> Child {
    let open = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
    };
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["scan", "--follow", "--output", "json", "--query", query])
        .arg("--audit-log")
        .arg(log)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(open(out))
        .stderr(open(err))
        .spawn()
        .unwrap()
}

/// The auditIDs of every match printed so far, with how often each was printed (one entry per match).
fn emitted(out: &Path) -> Vec<Vec<String>> {
    let text = fs::read_to_string(out).unwrap_or_default();
    // The last line may be cut short by a SIGKILL; everything before it is whole.
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|record| {
            record["auditIDs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn malformed_lines_are_skipped_counted_and_reported_once_per_kind() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let lines = [
        event(1, "alice", "get"),
        "\n".to_string(),
        "\n".to_string(),
        "\u{0}\u{1}binary garbage\n".to_string(),
        r#"{"kind":"Pod","apiVersion":"v1"}"#.to_string() + "\n",
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"#.to_string() + "\n",
        event(2, "alice", "get"),
    ];
    append(&log, &lines.concat());
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let vigil = spawn_vigil(
        &log,
        "any where true",
        &out,
        &err,
        &["--start-at", "beginning"],
    );
    wait_for("both events", || emitted(&out).len() == 2);
    stop(vigil);
    assert_eq!(
        emitted(&out),
        vec![vec!["ev-000001".to_string()], vec!["ev-000002".to_string()]]
    );
    let diagnostics = fs::read_to_string(&err).unwrap();
    for (reason, line) in [
        ("empty line", 2),
        ("not valid JSON", 4),
        ("not an audit.k8s.io/v1 Event", 5),
    ] {
        let reports: Vec<&str> = diagnostics.lines().filter(|l| l.contains(reason)).collect();
        assert_eq!(reports.len(), 1, "{reason}: {diagnostics}");
        assert!(
            reports[0].contains(&format!("audit.log:{line} (offset ")),
            "{reports:?}"
        );
    }
}

#[test]
fn ignored_users_never_reach_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(
        &log,
        &[
            event(1, "system:serviceaccount:vigil:vigil", "get"),
            event(2, "alice", "get"),
        ]
        .concat(),
    );
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let vigil = spawn_vigil(
        &log,
        "any where true",
        &out,
        &err,
        &[
            "--start-at",
            "beginning",
            "--ignore-user",
            "system:serviceaccount:vigil:vigil",
        ],
    );
    wait_for("alice's event", || !emitted(&out).is_empty());
    append(&log, &event(3, "bob", "get"));
    wait_for("bob's event", || emitted(&out).len() == 2);
    stop(vigil);
    assert_eq!(
        emitted(&out),
        vec![vec!["ev-000002".to_string()], vec!["ev-000003".to_string()]]
    );
}

#[test]
fn a_sequence_open_across_a_restart_still_matches_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let checkpoint = dir.path().join("checkpoint.json");
    let query = r#"sequence by user.name with maxspan=1h
                     [any where event.action == "get"] [any where event.action == "delete"]"#;
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let extra = [
        "--start-at",
        "beginning",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ];
    // bob's sequence opens; alice's completes (and is printed) while bob's is still open.
    append(
        &log,
        &[
            event(1, "bob", "get"),
            event(2, "alice", "get"),
            event(3, "alice", "delete"),
        ]
        .concat(),
    );
    let vigil = spawn_vigil(&log, query, &out, &err, &extra);
    wait_for("alice's sequence", || emitted(&out).len() == 1);
    wait_for("the checkpoint", || checkpoint.exists());
    stop(vigil);
    // bob's sequence completes while vigil is down; the restart rebuilds it from the checkpoint.
    append(&log, &event(4, "bob", "delete"));
    let vigil = spawn_vigil(&log, query, &out, &err, &extra);
    wait_for("bob's sequence", || emitted(&out).len() == 2);
    // A marker event after it: once it is read, anything the restart would print twice has been printed.
    append(
        &log,
        &[event(5, "carol", "get"), event(6, "carol", "delete")].concat(),
    );
    wait_for("carol's sequence", || emitted(&out).len() >= 3);
    stop(vigil);
    assert_eq!(
        emitted(&out),
        vec![
            vec!["ev-000002".to_string(), "ev-000003".to_string()],
            vec!["ev-000001".to_string(), "ev-000004".to_string()],
            vec!["ev-000005".to_string(), "ev-000006".to_string()],
        ]
    );
}

/// A small deterministic generator (the seed is printed, so a failure can be replayed).
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

const EVENTS: u32 = 4000;
const EVENTS_PER_FILE: u32 = 300;

/// Appends the numbered events, rotating like kube-apiserver's lumberjack (rename to a timestamped backup,
/// new file) and compressing every other backup.
fn write_rotating_log(dir: &Path) {
    let active = dir.join("audit.log");
    let mut file = File::create(&active).unwrap();
    for n in 1..=EVENTS {
        file.write_all(event(n, "alice", "get").as_bytes()).unwrap();
        if n.is_multiple_of(EVENTS_PER_FILE) {
            let rotation = n / EVENTS_PER_FILE;
            let backup = dir.join(format!("audit-2026-12-04T10-{rotation:02}-00.000.log"));
            fs::rename(&active, &backup).unwrap();
            file = File::create(&active).unwrap();
            if rotation.is_multiple_of(2) {
                let compressed: PathBuf = format!("{}.gz", backup.display()).into();
                let mut encoder =
                    GzEncoder::new(File::create(&compressed).unwrap(), Compression::fast());
                encoder.write_all(&fs::read(&backup).unwrap()).unwrap();
                encoder.finish().unwrap();
                fs::remove_file(&backup).unwrap();
            }
        }
        if n.is_multiple_of(4) {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
}

#[test]
fn sigkilled_at_random_moments_vigil_emits_every_event_exactly_once_after_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    File::create(logs.join("audit.log")).unwrap();
    let checkpoint = dir.path().join("checkpoint.json");
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut random = Random(seed);
    let extra = [
        "--start-at",
        "beginning",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ];
    let log = logs.join("audit.log");
    let writer = {
        let logs = logs.clone();
        std::thread::spawn(move || write_rotating_log(&logs))
    };
    let mut kills = 0;
    while kills < 10 || !writer.is_finished() {
        let vigil = spawn_vigil(&log, "any where true", &out, &err, &extra);
        std::thread::sleep(Duration::from_millis(20 + random.below(400)));
        stop(vigil);
        kills += 1;
    }
    writer.join().unwrap();
    let vigil = spawn_vigil(&log, "any where true", &out, &err, &extra);
    let expected: BTreeSet<String> = (1..=EVENTS).map(|n| format!("ev-{n:06}")).collect();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen: BTreeSet<String> = emitted(&out).into_iter().flatten().collect();
        let missing: Vec<&String> = expected.difference(&seen).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {} events never emitted, e.g. {:?}; diagnostics: {}",
            missing.len(),
            &missing[..missing.len().min(10)],
            fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(vigil);
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for id in emitted(&out).into_iter().flatten() {
        *times.entry(id).or_default() += 1;
    }
    let seen: BTreeSet<String> = times.keys().cloned().collect();
    assert_eq!(seen, expected, "seed {seed}");
    let repeated = times.values().filter(|n| **n > 1).count();
    println!(
        "{kills} kills; {repeated} of {EVENTS} events emitted more than once (printed, killed before the checkpoint)"
    );
    let diagnostics = fs::read_to_string(&err).unwrap();
    assert!(!diagnostics.contains("gap"), "{diagnostics}");
}
