//! `crds/` must hold exactly what `vigil crd` prints, so the committed CRDs never drift from the code.

use std::process::Command;

#[test]
fn committed_crds_match_the_code() {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("crd")
        .output()
        .expect("running vigil crd");
    assert!(
        output.status.success(),
        "vigil crd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/vigil.dev.yaml");
    let committed = std::fs::read_to_string(path).expect("crds/vigil.dev.yaml");
    assert!(
        printed == committed,
        "crds/vigil.dev.yaml is out of date: run `cargo run -- crd > crds/vigil.dev.yaml`"
    );
    for name in ["detectionrules.vigil.dev", "detectionalerts.vigil.dev"] {
        assert!(
            printed.contains(&format!("name: {name}")),
            "{name} missing from vigil crd"
        );
    }
}

#[test]
fn exit_code_for_usage_errors_is_2() {
    let status = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["scan", "--no-such-flag"])
        .status()
        .expect("running vigil");
    assert_eq!(status.code(), Some(2));
}
