//! The Helm chart (`charts/vigil`) against a real kube-apiserver: `helm lint` and `helm template` in each mode, the
//! rendered manifests through server-side dry-run, `helm install`/`upgrade`/`uninstall`, and the least-privilege
//! RBAC the chart grants, proven with `kubectl auth can-i` and with real requests under a service account token.
//!
//! `install_chart` (below) installs the chart into a test control plane and returns a kubeconfig for the chart's
//! service account, for tests that run `vigil run` with exactly the chart's permissions.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{ControlPlane, Options, test_assets};
use tempfile::TempDir;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/vigil");
const REPO_CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/vigil.dev.yaml");
const CHART_CRDS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/vigil/crds/vigil.dev.yaml"
);
const EXAMPLE_RULE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/default-rule.yaml");
const MAIN_RS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/main.rs");

/// Values for webhook mode (the TLS Secret is required there; it need not exist for rendering or admission).
const WEBHOOK_VALUES: &[&str] = &[
    "--set",
    "mode=webhook",
    "--set",
    "webhook.tls.secretName=vigil-webhook-tls",
];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// The real helm binary, with its cache, config and data homes in a temporary directory (never `$HOME`), talking
/// to a test control plane through `--kubeconfig` when one is given.
pub struct Helm {
    home: TempDir,
    kubeconfig: Option<PathBuf>,
}

impl Helm {
    pub fn new(kubeconfig: Option<&Path>) -> Self {
        Helm {
            home: tempfile::Builder::new()
                .prefix("vigil-helm-")
                .tempdir()
                .expect("helm home"),
            kubeconfig: kubeconfig.map(Path::to_path_buf),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        let mut command = Command::new(test_assets().join("helm"));
        command
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("KUBECONFIG")
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT")
            .args(args);
        if let Some(kubeconfig) = &self.kubeconfig {
            command.arg(format!("--kubeconfig={}", kubeconfig.display()));
        }
        command.output().expect("running helm")
    }

    /// Run helm and return its stdout; panics with its output when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "helm {args:?} failed: {}",
            describe(&output)
        );
        text(&output.stdout)
    }

    /// `helm template` of the chart as release `vigil` in `namespace`: the raw YAML.
    pub fn template_yaml(&self, namespace: &str, values: &[&str]) -> String {
        let mut args = vec!["template", "vigil", CHART, "--namespace", namespace];
        args.extend_from_slice(values);
        self.ok(&args)
    }

    /// `helm template`, parsed: one JSON value per rendered object.
    pub fn template(&self, namespace: &str, values: &[&str]) -> Vec<Value> {
        yaml_documents(&self.template_yaml(namespace, values))
    }
}

/// Every non-empty document of a multi-document YAML stream.
fn yaml_documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|document| {
            <Value as serde::Deserialize>::deserialize(document).expect("rendered YAML parses")
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", kinds_and_names(objects)))
}

fn kinds_and_names(objects: &[Value]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect()
}

/// The `env` of the vigil container as name → literal value, or `fieldRef:<path>` for downward API values.
fn container_env(workload: &Value) -> BTreeMap<String, String> {
    let container = &workload["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "vigil");
    container["env"]
        .as_array()
        .expect("container env")
        .iter()
        .map(|var| {
            let name = var["name"].as_str().expect("env name").to_string();
            let value = match var["value"].as_str() {
                Some(value) => value.to_string(),
                None => format!(
                    "fieldRef:{}",
                    var["valueFrom"]["fieldRef"]["fieldPath"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: neither a value nor a fieldRef"))
                ),
            };
            (name, value)
        })
        .collect()
}

/// The environment variables `vigil run` reads (`env = "VIGIL_…"` in src/main.rs).
fn run_env_vars() -> BTreeSet<String> {
    let source = fs::read_to_string(MAIN_RS).expect("src/main.rs");
    source
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| name.starts_with("VIGIL_"))
        .map(str::to_string)
        .collect()
}

fn example_rule() -> Value {
    let yaml = fs::read_to_string(EXAMPLE_RULE).expect("examples/default-rule.yaml");
    let mut documents = yaml_documents(&yaml);
    assert_eq!(documents.len(), 1);
    documents.remove(0)
}

// ---------------------------------------------------------------------------------------------------------------
// Installing the chart into a test control plane (reusable by end-to-end tests).
// ---------------------------------------------------------------------------------------------------------------

/// A release of the chart installed into a test control plane.
pub struct Release {
    pub helm: Helm,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    /// `system:serviceaccount:<namespace>:<service account>`: what the API server calls vigil.
    pub username: String,
    /// A kubeconfig authenticating as the chart's service account (a token from the TokenRequest API), i.e. with
    /// exactly the permissions the chart grants.
    pub kubeconfig: PathBuf,
    pub client: kube::Client,
}

impl Release {
    /// The chart's workload (DaemonSet or Deployment, by mode) as the API server stored it.
    pub fn workload(&self, cp: &ControlPlane) -> Value {
        for kind in ["daemonset", "deployment"] {
            let output = cp.kubectl(&[
                "get",
                kind,
                &self.name,
                "-n",
                &self.namespace,
                "-o",
                "json",
                "--ignore-not-found",
            ]);
            assert!(output.status.success(), "{}", describe(&output));
            if !output.stdout.is_empty() {
                return serde_json::from_slice(&output.stdout).expect("workload JSON");
            }
        }
        panic!("release {} has no DaemonSet or Deployment", self.name)
    }

    /// The environment the chart gives the vigil container, with the downward API values resolved as the kubelet
    /// would for a pod on `node_name`: run `vigil run` with these (overriding the paths that point into the pod,
    /// VIGIL_AUDIT_LOG and VIGIL_CHECKPOINT) and `KUBECONFIG=self.kubeconfig` to act exactly as the chart's pod.
    pub fn pod_env(&self, cp: &ControlPlane, node_name: &str) -> Vec<(String, String)> {
        let pod_name = format!("{}-test", self.name);
        container_env(&self.workload(cp))
            .into_iter()
            .map(|(name, value)| {
                let value = match value.as_str() {
                    "fieldRef:spec.nodeName" => node_name.to_string(),
                    "fieldRef:metadata.namespace" => self.namespace.clone(),
                    "fieldRef:metadata.name" => pod_name.clone(),
                    other => {
                        assert!(
                            !other.starts_with("fieldRef:"),
                            "{name}: unresolved {other}"
                        );
                        value
                    }
                };
                (name, value)
            })
            .collect()
    }
}

/// Create `namespace` labelled for Pod Security Admission `privileged` (hostPath needs it), as the docs say.
fn create_privileged_namespace(cp: &ControlPlane, namespace: &str) {
    apply_manifest(
        cp,
        &format!("namespace-{namespace}"),
        &json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {
                "pod-security.kubernetes.io/enforce": "privileged",
                "pod-security.kubernetes.io/warn": "privileged",
            }},
        }),
    );
}

