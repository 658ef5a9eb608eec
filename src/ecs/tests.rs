//! Unit tests on synthetic audit events (written for these tests, not taken from Elastic's).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::*;

fn anonymous_pod_create() -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
        "auditID": "0d5c7a41-anon", "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/pods", "verb": "create",
        "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
        "sourceIPs": ["192.0.2.10", "192.0.2.10"], "userAgent": "curl/8.5.0",
        "objectRef": {"resource": "pods", "namespace": "default", "apiGroup": "", "apiVersion": "v1"},
        "requestObject": {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "miner", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "alpine", "args": []}], "volumes": null}
        },
        "responseStatus": {"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403},
        "requestReceivedTimestamp": "2026-01-02T03:04:05.000001Z",
        "stageTimestamp": "2026-01-02T03:04:05.000900Z",
        "annotations": {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}
    })
}

fn exec_with_query_params() -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": "4a1e-exec", "stage": "ResponseStarted",
        "requestURI": "/api/v1/namespaces/prod/pods/web-0/exec?command=sh&command=-c&command=id&container=web&stdin=true",
        "verb": "create",
        "user": {"username": "alice@example.test", "uid": "alice@example.test", "groups": ["devs", ""]},
        "sourceIPs": ["2001:db8::5", "fe80::1%eth0"], "userAgent": "kubectl/v1.33.0 (linux/amd64)",
        "objectRef": {"resource": "pods", "namespace": "prod", "name": "web-0", "apiVersion": "v1", "subresource": "exec"},
        "responseStatus": {"metadata": {}, "code": 101},
        "requestReceivedTimestamp": "2026-01-02T04:00:00.100000Z",
        "stageTimestamp": "2026-01-02T04:00:00.200000Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed"}
    })
}

fn secret_get_by_service_account() -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": "77f0-secret", "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/kube-system/secrets/token", "verb": "get",
        "user": {
            "username": "system:serviceaccount:kube-system:robot", "uid": "5f1b-uid",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/pod-name": ["robot-7d9"],
                "authentication.kubernetes.io/credential-id": [""],
                "authentication.kubernetes.io/node-name": []
            }
        },
        "sourceIPs": ["10.1.2.3"], "userAgent": "robot/1.0",
        "objectRef": {"resource": "secrets", "namespace": "kube-system", "name": "token", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-01-02T05:00:00Z", "stageTimestamp": "2026-01-02T05:00:01Z",
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "mutation.webhook.admission.k8s.io/round_0_index_2": "{\"mutated\":false}"
        }
    })
}

fn forbidden_secret_list() -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "9c3d-forbid", "stage": "ResponseComplete",
        "requestURI": "/api/v1/secrets?limit=500", "verb": "list",
        "user": {"username": "", "uid": "", "groups": ["system:authenticated"]},
        "impersonatedUser": {"username": "system:admin", "groups": ["system:masters"]},
        "sourceIPs": ["198.51.100.4", "not-an-ip"], "userAgent": "",
        "objectRef": {"resource": "secrets", "apiVersion": "v1"},
        "responseObject": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 403},
        "responseStatus": {"metadata": {}, "status": "Failure", "message": "secrets is forbidden", "reason": "Forbidden", "code": 403},
        "requestReceivedTimestamp": "2026-01-02T06:00:00Z", "stageTimestamp": "2026-01-02T06:00:00.5Z",
        "annotations": {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}
    })
}

fn request_received_without_status() -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
        "auditID": "b2e4-received", "stage": "RequestReceived",
        "requestURI": "/apis/apps/v1/namespaces/ops/deployments/api", "verb": "patch",
        "user": {"username": "system:serviceaccount:ops:deployer", "groups": ["system:serviceaccounts"], "extra": {}},
        "sourceIPs": [], "userAgent": "deployer/2",
        "objectRef": {"resource": "deployments", "namespace": "ops", "name": "api", "apiGroup": "apps", "apiVersion": "v1"},
        "requestObject": {"metadata": {"annotations": {"a": "b"}}},
        "requestReceivedTimestamp": "2026-01-02T07:00:00Z", "stageTimestamp": "2026-01-02T07:00:00Z"
    })
}

