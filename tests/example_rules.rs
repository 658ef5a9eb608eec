//! The example rules in `examples/rules`: they all compile and pass `vigil check`, a few of them are checked
//! against the requests they target, and the projection `vigil scan` reads lines through gives every one of them
//! (and the default rule) the same matches as whole events do.

#[allow(dead_code)] // Shared with the benchmark, which uses other parts of it.
#[path = "../benches/support/audit_log.rs"]
mod audit_log;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use vigil::audit::event::parse_audit_line;
use vigil::crd::DetectionRule;
use vigil::engine::{self, Detector, Input, Match, Rule};
use vigil::eql::{CompiledQuery, Node, QueryKind};
use vigil::projection::Projection;

use audit_log::AuditLogGenerator;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/rules")
}

fn example_rules() -> Vec<DetectionRule> {
    vigil::rules::load_rule_paths(&[rules_dir()]).unwrap()
}

fn compiled(rule: &DetectionRule) -> CompiledQuery {
    let name = rule.metadata.name.as_deref().unwrap_or_default();
    engine::compile_query(&rule.spec.query, Input::Audit)
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn rule(name: &str) -> CompiledQuery {
    let rules = example_rules();
    let found = rules
        .iter()
        .find(|rule| rule.metadata.name.as_deref() == Some(name));
    compiled(found.unwrap_or_else(|| panic!("no example rule {name}")))
}

#[test]
fn every_example_rule_compiles_streams_and_is_documented() {
    let rules = example_rules();
    assert_eq!(rules.len(), 35);
    let mut sequences = 0;
    for rule in &rules {
        let name = rule.metadata.name.clone().unwrap_or_default();
        let query = compiled(rule);
        assert!(query.streamer().is_ok(), "{name} cannot run on a stream");
        sequences += usize::from(query.kind() == QueryKind::Sequence);
        let spec = &rule.spec;
        assert!(
            spec.display_name.as_deref().is_some_and(|s| !s.is_empty()),
            "{name}: displayName"
        );
        assert!(
            spec.description.as_deref().is_some_and(|s| !s.is_empty()),
            "{name}: description"
        );
        assert!(spec.risk_score.is_some(), "{name}: riskScore");
        assert!(!spec.tags.is_empty(), "{name}: tags");
        assert!(!spec.threat.is_empty(), "{name}: MITRE threat");
        assert_eq!(spec.author, ["vigil"], "{name}: author");
        assert_eq!(
            spec.license.as_deref(),
            Some("Apache-2.0"),
            "{name}: license"
        );
    }
    assert_eq!(sequences, 2, "two of the rules are sequences");
}

#[test]
fn vigil_check_accepts_the_example_rules() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(rules_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("check")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A raw audit event for a request of `user`; `extra` is merged over it.
fn request(user: &str, verb: &str, object_ref: Value, extra: Value) -> Value {
    let mut event = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "a-1",
        "stage": "ResponseComplete", "verb": verb, "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.3.4"], "userAgent": "kubectl/v1.37.1", "objectRef": object_ref,
        "responseStatus": {"code": 201}, "stageTimestamp": "2026-12-04T10:00:00.000000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}
    });
    if let (Value::Object(event), Value::Object(extra)) = (&mut event, extra) {
        event.extend(extra);
    }
    event
}

fn pod_create(user: &str, container: Value) -> Value {
    request(
        user,
        "create",
        json!({"resource": "pods", "namespace": "web", "apiVersion": "v1"}),
        json!({"requestObject": {"kind": "Pod", "spec": {"containers": [container]}}}),
    )
}

#[test]
fn privileged_container_rule_flags_privileged_pods_only() {
    let query = rule("privileged-container");
    let privileged =
        json!({"name": "x", "image": "busybox", "securityContext": {"privileged": true}});
    let plain = json!({"name": "x", "image": "busybox", "securityContext": {"privileged": false}});
    assert!(query.matches(&pod_create("mallory@example.com", privileged.clone())));
    assert!(!query.matches(&pod_create("mallory@example.com", plain)));
    assert!(
        !query.matches(&pod_create(
            "system:serviceaccount:kube-system:daemon-set-controller",
            privileged
        )),
        "control-plane controllers are excluded"
    );
}

#[test]
fn pod_exec_rule_flags_exec_not_logs() {
    let query = rule("pod-exec");
    let on_pod = |subresource: &str| json!({"resource": "pods", "subresource": subresource, "namespace": "web", "name": "api-0", "apiVersion": "v1"});
    assert!(query.matches(&request(
        "bob@example.com",
        "create",
        on_pod("exec"),
        json!({})
    )));
    assert!(!query.matches(&request("bob@example.com", "get", on_pod("log"), json!({}))));
    let denied = json!({"annotations": {"authorization.k8s.io/decision": "forbid"}});
    assert!(!query.matches(&request(
        "bob@example.com",
        "create",
        on_pod("exec"),
        denied
    )));
}

