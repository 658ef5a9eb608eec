//! `vigil run` end to end on a real kube-apiserver: the story a user lives, as a user would do it.

mod support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use support::ControlPlane;
use support::vigil::{
    VigilRun, allow_anonymous_pod_create, anonymous_pod_create_story, eventually, example,
    ready_condition,
};
use vigil::crd::DetectionRule;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn an_anonymous_pod_create_becomes_one_alert_an_event_and_a_match_count() {
    let cp = ControlPlane::start().await;
    allow_anonymous_pod_create(&cp).await;
    let vigil = VigilRun::start(&cp, "node-1", &[]).await;
    let applied = cp.kubectl(&[
        "apply",
        "-f",
        example("default-rule.yaml").to_str().unwrap(),
    ]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));

    let alert = anonymous_pod_create_story(&cp).await;
    let get = |path: &str| {
        let url = vigil.metrics_url().replace("/metrics", path);
        text(
            &std::process::Command::new("curl")
                .args(["-s", &url])
                .output()
                .unwrap()
                .stdout,
        )
    };
    assert_eq!(get("/healthz"), "ok");
    assert_eq!(get("/readyz"), "ok");
    let metrics = get("/metrics");
    for expected in [
        r#"vigil_alerts_written_total{rule="anonymous-pod-write"} 1"#,
        r#"vigil_rule_matches_total{rule="anonymous-pod-write"} 2"#, // both stages of the request
        "vigil_invalid_rules 0",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }
    assert_eq!(
        alert.labels().get("vigil.dev/rule").map(String::as_str),
        Some("anonymous-pod-write")
    );
    assert_eq!(
        alert.labels().get("vigil.dev/severity").map(String::as_str),
        Some("medium")
    );

    // kubectl lists exactly one alert, every column filled.
    let listed = cp.kubectl(&["get", "detectionalerts"]);
    let out = text(&listed.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "exactly one alert for the one anonymous request:\n{out}"
    );
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "RULE",
            "SEVERITY",
            "USER",
            "VERB",
            "RESOURCE",
            "NAMESPACE",
            "OBJECT",
            "COUNT",
            "LAST",
            "SEEN",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row.len(), 11, "every column filled: {}", lines[1]);
    assert_eq!(
        &row[1..9],
        [
            "anonymous-pod-write",
            "medium",
            "system:anonymous",
            "create",
            "pods",
            "default",
            "evil",
            "1"
        ]
    );
    // The Event shows next to the pod; the rule's columns show Ready and the count.
    let events = cp.kubectl(&["get", "events", "-n", "default"]);
    assert!(
        text(&events.stdout).contains("AnonymousPodWrite"),
        "{}",
        text(&events.stdout)
    );
    let printed = cp.kubectl(&["get", "drule", "anonymous-pod-write", "--no-headers"]);
    let columns: Vec<String> = text(&printed.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(
        columns.contains(&"True".to_string()) && columns.contains(&"1".to_string()),
        "{columns:?}"
    );
}

#[tokio::test]
async fn an_invalid_rule_says_why_until_it_is_fixed() {
    let cp = ControlPlane::start().await;
    let _vigil = VigilRun::start(&cp, "node-1", &[]).await;
    let rules: Api<DetectionRule> = Api::all(cp.admin_client().await.unwrap());
    let manifest = cp.dir().join("rule.yaml");
    let write_rule = |query: &str| {
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: DetectionRule\nmetadata:\n  name: exec-into-pod\nspec:\n  query: |\n    any where kubernetes.audit.objectRef.subresource == \"exec\"\n      and {query}\n"
            ),
        )
        .unwrap();
        let applied = cp.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
        assert!(applied.status.success(), "{}", text(&applied.stderr));
    };

    write_rule("kubernetes.audit.verb ==");
    let (_, reason, message) = eventually(Duration::from_secs(20), "Ready=False", || async {
        ready_condition(&rules, "exec-into-pod")
            .await
            .filter(|(status, _, _)| status == "False")
    })
    .await;
    assert_eq!(reason, "InvalidQuery");
    assert!(
        message.contains("line 2, column"),
        "the parse error says where: {message}"
    );
    assert!(message.contains('^'), "with a caret: {message}");

    write_rule(r#"kubernetes.audit.verb == "create""#);
    let (_, reason, _) = eventually(
        Duration::from_secs(20),
        "Ready=True after the fix",
        || async {
            ready_condition(&rules, "exec-into-pod")
                .await
                .filter(|(status, _, _)| status == "True")
        },
    )
    .await;
    assert_eq!(reason, "Compiled");
    let rule = rules.get("exec-into-pod").await.unwrap();
    assert_eq!(
        rule.status.unwrap().observed_generation,
        rule.metadata.generation
    );
}

#[tokio::test]
async fn vigil_never_feeds_on_its_own_requests() {
    let cp = ControlPlane::start().await;
    // A rule that matches vigil's own requests (it writes status, alerts, events and a Lease), and alice's.
    let rule = cp.dir().join("users.yaml");
    std::fs::write(
        &rule,
        format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: DetectionRule\nmetadata:\n  name: watched-users\nspec:\n  \
             query: 'any where user.name in (\"{}\", \"alice\") and kubernetes.audit.stage == \"ResponseComplete\"'\n",
            support::vigil::OPERATOR_USER
        ),
    )
    .unwrap();
    assert!(
        cp.kubectl(&["apply", "-f", rule.to_str().unwrap()])
            .status
            .success()
    );
    // No --ignore-user: vigil finds out who it is.
    let vigil = VigilRun::start(&cp, "node-1", &["--ignore-user="]).await;
    let (alice, _) = cp.user_client("alice", &["developers"]).await;
    let denied = cp.kubectl_as(&alice, &["get", "secrets", "-n", "default"]);
    assert!(!denied.status.success());
    let alerts: Api<vigil::crd::DetectionAlert> = Api::all(cp.admin_client().await.unwrap());
    let found = eventually(Duration::from_secs(20), "alice's alert", || async {
        let listed = alerts.list(&Default::default()).await.ok()?.items;
        (!listed.is_empty()).then_some(listed)
    })
    .await;
    // Give vigil time to see its own requests (status, alert, Event, Lease renewals) too.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let users: Vec<Option<String>> = alerts
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|a| a.spec.events[0].user.username.clone())
        .collect();
    assert!(!found.is_empty());
    assert!(
        users.iter().all(|u| u.as_deref() == Some("alice")),
        "alerts for {users:?}"
    );
    assert!(
        vigil
            .log_text()
            .contains("ignoring vigil's own audit events")
    );
}
