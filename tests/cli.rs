//! `vigil scan` and `vigil check` as users run them: the real binary, its output and its exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn vigil(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running vigil");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("writing stdin");
    drop(input);
    child.wait_with_output().expect("vigil output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn json_lines(output: &Output) -> Vec<Value> {
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON match"))
        .collect()
}

fn shared(sub: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("VIGIL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("../shared"))
        .join(sub);
    if dir.exists() {
        Some(dir)
    } else {
        println!("skipped: {} not found", dir.display());
        None
    }
}

const ANONYMOUS_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?token=hunter2","verb":"create","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"sourceIPs":["192.0.2.1"],"objectRef":{"resource":"pods","namespace":"default","name":"x","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-12-04T10:00:00.000000Z","stageTimestamp":"2026-12-04T10:00:00.010000Z","annotations":{"authorization.k8s.io/decision":"allow"}}"#;

#[test]
fn scan_reads_stdin_skips_malformed_lines_and_reports_them() {
    let input = format!(
        "{ANONYMOUS_CREATE}\nnot json at all, password=secret\n\n{{\"kind\":\"Pod\"}}\n{ANONYMOUS_CREATE}"
    );
    let output = vigil(&["scan", "--output", "json", "-"], Some(&input));
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "skipped lines are not a failure: {stderr}"
    );
    let matches = json_lines(&output);
    assert_eq!(matches.len(), 2);
    assert_eq!(matches[0]["lines"], serde_json::json!([1]));
    assert_eq!(matches[1]["lines"], serde_json::json!([5]));
    assert_eq!(matches[0]["auditIDs"], serde_json::json!(["a-1"]));
    assert_eq!(
        matches[0]["events"][0]["requestURI"], "/api/v1/namespaces/default/pods?token=REDACTED",
        "credentials masked"
    );
    for (line, reason) in [
        (2, "not valid JSON"),
        (3, "empty line"),
        (4, "JSON, but not an audit.k8s.io/v1 Event"),
    ] {
        assert!(
            stderr.contains(&format!("<stdin>:{line}: skipped: {reason}")),
            "line {line}: {stderr}"
        );
    }
    assert!(
        !stderr.contains("password=secret"),
        "only a short prefix of a bad line is shown: {stderr}"
    );
    assert!(stderr.contains("3 lines skipped"), "{stderr}");
}

#[test]
fn scan_with_a_query_and_with_rule_files() {
    let output = vigil(
        &[
            "scan",
            "--output",
            "json",
            "--query",
            r#"any where source.ip : "192.0.2.*""#,
        ],
        Some(ANONYMOUS_CREATE),
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_lines(&output)[0]["rule"], "query");

    let output = vigil(
        &[
            "scan",
            "--output",
            "json",
            "--rules",
            repo("examples/default-rule.yaml").to_str().unwrap(),
        ],
        Some(ANONYMOUS_CREATE),
    );
    assert_eq!(json_lines(&output)[0]["rule"], "anonymous-pod-write");

    let text_output = vigil(&["scan"], Some(ANONYMOUS_CREATE));
    let printed = text(&text_output.stdout);
    assert!(
        printed.starts_with("[medium] system:anonymous create pods default/x"),
        "{printed}"
    );
}

#[test]
fn exit_codes() {
    // 1: an invalid query, with a caret under the problem.
    let output = vigil(&["scan", "--query", "any where verb =="], Some(""));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("line 1, column 18") && stderr.contains('^'),
        "{stderr}"
    );
    // 3: unreadable input.
    let output = vigil(&["scan", "/no/such/audit.log"], None);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let output = vigil(&["check", "/no/such/rule.yaml"], None);
    assert_eq!(output.status.code(), Some(3));
    // 2: usage.
    assert_eq!(
        vigil(&["scan", "--output", "xml"], None).status.code(),
        Some(2)
    );
    assert_eq!(vigil(&["check"], None).status.code(), Some(2));
}

#[test]
fn ecs_input_finds_what_raw_input_finds() {
    // Normalise the sample audit log (written by a real API server) and scan both forms.
    let raw = std::fs::read_to_string(repo("examples/audit.log")).expect("examples/audit.log");
    let documents: Vec<String> = raw
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("an audit event");
            vigil::ecs::normalize(&event, None)
                .expect("normalised")
                .to_string()
        })
        .collect();
    let from_raw = vigil(
        &[
            "scan",
            "--output",
            "json",
            repo("examples/audit.log").to_str().unwrap(),
        ],
        None,
    );
    let from_ecs = vigil(
        &["scan", "--output", "json", "--input", "ecs", "-"],
        Some(&documents.join("\n")),
    );
    let ids = |output: &Output| -> Vec<Value> {
        json_lines(output)
            .iter()
            .map(|m| m["auditIDs"].clone())
            .collect()
    };
    assert!(!ids(&from_raw).is_empty());
    assert_eq!(ids(&from_raw), ids(&from_ecs));
}

#[test]
fn check_accepts_elastics_eql_rules_and_refuses_other_languages_clearly() {
    let Some(dir) = shared("elastic-k8s-rules") else {
        return;
    };
    let index = std::fs::read_to_string(dir.join("index.tsv")).expect("index.tsv");
    let mut eql = Vec::new();
    let mut kuery = Vec::new();
    for row in index.lines().skip(1) {
        let columns: Vec<&str> = row.split('\t').collect();
        let file = dir.join(Path::new(columns[0]).file_name().expect("file name"));
        match columns[3] {
            "eql" => eql.push(file),
            "kuery" => kuery.push(file),
            _ => {}
        }
    }
    assert_eq!(eql.len(), 9);
    let mut args = vec!["check".to_string()];
    args.extend(eql.iter().map(|p| p.display().to_string()));
    let output = vigil(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout)
            .lines()
            .filter(|l| l.starts_with("ok: "))
            .count(),
        9
    );

    let output = vigil(&["check", kuery[0].to_str().unwrap()], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("language `kuery` is not supported yet"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn check_reports_every_invalid_rule_with_a_caret() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.eql");
    let bad = dir.path().join("bad.eql");
    std::fs::write(&good, r#"any where event.action == "create""#).unwrap();
    std::fs::write(&bad, "any where event.action in (\"a\",").unwrap();
    let output = vigil(
        &["check", good.to_str().unwrap(), bad.to_str().unwrap()],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).contains("ok: ") && text(&output.stdout).contains("good"));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bad.eql") && stderr.contains("line 1, column") && stderr.contains('^'),
        "{stderr}"
    );
}