fn varied_events() -> [Value; 5] {
    [
        anonymous_pod_create(),
        exec_with_query_params(),
        secret_get_by_service_account(),
        forbidden_secret_list(),
        request_received_without_status(),
    ]
}

fn values_in(document: &Value, field: &str) -> Vec<Value> {
    let segments: Vec<&str> = field.split('.').collect();
    field_values(document, &segments)
        .into_iter()
        .map(std::borrow::Cow::into_owned)
        .collect()
}

fn values_through_alias(raw: &Value, field: &str) -> Vec<Value> {
    let Some(source) = raw_source(field) else {
        panic!("raw_source does not know {field}");
    };
    source
        .values(raw)
        .into_iter()
        .map(std::borrow::Cow::into_owned)
        .collect()
}

#[test]
fn anonymous_pod_create_document() {
    let document = normalize(&anonymous_pod_create(), None).expect("an audit event");
    let expected = json!({
        "@timestamp": "2026-01-02T03:04:05.000900Z",
        "data_stream": {"type": "logs", "dataset": "kubernetes.audit_logs", "namespace": "default"},
        "event": {"kind": "event", "dataset": "kubernetes.audit_logs", "action": "create", "outcome": "failure"},
        "user": {"name": "system:anonymous"},
        "user_agent": {"original": "curl/8.5.0"},
        "source": {"ip": ["192.0.2.10", "192.0.2.10"]},
        "client": {"ip": ["192.0.2.10", "192.0.2.10"]},
        "related": {"user": ["system:anonymous"], "ip": ["192.0.2.10"]},
        "orchestrator": {"type": "kubernetes", "api_version": "audit.k8s.io/v1", "namespace": "default", "resource": {"type": "pods"}},
        "kubernetes": {"audit": {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
            "auditID": "0d5c7a41-anon", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/pods", "verb": "create",
            "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
            "sourceIPs": ["192.0.2.10", "192.0.2.10"], "userAgent": "curl/8.5.0",
            "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
            "requestObject": {"kind": "Pod", "apiVersion": "v1", "spec": {"containers": [{"name": "c", "image": "alpine"}]}},
            "responseStatus": {"status": "Failure", "reason": "Forbidden", "code": 403},
            "requestReceivedTimestamp": "2026-01-02T03:04:05.000001Z",
            "stageTimestamp": "2026-01-02T03:04:05.000900Z",
            "annotations": {"authorization_k8s_io/decision": "forbid"}
        }}
    });
    assert_eq!(document, expected);
}

#[test]
fn service_account_fields_keep_dotted_extra_keys_and_own_underscores() {
    let raw = secret_get_by_service_account();
    let document = normalize(&raw, None).expect("an audit event");
    assert_eq!(
        document["kubernetes"]["audit"]["user"]["extra"],
        json!({"authentication.kubernetes.io/pod-name": ["robot-7d9"]})
    );
    let pod_name = "kubernetes.audit.user.extra.authentication.kubernetes.io/pod-name";
    assert_eq!(values_in(&document, pod_name), [json!("robot-7d9")]);
    assert_eq!(values_through_alias(&raw, pod_name), [json!("robot-7d9")]);
    let mutation = "kubernetes.audit.annotations.mutation_webhook_admission_k8s_io/round_0_index_2";
    assert_eq!(
        values_through_alias(&raw, mutation),
        [json!("{\"mutated\":false}")]
    );
    assert_eq!(
        document["related"]["user"],
        json!(["5f1b-uid", "system:serviceaccount:kube-system:robot"])
    );
}

