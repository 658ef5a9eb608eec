//! Runs Elasticsearch's own EQL QA specs (see ../shared/eql-conformance/README.md) against vigil::eql and
//! compares results exactly as the ES harness does (README §7): ordered ids, alternatives, join keys.
//!
//! Not emulated (documented per README §3): index mappings. Fields are untyped JSON, so `version` fields order
//! as strings, `null_value: "NULL"`, text-vs-keyword analysis, custom date formats of `@timestamp_pretty`, and
//! the verification error for fields absent from the mapping are not reproduced; the failing-shards suite's
//! runtime field that always fails is not reproduced either; `max_samples_per_key` is ignored.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value as Json;
use vigil::eql::{CompileOptions, PlainFields, compile, parse};

fn shared_dir() -> Option<PathBuf> {
    let base = std::env::var_os("VIGIL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    base.is_dir().then_some(base)
}

struct Spec {
    name: String,
    query: String,
    /// Acceptable results (one unless the spec lists alternatives).
    expected: Vec<Vec<i64>>,
    join_keys: Vec<String>,
    size: usize,
}

/// test_extra.toml has bare `null`s in `join_keys` arrays, which TOML 1.0 rejects; ES renders them "null".
fn quote_bare_nulls(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("join_keys") {
                let mut out = String::new();
                let mut rest = line;
                while let Some(i) = rest.find("null") {
                    let quoted = rest[..i].ends_with('"');
                    out.push_str(&rest[..i]);
                    out.push_str(if quoted { "null" } else { "\"null\"" });
                    rest = &rest[i + 4..];
                }
                out.push_str(rest);
                out
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn load_specs(path: &PathBuf) -> Vec<Spec> {
    let text = std::fs::read_to_string(path).unwrap();
    let parsed: toml::Value = toml::from_str(&quote_bare_nulls(&text)).unwrap();
    let Some(queries) = parsed.get("queries").and_then(|q| q.as_array()) else {
        return Vec::new();
    };
    queries
        .iter()
        .map(|q| {
            let ids = q["expected_event_ids"].as_array().unwrap();
            let as_ids = |values: &Vec<toml::Value>| {
                values.iter().map(|v| v.as_integer().unwrap()).collect()
            };
            let expected = if ids.first().is_some_and(|v| v.is_array()) {
                ids.iter()
                    .map(|alt| as_ids(alt.as_array().unwrap()))
                    .collect()
            } else {
                vec![as_ids(ids)]
            };
            let join_keys = q
                .get("join_keys")
                .and_then(|k| k.as_array())
                .map(|keys| {
                    keys.iter()
                        .map(|k| match k {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Spec {
                name: q["name"].as_str().unwrap().to_string(),
                query: q["query"].as_str().unwrap().trim().to_string(),
                expected,
                join_keys,
                size: q
                    .get("size")
                    .and_then(|s| s.as_integer())
                    .map_or(50, |s| s as usize),
            }
        })
        .collect()
}

fn load_docs(path: &PathBuf) -> Vec<Json> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Java `toString()` of a join key as the ES harness compares it.
fn key_text(value: &Json) -> String {
    match value {
        Json::Null => "null".to_string(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Suite {
    name: &'static str,
    files: &'static [&'static str],
    data: &'static [&'static str],
    tiebreaker: Option<&'static str>,
    id_field: &'static str,
}

struct Outcome {
    passed: usize,
    total: usize,
    failures: Vec<String>,
}

fn run_suite(
    shared: &std::path::Path,
    suite: &Suite,
    rewrite: &HashMap<&str, (&str, &str)>,
) -> Outcome {
    let base = shared.join("eql-conformance");
    let docs: Vec<Json> = suite
        .data
        .iter()
        .flat_map(|d| load_docs(&base.join(d)))
        .collect();
    let options = CompileOptions {
        fields: &PlainFields,
        timestamp_field: "@timestamp".to_string(),
        tiebreaker_field: suite.tiebreaker.map(str::to_string),
        event_category_field: "event.category".to_string(),
    };
    let mut outcome = Outcome {
        passed: 0,
        total: 0,
        failures: Vec::new(),
    };
    for file in suite.files {
        for spec in load_specs(&base.join("queries").join(file)) {
            outcome.total += 1;
            let mut query = spec.query.clone();
            if let Some((from, to)) = rewrite.get(spec.name.as_str()) {
                query = query.replace(from, to);
            }
            let result = parse(&query)
                .map_err(|e| e.to_string())
                .and_then(|ast| compile(&ast, &options).map_err(|e| e.to_string()))
                .map(|compiled| compiled.search(&docs, Some(spec.size)));
            let hits = match result {
                Ok(hits) => hits,
                Err(error) => {
                    outcome
                        .failures
                        .push(format!("{}: error {error}", spec.name));
                    continue;
                }
            };
            let actual: Vec<i64> = hits
                .iter()
                .flat_map(|hit| hit.events.iter())
                .map(|event| {
                    event.map_or(-1, |i| docs[i][suite.id_field].as_i64().unwrap_or(i64::MIN))
                })
                .collect();
            let keys: Vec<String> = hits
                .iter()
                .flat_map(|hit| hit.join_keys.iter().map(key_text))
                .collect();
            let ids_ok = spec.expected.contains(&actual);
            let keys_ok = spec.join_keys.is_empty() || keys == spec.join_keys;
            if ids_ok && keys_ok {
                outcome.passed += 1;
            } else {
                outcome.failures.push(format!(
                    "{}: got {actual:?} keys {keys:?}, expected {:?} keys {:?}",
                    spec.name, spec.expected, spec.join_keys
                ));
            }
        }
    }
    println!(
        "{}: {}/{} passed",
        suite.name, outcome.passed, outcome.total
    );
    for failure in &outcome.failures {
        println!("  FAIL {failure}");
    }
    outcome
}

#[test]
fn elasticsearch_eql_spec_suites() {
    let Some(shared) = shared_dir() else {
        println!("skipped: shared directory with eql-conformance not found (set VIGIL_SHARED)");
        return;
    };
    if !shared.join("eql-conformance").is_dir() {
        println!("skipped: {}/eql-conformance not found", shared.display());
        return;
    }
    let core = Suite {
        name: "core (test_queries + additional + date)",
        files: &[
            "test_queries.toml",
            "additional_test_queries.toml",
            "test_queries_date.toml",
        ],
        data: &["events.ndjson"],
        tiebreaker: Some("serial_event_id"),
        id_field: "serial_event_id",
    };
    let core_outcome = run_suite(&shared, &core, &HashMap::new());
    // README §1: the newer upstream spec uses 50ms so the query means the same on the nanosecond index
    let nanos_rewrite = HashMap::from([(
        "sequencesOnDifferentEventTypes7",
        ("maxspan=500ms", "maxspan=50ms"),
    )]);
    // pass-count floors reached so far (see the module comment for what is not emulated)
    let others = [
        (
            Suite {
                name: "date_nanos",
                files: &["test_queries_date_nanos.toml", "test_queries.toml"],
                data: &["data/endgame-140-nanos.ndjson"],
                tiebreaker: Some("serial_event_id"),
                id_field: "serial_event_id",
            },
            136,
        ),
        (
            Suite {
                name: "extra",
                files: &["test_extra.toml"],
                data: &["data/extra.ndjson"],
                tiebreaker: Some("sequence"),
                id_field: "sequence",
            },
            34,
        ),
        (
            Suite {
                name: "missing events",
                files: &["test_missing_events.toml"],
                data: &["data/missing-events.ndjson"],
                tiebreaker: Some("sequence"),
                id_field: "sequence",
            },
            26,
        ),
        (
            Suite {
                name: "sample",
                files: &["test_sample.toml"],
                data: &[
                    "data/sample1.ndjson",
                    "data/sample2.ndjson",
                    "data/sample3.ndjson",
                ],
                tiebreaker: None,
                id_field: "id",
            },
            21,
        ),
        (
            Suite {
                name: "sample multi",
                files: &["test_sample_multi.toml"],
                data: &["data/sample-multi.ndjson"],
                tiebreaker: None,
                id_field: "id",
            },
            2,
        ),
        (
            Suite {
                name: "failing shards",
                files: &["test_failing_shards.toml"],
                data: &["events.ndjson", "data/endgame-shard-failures.ndjson"],
                tiebreaker: Some("serial_event_id"),
                id_field: "serial_event_id",
            },
            17,
        ),
    ];
    let mut regressions = Vec::new();
    for (suite, minimum) in &others {
        let outcome = run_suite(&shared, suite, &nanos_rewrite);
        if outcome.passed < *minimum {
            regressions.push(format!("{}: {} < {minimum}", suite.name, outcome.passed));
        }
    }
    assert_eq!(core_outcome.total, 198, "the core corpus has 198 specs");
    assert_eq!(
        core_outcome.passed, 198,
        "core failures: {:#?}",
        core_outcome.failures
    );
    assert!(
        regressions.is_empty(),
        "pass counts regressed: {regressions:?}"
    );
}

#[test]
fn elastic_kubernetes_eql_rules_compile() {
    let Some(shared) = shared_dir() else {
        println!("skipped: shared directory not found (set VIGIL_SHARED)");
        return;
    };
    let rules_dir = shared.join("elastic-k8s-rules");
    let Ok(entries) = std::fs::read_dir(&rules_dir) else {
        println!("skipped: {} not found", rules_dir.display());
        return;
    };
    let mut compiled = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let rule: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(rule) = rule.get("rule") else {
            continue;
        };
        if rule.get("language").and_then(|l| l.as_str()) != Some("eql") {
            continue;
        }
        let query = rule["query"].as_str().unwrap();
        let ast = parse(query).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        compile(&ast, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        compiled += 1;
    }
    assert_eq!(compiled, 9, "expected the 9 EQL rules of elastic-k8s-rules");
}
