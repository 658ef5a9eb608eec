//! The real `vigil` binary as a child process of a test (`vigil run`), killed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{ListParams, PostParams};
use vigil::crd::{DetectionAlert, DetectionRule};

use super::{ControlPlane, free_port};

/// The user vigil authenticates as in tests; its own audit events are ignored (`--ignore-user`).
pub const OPERATOR_USER: &str = "vigil-operator";

pub struct VigilRun {
    child: Option<Child>,
    pub log: PathBuf,
    pub checkpoint: PathBuf,
    pub metrics_port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    kubeconfig: PathBuf,
}

impl VigilRun {
    /// Starts `vigil run` following the control plane's audit log from its beginning, as `node_name`, with
    /// `extra` flags (a later `--audit-log` wins over the default).
    pub async fn start(cp: &ControlPlane, node_name: &str, extra: &[&str]) -> Self {
        let (kubeconfig, _) = cp.user_client(OPERATOR_USER, &["system:masters"]).await;
        Self::start_as(cp, &kubeconfig, node_name, extra)
    }

    /// Runs vigil as the chart's pod would: with the environment the chart gives the container (`env`, from
    /// `Release::pod_env`) and `kubeconfig` (the chart's service account), only the paths pointing into the pod
    /// replaced by the test's.
    pub fn start_as_chart(
        cp: &ControlPlane,
        kubeconfig: &Path,
        node_name: &str,
        env: &[(String, String)],
    ) -> Self {
        let mut run = Self::start_as(cp, kubeconfig, node_name, &[]);
        run.kill();
        let local = [
            "run",
            "--audit-log",
            "--start-at",
            "--checkpoint",
            "--metrics-addr",
        ];
        run.args
            .retain(|arg| local.contains(&arg.split('=').next().unwrap_or_default()));
        run.env = env
            .iter()
            .filter(|(name, _)| {
                !["VIGIL_AUDIT_LOG", "VIGIL_CHECKPOINT", "VIGIL_METRICS_ADDR"]
                    .contains(&name.as_str())
            })
            .cloned()
            .collect();
        run.spawn();
        run
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
            env: Vec::new(),
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
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .env("VIGIL_LOG", "info,vigil=debug")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("starting vigil run");
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
    audit_line(audit_id, "system:anonymous", "create", "pods", pod, stage)
}

/// One raw audit line of `username` doing `verb` on `resource` `name` in namespace default.
pub fn audit_line(
    audit_id: &str,
    username: &str,
    verb: &str,
    resource: &str,
    name: &str,
    stage: &str,
) -> String {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let group = if username == "system:anonymous" {
        "system:unauthenticated"
    } else {
        "system:authenticated"
    };
    let mut event = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": audit_id,
        "stage": stage, "requestURI": format!("/api/v1/namespaces/default/{resource}"), "verb": verb,
        "user": {"username": username, "groups": [group]},
        "sourceIPs": ["192.0.2.10"], "userAgent": "curl/8.5.0",
        "objectRef": {"resource": resource, "namespace": "default", "apiVersion": "v1"},
        "requestReceivedTimestamp": now, "stageTimestamp": now,
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    });
    if stage == "ResponseComplete" {
        event["objectRef"]["name"] = json!(name);
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

/// Polls `check` every 200 ms until it returns Some; fails after `timeout`, naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The rule's Ready condition: (status, reason, message).
pub async fn ready_condition(
    rules: &Api<DetectionRule>,
    name: &str,
) -> Option<(String, String, String)> {
    let rule = rules.get(name).await.ok()?;
    let condition = rule
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")?;
    Some((condition.status, condition.reason, condition.message))
}

pub fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .expect("pod")
}

/// The user's story, against a running vigil with the default rule applied and anonymous pod creates allowed: an
/// authenticated and an anonymous pod create; exactly one DetectionAlert (for the anonymous one, with the pod's
/// name and uid), a Warning Event regarding the pod in its namespace, and the rule's matchCount 1.
pub async fn anonymous_pod_create_story(cp: &ControlPlane) -> DetectionAlert {
    let admin = cp.admin_client().await.expect("admin client");
    let rules: Api<DetectionRule> = Api::all(admin.clone());
    let ready = eventually(
        Duration::from_secs(20),
        "the default rule to be Ready",
        || async {
            ready_condition(&rules, "anonymous-pod-write")
                .await
                .filter(|(status, _, _)| status == "True")
        },
    )
    .await;
    assert_eq!(ready.1, "Compiled");

    Api::<Pod>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &pod("web"))
        .await
        .expect("authenticated pod create");
    let (_, anonymous) = cp.anonymous_client().await;
    let created = Api::<Pod>::namespaced(anonymous, "default")
        .create(&PostParams::default(), &pod("evil"))
        .await
        .expect("anonymous pod create");
    let pod_uid = created.metadata.uid.expect("pod uid");

    let alerts: Api<DetectionAlert> = Api::all(admin.clone());
    let alert = eventually(
        Duration::from_secs(20),
        "the alert, at its ResponseComplete stage",
        || async {
            let listed = alerts.list(&ListParams::default()).await.ok()?.items;
            listed
                .into_iter()
                .find(|a| a.spec.events[0].stage.as_deref() == Some("ResponseComplete"))
        },
    )
    .await;
    let event = &alert.spec.events[0];
    assert_eq!(alert.spec.rule.name, "anonymous-pod-write");
    assert_eq!(event.user.username.as_deref(), Some("system:anonymous"));
    let object = event.object_ref.as_ref().expect("objectRef");
    assert_eq!(
        (object.name.as_deref(), object.uid.as_deref()),
        (Some("evil"), Some(pod_uid.as_str()))
    );
    assert_eq!(alert.spec.count, 1);

    let events: Api<KubeEvent> = Api::namespaced(admin, "default");
    let warning = eventually(
        Duration::from_secs(10),
        "the Warning Event regarding the pod",
        || async {
            let listed = events.list(&ListParams::default()).await.ok()?.items;
            listed.into_iter().find(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("evil")
                    && e.type_.as_deref() == Some("Warning")
            })
        },
    )
    .await;
    let regarding = warning.regarding.expect("regarding");
    assert_eq!(
        (regarding.kind.as_deref(), regarding.uid.as_deref()),
        (Some("Pod"), Some(pod_uid.as_str()))
    );
    assert_eq!(warning.reason.as_deref(), Some("AnonymousPodWrite"));
    assert!(
        warning
            .note
            .unwrap_or_default()
            .contains("system:anonymous create pods default/evil")
    );

    let status = eventually(Duration::from_secs(15), "matchCount 1", || async {
        let status = rules.get("anonymous-pod-write").await.ok()?.status?;
        (status.match_count == Some(1)).then_some(status)
    })
    .await;
    assert!(status.last_match_time.is_some());

    // The authenticated create never produced an alert.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = alerts
        .list(&ListParams::default())
        .await
        .expect("alerts")
        .items;
    let messages: Vec<&String> = all.iter().map(|a| &a.spec.message).collect();
    assert_eq!(
        all.len(),
        1,
        "only the anonymous request alerts: {messages:?}"
    );
    alert
}