#[test]
fn exec_event_keeps_query_and_deduplicates_related_user() {
    let document = normalize(&exec_with_query_params(), None).expect("an audit event");
    assert_eq!(document["event"]["outcome"], "success");
    assert_eq!(document["related"]["user"], json!(["alice@example.test"]));
    assert_eq!(
        document["source"]["ip"],
        json!(["2001:db8::5", "fe80::1%eth0"])
    );
    assert_eq!(
        document["kubernetes"]["audit"]["user"]["groups"],
        json!(["devs"])
    );
    assert_eq!(document["orchestrator"]["resource"]["name"], "web-0");
}

#[test]
fn empty_strings_are_missing_in_document_and_alias() {
    let raw = forbidden_secret_list();
    let document = normalize(&raw, None).expect("an audit event");
    for field in [
        "kubernetes.audit.user.username",
        "kubernetes.audit.user.uid",
        "user.name",
        "user.id",
        "related.user",
        "user_agent.original",
        "kubernetes.audit.annotations.authorization_k8s_io/reason",
        "kubernetes.audit.responseObject.metadata",
    ] {
        assert_eq!(
            values_in(&document, field),
            [] as [Value; 0],
            "{field} in document"
        );
        assert_eq!(
            values_through_alias(&raw, field),
            [] as [Value; 0],
            "{field} via alias"
        );
    }
}

#[test]
fn one_invalid_source_ip_drops_every_ip_field() {
    let raw = forbidden_secret_list();
    let document = normalize(&raw, None).expect("an audit event");
    for field in ["source.ip", "client.ip", "related.ip"] {
        assert!(values_in(&document, field).is_empty(), "{field}");
        assert!(values_through_alias(&raw, field).is_empty(), "{field}");
    }
    assert_eq!(
        values_through_alias(&raw, "kubernetes.audit.sourceIPs"),
        [json!("198.51.100.4"), json!("not-an-ip")]
    );
}

#[test]
fn request_received_stage_without_status_or_decision() {
    let raw = request_received_without_status();
    let document = normalize(&raw, None).expect("an audit event");
    assert!(document["event"].get("outcome").is_none());
    assert!(document.get("source").is_none());
    assert!(
        document["kubernetes"]["audit"]
            .get("requestObject")
            .is_none()
    );
    assert!(
        document["kubernetes"]["audit"]["user"]
            .get("extra")
            .is_none()
    );
    assert!(values_through_alias(&raw, "kubernetes.audit.requestObject").is_empty());
    assert!(values_through_alias(&raw, "event.outcome").is_empty());
}

#[test]
fn every_document_field_reads_the_same_through_the_alias() {
    for raw in varied_events() {
        let document = normalize(&raw, None).expect("an audit event");
        for field in leaf_fields(&document) {
            assert_eq!(
                values_through_alias(&raw, &field),
                values_in(&document, &field),
                "{field} of {}",
                raw["auditID"]
            );
        }
        for object_field in [
            "kubernetes",
            "kubernetes.audit",
            "kubernetes.audit.annotations",
            "kubernetes.audit.requestObject",
            "kubernetes.audit.responseObject",
            "kubernetes.audit.user",
        ] {
            assert_eq!(
                values_through_alias(&raw, object_field),
                values_in(&document, object_field),
                "{object_field} of {}",
                raw["auditID"]
            );
        }
    }
}