#[test]
fn cluster_admin_binding_rule_reads_the_role_ref() {
    let query = rule("cluster-admin-binding");
    let binding = |role: &str| {
        request(
            "system:serviceaccount:ci:deployer",
            "create",
            json!({"resource": "clusterrolebindings", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"}),
            json!({"requestObject": {"kind": "ClusterRoleBinding", "roleRef": {"kind": "ClusterRole", "name": role}}}),
        )
    };
    assert!(query.matches(&binding("cluster-admin")));
    assert!(!query.matches(&binding("view")));
}

#[test]
fn public_address_rule_tells_private_from_public_sources() {
    let query = rule("request-from-public-address");
    let from = |ip: &str| {
        request(
            "alice@example.com",
            "get",
            json!({"resource": "pods", "namespace": "web", "apiVersion": "v1"}),
            json!({"sourceIPs": [ip]}),
        )
    };
    assert!(query.matches(&from("198.51.100.7")));
    assert!(!query.matches(&from("10.0.3.4")));
}

#[test]
fn binding_then_secret_read_sequence_needs_both_steps_by_one_user() {
    let rules = vec![Rule {
        name: "binding-then-secret-read".into(),
        query: rule("binding-then-secret-read"),
    }];
    let mut detector = Detector::new(rules).unwrap();
    let at = |event: Value, time: &str| {
        let mut event = event;
        event["stageTimestamp"] = time.into();
        event
    };
    let binding = |user: &str| {
        request(
            user,
            "create",
            json!({"resource": "rolebindings", "namespace": "payments"}),
            json!({}),
        )
    };
    let secrets = |user: &str| {
        request(
            user,
            "list",
            json!({"resource": "secrets", "namespace": "payments"}),
            json!({}),
        )
    };
    assert!(
        detector
            .observe(1, &at(binding("eve"), "2026-12-04T10:00:00Z"))
            .is_empty()
    );
    assert!(
        detector
            .observe(2, &at(secrets("bob"), "2026-12-04T10:01:00Z"))
            .is_empty(),
        "another user"
    );
    assert_eq!(
        detector.observe(3, &at(secrets("eve"), "2026-12-04T10:02:00Z")),
        vec![Match {
            rule: 0,
            events: vec![Some(1), Some(3)]
        }]
    );
    assert!(
        detector
            .observe(4, &at(binding("bob"), "2026-12-04T10:03:00Z"))
            .is_empty()
    );
    assert!(
        detector
            .observe(5, &at(secrets("bob"), "2026-12-04T10:20:00Z"))
            .is_empty(),
        "beyond maxspan"
    );
}

/// Every match of `queries` over `lines`, reading each line with `read` (None: a skipped line).
fn matches_over(
    queries: &[CompiledQuery],
    lines: &[String],
    mut read: impl FnMut(
        &str,
        &mut dyn FnMut(&dyn Node),
    ) -> Result<(), vigil::audit::event::MalformedReason>,
) -> (
    Vec<Match>,
    Vec<Option<vigil::audit::event::MalformedReason>>,
) {
    let rules = queries
        .iter()
        .enumerate()
        .map(|(index, query)| Rule {
            name: index.to_string().into(),
            query: query.clone(),
        })
        .collect();
    let mut detector = Detector::new(rules).unwrap();
    let mut matches = Vec::new();
    let mut outcomes = Vec::new();
    let mut id = 0;
    for line in lines {
        let mut observe = |event: &dyn Node| {
            matches.extend(detector.observe(id, event));
            id += 1;
        };
        outcomes.push(read(line, &mut observe).err());
    }
    (matches, outcomes)
}

#[test]
fn projected_lines_give_the_same_matches_as_whole_events() {
    let mut queries: Vec<CompiledQuery> = example_rules().iter().map(compiled).collect();
    queries.push(compiled(&vigil::rules::default_rule().unwrap()));
    let mut generator = AuditLogGenerator::new(7);
    let mut lines: Vec<String> = Vec::new();
    for index in 0..20_000 {
        lines.push(match index % 500 {
            // Batches as the webhook backend sends them, and lines that are not audit events at all.
            7 => generator.event_list_line(3),
            11 => r#"{"kind":"Pod","apiVersion":"v1"}"#.to_owned(),
            13 => "not json".to_owned(),
            17 => String::new(),
            // Dotted keys stand for nested ones: a rule must see them through the projection too.
            19 => {
                let mut event = generator.event();
                event["objectRef.subresource"] = "exec".into();
                event["objectRef"]["resource"] = "pods".into();
                event["user.username"] = "system:anonymous".into();
                event.to_string()
            }
            _ => generator.event_line(),
        });
    }
    let (whole, whole_outcomes) = matches_over(&queries, &lines, |line, observe| {
        for event in parse_audit_line(line.as_bytes())? {
            observe(&event);
        }
        Ok(())
    });
    let projection = Projection::new(&queries, Input::Audit);
    let mut whole_events_agree = true;
    // One arena for every line, reset between them, as `vigil scan` uses it.
    let mut arena = bumpalo::Bump::new();
    let (projected, projected_outcomes) = matches_over(&queries, &lines, |line, observe| {
        arena.reset();
        let read = projection.read_line(line.as_bytes(), &arena)?;
        let whole_again: Vec<Value> = read.events().map(|event| event.whole().clone()).collect();
        whole_events_agree &= parse_audit_line(line.as_bytes()) == Ok(whole_again);
        for event in read.events() {
            observe(event.projected());
        }
        Ok(())
    });
    assert_eq!(
        projected_outcomes, whole_outcomes,
        "lines skipped for the same reasons"
    );
    assert!(
        whole_events_agree,
        "whole events read back through the projection are the parsed lines"
    );
    assert!(
        whole.len() > 100,
        "the generated log exercises the rules: {} matches",
        whole.len()
    );
    for (index, query) in queries.iter().enumerate() {
        let of_rule = |matches: &[Match]| {
            matches
                .iter()
                .filter(|m| m.rule == index)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            of_rule(&projected),
            of_rule(&whole),
            "rule {index}: {}",
            query.fields().join(", ")
        );
    }
    let rules_matched = (0..queries.len())
        .filter(|query| whole.iter().any(|m| m.rule == *query))
        .count();
    assert!(
        rules_matched >= 10,
        "only {rules_matched} rules matched the generated log"
    );
}

/// The detector skips rules whose `f == "x"` / `f in (…)` condition an event fails (for sequences: the conditions of
/// every stage) without evaluating them: it must find exactly what evaluating every rule on every event finds,
/// through values that compare in unusual ways.
#[test]
fn rule_prefilter_finds_the_same_matches_as_evaluating_every_rule() {
    let mut queries: Vec<CompiledQuery> = example_rules().iter().map(compiled).collect();
    queries.push(compiled(&vigil::rules::default_rule().unwrap()));
    for query in [
        r#"any where kubernetes.audit.verb in~ ("CREATE", "Patch") and kubernetes.audit.objectRef.resource == "pods""#,
        r#"any where event.action in ("get", "list") and kubernetes.audit.objectRef.resource in~ ("SECRETS", "configmaps")"#,
        r#"any where kubernetes.audit.responseStatus.code == "403""#,
        r#"any where kubernetes.audit.responseStatus.code in ("404", 409) and event.action == "get""#,
        r#"any where source.ip in ("10.0.0.1", "192.168.1.1") or user.name == "alice""#,
        r#"any where not kubernetes.audit.objectRef.resource == "pods" and event.action == "delete""#,
        // Sequences are skipped only when no stage (missing-event and `until` stages included) can match.
        r#"sequence by user.name with maxspan=1m
             [any where event.action == "get" and kubernetes.audit.objectRef.resource == "secrets"]
             ![any where event.action == "delete"]
             [any where event.action == "list" and kubernetes.audit.objectRef.resource == "secrets"]"#,
        r#"sequence by user.name with maxspan=1m
             [any where event.action == "create"] [any where event.action == "delete"]
           until [any where event.action == "patch"]"#,
        r#"sequence by user.name with maxspan=1s
             [any where event.action == "create" and kubernetes.audit.objectRef.resource == "pods"]
             ![any where event.action == "delete"]"#,
    ] {
        queries.push(engine::compile_query(query, Input::Audit).unwrap());
    }
    let mut generator = AuditLogGenerator::new(11);
    let events: Vec<Value> = (0..20_000)
        .map(|index| {
            let mut event = generator.event();
            // Case, multi-values, non-string values and dotted keys in the fields the prefilter reads.
            match index % 40 {
                3 => event["verb"] = "CREATE".into(),
                5 => event["objectRef"]["resource"] = json!(["configmaps", "pods"]),
                7 => event["objectRef"]["resource"] = json!(1),
                9 => event["objectRef"]["resource"] = "Secrets".into(),
                13 => event["objectRef.resource"] = "pods".into(),
                17 => event["verb"] = json!(""),
                _ => {}
            }
            event
        })
        .collect();
    let rules = queries
        .iter()
        .enumerate()
        .map(|(index, query)| Rule {
            name: index.to_string().into(),
            query: query.clone(),
        })
        .collect();
    let mut detector = Detector::new(rules).unwrap();
    let mut streamers: Vec<_> = queries
        .iter()
        .map(|query| query.streamer().unwrap())
        .collect();
    let (mut found, mut expected) = (Vec::new(), Vec::new());
    for (id, event) in events.iter().enumerate() {
        let id = id as u64;
        found.extend(detector.observe(id, event));
        for (rule, streamer) in streamers.iter_mut().enumerate() {
            expected.extend(streamer.push(id, event).into_iter().map(|hit| Match {
                rule,
                events: hit.events,
            }));
        }
    }
    assert_eq!(found, expected);
    let rules_matched = (0..queries.len())
        .filter(|rule| expected.iter().any(|m| m.rule == *rule))
        .count();
    assert!(
        rules_matched >= 15,
        "only {rules_matched} rules matched the generated events"
    );
}
