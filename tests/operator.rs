//! `vigil run` end to end on a real kube-apiserver: the story a user lives, as a user would do it.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use support::ControlPlane;
use support::vigil::{VigilRun, allow_anonymous_pod_create, example};
use vigil::crd::{DetectionAlert, DetectionRule};

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `check` every 200 ms until it returns Some, or fails after `timeout` with `what`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ready_condition(
    rules: &Api<DetectionRule>,
    name: &str,
) -> Option<(String, String, String)> {
    let rule = rules.get(name).await.ok()?;
    let condition = rule
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((condition.status, condition.reason, condition.message))
}

#[tokio::test]
async fn an_anonymous_pod_create_becomes_one_alert_an_event_and_a_match_count() {
    let cp = ControlPlane::start().await;
    let admin = cp.admin_client().await.unwrap();
    allow_anonymous_pod_create(&cp).await;
    let _vigil = VigilRun::start(&cp, "node-1", &[]).await;

    let applied = cp.kubectl(&[
        "apply",
        "-f",
        example("default-rule.yaml").to_str().unwrap(),
    ]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let rules: Api<DetectionRule> = Api::all(admin.clone());
    let ready = eventually(Duration::from_secs(20), "the rule to be Ready", || async {
        ready_condition(&rules, "anonymous-pod-write")
            .await
            .filter(|(status, _, _)| status == "True")
    })
    .await;
    assert_eq!(ready.1, "Compiled");

    // An authenticated pod create, then the anonymous one.
    let admin_pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    admin_pods
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    let (_, anonymous) = cp.anonymous_client().await;
    let created = Api::<Pod>::namespaced(anonymous, "default")
        .create(&PostParams::default(), &pod("evil"))
        .await
        .unwrap();
    let pod_uid = created.metadata.uid.unwrap();

    let alerts: Api<DetectionAlert> = Api::all(admin.clone());
    let alert = eventually(
        Duration::from_secs(20),
        "the alert, at its ResponseComplete stage",
        || async {
            let listed = alerts.list(&ListParams::default()).await.ok()?.items;
            listed
                .into_iter()
                .find(|a| a.spec.events[0].stage.as_deref() == Some("ResponseComplete"))
        },
    )
    .await;
    let event = &alert.spec.events[0];
    assert_eq!(alert.spec.rule.name, "anonymous-pod-write");
    assert_eq!(event.user.username.as_deref(), Some("system:anonymous"));
    let object = event.object_ref.as_ref().unwrap();
    assert_eq!(
        (object.name.as_deref(), object.uid.as_deref()),
        (Some("evil"), Some(pod_uid.as_str()))
    );
    assert_eq!(alert.spec.count, 1);
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

    // A Warning Event regarding the pod, in its namespace.
    let events: Api<KubeEvent> = Api::namespaced(admin.clone(), "default");
    let warning = eventually(Duration::from_secs(10), "the Warning Event", || async {
        let listed = events.list(&ListParams::default()).await.ok()?.items;
        listed.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("evil")
                && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;
    let regarding = warning.regarding.unwrap();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.uid.as_deref()),
        (Some("Pod"), Some(pod_uid.as_str()))
    );
    assert_eq!(warning.reason.as_deref(), Some("AnonymousPodWrite"));
    assert!(
        warning
            .note
            .unwrap_or_default()
            .contains("system:anonymous create pods default/evil")
    );
    let described = cp.kubectl(&["get", "events", "-n", "default"]);
    assert!(
        text(&described.stdout).contains("AnonymousPodWrite"),
        "{}",
        text(&described.stdout)
    );

    // The rule's status counts the one request.
    let counted = eventually(Duration::from_secs(15), "matchCount 1", || async {
        let status = rules.get("anonymous-pod-write").await.ok()?.status?;
        (status.match_count == Some(1)).then_some(status)
    })
    .await;
    assert!(counted.last_match_time.is_some());
    let printed = cp.kubectl(&["get", "drule", "anonymous-pod-write", "--no-headers"]);
    let columns: Vec<String> = text(&printed.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(
        columns.contains(&"True".to_string()) && columns.contains(&"1".to_string()),
        "{columns:?}"
    );

    // The authenticated create never produced an alert.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = alerts.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        all.len(),
        1,
        "only the anonymous request alerts: {:?}",
        all.iter().map(|a| &a.spec.message).collect::<Vec<_>>()
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
