//! What the audit log follower sustains, on real files in a temporary directory:
//! - throughput: lines/s handed on while a writer appends as fast as it can (rotating every 100k lines);
//! - latency: from a line's write to its handoff by `next_batch`, for lines written one at a time, with inotify
//!   and with the polling fallback.
//!
//! `cargo bench --bench follow_throughput` (add `-- --lines N --samples N` to change the sizes).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vigil::audit::counters::IngestCounters;
use vigil::audit::follow::{FollowConfig, Follower, StartAt};

const LINES_PER_FILE: u64 = 100_000;

/// A realistic Metadata-level audit line (about 700 bytes).
fn line(n: u64, written_nanos: u128) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{n:08x}-5b2a-4c1e-9d7f-3f1e2a4b6c8d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list","user":{{"username":"system:serviceaccount:kube-system:replicaset-controller","uid":"0b6d1c1e-2f7a-4d33-8d51-7c8b2a1f9e10","groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]}},"sourceIPs":["10.0.0.12"],"userAgent":"kube-controller-manager/v1.37.0 (linux/amd64) kubernetes/abcdef0/system:serviceaccount:kube-system:replicaset-controller","objectRef":{{"resource":"pods","namespace":"default","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-12-04T10:00:00.000000Z","stageTimestamp":"2026-12-04T10:00:00.001000Z","annotations":{{"authorization.k8s.io/decision":"allow","written":"{written_nanos}"}}}}"#
    ) + "\n"
}

fn argument(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn open_follower(dir: &Path, notifications: bool) -> Follower {
    let config = FollowConfig {
        start_at: StartAt::Beginning,
        notifications,
        ..FollowConfig::new(dir.join("audit.log"))
    };
    Follower::open(config, Arc::new(IngestCounters::default())).expect("follower")
}

/// Appends `lines` lines, rotating lumberjack-style every `LINES_PER_FILE`.
fn write_as_fast_as_possible(dir: PathBuf, lines: u64, started: Arc<AtomicBool>) {
    let active = dir.join("audit.log");
    let mut out = BufWriter::with_capacity(64 * 1024, File::create(&active).expect("log"));
    started.store(true, Ordering::SeqCst);
    for n in 0..lines {
        out.write_all(line(n, 0).as_bytes()).expect("write");
        if (n + 1) % LINES_PER_FILE == 0 {
            out.flush().expect("flush");
            fs::rename(&active, dir.join(format!("audit-{n:012}.log"))).expect("rotate");
            out = BufWriter::with_capacity(64 * 1024, File::create(&active).expect("log"));
        }
    }
    out.flush().expect("flush");
}

fn throughput(lines: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    File::create(dir.path().join("audit.log")).expect("log");
    let mut follower = open_follower(dir.path(), true);
    let started = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dir, started) = (dir.path().to_path_buf(), started.clone());
        std::thread::spawn(move || write_as_fast_as_possible(dir, lines, started))
    };
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let began = Instant::now();
    let (mut seen, mut bytes) = (0u64, 0u64);
    while seen < lines {
        let batch = follower
            .next_batch(Duration::from_millis(100))
            .expect("batch");
        for (_, line) in batch.lines() {
            seen += 1;
            bytes += line.len() as u64 + 1;
        }
        if let Some(end) = batch.end() {
            follower.commit(end, end).expect("commit");
        }
    }
    let elapsed = began.elapsed();
    writer.join().expect("writer");
    println!(
        "throughput: {seen} lines ({:.0} MiB, {} files) in {elapsed:.2?}: {:.0} lines/s, {:.0} MiB/s",
        bytes as f64 / (1024.0 * 1024.0),
        lines.div_ceil(LINES_PER_FILE),
        seen as f64 / elapsed.as_secs_f64(),
        bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
    );
}

fn latency(samples: u64, notifications: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let active = dir.path().join("audit.log");
    let mut out = File::create(&active).expect("log");
    let mut follower = open_follower(dir.path(), notifications);
    let clock = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut delays = Vec::new();
        while (delays.len() as u64) < samples {
            let batch = follower.next_batch(Duration::from_secs(5)).expect("batch");
            let now = clock.elapsed().as_nanos();
            for (_, line) in batch.lines() {
                let text = String::from_utf8_lossy(line);
                let written: u128 = text
                    .rsplit_once("\"written\":\"")
                    .and_then(|(_, rest)| rest.split('"').next())
                    .and_then(|n| n.parse().ok())
                    .expect("timestamp");
                delays.push(Duration::from_nanos((now - written) as u64));
            }
        }
        delays
    });
    for n in 0..samples {
        // One write per line, as kube-apiserver's log backend does.
        out.write_all(line(n, clock.elapsed().as_nanos()).as_bytes())
            .expect("write");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut delays = reader.join().expect("reader");
    delays.sort();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    println!(
        "latency write→handoff over {} lines ({}): p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        delays.len(),
        if notifications {
            "inotify"
        } else {
            "polling fallback"
        },
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; sizes are flags of their own.
    throughput(argument("--lines", 1_000_000));
    let samples = argument("--samples", 1_000);
    latency(samples, true);
    latency(samples / 4, false);
}