fn apply_manifest(cp: &ControlPlane, name: &str, manifest: &Value) {
    let path = cp.dir().join(format!("{name}.json"));
    fs::write(&path, serde_json::to_string_pretty(manifest).unwrap()).unwrap();
    let output = cp.kubectl(&["apply", "-f", path.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "kubectl apply {name}: {}",
        describe(&output)
    );
}

/// Install the chart as `release` into `namespace` (created with the PSA `privileged` label) with extra helm
/// arguments (`--set …`), as the cluster admin; then get a token for the chart's service account.
pub async fn install_chart(
    cp: &ControlPlane,
    namespace: &str,
    release: &str,
    values: &[&str],
) -> Release {
    create_privileged_namespace(cp, namespace);
    let helm = Helm::new(Some(&cp.kubeconfig));
    let mut args = vec!["install", release, CHART, "--namespace", namespace];
    args.extend_from_slice(values);
    let out = helm.ok(&args);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let status: Value = serde_json::from_str(&helm.ok(&[
        "status",
        release,
        "--namespace",
        namespace,
        "-o",
        "json",
    ]))
    .expect("helm status JSON");
    let objects = yaml_documents(status["manifest"].as_str().expect("release manifest"));
    let service_account = objects
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .and_then(|o| o["metadata"]["name"].as_str())
        .expect("the chart creates a ServiceAccount")
        .to_string();
    // The harness's TokenRequest helper: it server-side applies the (existing) namespace and service account with
    // its own field manager, which leaves Helm's fields alone.
    let (kubeconfig, client) = cp.service_account_client(namespace, &service_account).await;
    Release {
        helm,
        name: release.to_string(),
        namespace: namespace.to_string(),
        username: format!("system:serviceaccount:{namespace}:{service_account}"),
        service_account,
        kubeconfig,
        client,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The chart's files.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn chart_crds_are_the_repository_crds_byte_for_byte() {
    let repo = fs::read(REPO_CRDS).expect("crds/vigil.dev.yaml");
    let chart = fs::read(CHART_CRDS).expect("charts/vigil/crds/vigil.dev.yaml");
    assert!(
        repo == chart,
        "charts/vigil/crds/vigil.dev.yaml differs from crds/vigil.dev.yaml: cp crds/vigil.dev.yaml charts/vigil/crds/"
    );
    // And nothing else is there: Helm would install any other file in crds/ too.
    let files: Vec<String> = fs::read_dir(Path::new(CHART).join("crds"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["vigil.dev.yaml"]);
}

#[test]
fn the_default_rule_is_the_example_rule_with_tuned_values() {
    let helm = Helm::new(None);
    let example = example_rule();

    // Default values: the rendered rule is examples/default-rule.yaml, spec for spec.
    let yaml = helm.template_yaml("vigil-system", &[]);
    let objects = yaml_documents(&yaml);
    let rule = find(&objects, "DetectionRule", "anonymous-pod-write");
    assert_eq!(rule["apiVersion"], example["apiVersion"]);
    assert_eq!(rule["spec"], example["spec"]);
    assert!(
        rule["metadata"].get("namespace").is_none(),
        "rules are cluster-scoped"
    );
    // Attribution: Elastic, Elastic License v2, in a comment and in the spec.
    assert!(
        yaml.contains("# Author: Elastic. Licence: Elastic License v2"),
        "{yaml}"
    );
    assert_eq!(rule["spec"]["author"], json!(["Elastic"]));
    assert_eq!(rule["spec"]["license"], "Elastic License v2");

    // Tuned values change exactly the tuned fields.
    let tuned = helm.template(
        "vigil-system",
        &[
            "--set",
            "defaultRule.severity=high",
            "--set",
            "defaultRule.suppression.groupBy={kubernetes.audit.user.username,source.ip}",
            "--set",
            "defaultRule.suppression.window=10m",
        ],
    );
    let tuned_rule = find(&tuned, "DetectionRule", "anonymous-pod-write");
    assert_eq!(tuned_rule["spec"]["severity"], "high");
    assert_eq!(
        tuned_rule["spec"]["suppression"],
        json!({"groupBy": ["kubernetes.audit.user.username", "source.ip"], "window": "10m"})
    );
    let mut tuned_spec = tuned_rule["spec"].clone();
    let mut example_spec = example["spec"].clone();
    for field in ["severity", "suppression"] {
        tuned_spec.as_object_mut().unwrap().remove(field);
        example_spec.as_object_mut().unwrap().remove(field);
    }
    assert_eq!(tuned_spec, example_spec);

    // defaultRule.enabled=false renders no rule at all (users apply their own copy).
    let disabled = helm.template("vigil-system", &["--set", "defaultRule.enabled=false"]);
    assert!(
        disabled.iter().all(|o| o["kind"] != "DetectionRule"),
        "{:?}",
        kinds_and_names(&disabled)
    );
}

#[test]
fn helm_lint_passes_in_every_mode() {
    let helm = Helm::new(None);
    let mut modes: Vec<Vec<&str>> = vec![vec![], WEBHOOK_VALUES.to_vec()];
    modes.push(vec!["--set", "metrics.serviceMonitor.enabled=true"]);
    let mut nodeport = WEBHOOK_VALUES.to_vec();
    nodeport.extend(["--set", "webhook.service.type=NodePort"]);
    modes.push(nodeport);
    for values in modes {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(&values);
        let out = helm.ok(&args);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{values:?}: {out}"
        );
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "{values:?}: {out}"
        );
    }
}

#[test]
fn daemonset_mode_follows_each_control_plane_nodes_log_as_least_privileged_root() {
    let helm = Helm::new(None);
    let objects = helm.template("vigil-system", &[]);
    assert_eq!(
        kinds_and_names(&objects),
        pairs(&[
            ("ServiceAccount", "vigil"),
            ("ClusterRole", "vigil"),
            ("ClusterRoleBinding", "vigil"),
            ("Role", "vigil"),
            ("RoleBinding", "vigil"),
            ("ClusterRole", "vigil-viewer"),
            ("ClusterRole", "vigil-editor"),
            ("Service", "vigil-metrics"),
            ("DaemonSet", "vigil"),
            ("DetectionRule", "anonymous-pod-write"),
        ])
    );
    for object in &objects {
        let kind = object["kind"].as_str().unwrap();
        let namespaced = !matches!(kind, "ClusterRole" | "ClusterRoleBinding" | "DetectionRule");
        assert_eq!(
            object["metadata"]["namespace"].as_str(),
            namespaced.then_some("vigil-system"),
            "{kind}"
        );
    }

    let daemonset = find(&objects, "DaemonSet", "vigil");
    let pod = &daemonset["spec"]["template"]["spec"];
    // On control-plane nodes only, whatever their taints.
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
        json!([{"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}])
    );
    let tolerations = pod["tolerations"].as_array().unwrap();
    for (key, effect) in [
        ("node-role.kubernetes.io/control-plane", "NoSchedule"),
        ("node-role.kubernetes.io/master", "NoSchedule"),
    ] {
        assert!(
            tolerations.contains(&json!({"key": key, "operator": "Exists", "effect": effect})),
            "{key}: {tolerations:?}"
        );
    }
    // The audit log directory read-only, the checkpoint directory writable, both from the host.
    assert_eq!(
        pod["volumes"],
        json!([
            {"name": "audit-log", "hostPath": {"path": "/var/log/kubernetes/audit", "type": "Directory"}},
            {"name": "checkpoint", "hostPath": {"path": "/var/lib/vigil", "type": "DirectoryOrCreate"}},
        ])
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["volumeMounts"],
        json!([
            {"name": "audit-log", "mountPath": "/var/log/kubernetes/audit", "readOnly": true},
            {"name": "checkpoint", "mountPath": "/var/lib/vigil"},
        ])
    );
    assert_eq!(container["args"], json!(["run"]));
    assert_eq!(container["image"], "ghcr.io/vigil-dev/vigil:0.1.0");

    // UID 0 (the API server writes its log as root, 0600) but nothing else of root's.
    assert_eq!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        container["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        })
    );
    for forbidden in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod.get(forbidden).is_none(), "{forbidden}");
    }
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    // Probes and metrics on the metrics port.
    assert_eq!(
        container["ports"],
        json!([{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}])
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );

    // `vigil run` configured through VIGIL_<FLAG>, ignoring its own service account.
    let env = container_env(daemonset);
    let expected: BTreeMap<String, String> = [
        ("VIGIL_NODE_NAME", "fieldRef:spec.nodeName"),
        ("VIGIL_NAMESPACE", "fieldRef:metadata.namespace"),
        ("VIGIL_POD_NAME", "fieldRef:metadata.name"),
        ("VIGIL_AUDIT_LOG", "/var/log/kubernetes/audit"),
        ("VIGIL_AUDIT_LOG_GLOB", "audit*.log*"),
        ("VIGIL_START_AT", "end"),
        ("VIGIL_MAX_LINE_BYTES", "8388608"),
        ("VIGIL_CHECKPOINT", "/var/lib/vigil/vigil.checkpoint"),
        (
            "VIGIL_IGNORE_USER",
            "system:serviceaccount:vigil-system:vigil",
        ),
        ("VIGIL_METRICS_ADDR", "0.0.0.0:9090"),
        ("VIGIL_WRITE_BUDGET", "20"),
        ("VIGIL_ALERT_MAX_COUNT", "10000"),
        ("VIGIL_ALERT_MAX_AGE", "30d"),
        ("VIGIL_LOG_FORMAT", "json"),
        ("VIGIL_LOG_LEVEL", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, expected);
    assert_env_vars_are_run_flags(&env);

    // The metrics Service selects the pods' metrics port.
    let metrics = find(&objects, "Service", "vigil-metrics");
    assert_eq!(metrics["spec"]["clusterIP"], "None");
    assert_eq!(
        metrics["spec"]["selector"],
        daemonset["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "metrics");
}

/// Every literal VIGIL_* variable the chart sets is one `vigil run` reads, so a typo cannot be silently ignored.
/// VIGIL_NODE_NAME, VIGIL_NAMESPACE and VIGIL_POD_NAME are the pod's identity for the operator's Lease.
fn assert_env_vars_are_run_flags(env: &BTreeMap<String, String>) {
    let flags = run_env_vars();
    assert!(flags.contains("VIGIL_AUDIT_LOG"), "{flags:?}");
    for name in env.keys() {
        let identity = matches!(
            name.as_str(),
            "VIGIL_NODE_NAME" | "VIGIL_NAMESPACE" | "VIGIL_POD_NAME"
        );
        assert!(
            identity || flags.contains(name),
            "{name} is not a `vigil run` flag: {flags:?}"
        );
    }
}

#[test]
fn webhook_mode_is_one_deployment_behind_a_service() {
    let helm = Helm::new(None);
    let mut values = WEBHOOK_VALUES.to_vec();
    values.extend([
        "--set",
        "webhook.service.type=NodePort",
        "--set",
        "webhook.service.nodePort=30443",
        "--set",
        "webhook.clientCA.secretName=apiserver-client-ca",
        "--set",
        "webhook.token.secretName=vigil-webhook-token",
    ]);
    let objects = helm.template("vigil-system", &values);
    assert!(objects.iter().all(|o| o["kind"] != "DaemonSet"));
    let deployment = find(&objects, "Deployment", "vigil");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    // No host access at all, and no control-plane pinning.
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.get("hostPath").is_none()),
        "{}",
        pod["volumes"]
    );
    assert!(pod.get("affinity").is_none() && pod.get("tolerations").is_none());
    let container = &pod["containers"][0];
    assert_eq!(
        container["ports"],
        json!([
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
            {"name": "webhook", "containerPort": 8443, "protocol": "TCP"},
        ])
    );
    let env = container_env(deployment);
    assert_eq!(env["VIGIL_WEBHOOK_ADDR"], "0.0.0.0:8443");
    assert_eq!(
        env["VIGIL_WEBHOOK_TLS_CERT"],
        "/etc/vigil/webhook-tls/tls.crt"
    );
    assert_eq!(
        env["VIGIL_WEBHOOK_TLS_KEY"],
        "/etc/vigil/webhook-tls/tls.key"
    );
    assert_eq!(
        env["VIGIL_WEBHOOK_CLIENT_CA"],
        "/etc/vigil/webhook-client-ca/ca.crt"
    );
    assert_eq!(
        env["VIGIL_WEBHOOK_TOKEN_FILE"],
        "/etc/vigil/webhook-token/token"
    );
    assert_eq!(
        env["VIGIL_IGNORE_USER"],
        "system:serviceaccount:vigil-system:vigil"
    );
    assert!(!env.contains_key("VIGIL_AUDIT_LOG") && !env.contains_key("VIGIL_CHECKPOINT"));
    assert_env_vars_are_run_flags(&env);
    // Each file the env names is mounted from its Secret.
    let mounts: BTreeMap<&str, &str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let secrets: BTreeMap<&str, &str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap(),
                v["secret"]["secretName"].as_str().unwrap(),
            )
        })
        .collect();
    for (var, volume, secret) in [
        ("VIGIL_WEBHOOK_TLS_CERT", "webhook-tls", "vigil-webhook-tls"),
        (
            "VIGIL_WEBHOOK_CLIENT_CA",
            "webhook-client-ca",
            "apiserver-client-ca",
        ),
        (
            "VIGIL_WEBHOOK_TOKEN_FILE",
            "webhook-token",
            "vigil-webhook-token",
        ),
    ] {
        assert!(
            env[var].starts_with(&format!("{}/", mounts[volume])),
            "{var}"
        );
        assert_eq!(secrets[volume], secret);
    }

    // The Service the API server's webhook kubeconfig points at.
    let service = find(&objects, "Service", "vigil-webhook");
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP", "nodePort": 30443}])
    );
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // A pinned ClusterIP (so the certificate's IP SAN can be issued first).
    let mut pinned = WEBHOOK_VALUES.to_vec();
    pinned.extend(["--set", "webhook.service.clusterIP=10.96.200.10"]);
    let objects = helm.template("vigil-system", &pinned);
    let service = find(&objects, "Service", "vigil-webhook");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["clusterIP"], "10.96.200.10");

    // Without a serving certificate the chart refuses to render.
    let refused = helm.run(&["template", "vigil", CHART, "--set", "mode=webhook"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("webhook.tls.secretName is required with mode=webhook"),
        "{}",
        describe(&refused)
    );
}

