//! Proof that vigil's resources work on a real kube-apiserver (with etcd, RBAC and audit logging), and that the
//! test harness itself does what the other integration tests rely on.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use support::ControlPlane;
use vigil::crd::{DetectionAlert, DetectionRule};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn crds_install_and_rules_apply_with_kubectl() {
    let cp = ControlPlane::start().await;
    println!("control plane ready in {:.1?}", cp.startup);
    let admin = cp.admin_client().await.unwrap();

    // The CRDs are installed and established, cluster-scoped, with their short names and category.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for (name, short) in [
        ("detectionrules.vigil.dev", "drule"),
        ("detectionalerts.vigil.dev", "dalert"),
    ] {
        let crd = crds.get(name).await.unwrap();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.short_names, Some(vec![short.to_string()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["vigil".to_string()]));
    }

    // kubectl apply of the shipped example rule works ...
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/default-rule.yaml");
    let applied = cp.kubectl(&["apply", "-f", example]);
    assert!(
        applied.status.success(),
        "kubectl apply failed: {}",
        text(&applied.stderr)
    );
    assert!(text(&applied.stdout).contains("detectionrule.vigil.dev/anonymous-pod-write created"));

    // ... it round-trips through the typed API ...
    let rules: Api<DetectionRule> = Api::all(admin.clone());
    let rule = rules.get("anonymous-pod-write").await.unwrap();
    assert_eq!(rule.spec.risk_score, Some(47));
    assert!(rule.spec.enabled);
    assert_eq!(rule.spec.threat[0].techniques[0].id, "T1610");

    // ... and kubectl get shows the printer columns, by plural, short name and category.
    for resource in ["detectionrules", "drule", "vigil"] {
        let listed = cp.kubectl(&["get", resource]);
        assert!(
            listed.status.success(),
            "kubectl get {resource}: {}",
            text(&listed.stderr)
        );
        let out = text(&listed.stdout);
        let header: Vec<&str> = out
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            [
                "NAME", "DISPLAY", "NAME", "SEVERITY", "LANGUAGE", "ENABLED", "READY", "MATCHES",
                "AGE"
            ],
            "kubectl get {resource}:\n{out}"
        );
        let row = out
            .lines()
            .find(|l| l.contains("anonymous-pod-write"))
            .expect("the rule is listed");
        assert!(
            row.contains("Kubernetes Anonymous User Create/Update/Patch Pods Request"),
            "{row}"
        );
        assert!(
            row.contains("medium") && row.contains("eql") && row.contains("true"),
            "{row}"
        );
    }

    // DetectionAlerts list with their own columns (none yet).
    let alerts = cp.kubectl(&["get", "detectionalerts"]);
    assert!(alerts.status.success(), "{}", text(&alerts.stderr));
    assert!(text(&alerts.stderr).contains("No resources found"));
    let typed: Api<DetectionAlert> = Api::all(admin);
    assert!(
        typed
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn schema_validation_rejects_invalid_rules() {
    let cp = ControlPlane::start().await;
    let cases = [
        ("severity: urgent", r#"Unsupported value: "urgent""#),
        ("riskScore: 101", "should be less than or equal to 100"),
        ("language: lucene", r#"Unsupported value: "lucene""#),
    ];
    for (field, expected) in cases {
        let manifest = cp.dir().join("invalid-rule.yaml");
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: vigil.dev/v1alpha1\nkind: DetectionRule\nmetadata:\n  name: invalid\nspec:\n  query: any where true\n  {field}\n"
            ),
        )
        .unwrap();
        let applied = cp.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
        assert!(!applied.status.success(), "{field} was accepted");
        let stderr = text(&applied.stderr);
        assert!(
            stderr.contains("is invalid") && stderr.contains(expected),
            "{field}: {stderr}"
        );
    }
    // A rule without its required query is rejected too.
    let manifest = cp.dir().join("no-query.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: vigil.dev/v1alpha1\nkind: DetectionRule\nmetadata:\n  name: no-query\nspec:\n  severity: low\n",
    )
    .unwrap();
    let applied = cp.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(!applied.status.success());
    assert!(
        text(&applied.stderr).contains("spec.query: Required value"),
        "{}",
        text(&applied.stderr)
    );
}

#[tokio::test]
async fn anonymous_requests_reach_the_audit_log() {
    let cp = ControlPlane::start().await;
    let (_, anonymous) = cp.anonymous_client().await;
    let pods: Api<Pod> = Api::namespaced(anonymous, "default");
    let refused = pods
        .list(&ListParams::default())
        .await
        .expect_err("anonymous may not list pods");
    assert!(
        matches!(refused, kube::Error::Api(ref status) if status.code == 403),
        "{refused:?}"
    );

    let event = cp
        .wait_for_audit_event(Duration::from_secs(10), |event| {
            event["user"]["username"] == "system:anonymous"
                && event["verb"] == "list"
                && event["objectRef"]["resource"] == "pods"
                && event["stage"] == "ResponseComplete"
        })
        .await
        .expect("an audit line for the anonymous request");
    assert_eq!(event["kind"], "Event");
    assert_eq!(event["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(
        event["level"], "RequestResponse",
        "pods are audited at RequestResponse"
    );
    assert_eq!(event["responseStatus"]["code"], 403);
    assert_eq!(
        event["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
}

#[tokio::test]
async fn identities_and_restart() {
    let cp = ControlPlane::start().await;
    let mut cp = cp;

    // A less privileged user is refused what the admin may do; a service account authenticates with its token.
    let (_, alice) = cp.user_client("alice", &["developers"]).await;
    let denied = Api::<DetectionRule>::all(alice)
        .list(&ListParams::default())
        .await
        .expect_err("alice may not list rules");
    let kube::Error::Api(status) = denied else {
        panic!("{denied:?}")
    };
    assert_eq!(status.code, 403);
    assert!(
        status
            .message
            .contains(r#"User "alice" cannot list resource "detectionrules""#),
        "{}",
        status.message
    );
    let (sa_kubeconfig, _) = cp.service_account_client("vigil-system", "vigil").await;
    let who = cp.kubectl_as(
        &sa_kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert!(who.status.success(), "{}", text(&who.stderr));
    assert_eq!(
        text(&who.stdout),
        "system:serviceaccount:vigil-system:vigil"
    );

    // Objects survive an API server restart on the same etcd.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/default-rule.yaml");
    assert!(cp.kubectl(&["apply", "-f", example]).status.success());
    cp.stop_api_server();
    assert!(
        !cp.kubectl(&["get", "drule", "--request-timeout=2s"])
            .status
            .success(),
        "the API server is down"
    );
    cp.start_api_server().await;
    let rules: Api<DetectionRule> = Api::all(cp.admin_client().await.unwrap());
    assert!(rules.get("anonymous-pod-write").await.is_ok());
}
