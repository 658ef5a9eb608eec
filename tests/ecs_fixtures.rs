//! `vigil::ecs::normalize` against the pipeline test fixtures of Elastic's Kubernetes integration
//! (`shared/elastic-audit-fixtures`, read in place: that data is Elastic-licensed and stays out of
//! this repository).
//!
//! The expected documents come from `elastic-package` pipeline tests, which feed each line to the
//! ingest pipeline as `message` with the test config's tags, and run neither the agent nor Fleet's
//! final pipeline. So the comparison leaves out:
//! - from the expected documents: `tags` (added by `test-audit.log-config.yml`) and
//!   `event.original` (set only for events that arrive as `message`; the filestream input that
//!   reads audit logs parses the line itself, so its documents have none);
//! - from ours: `@timestamp` (the agent's read time in Elastic; we use `stageTimestamp`),
//!   `data_stream.*` and `event.dataset` (the agent's data stream settings) and `event.ingested`
//!   (Fleet's final pipeline). Those are checked on their own instead.
//!
//! GKE (`protoPayload`) and AKS (`properties.log`) envelopes are out of scope for now: such lines
//! are detected, reported as skipped and must be rejected by `normalize`.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use vigil::ecs::{self, EcsError, RawSource};

const LEFT_OUT_OF_EXPECTED: &[&[&str]] = &[&["tags"], &["event", "original"]];
const LEFT_OUT_OF_OURS: &[&[&str]] = &[
    &["@timestamp"],
    &["data_stream"],
    &["event", "dataset"],
    &["event", "ingested"],
];

fn fixtures_dir() -> Option<PathBuf> {
    let shared = std::env::var_os("VIGIL_SHARED").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
        PathBuf::from,
    );
    let dir = shared.join("elastic-audit-fixtures");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: {} not found", dir.display());
        None
    }
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| {
        panic!("reading {}: {error}", path.display());
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()))
}

/// The cloud envelope `raw` is, if it is one.
fn out_of_scope_envelope(raw: &Value) -> Option<&'static str> {
    if raw.get("protoPayload").is_some() {
        Some("GKE protoPayload envelope")
    } else if raw.get("category").is_some() && raw.pointer("/properties/log").is_some() {
        Some("AKS diagnostic log envelope")
    } else {
        None
    }
}

fn remove_path(document: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = document;
    for key in parents {
        match node.get_mut(*key) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(*last);
    }
}

fn values_in(document: &Value, field: &str) -> Vec<Value> {
    let segments: Vec<&str> = field.split('.').collect();
    ecs::field_values(document, &segments)
        .into_iter()
        .map(std::borrow::Cow::into_owned)
        .collect()
}

fn assert_alias_agrees(raw: &Value, document: &Value, context: &str) {
    for field in ecs::leaf_fields(document) {
        let source = ecs::raw_source(&field)
            .unwrap_or_else(|| panic!("{context}: raw_source does not know {field}"));
        if matches!(source, RawSource::IngestTime) {
            continue;
        }
        let through_alias: Vec<Value> = source
            .values(raw)
            .into_iter()
            .map(std::borrow::Cow::into_owned)
            .collect();
        assert_eq!(
            through_alias,
            values_in(document, &field),
            "{context}: {field}"
        );
    }
}

/// Lines of `log_name` paired with the expected documents, which list the lines' documents in
/// order (`test-audit.log-expected.json` lacks one for its last, AKS, line).
fn check_log(dir: &std::path::Path, log_name: &str) -> usize {
    let log = std::fs::read_to_string(dir.join(log_name))
        .unwrap_or_else(|error| panic!("reading {log_name}: {error}"));
    let expected = read_json(&dir.join(format!("{log_name}-expected.json")));
    let expected = expected["expected"].as_array().cloned().unwrap_or_default();
    let ingested = UNIX_EPOCH + Duration::from_millis(1_741_069_339_750);

    let mut compared = 0;
    for (index, line) in log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
    {
        let context = format!("{log_name} line {}", index + 1);
        let raw: Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("{context}: not JSON: {error}"));
        if let Some(envelope) = out_of_scope_envelope(&raw) {
            println!("skipped: {context}: {envelope} is out of scope");
            assert!(
                matches!(
                    ecs::normalize(&raw, None),
                    Err(EcsError::NotAnAuditEvent { .. })
                ),
                "{context}: normalize must reject a {envelope}"
            );
            continue;
        }
        let Some(expected) = expected.get(index) else {
            panic!("{context}: no expected document");
        };

        let mut ours = ecs::normalize(&raw, Some(ingested))
            .unwrap_or_else(|error| panic!("{context}: {error}"));
        assert_eq!(ours["@timestamp"], raw["stageTimestamp"], "{context}");
        assert_eq!(ours["event"]["dataset"], ecs::DATASET, "{context}");
        assert_eq!(
            ours["data_stream"],
            json!({"type": "logs", "dataset": ecs::DATASET, "namespace": "default"}),
            "{context}"
        );
        assert_eq!(
            ours["event"]["ingested"], "2025-03-04T06:22:19Z",
            "{context}"
        );
        assert_alias_agrees(&raw, &ours, &context);

        let mut expected = expected.clone();
        for path in LEFT_OUT_OF_EXPECTED {
            remove_path(&mut expected, path);
        }
        assert_alias_agrees(&raw, &expected, &format!("{context} (expected document)"));
        for path in LEFT_OUT_OF_OURS {
            remove_path(&mut ours, path);
        }
        assert_eq!(ours, expected, "{context}");
        compared += 1;
    }
    compared
}

#[test]
fn raw_audit_events_match_elastic_expected_documents() {
    let Some(dir) = fixtures_dir() else {
        return;
    };
    assert_eq!(check_log(&dir, "test-audit.log"), 3);
    assert_eq!(check_log(&dir, "test-kube-audit.log"), 0);
}

/// The filestream sample shows the data stream fields the agent adds, which we add too.
#[test]
fn data_stream_fields_match_the_filestream_sample() {
    let Some(dir) = fixtures_dir() else {
        return;
    };
    let sample = read_json(&dir.join("sample_event.json"));
    let raw = json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "verb": "get"});
    let ours = ecs::normalize(&raw, None).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(ours["data_stream"], sample["data_stream"]);
    assert_eq!(ours["event"]["dataset"], sample["event"]["dataset"]);
}