#[test]
fn service_monitor_is_off_by_default_and_scrapes_the_metrics_service_when_on() {
    let helm = Helm::new(None);
    let default = helm.template("vigil-system", &[]);
    assert!(default.iter().all(|o| o["kind"] != "ServiceMonitor"));

    let objects = helm.template(
        "vigil-system",
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.serviceMonitor.labels.release=prometheus",
            "--set",
            "metrics.service.enabled=false",
        ],
    );
    let monitor = find(&objects, "ServiceMonitor", "vigil");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    // It needs the metrics Service, rendered even with metrics.service.enabled=false, and selects only it.
    let service = find(&objects, "Service", "vigil-metrics");
    let labels = service["metadata"]["labels"].as_object().unwrap();
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(labels.get(key), Some(value), "{key}");
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["vigil-system"])
    );
}

#[test]
fn values_tune_the_operator() {
    let helm = Helm::new(None);
    let objects = helm.template(
        "security",
        &[
            "--set",
            "writeBudget=50",
            "--set",
            "retention.maxCount=500",
            "--set",
            "retention.maxAge=7d",
            "--set",
            "log.level=info\\,vigil=debug",
            "--set",
            "log.format=text",
            "--set",
            "ignoreUsers={system:kube-scheduler,system:kube-controller-manager}",
            "--set",
            "priorityClassName=system-cluster-critical",
            "--set",
            "auditLog.hostPath=/var/lib/rancher/rke2/server/logs",
            "--set",
            "auditLog.startAt=beginning",
            "--set",
            "extraEnv[0].name=VIGIL_LOG",
            "--set",
            "extraEnv[0].value=trace",
            "--set",
            "image.tag=0.2.0",
            "--set",
            "serviceAccount.name=detector",
        ],
    );
    let daemonset = find(&objects, "DaemonSet", "vigil");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["serviceAccountName"], "detector");
    assert_eq!(
        pod["containers"][0]["image"],
        "ghcr.io/vigil-dev/vigil:0.2.0"
    );
    assert_eq!(
        pod["volumes"][0]["hostPath"]["path"],
        "/var/lib/rancher/rke2/server/logs"
    );
    let env = container_env(daemonset);
    for (name, value) in [
        ("VIGIL_WRITE_BUDGET", "50"),
        ("VIGIL_ALERT_MAX_COUNT", "500"),
        ("VIGIL_ALERT_MAX_AGE", "7d"),
        ("VIGIL_LOG_LEVEL", "info,vigil=debug"),
        ("VIGIL_LOG_FORMAT", "text"),
        ("VIGIL_AUDIT_LOG", "/var/lib/rancher/rke2/server/logs"),
        ("VIGIL_START_AT", "beginning"),
        ("VIGIL_LOG", "trace"),
        (
            "VIGIL_IGNORE_USER",
            "system:serviceaccount:security:detector,system:kube-scheduler,system:kube-controller-manager",
        ),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    // The RBAC subjects follow the service account name.
    for (kind, name) in [("ClusterRoleBinding", "vigil"), ("RoleBinding", "vigil")] {
        assert_eq!(
            find(&objects, kind, name)["subjects"],
            json!([{"kind": "ServiceAccount", "name": "detector", "namespace": "security"}])
        );
    }
}

