//! `vigil run` under stress, on a real API server: several vigil pods, SIGKILL, the API server going away, a flood.
//! vigil follows a log the test writes (the same lines kube-apiserver would), so every event is known exactly.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use support::ControlPlane;
use support::vigil::{VigilRun, anonymous_pod_create_line, append_lines, audit_line, example};
use vigil::crd::{DetectionAlert, DetectionRule};

/// Applies a DetectionRule named `name` whose spec is the YAML `spec` (indented by two spaces).
fn apply_rule(cp: &ControlPlane, name: &str, spec: &str) {
    let path = cp.dir().join(format!("{name}.yaml"));
    let manifest = format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: DetectionRule\nmetadata:\n  name: {name}\nspec:\n{spec}"
    );
    std::fs::write(&path, manifest).unwrap();
    let applied = cp.kubectl(&["apply", "-f", path.to_str().unwrap()]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
}

async fn apply_default_rule(cp: &ControlPlane) {
    let applied = cp.kubectl(&[
        "apply",
        "-f",
        example("default-rule.yaml").to_str().unwrap(),
    ]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
}

/// Both stages of `count` anonymous pod creates, numbered from `first`.
fn requests(first: usize, count: usize) -> Vec<String> {
    (first..first + count)
        .flat_map(|n| {
            let id = format!("00000000-0000-4000-8000-{n:012}");
            let pod = format!("evil-{n}");
            [
                anonymous_pod_create_line(&id, &pod, "RequestReceived"),
                anonymous_pod_create_line(&id, &pod, "ResponseComplete"),
            ]
        })
        .collect()
}

async fn alerts(cp: &ControlPlane) -> Vec<DetectionAlert> {
    let client = cp.admin_client().await.unwrap();
    Api::<DetectionAlert>::all(client)
        .list(&ListParams::default())
        .await
        .map(|list| list.items)
        .unwrap_or_default()
}

/// Waits until the alerts' counts add up to `total` (fails after `timeout`), and returns the alerts.
async fn wait_for_total(cp: &ControlPlane, total: u64, timeout: Duration) -> Vec<DetectionAlert> {
    let deadline = Instant::now() + timeout;
    loop {
        let listed = alerts(cp).await;
        let sum: u64 = listed.iter().map(|a| a.spec.count).sum();
        if sum >= total || Instant::now() > deadline {
            assert_eq!(sum, total, "sum of alert counts");
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn match_count(cp: &ControlPlane) -> Option<u64> {
    let rules: Api<DetectionRule> = Api::all(cp.admin_client().await.unwrap());
    rules
        .get("anonymous-pod-write")
        .await
        .ok()?
        .status?
        .match_count
}

async fn wait_for_match_count(cp: &ControlPlane, expected: u64) {
    // After an API server outage vigil's watches and its Lease come back within seconds; allow for a loaded CI.
    let deadline = Instant::now() + Duration::from_secs(45);
    while match_count(cp).await != Some(expected) {
        assert!(
            Instant::now() < deadline,
            "matchCount {:?}, expected {expected}",
            match_count(cp).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `vigil` has saved a checkpoint at the end of `log`: every line read, every alert written.
async fn wait_for_checkpoint_at_end(vigil: &VigilRun, log: &Path) {
    let end = std::fs::metadata(log).unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&vigil.checkpoint)
        .unwrap_or_default()
        .contains(&format!("\"offset\":{end}"))
    {
        assert!(
            Instant::now() < deadline,
            "the checkpoint never reached the end of the log\n{}",
            vigil.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metrics(vigil: &VigilRun) -> String {
    let scraped = std::process::Command::new("curl")
        .args(["-s", &vigil.metrics_url()])
        .output()
        .unwrap();
    String::from_utf8(scraped.stdout).unwrap()
}

fn follow(log: &Path) -> String {
    format!("--audit-log={}", log.display())
}

#[tokio::test]
async fn two_vigil_pods_write_one_alert_per_request_and_one_status() {
    let cp = ControlPlane::start().await;
    apply_default_rule(&cp).await;
    let log = cp.dir().join("shared-audit.log");
    append_lines(&log, &requests(0, 10));
    let first = VigilRun::start(&cp, "node-1", &[&follow(&log)]).await;
    let second = VigilRun::start(&cp, "node-2", &[&follow(&log)]).await;
    append_lines(&log, &requests(10, 10));

    let listed = wait_for_total(&cp, 20, Duration::from_secs(30)).await;
    assert_eq!(listed.len(), 20, "one alert per request");
    // An alert may be created from the RequestReceived line and completed a moment later, after the two pods'
    // writes raced (409) and one retried.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let incomplete = alerts(&cp)
            .await
            .iter()
            .filter(|a| a.spec.events[0].stage.as_deref() != Some("ResponseComplete"))
            .count();
        if incomplete == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{incomplete} alerts still hold only the RequestReceived stage"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_for_match_count(&cp, 20).await;
    // Let both keep running a little: nothing more appears.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(alerts(&cp).await.len(), 20);
    let leaders = [&first, &second]
        .iter()
        .filter(|vigil| vigil.log_text().contains("holding the Lease"))
        .count();
    assert_eq!(leaders, 1, "exactly one pod writes rule status");
}

#[tokio::test]
async fn sigkill_and_restart_lose_and_repeat_nothing() {
    let cp = ControlPlane::start().await;
    apply_default_rule(&cp).await;
    let log = cp.dir().join("audit.log");
    append_lines(&log, &requests(0, 5));
    // A budget that never binds: this test is about restarts, not flood control.
    let mut vigil = VigilRun::start(&cp, "node-1", &[&follow(&log), "--write-budget=1000"]).await;
    wait_for_total(&cp, 5, Duration::from_secs(30)).await;
    for round in 1..=4 {
        append_lines(&log, &requests(round * 10, 10));
        // Kill at a different moment each round: right away, or while it is writing.
        tokio::time::sleep(Duration::from_millis(150 * round as u64)).await;
        vigil.kill();
        append_lines(&log, &requests(round * 10 + 100, 3));
        vigil.restart();
    }
    let listed = wait_for_total(&cp, 5 + 4 * 13, Duration::from_secs(40)).await;
    assert_eq!(
        listed.len(),
        5 + 4 * 13,
        "one alert per request, none repeated"
    );
    assert!(listed.iter().all(|a| a.spec.count == 1));
    wait_for_match_count(&cp, 57).await;
    assert!(vigil.checkpoint.exists(), "the checkpoint is saved");
}

#[tokio::test]
async fn alerts_written_while_the_api_server_was_down_arrive_after() {
    let mut cp = ControlPlane::start().await;
    apply_default_rule(&cp).await;
    let log = cp.dir().join("audit.log");
    append_lines(&log, &requests(0, 2));
    let vigil = VigilRun::start(&cp, "node-1", &[&follow(&log)]).await;
    wait_for_total(&cp, 2, Duration::from_secs(30)).await;

    cp.stop_api_server();
    for second in 0..30 {
        append_lines(&log, &requests(100 + second, 1));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    cp.start_api_server().await;
    let listed = wait_for_total(&cp, 32, Duration::from_secs(60)).await;
    assert_eq!(listed.len(), 32);
    wait_for_match_count(&cp, 32).await;
    assert!(
        vigil.log_text().contains("retrying"),
        "the outage was retried, not skipped"
    );
}

#[tokio::test]
async fn a_flood_stays_within_the_write_budget_and_counts_every_match() {
    let cp = ControlPlane::start().await;
    apply_default_rule(&cp).await;
    let log = cp.dir().join("audit.log");
    let vigil = VigilRun::start(&cp, "node-1", &[&follow(&log), "--write-budget=20"]).await;
    // 10,000 matching requests, one stage each, written at once.
    let flood: Vec<String> = (0..10_000)
        .map(|n| {
            anonymous_pod_create_line(
                &format!("flood-{n:05}"),
                &format!("p{n}"),
                "ResponseComplete",
            )
        })
        .collect();
    let started = Instant::now();
    append_lines(&log, &flood);
    let listed = wait_for_total(&cp, 10_000, Duration::from_secs(120)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let overflow: Vec<&DetectionAlert> = listed
        .iter()
        .filter(|a| {
            a.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.contains("-overflow-"))
        })
        .collect();
    let individual = listed.len() - overflow.len();
    assert!(
        !overflow.is_empty(),
        "beyond the budget, matches are folded"
    );
    assert!(
        individual as f64 <= 20.0 * elapsed + 20.0,
        "{individual} alerts created in {elapsed:.1} s with a budget of 20/s"
    );
    assert!(
        overflow
            .iter()
            .all(|a| a.spec.message.contains("flood control"))
    );
    let metrics = metrics(&vigil);
    assert!(
        metrics.contains("vigil_alerts_folded_total{rule=\"anonymous-pod-write\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn malformed_lines_are_counted_by_reason_and_the_lines_around_them_still_alert() {
    let cp = ControlPlane::start().await;
    apply_default_rule(&cp).await;
    let log = cp.dir().join("audit.log");
    let mut lines = requests(0, 1);
    lines.push("{\"kind\":\"Event\",\"auditID\":".to_string());
    lines.push("{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\"}".to_string());
    lines.extend(requests(1, 1));
    append_lines(&log, &lines);
    let vigil = VigilRun::start(&cp, "node-1", &[&follow(&log)]).await;
    wait_for_total(&cp, 2, Duration::from_secs(30)).await;
    let expected = [
        "vigil_audit_malformed_lines_total{reason=\"invalid_json\"} 1",
        "vigil_audit_malformed_lines_total{reason=\"not_audit_event\"} 1",
        "vigil_audit_events_read_total 4",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = metrics(&vigil);
        if expected.iter().all(|line| metrics.contains(line)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{expected:?} not all in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn suppression_folds_repeats_into_one_alert_and_a_replay_never_double_counts() {
    let cp = ControlPlane::start().await;
    apply_rule(
        &cp,
        "anonymous-pod-burst",
        "  query: 'any where user.name == \"system:anonymous\" and event.action == \"create\"'\n  \
         suppression:\n    groupBy: [user.name, kubernetes.audit.objectRef.namespace]\n    window: 1h\n",
    );
    let log = cp.dir().join("audit.log");
    append_lines(&log, &requests(0, 5));
    let mut vigil = VigilRun::start(&cp, "node-1", &[&follow(&log)]).await;
    let listed = wait_for_total(&cp, 5, Duration::from_secs(30)).await;
    assert_eq!(
        listed.len(),
        1,
        "five requests of one group in one window: one alert"
    );
    assert!(listed[0].spec.last_seen.0 >= listed[0].spec.first_seen.0);

    // Forget the checkpoint: everything is read and matched again.
    vigil.kill();
    // (It may not be written yet: either way the restart reads the whole log again.)
    let _ = std::fs::remove_file(&vigil.checkpoint);
    vigil.restart();
    // The checkpoint moves once the replayed matches are written.
    wait_for_checkpoint_at_end(&vigil, &log).await;
    let listed = alerts(&cp).await;
    assert_eq!(
        (listed.len(), listed[0].spec.count),
        (1, 5),
        "the replay counted nothing twice"
    );
}

#[tokio::test]
async fn sigterm_flushes_and_saves_the_checkpoint() {
    let cp = ControlPlane::start().await;
    apply_default_rule(&cp).await;
    let log = cp.dir().join("audit.log");
    let mut vigil = VigilRun::start(&cp, "node-1", &[&follow(&log)]).await;
    append_lines(&log, &requests(0, 3));
    wait_for_total(&cp, 3, Duration::from_secs(30)).await;
    let status = vigil.terminate().expect("vigil was running");
    assert!(
        status.success(),
        "graceful exit: {status:?}\n{}",
        vigil.log_text()
    );
    let checkpoint = std::fs::read_to_string(&vigil.checkpoint).expect("a checkpoint");
    let end = std::fs::metadata(&log).unwrap().len();
    assert!(
        checkpoint.contains(&format!("\"offset\":{end}")),
        "the checkpoint is at the end of the log: {checkpoint}"
    );
}

#[tokio::test]
async fn an_open_sequence_survives_a_sigkill() {
    let cp = ControlPlane::start().await;
    apply_rule(
        &cp,
        "secret-read-then-pod-create",
        "  query: |\n    sequence by user.name with maxspan=10m\n      \
         [any where event.action == \"get\" and kubernetes.audit.objectRef.resource == \"secrets\"]\n      \
         [any where event.action == \"create\" and kubernetes.audit.objectRef.resource == \"pods\"]\n",
    );
    let log = cp.dir().join("audit.log");
    let mut vigil = VigilRun::start(&cp, "node-1", &[&follow(&log)]).await;

    // The first step, then unrelated traffic that moves the checkpoint on.
    append_lines(
        &log,
        &[audit_line(
            "step-1",
            "mallory",
            "get",
            "secrets",
            "db",
            "ResponseComplete",
        )],
    );
    let noise: Vec<String> = (0..20)
        .map(|n| {
            audit_line(
                &format!("noise-{n}"),
                "alice",
                "list",
                "configmaps",
                "",
                "ResponseComplete",
            )
        })
        .collect();
    append_lines(&log, &noise);
    wait_for_checkpoint_at_end(&vigil, &log).await;
    vigil.kill();
    vigil.restart();
    append_lines(
        &log,
        &[audit_line(
            "step-2",
            "mallory",
            "create",
            "pods",
            "miner",
            "ResponseComplete",
        )],
    );

    let listed = wait_for_total(&cp, 1, Duration::from_secs(30)).await;
    let ids: Vec<&str> = listed[0]
        .spec
        .events
        .iter()
        .map(|e| e.audit_id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["step-1", "step-2"],
        "the sequence opened before the kill completed after it"
    );
}

#[tokio::test]
async fn lost_audit_lines_become_a_warning_event() {
    let cp = ControlPlane::start().await;
    apply_default_rule(&cp).await;
    let log = cp.dir().join("audit.log");
    append_lines(&log, &requests(0, 3));
    let vigil = VigilRun::start(&cp, "node-1", &[&follow(&log)]).await;
    wait_for_total(&cp, 3, Duration::from_secs(30)).await;
    // copytruncate gone wrong: the file is emptied before vigil read what was appended just before.
    append_lines(&log, &requests(10, 50));
    std::fs::File::create(&log).unwrap();
    append_lines(&log, &requests(100, 1));
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cp.admin_client().await.unwrap(), "default");
    let deadline = Instant::now() + Duration::from_secs(20);
    let lost = loop {
        let listed = events.list(&ListParams::default()).await.unwrap().items;
        if let Some(event) = listed
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("AuditEventsLost"))
        {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "no AuditEventsLost Event\n{}",
            vigil.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(lost.type_.as_deref(), Some("Warning"));
    assert_eq!(
        lost.regarding.and_then(|r| r.kind).as_deref(),
        Some("Lease")
    );
    assert!(lost.note.unwrap_or_default().contains("truncated"));
}

#[tokio::test]
async fn retention_removes_the_oldest_alerts_first() {
    let cp = ControlPlane::start().await;
    apply_default_rule(&cp).await;
    let log = cp.dir().join("audit.log");
    let _vigil = VigilRun::start(&cp, "node-1", &[&follow(&log), "--alert-max-count=3"]).await;
    for n in 0..5 {
        append_lines(&log, &requests(n, 1));
        // Creation timestamps have a resolution of one second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = alerts(&cp).await;
        let mut pods: Vec<String> = listed
            .iter()
            .filter_map(|a| a.spec.events[0].object_ref.as_ref()?.name.clone())
            .collect();
        pods.sort();
        if pods == ["evil-2", "evil-3", "evil-4"] {
            break;
        }
        assert!(Instant::now() < deadline, "alerts left: {pods:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
