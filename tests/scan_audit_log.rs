//! `vigil scan` on an audit log the real kube-apiserver wrote: on a cluster where `system:anonymous` may create pods
//! (a misconfiguration), the default rule flags the anonymous pod create and nothing else.
//!
//! `VIGIL_WRITE_EXAMPLE=1 cargo test --test scan_audit_log` also refreshes `examples/audit.log`, the sample the
//! README's quick start scans.

mod support;

use std::process::Command;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use support::ControlPlane;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap()
}

/// Drives a few ordinary and one malicious request through the API server, and returns its audit log.
async fn record_audit_log(cp: &ControlPlane) -> (String, String) {
    support::vigil::allow_anonymous_pod_create(cp).await;
    let admin = cp.admin_client().await.unwrap();

    // Ordinary traffic: the admin creates a pod and a secret, and reads them back.
    let admin_pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    admin_pods
        .create(&PostParams::default(), &pod("web"))
        .await
        .unwrap();
    admin_pods.list(&ListParams::default()).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin, "default");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "db"}, "stringData": {"password": "s3cr3t"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    secrets.get("db").await.unwrap();

    // The attack: an anonymous pod create, after an anonymous (forbidden) look around.
    let (_, anonymous) = cp.anonymous_client().await;
    let anonymous_pods: Api<Pod> = Api::namespaced(anonymous, "default");
    assert!(
        anonymous_pods.list(&ListParams::default()).await.is_err(),
        "anonymous may not list pods"
    );
    let created = anonymous_pods
        .create(&PostParams::default(), &pod("evil"))
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();

    let event = cp
        .wait_for_audit_event(std::time::Duration::from_secs(10), |e| {
            e["verb"] == "create"
                && e["user"]["username"] == "system:anonymous"
                && e["stage"] == "ResponseComplete"
        })
        .await
        .expect("the anonymous create is audited");
    (
        std::fs::read_to_string(&cp.audit_log).unwrap(),
        event["auditID"].as_str().unwrap().to_string() + " " + &uid,
    )
}

#[tokio::test]
async fn default_rule_flags_the_anonymous_pod_create_in_a_real_audit_log() {
    let cp = ControlPlane::start().await;
    let (log, ids) = record_audit_log(&cp).await;
    let (audit_id, pod_uid) = ids.split_once(' ').unwrap();
    assert!(
        !log.contains("s3cr3t"),
        "secrets are audited at Metadata level only"
    );

    let path = cp.dir().join("recorded-audit.log");
    std::fs::write(&path, &log).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["scan", "--output", "json"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let matches: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    // The anonymous create is audited at two stages, RequestReceived and ResponseComplete, and both match; nothing
    // else does, the admin's pod create included.
    let stages: Vec<&Value> = matches.iter().map(|m| &m["events"][0]["stage"]).collect();
    assert_eq!(
        stages,
        [&json!("RequestReceived"), &json!("ResponseComplete")],
        "stderr: {stderr}"
    );
    for found in &matches {
        assert_eq!(found["rule"], "anonymous-pod-write");
        assert_eq!(
            found["auditIDs"],
            json!([audit_id]),
            "only the anonymous create matches: {found}"
        );
        let event = &found["events"][0];
        assert_eq!(event["user"]["username"], "system:anonymous");
        assert_eq!(event["verb"], "create");
        assert_eq!(event["objectRef"]["resource"], "pods");
        assert!(
            event.get("requestObject").is_none() && event.get("responseObject").is_none(),
            "no bodies"
        );
        let line = found["lines"][0].as_u64().unwrap() as usize;
        let raw: Value = serde_json::from_str(log.lines().nth(line - 1).unwrap()).unwrap();
        assert_eq!(
            raw["auditID"], audit_id,
            "`lines` points at the matched line"
        );
        if raw["stage"] == "ResponseComplete" {
            assert_eq!(event["objectRef"]["name"], "evil", "{found}");
            assert_eq!(event["objectRef"]["uid"], pod_uid);
            assert_eq!(event["responseCode"], 201);
        }
    }
    assert!(stderr.contains("0 lines skipped"), "{stderr}");

    if std::env::var_os("VIGIL_WRITE_EXAMPLE").is_some() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/audit.log");
        std::fs::write(example, &log).unwrap();
        println!("wrote {example}");
    }
}