#[test]
fn the_schema_rejects_invalid_values() {
    let helm = Helm::new(None);
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "mode=sidecar"], "/mode"),
        (
            &["--set", "defaultRule.severity=urgent"],
            "/defaultRule/severity",
        ),
        (&["--set", "defaultRule.suppression.window=5m"], "groupBy"),
        (&["--set", "retention.maxAge=30days"], "/retention/maxAge"),
        (&["--set", "writeBudget=0"], "/writeBudget"),
        (&["--set", "log.format=xml"], "/log/format"),
        (
            &["--set", "auditLog.hostPath=relative/dir"],
            "/auditLog/hostPath",
        ),
        (
            &["--set", "webhook.service.type=LoadBalancer"],
            "/webhook/service/type",
        ),
        (&["--set", "defaultRule.severty=high"], "severty"),
        (&["--set", "ignoreUsers={a\\,b}"], "/ignoreUsers"),
    ];
    for (values, expected) in cases {
        let mut args = vec!["template", "vigil", CHART];
        args.extend_from_slice(values);
        let output = helm.run(&args);
        assert!(!output.status.success(), "{values:?} was accepted");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{values:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// On the real API server.
// ---------------------------------------------------------------------------------------------------------------

/// `kubectl apply --dry-run=server` of a rendered manifest: (success, stdout, stderr).
fn server_dry_run(cp: &ControlPlane, name: &str, yaml: &str) -> Output {
    let path = cp.dir().join(format!("{name}.yaml"));
    fs::write(&path, yaml).unwrap();
    cp.kubectl(&["apply", "--dry-run=server", "-f", path.to_str().unwrap()])
}

#[tokio::test]
async fn rendered_manifests_pass_server_side_dry_run() {
    let cp = ControlPlane::start().await;
    create_privileged_namespace(&cp, "vigil-system");
    let helm = Helm::new(None);

    let mut webhook_nodeport = WEBHOOK_VALUES.to_vec();
    webhook_nodeport.extend([
        "--set",
        "webhook.service.type=NodePort",
        "--set",
        "webhook.service.nodePort=30443",
    ]);
    let mut webhook_pinned = WEBHOOK_VALUES.to_vec();
    webhook_pinned.extend(["--set", "webhook.service.clusterIP=10.96.200.10"]);
    let tuned: &[&str] = &[
        "--set",
        "defaultRule.severity=critical",
        "--set",
        "defaultRule.suppression.groupBy={kubernetes.audit.user.username}",
        "--set",
        "defaultRule.suppression.window=10m",
        "--set",
        "priorityClassName=system-node-critical",
        "--set",
        "extraEnv[0].name=VIGIL_LOG",
        "--set",
        "extraEnv[0].value=debug",
    ];
    // The ServiceMonitor is left out: its CRD (Prometheus Operator) is not installed here.
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("daemonset", vec![]),
        ("webhook-clusterip", webhook_pinned),
        ("webhook-nodeport", webhook_nodeport),
        ("tuned", tuned.to_vec()),
    ];
    for (name, values) in cases {
        let yaml = helm.template_yaml("vigil-system", &values);
        let objects = yaml_documents(&yaml);
        let output = server_dry_run(&cp, name, &yaml);
        assert!(output.status.success(), "{name}: {}", describe(&output));
        let stdout = text(&output.stdout);
        // Every rendered object was admitted (and validated against its schema, CRDs included) by the API server.
        for (kind, object) in kinds_and_names(&objects) {
            let line = format!("/{object} created (server dry run)");
            assert!(
                stdout.lines().any(|l| {
                    let kind = kind.to_lowercase();
                    l.ends_with(&line)
                        && (l.starts_with(&format!("{kind}/"))
                            || l.starts_with(&format!("{kind}.")))
                }),
                "{name}: {kind} {object} not admitted:\n{stdout}"
            );
        }
        assert_eq!(stdout.lines().count(), objects.len(), "{name}:\n{stdout}");
        assert!(
            !text(&output.stderr).contains("PodSecurity"),
            "{name}: {}",
            describe(&output)
        );
    }
    // A dry run persists nothing.
    let none = cp.kubectl(&[
        "get",
        "daemonsets,deployments,services",
        "-n",
        "vigil-system",
        "-o",
        "name",
    ]);
    assert!(
        none.status.success() && none.stdout.is_empty(),
        "{}",
        describe(&none)
    );

    // hostPath needs a `privileged` namespace, as NOTES.txt and the docs say: in a `baseline` one, Pod Security
    // Admission flags the DaemonSet (and would refuse its pods), while the webhook mode has no host access.
    apply_manifest(
        &cp,
        "namespace-baseline",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "baseline", "labels": {
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "baseline",
        }}}),
    );
    let output = server_dry_run(
        &cp,
        "baseline-daemonset",
        &helm.template_yaml("baseline", &[]),
    );
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(r#"would violate PodSecurity "baseline:latest""#)
            && stderr.contains("hostPath volumes"),
        "{stderr}"
    );
    let output = server_dry_run(
        &cp,
        "baseline-webhook",
        &helm.template_yaml("baseline", WEBHOOK_VALUES),
    );
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        !text(&output.stderr).contains("PodSecurity"),
        "{}",
        describe(&output)
    );
}

