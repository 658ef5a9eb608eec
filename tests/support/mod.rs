//! A real, local Kubernetes control plane for integration tests: etcd and kube-apiserver built from their official
//! Go modules (`tests/tools/build-test-binaries.sh`), started on free loopback ports with RBAC, anonymous auth and
//! audit logging on, much like controller-runtime's envtest. Everything is killed and removed on drop, also when a
//! test panics.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod vigil;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;

/// The audit policy every test control plane runs with: pods at RequestResponse (so rules can read pod specs),
/// everything else at Metadata.
pub const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods"]
  - level: Metadata
"#;

const SERVICE_CIDR: &str = "10.96.0.0/16";

/// Directory holding `kube-apiserver`, `etcd`, `kubectl` and `helm`: `VIGIL_TEST_ASSETS`, or what the build script
/// made (it builds them on first use and answers from its cache afterwards).
pub fn test_assets() -> &'static Path {
    static ASSETS: OnceLock<PathBuf> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/build-test-binaries.sh");
        let output = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(output.status.success(), "{} failed", script.display());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = stdout.lines().last().unwrap_or_default().trim();
        assert!(!dir.is_empty(), "{} printed no directory", script.display());
        PathBuf::from(dir)
    })
}

/// The shared test material (`../shared`, or `VIGIL_SHARED`); `None` (with the reason printed) when absent.
pub fn shared_dir(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("VIGIL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let dir = base.join(sub);
    if dir.exists() {
        Some(dir)
    } else {
        println!("skipped: {} not found", dir.display());
        None
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Certificates and keys of one control plane: one CA signs the serving certificate and all client identities.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "vigil-test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA certificate");
        Pki {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate (PEM) and its key (PEM), for a server (`sans`) or a client (`common_name`, `organizations`).
    fn issue(&self, common_name: &str, organizations: &[&str], sans: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("cert params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for organization in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *organization);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// Options for starting a control plane.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra kube-apiserver flags, e.g. `--audit-webhook-config-file=…`.
    pub api_server_flags: Vec<String>,
    /// Skip installing vigil's CRDs.
    pub without_crds: bool,
}

pub struct ControlPlane {
    dir: TempDir,
    pki: Pki,
    etcd: Child,
    etcd_url: String,
    api_server: Option<Child>,
    api_port: u16,
    options: Options,
    /// Kubeconfig of the cluster admin (`system:masters`), for kubectl and helm.
    pub kubeconfig: PathBuf,
    /// The audit log the API server writes (JSON lines).
    pub audit_log: PathBuf,
    /// How long the last start took, until the API server was ready with CRDs established.
    pub startup: Duration,
}

impl ControlPlane {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let assets = test_assets();
        let began = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("vigil-cp-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        let pki = Pki::new();
        write(root.join("ca.crt"), &pki.ca_pem);
        let (serving_cert, serving_key) = pki.issue(
            "kube-apiserver",
            &[],
            &["127.0.0.1", "localhost", "kubernetes.default.svc"],
        );
        write(root.join("serving.crt"), &serving_cert);
        write(root.join("serving.key"), &serving_key);
        let sa_key = KeyPair::generate().expect("service account key");
        write(root.join("sa.key"), &sa_key.serialize_pem());
        write(root.join("sa.pub"), &sa_key.public_key_pem());
        write(root.join("audit-policy.yaml"), AUDIT_POLICY);
        fs::create_dir_all(root.join("audit")).expect("audit dir");

        let client_port = free_port();
        let peer_port = free_port();
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = spawn_logged(
            Command::new(assets.join("etcd")).args([
                "--name=test".to_string(),
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
                "--unsafe-no-fsync=true".to_string(),
                "--log-level=warn".to_string(),
            ]),
            &root.join("etcd.log"),
        );

        let mut control_plane = ControlPlane {
            kubeconfig: root.join("admin.kubeconfig"),
            audit_log: root.join("audit/audit.log"),
            dir,
            pki,
            etcd,
            etcd_url,
            api_server: None,
            api_port: free_port(),
            options,
            startup: Duration::ZERO,
        };
        let (admin_cert, admin_key) =
            control_plane
                .pki
                .issue("vigil-test-admin", &["system:masters"], &[]);
        control_plane.write_kubeconfig(
            &control_plane.kubeconfig,
            Credentials::Cert(&admin_cert, &admin_key),
        );
        control_plane.start_api_server().await;
        if !control_plane.options.without_crds {
            control_plane.install_crds().await;
        }
        control_plane.startup = began.elapsed();
        control_plane
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Start (or restart) kube-apiserver on the same port and etcd, and wait until it serves.
    pub async fn start_api_server(&mut self) {
        assert!(
            self.api_server.is_none(),
            "the API server is already running"
        );
        let root = self.dir.path();
        let mut flags = vec![
            format!("--etcd-servers={}", self.etcd_url),
            format!("--secure-port={}", self.api_port),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            // There is no node to reconcile the kubernetes Service endpoints against (as in envtest).
            "--endpoint-reconciler-type=none".to_string(),
            format!("--tls-cert-file={}", root.join("serving.crt").display()),
            format!(
                "--tls-private-key-file={}",
                root.join("serving.key").display()
            ),
            format!("--client-ca-file={}", root.join("ca.crt").display()),
            format!(
                "--service-account-key-file={}",
                root.join("sa.pub").display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                root.join("sa.key").display()
            ),
            "--service-account-issuer=https://kubernetes.default.svc".to_string(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=RBAC".to_string(),
            "--anonymous-auth=true".to_string(),
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--allow-privileged=true".to_string(),
            format!(
                "--audit-policy-file={}",
                root.join("audit-policy.yaml").display()
            ),
            format!("--audit-log-path={}", self.audit_log.display()),
            "--audit-log-format=json".to_string(),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
        ];
        flags.extend(self.options.api_server_flags.iter().cloned());
        let log = root.join("kube-apiserver.log");
        self.api_server = Some(spawn_logged(
            Command::new(test_assets().join("kube-apiserver")).args(&flags),
            &log,
        ));
        self.wait_until_serving(&log).await;
    }

    /// Stop kube-apiserver, leaving etcd (and so every object) in place.
    pub fn stop_api_server(&mut self) {
        if let Some(mut child) = self.api_server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_until_serving(&mut self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .api_server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("kube-apiserver exited with {status}:\n{}", tail(log));
            }
            // /readyz covers the post-start hooks (bootstrap RBAC roles among them), not just serving.
            if let Ok(client) = self.admin_client().await
                && let Ok(request) = http::Request::get("/readyz").body(Vec::new())
                && client
                    .request_text(request)
                    .await
                    .is_ok_and(|body| body.trim() == "ok")
                && Api::<Namespace>::all(client).get("default").await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready after 60 s:\n{}",
                tail(log)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Install the CRDs exactly as users do (the committed `crds/` files) and wait until they are established.
    async fn install_crds(&self) {
        let client = self.admin_client().await.expect("admin client");
        let api: Api<CustomResourceDefinition> = Api::all(client);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/vigil.dev.yaml");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let crd: CustomResourceDefinition =
                serde::Deserialize::deserialize(document).expect("a CustomResourceDefinition");
            let name = crd.metadata.name.clone().expect("CRD name");
            api.patch(
                &name,
                &PatchParams::apply("vigil-tests").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
            tokio::time::timeout(
                Duration::from_secs(30),
                await_condition(api.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not established after 30 s"))
            .expect("watching the CRD");
        }
    }

    /// A client acting as the cluster admin.
    pub async fn admin_client(&self) -> Result<kube::Client, kube::Error> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// A kubeconfig and client for a user authenticated by client certificate, with the given groups.
    pub async fn user_client(&self, user: &str, groups: &[&str]) -> (PathBuf, kube::Client) {
        let (cert, key) = self.pki.issue(user, groups, &[]);
        let path = self.dir.path().join(format!("user-{user}.kubeconfig"));
        self.write_kubeconfig(&path, Credentials::Cert(&cert, &key));
        let client = client_from_kubeconfig(&path).await.expect("user client");
        (path, client)
    }

    /// A kubeconfig and client that present no credentials: requests are `system:anonymous`.
    pub async fn anonymous_client(&self) -> (PathBuf, kube::Client) {
        let path = self.dir.path().join("anonymous.kubeconfig");
        self.write_kubeconfig(&path, Credentials::None);
        let client = client_from_kubeconfig(&path)
            .await
            .expect("anonymous client");
        (path, client)
    }

    /// Create a service account (and its namespace) and return a kubeconfig and client using a token for it
    /// from the TokenRequest API.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> (PathBuf, kube::Client) {
        let admin = self.admin_client().await.expect("admin client");
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        let ns = serde_json::from_value::<Namespace>(
            serde_json::json!({"metadata": {"name": namespace}}),
        )
        .expect("namespace");
        namespaces
            .patch(
                namespace,
                &PatchParams::apply("vigil-tests"),
                &Patch::Apply(&ns),
            )
            .await
            .expect("namespace");
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        let account = serde_json::from_value::<ServiceAccount>(
            serde_json::json!({"metadata": {"name": name}}),
        )
        .expect("service account");
        accounts
            .patch(
                name,
                &PatchParams::apply("vigil-tests"),
                &Patch::Apply(&account),
            )
            .await
            .expect("service account");
        let request = serde_json::from_value::<TokenRequest>(serde_json::json!({
            "spec": {"audiences": [], "expirationSeconds": 3600}
        }))
        .expect("token request");
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("token request")
            .status
            .expect("token status")
            .token
            .expect("a token");
        let path = self
            .dir
            .path()
            .join(format!("sa-{namespace}-{name}.kubeconfig"));
        self.write_kubeconfig(&path, Credentials::Token(&token));
        let client = client_from_kubeconfig(&path)
            .await
            .expect("service account client");
        (path, client)
    }

    fn write_kubeconfig(&self, path: &Path, credentials: Credentials) {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("client");
        let user = match credentials {
            Credentials::Cert(cert, key) => {
                let cert_file = self.dir.path().join(format!("{stem}.crt"));
                let key_file = self.dir.path().join(format!("{stem}.key"));
                write(&cert_file, cert);
                write(&key_file, key);
                serde_json::json!({"client-certificate": cert_file, "client-key": key_file})
            }
            Credentials::Token(token) => serde_json::json!({ "token": token }),
            Credentials::None => serde_json::json!({}),
        };
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": self.server_url(),
                "certificate-authority": self.ca_file(),
            }}],
            "users": [{"name": "test", "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        });
        write(
            path,
            &serde_json::to_string_pretty(&kubeconfig).expect("kubeconfig"),
        );
    }

    /// Run the real kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.kubeconfig, args)
    }

    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(test_assets().join("kubectl"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// The audit events the API server has written so far.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        let text = fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Wait (up to `timeout`) for an audit event satisfying `predicate`.
    pub async fn wait_for_audit_event(
        &self,
        timeout: Duration,
        predicate: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.audit_events().into_iter().find(|e| predicate(e)) {
                return Some(event);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_api_server();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        if std::thread::panicking() {
            eprintln!(
                "control plane logs (kube-apiserver, last lines):\n{}",
                tail(&self.dir.path().join("kube-apiserver.log"))
            );
        }
    }
}

enum Credentials<'a> {
    Cert(&'a str, &'a str),
    Token(&'a str),
    None,
}

pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, kube::Error> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(kube::Error::InferKubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(kube::Error::InferKubeconfig)?;
    kube::Client::try_from(config)
}

fn spawn_logged(command: &mut Command, log: &Path) -> Child {
    let file = fs::File::create(log).expect("log file");
    let stderr = file.try_clone().expect("log file");
    command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()))
}

fn write(path: impl AsRef<Path>, contents: &str) {
    let path = path.as_ref();
    fs::write(path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
