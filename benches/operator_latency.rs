//! Latency of `vigil run` on a real control plane: from an audit line written to the log to its DetectionAlert
//! visible through the API (a watch), at 100 and 1,000 events/s, with the default rule and 35 more loaded; and
//! vigil's resident memory.
//!
//! `cargo bench --bench operator_latency` (builds the test binaries on first use, like the tests).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use support::ControlPlane;
use support::vigil::{VigilRun, anonymous_pod_create_line, append_lines, example};
use tokio::sync::mpsc;
use vigil::crd::DetectionAlert;

const SECONDS_PER_RATE: u64 = 10;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let cp = ControlPlane::start().await;
    for rules in [example("default-rule.yaml"), example("rules")] {
        let applied = cp.kubectl(&["apply", "-f", rules.to_str().expect("path")]);
        assert!(
            applied.status.success(),
            "{}",
            String::from_utf8_lossy(&applied.stderr)
        );
    }
    let log = cp.dir().join("audit.log");
    append_lines(&log, &[]);
    let vigil = VigilRun::start(
        &cp,
        "bench",
        &[
            &format!("--audit-log={}", log.display()),
            "--start-at=end",
            "--write-budget=100000",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Every alert as it appears: its audit ID and when the watch saw it.
    let (seen_sender, mut seen) = mpsc::unbounded_channel::<(String, Instant)>();
    let alerts: Api<DetectionAlert> = Api::all(cp.admin_client().await.expect("client"));
    tokio::spawn(async move {
        let mut stream = watcher(alerts, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(alert)) = stream.next().await {
            if let Some(event) = alert.spec.events.first() {
                let _ = seen_sender.send((event.audit_id.clone(), Instant::now()));
            }
        }
    });

    println!(
        "vigil run, 36 rules loaded; latency from audit line written to DetectionAlert seen by a watch"
    );
    if let Some(rss) = vigil.pid().and_then(rss_kib) {
        println!(
            "vigil run resident memory (VmRSS) with the rules loaded: {} KiB",
            rss
        );
    }
    for rate in [100u64, 1000] {
        let total = rate * SECONDS_PER_RATE;
        let mut written: HashMap<String, Instant> = HashMap::new();
        let started = Instant::now();
        // Write in 10 ms slices, as an API server under steady load would.
        let per_slice = (rate / 100).max(1);
        let mut n = 0;
        while n < total {
            let slice_start = started + Duration::from_millis(10 * (n / per_slice));
            tokio::time::sleep_until(slice_start.into()).await;
            let lines: Vec<String> = (n..(n + per_slice).min(total))
                .map(|i| {
                    anonymous_pod_create_line(
                        &format!("bench-{rate}-{i:06}"),
                        &format!("p{i}"),
                        "ResponseComplete",
                    )
                })
                .collect();
            let now = Instant::now();
            for i in n..(n + per_slice).min(total) {
                written.insert(format!("bench-{rate}-{i:06}"), now);
            }
            append_lines(&log, &lines);
            n += per_slice;
        }
        let mut latencies = Vec::with_capacity(total as usize);
        let deadline = Instant::now() + Duration::from_secs(120);
        while latencies.len() < total as usize && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), seen.recv()).await {
                Ok(Some((audit_id, at))) => {
                    if let Some(written_at) = written.remove(&audit_id) {
                        latencies.push(at.duration_since(written_at));
                    }
                }
                _ => break,
            }
        }
        latencies.sort();
        if latencies.is_empty() {
            println!("{rate} events/s: no alert seen");
            continue;
        }
        println!(
            "{rate:>5} events/s for {SECONDS_PER_RATE} s: {} of {total} alerts seen; latency p50 {:.0?}, p99 {:.0?}, max {:.0?}",
            latencies.len(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1],
        );
    }
    if let Some(rss) = vigil.pid().and_then(rss_kib) {
        println!(
            "vigil run resident memory (VmRSS) after the runs, 11,000 alerts in its watch cache: {:.1} MiB",
            rss as f64 / 1024.0
        );
    }
}