fn kubectl_json(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    let output = cp.kubectl(&full);
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        describe(&output)
    );
    serde_json::from_slice(&output.stdout).expect("kubectl JSON")
}

/// Whether the object exists (`kubectl get` says NotFound otherwise).
fn exists(cp: &ControlPlane, args: &[&str]) -> bool {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend(["-o", "name", "--ignore-not-found"]);
    let output = cp.kubectl(&full);
    assert!(
        output.status.success(),
        "kubectl {full:?}: {}",
        describe(&output)
    );
    !output.stdout.is_empty()
}

/// The objects a default install creates, as `kubectl get` arguments.
const RELEASE_OBJECTS: &[&[&str]] = &[
    &["serviceaccount", "vigil", "-n", "vigil-system"],
    &["clusterrole", "vigil"],
    &["clusterrolebinding", "vigil"],
    &["role", "vigil", "-n", "vigil-system"],
    &["rolebinding", "vigil", "-n", "vigil-system"],
    &["clusterrole", "vigil-viewer"],
    &["clusterrole", "vigil-editor"],
    &["service", "vigil-metrics", "-n", "vigil-system"],
    &["daemonset", "vigil", "-n", "vigil-system"],
    &["detectionrule", "anonymous-pod-write"],
];

#[tokio::test]
async fn install_upgrade_and_uninstall_on_a_real_api_server() {
    // No CRDs beforehand: the chart's crds/ installs them, as on a fresh cluster.
    let cp = ControlPlane::start_with(Options {
        without_crds: true,
        ..Options::default()
    })
    .await;
    assert!(!exists(&cp, &["crd", "detectionrules.vigil.dev"]));

    let release = install_chart(&cp, "vigil-system", "vigil", &[]).await;
    assert_eq!(release.username, "system:serviceaccount:vigil-system:vigil");
    for crd in ["detectionrules.vigil.dev", "detectionalerts.vigil.dev"] {
        let crd = kubectl_json(&cp, &["get", "crd", crd]);
        let established = crd["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(established, "{}", crd["status"]);
    }
    for object in RELEASE_OBJECTS {
        assert!(exists(&cp, object), "{object:?} missing after install");
    }
    // The default rule is in the cluster, with the example's spec.
    let example = example_rule();
    let rule = kubectl_json(&cp, &["get", "detectionrule", "anonymous-pod-write"]);
    assert_eq!(rule["spec"], example["spec"]);
    assert_eq!(rule["metadata"]["generation"], 1);
    assert_eq!(
        rule["metadata"]["annotations"]["meta.helm.sh/release-name"],
        "vigil"
    );
    // The DaemonSet is stored (no kubelet runs its pods here) with the environment the chart rendered.
    let env: BTreeMap<String, String> = release.pod_env(&cp, "cp-1").into_iter().collect();
    assert_eq!(env["VIGIL_NODE_NAME"], "cp-1");
    assert_eq!(env["VIGIL_NAMESPACE"], "vigil-system");
    assert_eq!(env["VIGIL_IGNORE_USER"], release.username);
    assert_eq!(env["VIGIL_LOG_LEVEL"], "info");

    // Upgrade with tuned values: the default rule changes (Helm owns it), and so does the pod's environment.
    let out = release.helm.ok(&[
        "upgrade",
        "vigil",
        CHART,
        "--namespace",
        "vigil-system",
        "--set",
        "defaultRule.severity=high",
        "--set",
        "defaultRule.suppression.groupBy={kubernetes.audit.user.username}",
        "--set",
        "defaultRule.suppression.window=15m",
        "--set",
        "log.level=debug",
    ]);
    assert!(
        out.contains("STATUS: deployed") && out.contains("REVISION: 2"),
        "{out}"
    );
    let rule = kubectl_json(&cp, &["get", "detectionrule", "anonymous-pod-write"]);
    assert_eq!(rule["spec"]["severity"], "high");
    assert_eq!(
        rule["spec"]["suppression"],
        json!({"groupBy": ["kubernetes.audit.user.username"], "window": "15m"})
    );
    assert_eq!(rule["spec"]["query"], example["spec"]["query"]);
    assert_eq!(rule["metadata"]["generation"], 2);
    let env: BTreeMap<String, String> = release.pod_env(&cp, "cp-1").into_iter().collect();
    assert_eq!(env["VIGIL_LOG_LEVEL"], "debug");

    // An alert (as vigil would write it) and a rule of the user's own.
    apply_manifest(
        &cp,
        "alert",
        &json!({
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "DetectionAlert",
            "metadata": {"name": "anonymous-pod-write-0a1b2c3d"},
            "spec": {
                "rule": {"name": "anonymous-pod-write", "severity": "high"},
                "events": [{"auditID": "0a1b2c3d-0000-4000-8000-000000000000", "verb": "create",
                            "user": {"username": "system:anonymous"},
                            "objectRef": {"resource": "pods", "namespace": "default", "name": "evil"}}],
                "count": 1,
                "firstSeen": "2026-01-01T00:00:00Z",
                "lastSeen": "2026-01-01T00:00:00Z",
                "message": "system:anonymous create pods default/evil; rule anonymous-pod-write fired",
            },
        }),
    );
    let mut own_rule = example.clone();
    own_rule["metadata"]["name"] = json!("my-anonymous-pod-write");
    apply_manifest(&cp, "own-rule", &own_rule);

    // Uninstall removes the release's objects, the default rule among them, and leaves the CRDs, the alerts and
    // the rules users applied themselves.
    let out = release
        .helm
        .ok(&["uninstall", "vigil", "--namespace", "vigil-system"]);
    assert!(out.contains(r#"release "vigil" uninstalled"#), "{out}");
    for object in RELEASE_OBJECTS {
        assert!(!exists(&cp, object), "{object:?} left after uninstall");
    }
    for kept in [
        &["crd", "detectionrules.vigil.dev"][..],
        &["crd", "detectionalerts.vigil.dev"],
        &["detectionalert", "anonymous-pod-write-0a1b2c3d"],
        &["detectionrule", "my-anonymous-pod-write"],
    ] {
        assert!(exists(&cp, kept), "{kept:?} removed by uninstall");
    }
    let listed = release.helm.ok(&["list", "--all-namespaces", "-q"]);
    assert!(listed.trim().is_empty(), "{listed}");
}

/// `kubectl auth can-i` as `user`: true for yes, false for no.
fn can_i(cp: &ControlPlane, user: &str, args: &[&str]) -> bool {
    let mut full = vec!["auth", "can-i"];
    full.extend_from_slice(args);
    let as_user = format!("--as={user}");
    full.push(&as_user);
    let output = cp.kubectl(&full);
    let answer = text(&output.stdout);
    match (output.status.code(), answer.trim()) {
        (Some(0), "yes") => true,
        (Some(1), "no") => false,
        _ => panic!("kubectl {full:?}: {}", describe(&output)),
    }
}

/// `kubectl auth can-i --list` as `user` in `namespace`: resource → verbs (non-resource URLs left out).
fn rules_of(cp: &ControlPlane, user: &str, namespace: &str) -> BTreeMap<String, BTreeSet<String>> {
    let as_user = format!("--as={user}");
    let output = cp.kubectl(&["auth", "can-i", "--list", "-n", namespace, &as_user]);
    assert!(output.status.success(), "{}", describe(&output));
    let mut rules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text(&output.stdout).lines().skip(1) {
        // e.g. `detectionalerts.vigil.dev   []   []   [get list watch create patch delete]`
        let Some((resource, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let verbs = rest
            .rsplit_once('[')
            .and_then(|(_, v)| v.strip_suffix(']'))
            .unwrap_or_else(|| panic!("unexpected can-i line: {line}"));
        if resource.is_empty() || resource.starts_with('[') {
            continue; // a non-resource URL row
        }
        rules
            .entry(resource.to_string())
            .or_default()
            .extend(verbs.split_whitespace().map(str::to_string));
    }
    rules
}

#[tokio::test]
async fn rbac_grants_exactly_what_vigil_uses() {
    let cp = ControlPlane::start().await;
    let release = install_chart(&cp, "vigil-system", "vigil", &[]).await;
    let sa = release.username.as_str();

    let allowed: &[&[&str]] = &[
        &["get", "detectionrules.vigil.dev"],
        &["list", "detectionrules.vigil.dev"],
        &["watch", "detectionrules.vigil.dev"],
        &["get", "detectionrules.vigil.dev", "--subresource=status"],
        &["patch", "detectionrules.vigil.dev", "--subresource=status"],
        &["get", "detectionalerts.vigil.dev"],
        &["list", "detectionalerts.vigil.dev"],
        &["watch", "detectionalerts.vigil.dev"],
        &["create", "detectionalerts.vigil.dev"],
        &["patch", "detectionalerts.vigil.dev"],
        &["delete", "detectionalerts.vigil.dev"],
        &["create", "events.events.k8s.io", "-n", "default"],
        &["patch", "events.events.k8s.io", "-n", "default"],
        &["create", "events.events.k8s.io", "-n", "kube-system"],
        &["get", "leases.coordination.k8s.io", "-n", "vigil-system"],
        &["create", "leases.coordination.k8s.io", "-n", "vigil-system"],
        &["patch", "leases.coordination.k8s.io", "-n", "vigil-system"],
    ];
    for args in allowed {
        assert!(can_i(&cp, sa, args), "{sa} should be allowed {args:?}");
    }
    let denied: &[&[&str]] = &[
        // No secrets, anywhere.
        &["get", "secrets", "-n", "vigil-system"],
        &["list", "secrets", "-n", "vigil-system"],
        &["list", "secrets", "--all-namespaces"],
        &["watch", "secrets", "-n", "kube-system"],
        // No pods, no workloads, no tokens.
        &["create", "pods", "-n", "default"],
        &["get", "pods", "-n", "default"],
        &["list", "pods", "--all-namespaces"],
        &["create", "pods/exec", "-n", "default"],
        &["create", "deployments.apps", "-n", "vigil-system"],
        &["patch", "daemonsets.apps", "-n", "vigil-system"],
        &["create", "serviceaccounts/token", "-n", "vigil-system"],
        // Rule specs are the users' (the status subresource only takes patches).
        &["create", "detectionrules.vigil.dev"],
        &["update", "detectionrules.vigil.dev"],
        &["patch", "detectionrules.vigil.dev"],
        &["delete", "detectionrules.vigil.dev"],
        &["update", "detectionrules.vigil.dev", "--subresource=status"],
        &["deletecollection", "detectionalerts.vigil.dev"],
        &["update", "detectionalerts.vigil.dev"],
        // Events: only events.k8s.io create/patch.
        &["create", "events", "-n", "default"],
        &["get", "events.events.k8s.io", "-n", "default"],
        &["delete", "events.events.k8s.io", "-n", "default"],
        // Leases: only in the release namespace, and never deleted.
        &["create", "leases.coordination.k8s.io", "-n", "default"],
        &["update", "leases.coordination.k8s.io", "-n", "kube-system"],
        &["delete", "leases.coordination.k8s.io", "-n", "vigil-system"],
        &["list", "leases.coordination.k8s.io", "-n", "vigil-system"],
        // Anything else.
        &["get", "configmaps", "-n", "vigil-system"],
        &["list", "nodes"],
        &["list", "namespaces"],
        &["create", "clusterrolebindings.rbac.authorization.k8s.io"],
        &["escalate", "clusterroles.rbac.authorization.k8s.io"],
        &["impersonate", "users"],
        &["update", "customresourcedefinitions.apiextensions.k8s.io"],
        &["*", "*"],
    ];
    for args in denied {
        assert!(!can_i(&cp, sa, args), "{sa} should be denied {args:?}");
    }

    // Nothing else at all: vigil's rules minus what every service account gets (discovery, self reviews) are
    // exactly the chart's, in the release namespace and elsewhere.
    let baseline = format!(
        "system:serviceaccount:vigil-system:{}",
        "unbound-service-account"
    );
    let set =
        |verbs: &[&str]| -> BTreeSet<String> { verbs.iter().map(|v| v.to_string()).collect() };
    let cluster_wide: BTreeMap<String, BTreeSet<String>> = [
        ("detectionrules.vigil.dev", set(&["get", "list", "watch"])),
        ("detectionrules.vigil.dev/status", set(&["get", "patch"])),
        (
            "detectionalerts.vigil.dev",
            set(&["get", "list", "watch", "create", "patch", "delete"]),
        ),
        ("events.events.k8s.io", set(&["create", "patch"])),
    ]
    .into_iter()
    .map(|(r, v)| (r.to_string(), v))
    .collect();
    for namespace in ["vigil-system", "default"] {
        let everyone = rules_of(&cp, &baseline, namespace);
        let mut granted = rules_of(&cp, sa, namespace);
        for (resource, verbs) in &everyone {
            if let Some(mine) = granted.get_mut(resource) {
                mine.retain(|v| !verbs.contains(v));
            }
        }
        granted.retain(|_, verbs| !verbs.is_empty());
        let mut expected = cluster_wide.clone();
        if namespace == "vigil-system" {
            expected.insert(
                "leases.coordination.k8s.io".to_string(),
                set(&["get", "create", "patch"]),
            );
        }
        assert_eq!(granted, expected, "in namespace {namespace}");
    }

    // With its own token, the service account really is refused what it lacks and granted what it has.
    let who = cp.kubectl_as(
        &release.kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(text(&who.stdout), sa, "{}", describe(&who));
    let rules = cp.kubectl_as(
        &release.kubeconfig,
        &["get", "detectionrules", "-o", "name"],
    );
    assert!(rules.status.success(), "{}", describe(&rules));
    assert_eq!(
        text(&rules.stdout).trim(),
        "detectionrule.vigil.dev/anonymous-pod-write"
    );
    let secrets = cp.kubectl_as(
        &release.kubeconfig,
        &["get", "secrets", "-n", "vigil-system"],
    );
    assert!(!secrets.status.success());
    assert!(
        text(&secrets.stderr).contains("Forbidden"),
        "{}",
        describe(&secrets)
    );
    let edit = cp.kubectl_as(
        &release.kubeconfig,
        &[
            "patch",
            "detectionrule",
            "anonymous-pod-write",
            "--type=merge",
            "-p",
            r#"{"spec":{"enabled":false}}"#,
        ],
    );
    assert!(!edit.status.success());
    assert!(
        text(&edit.stderr).contains("Forbidden"),
        "{}",
        describe(&edit)
    );

    // The ClusterRoles for people. (Aggregation into view/edit/admin is done by kube-controller-manager, which
    // this control plane does not run: the labels are checked, the aggregation is Kubernetes'.)
    for (user, role) in [("alice", "vigil-viewer"), ("bob", "vigil-editor")] {
        let binding = cp.kubectl(&[
            "create",
            "clusterrolebinding",
            &format!("{user}-{role}"),
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ]);
        assert!(binding.status.success(), "{}", describe(&binding));
    }
    for verb in ["get", "list", "watch"] {
        for resource in ["detectionrules.vigil.dev", "detectionalerts.vigil.dev"] {
            assert!(
                can_i(&cp, "alice", &[verb, resource]),
                "alice {verb} {resource}"
            );
            assert!(
                can_i(&cp, "bob", &[verb, resource]),
                "bob {verb} {resource}"
            );
        }
    }
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !can_i(&cp, "alice", &[verb, "detectionrules.vigil.dev"]),
            "alice {verb}"
        );
        assert!(
            can_i(&cp, "bob", &[verb, "detectionrules.vigil.dev"]),
            "bob {verb}"
        );
        for user in ["alice", "bob"] {
            assert!(
                !can_i(&cp, user, &[verb, "detectionalerts.vigil.dev"]),
                "{user} {verb} alerts"
            );
            assert!(
                !can_i(
                    &cp,
                    user,
                    &[verb, "detectionrules.vigil.dev", "--subresource=status"]
                ),
                "{user} {verb} rule status"
            );
        }
    }
    for user in ["alice", "bob"] {
        assert!(!can_i(&cp, user, &["get", "secrets", "--all-namespaces"]));
    }
    let viewer = kubectl_json(&cp, &["get", "clusterrole", "vigil-viewer"]);
    assert_eq!(
        viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    let editor = kubectl_json(&cp, &["get", "clusterrole", "vigil-editor"]);
    assert_eq!(
        editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The chart's permissions are enough: vigil itself, as the chart's service account.
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn vigil_as_the_charts_service_account_completes_the_story() {
    let cp = ControlPlane::start().await;
    let release = install_chart(&cp, "vigil-system", "vigil", &[]).await;
    support::vigil::allow_anonymous_pod_create(&cp).await;
    // The chart's default rule is already there; vigil runs with the chart's environment and token.
    let env = release.pod_env(&cp, "control-plane-1");
    let vigil =
        support::vigil::VigilRun::start_as_chart(&cp, &release.kubeconfig, "control-plane-1", &env);
    support::vigil::anonymous_pod_create_story(&cp).await;
    let log = vigil.log_text();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "vigil lacked a permission:\n{log}"
    );
    // Its own requests are in the audit log, and were ignored, not evaluated.
    assert!(
        cp.audit_events()
            .iter()
            .any(|e| e["user"]["username"] == release.username.as_str())
    );
}