#[test]
fn sources_by_kind() {
    let path = |segments: &[&str]| Some(segments.iter().map(ToString::to_string).collect());
    let as_path = |field: &str| match raw_source(field) {
        Some(RawSource::Path(segments)) => Some(segments),
        _ => None,
    };
    assert_eq!(as_path("event.action"), path(&["verb"]));
    assert_eq!(as_path("user.name"), path(&["user", "username"]));
    assert_eq!(as_path("user.id"), path(&["user", "uid"]));
    assert_eq!(as_path("user_agent.original"), path(&["userAgent"]));
    assert_eq!(as_path("@timestamp"), path(&["stageTimestamp"]));
    assert_eq!(
        as_path("orchestrator.resource.type"),
        path(&["objectRef", "resource"])
    );
    assert_eq!(
        as_path("kubernetes.audit.objectRef.subresource"),
        path(&["objectRef", "subresource"])
    );
    for (field, value) in [
        ("event.dataset", DATASET),
        ("data_stream.dataset", DATASET),
        ("data_stream.type", "logs"),
        ("data_stream.namespace", "default"),
        ("event.kind", "event"),
        ("orchestrator.type", "kubernetes"),
    ] {
        assert!(
            matches!(raw_source(field), Some(RawSource::Constant(Value::String(s))) if s == value),
            "{field}"
        );
    }
    for field in [
        "event.outcome",
        "source.ip",
        "client.ip",
        "related.ip",
        "related.user",
    ] {
        assert!(
            matches!(raw_source(field), Some(RawSource::Computed(_))),
            "{field}"
        );
    }
    assert!(matches!(
        raw_source("kubernetes.audit.requestObject.metadata.name"),
        Some(RawSource::Missing)
    ));
    assert!(matches!(
        raw_source("event.ingested"),
        Some(RawSource::IngestTime)
    ));
    for unknown in [
        "foo.bar",
        "kubernetes.auditX",
        "kubernetes.audit..verb",
        "user",
        "event.original",
    ] {
        assert!(raw_source(unknown).is_none(), "{unknown}");
    }
}

#[test]
fn decision_annotation_reads_raw_dotted_key() {
    let raw = anonymous_pod_create();
    let field = "kubernetes.audit.annotations.authorization_k8s_io/decision";
    assert_eq!(values_through_alias(&raw, field), [json!("forbid")]);
    assert_eq!(
        values_through_alias(&raw, "event.outcome"),
        [json!("failure")]
    );
}

#[test]
fn ingest_time_is_whole_utc_seconds() {
    let at = |seconds: f64| {
        let document = normalize(&anonymous_pod_create(), Some(at_offset(seconds)));
        document.expect("an audit event")["event"]["ingested"].clone()
    };
    assert_eq!(at(1_661_933_398.9), "2022-08-31T08:09:58Z");
    assert_eq!(at(1_709_164_800.0), "2024-02-29T00:00:00Z");
    assert_eq!(at(-0.5), "1969-12-31T23:59:59Z");
    assert_eq!(at(0.0), "1970-01-01T00:00:00Z");
}

fn at_offset(seconds: f64) -> SystemTime {
    let magnitude = Duration::from_secs_f64(seconds.abs());
    if seconds < 0.0 {
        UNIX_EPOCH - magnitude
    } else {
        UNIX_EPOCH + magnitude
    }
}

#[test]
fn rejects_what_is_not_an_audit_event() {
    assert_eq!(normalize(&json!([]), None), Err(EcsError::NotAnObject));
    let envelope = json!({"protoPayload": {}, "insertId": "x"});
    assert_eq!(
        normalize(&envelope, None),
        Err(EcsError::NotAnAuditEvent {
            kind: None,
            api_version: None
        })
    );
    let other = json!({"kind": "Event", "apiVersion": "v1"});
    assert!(ensure_audit_event(&other).is_err());
}

#[test]
fn empty_values_are_dropped_to_the_fixpoint() {
    let mut value = json!({
        "a": {"b": {"c": null, "d": [""]}},
        "e": [[], {}, [[null]]],
        "f": 0, "g": false, "h": [" ", {"i": ""}]
    });
    drop_empty_values(&mut value);
    assert_eq!(value, json!({"f": 0, "g": false, "h": [" "]}));
}

#[test]
fn field_values_flatten_arrays_and_match_dotted_keys() {
    let document = json!({
        "spec": {"containers": [{"image": "a"}, {"image": ["b", ""]}, {"name": "x"}]},
        "labels": {"app.kubernetes.io/name": "web", "app": {"kubernetes": {"io/name": "nested"}}}
    });
    assert_eq!(
        values_in(&document, "spec.containers.image"),
        [json!("a"), json!("b")]
    );
    assert_eq!(
        values_in(&document, "labels.app.kubernetes.io/name"),
        [json!("nested"), json!("web")]
    );
}
