//! The real `vigil` binary as a child process of a test (`vigil run`), killed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{ControlPlane, free_port};

/// The user vigil authenticates as in tests; its own audit events are ignored (`--ignore-user`).
pub const OPERATOR_USER: &str = "vigil-operator";

pub struct VigilRun {
    child: Option<Child>,
    pub log: PathBuf,
    pub checkpoint: PathBuf,
    pub metrics_port: u16,
    args: Vec<String>,
    kubeconfig: PathBuf,
}

impl VigilRun {
    /// Starts `vigil run` following the control plane's audit log from its beginning, as `node_name`, with
    /// `extra` flags (a later `--audit-log` wins over the default).
    pub async fn start(cp: &ControlPlane, node_name: &str, extra: &[&str]) -> Self {
        let (kubeconfig, _) = cp.user_client(OPERATOR_USER, &["system:masters"]).await;
        Self::start_as(cp, &kubeconfig, node_name, extra)
    }

    /// Like `start`, authenticated by `kubeconfig`.
    pub fn start_as(cp: &ControlPlane, kubeconfig: &Path, node_name: &str, extra: &[&str]) -> Self {
        let kubeconfig = kubeconfig.to_path_buf();
        let dir = cp.dir().join(format!("vigil-{node_name}"));
        fs::create_dir_all(&dir).expect("vigil dir");
        let metrics_port = free_port();
        let mut args: Vec<String> = vec![
            "run".into(),
            format!("--audit-log={}", cp.audit_log.display()),
            "--start-at=beginning".into(),
            format!("--checkpoint={}", dir.join("checkpoint.json").display()),
            format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            format!("--ignore-user={OPERATOR_USER}"),
            format!("--node-name={node_name}"),
            "--namespace=default".into(),
        ];
        // A flag given in `extra` replaces its default.
        let flag = |arg: &str| arg.split('=').next().unwrap_or_default().to_string();
        args.retain(|arg| arg == "run" || !extra.iter().any(|e| flag(e) == flag(arg)));
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut run = VigilRun {
            child: None,
            log: dir.join("vigil.log"),
            checkpoint: dir.join("checkpoint.json"),
            metrics_port,
            args,
            kubeconfig,
        };
        run.spawn();
        run
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("vigil log");
        let stderr = log.try_clone().expect("vigil log");
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("VIGIL_LOG", "info,vigil=debug")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("starting vigil run");
        self.child = Some(child);
    }

    /// SIGKILL: no flush, no checkpoint save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a graceful exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().ok()
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }
}

impl Drop for VigilRun {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log_text();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "vigil log ({}):\n{}",
                self.log.display(),
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

/// The misconfiguration the default rule exists for: anonymous requests may create pods.
pub async fn allow_anonymous_pod_create(cp: &ControlPlane) {
    let admin = cp.admin_client().await.expect("admin client");
    let apply = PatchParams::apply("vigil-tests");
    let role: ClusterRole = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "anonymous-pod-writer"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]
    }))
    .expect("role");
    Api::<ClusterRole>::all(admin.clone())
        .patch("anonymous-pod-writer", &apply, &Patch::Apply(&role))
        .await
        .expect("cluster role");
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "anonymous-pod-writer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "anonymous-pod-writer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]
    }))
    .expect("binding");
    Api::<ClusterRoleBinding>::all(admin)
        .patch("anonymous-pod-writer", &apply, &Patch::Apply(&binding))
        .await
        .expect("cluster role binding");
}

/// One raw audit line (RequestReceived or ResponseComplete) of an anonymous pod create, as kube-apiserver writes it.
pub fn anonymous_pod_create_line(audit_id: &str, pod: &str, stage: &str) -> String {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut event = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": audit_id,
        "stage": stage, "requestURI": "/api/v1/namespaces/default/pods", "verb": "create",
        "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
        "sourceIPs": ["192.0.2.10"], "userAgent": "curl/8.5.0",
        "objectRef": {"resource": "pods", "namespace": "default", "apiVersion": "v1"},
        "requestReceivedTimestamp": now, "stageTimestamp": now,
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    });
    if stage == "ResponseComplete" {
        event["objectRef"]["name"] = json!(pod);
        event["responseStatus"] = json!({"metadata": {}, "code": 201});
    }
    event.to_string()
}

/// Appends lines to a log file (creating it), as an API server would.
pub fn append_lines(path: &Path, lines: &[String]) {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file");
    let mut text = lines.join("\n");
    text.push('\n');
    file.write_all(text.as_bytes())
        .expect("appending to the log");
}

pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}
