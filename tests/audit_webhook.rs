//! The audit webhook receiver: the real kube-apiserver, configured with an audit webhook pointing at vigil,
//! delivers the events of an API request; posts without valid credentials, malformed or oversized bodies are
//! refused, and a full pipeline answers 503 with Retry-After.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use support::{ControlPlane, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use vigil::audit::counters::IngestCounters;
use vigil::audit::event::MalformedReason;
use vigil::audit::users::IgnoredUsers;
use vigil::audit::webhook::{PATH, Webhook, WebhookConfig};

const TOKEN: &str = "s3cret-webhook-token";
/// Small, to test the limit; the API server's batches (up to 400 events) need megabytes.
const SMALL_BODY_LIMIT: usize = 64 * 1024;
const BODY_LIMIT: usize = 32 * 1024 * 1024;

struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Authority {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate and key (PEM) for `name`, valid for 127.0.0.1.
    fn issue(&self, name: &str) -> (String, String) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

struct Receiver {
    dir: tempfile::TempDir,
    ca: Authority,
    addr: std::net::SocketAddr,
    events: mpsc::Receiver<Vec<Value>>,
    counters: Arc<IngestCounters>,
    _shutdown: oneshot::Sender<()>,
}

/// A webhook accepting client certificates of its CA and the bearer token, with a queue of `queue` batches.
async fn start_receiver(queue: usize, body_limit: usize) -> Receiver {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new("vigil-webhook-test-ca");
    let (cert, key) = ca.issue("vigil");
    let write = |name: &str, contents: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let config = WebhookConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        tls_cert: write("tls.crt", &cert),
        tls_key: write("tls.key", &key),
        client_ca: Some(write("client-ca.crt", &ca.pem)),
        token_file: Some(write("token", &format!("{TOKEN}\n"))),
        body_limit,
    };
    let (sender, events) = mpsc::channel(queue);
    let counters = Arc::new(IngestCounters::default());
    let webhook = Webhook::bind(
        config,
        sender,
        IgnoredUsers::new(["system:serviceaccount:vigil:vigil".to_string()]),
        counters.clone(),
    )
    .await
    .unwrap();
    let addr = webhook.local_addr().unwrap();
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(webhook.run(async {
        let _ = stopped.await;
    }));
    Receiver {
        dir,
        ca,
        addr,
        events,
        counters,
        _shutdown: shutdown,
    }
}

/// POSTs `body` over TLS and returns the status code and the response head; `Err` when the TLS handshake or the
/// connection fails.
async fn post(
    receiver: &Receiver,
    client_cert: Option<(&str, &str)>,
    token: Option<&str>,
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(receiver.ca.pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(receiver.addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{authorization}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The server may answer (413) before the whole body is sent.
    let _ = tls.write_all(body).await;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status in {response:?}"))?;
    Ok((status, response))
}

fn event_list(names: &[(&str, &str)]) -> Vec<u8> {
    let items: Vec<Value> = names
        .iter()
        .map(|(id, user)| {
            json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
                   "stage": "ResponseComplete", "verb": "get", "user": {"username": user}})
        })
        .collect();
    serde_json::to_vec(
        &json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}),
    )
    .unwrap()
}

#[tokio::test]
async fn posts_without_valid_credentials_malformed_or_oversized_are_refused() {
    let mut receiver = start_receiver(16, SMALL_BODY_LIMIT).await;
    let body = event_list(&[("a1", "alice"), ("a2", "system:serviceaccount:vigil:vigil")]);
    assert_eq!(post(&receiver, None, None, &body).await.unwrap().0, 401);
    assert_eq!(
        post(&receiver, None, Some("wrong"), &body).await.unwrap().0,
        401
    );
    let stranger = Authority::new("someone-else");
    let (cert, key) = stranger.issue("apiserver");
    assert!(
        post(&receiver, Some((&cert, &key)), None, &body)
            .await
            .is_err(),
        "a certificate from another CA fails the handshake"
    );
    assert!(receiver.events.try_recv().is_err(), "nothing got through");

    assert_eq!(
        post(&receiver, None, Some(TOKEN), &body).await.unwrap().0,
        200
    );
    let (cert, key) = receiver.ca.issue("kube-apiserver");
    assert_eq!(
        post(&receiver, Some((&cert, &key)), None, &body)
            .await
            .unwrap()
            .0,
        200
    );
    for _ in 0..2 {
        let events = receiver.events.recv().await.unwrap();
        let ids: Vec<&str> = events
            .iter()
            .map(|e| e["auditID"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["a1"], "vigil's own events are dropped");
    }
    assert_eq!(receiver.counters.ignored_events(), 2);

    for (body, reason) in [
        (
            &b"{\"kind\":\"EventList\",\"items\":["[..],
            MalformedReason::InvalidJson,
        ),
        (&b"{\"kind\":\"Pod\"}"[..], MalformedReason::NotAuditEvent),
        (&b""[..], MalformedReason::Empty),
    ] {
        assert_eq!(
            post(&receiver, None, Some(TOKEN), body).await.unwrap().0,
            400
        );
        assert_eq!(receiver.counters.malformed_count(reason), 1, "{reason:?}");
    }
    let huge = vec![b' '; SMALL_BODY_LIMIT + 1];
    assert_eq!(
        post(&receiver, None, Some(TOKEN), &huge).await.unwrap().0,
        413
    );
}

#[tokio::test]
async fn a_full_pipeline_answers_503_with_retry_after() {
    let receiver = start_receiver(1, BODY_LIMIT).await;
    let body = event_list(&[("a1", "alice")]);
    assert_eq!(
        post(&receiver, None, Some(TOKEN), &body).await.unwrap().0,
        200
    );
    let (status, response) = post(&receiver, None, Some(TOKEN), &body).await.unwrap();
    assert_eq!(status, 503);
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 1"),
        "{response}"
    );
}

fn write_webhook_kubeconfig(receiver: &Receiver, path: &Path) {
    let (cert, key) = receiver.ca.issue("kube-apiserver");
    let cert_file = receiver.dir.path().join("apiserver-client.crt");
    let key_file = receiver.dir.path().join("apiserver-client.key");
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let ca_file = receiver.dir.path().join("webhook-ca.crt");
    std::fs::write(&ca_file, &receiver.ca.pem).unwrap();
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "vigil", "cluster": {
            "server": format!("https://{}{PATH}", receiver.addr),
            "certificate-authority": ca_file,
        }}],
        "users": [{"name": "kube-apiserver", "user": {"client-certificate": cert_file, "client-key": key_file}}],
        "contexts": [{"name": "vigil", "context": {"cluster": "vigil", "user": "kube-apiserver"}}],
        "current-context": "vigil",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&kubeconfig).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_servers_audit_webhook_delivers_a_requests_events_to_vigil() {
    let mut receiver = start_receiver(1024, BODY_LIMIT).await;
    let config = receiver.dir.path().join("audit-webhook.kubeconfig");
    write_webhook_kubeconfig(&receiver, &config);
    let cp = ControlPlane::start_with(Options {
        api_server_flags: vec![
            format!("--audit-webhook-config-file={}", config.display()),
            "--audit-webhook-mode=batch".to_string(),
            "--audit-webhook-batch-max-wait=1s".to_string(),
        ],
        without_crds: true,
    })
    .await;
    let admin = cp.admin_client().await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(admin, "default");
    config_maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "webhook-probe"}})).unwrap(),
        )
        .await
        .unwrap();
    // A create's audit event names no object (the name is not in the URL); a get does.
    config_maps.get("webhook-probe").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = Vec::new();
    let found = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(events)) = tokio::time::timeout(remaining, receiver.events.recv()).await else {
            let log =
                std::fs::read_to_string(cp.dir().join("kube-apiserver.log")).unwrap_or_default();
            let webhook_lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("webhook"))
                .take(20)
                .collect();
            panic!(
                "the get of configmap webhook-probe never arrived through the webhook; received {received:?}; kube-apiserver says:\n{}",
                webhook_lines.join("\n")
            );
        };
        received.extend(events.iter().map(|event| {
            format!(
                "{} {} {}",
                event["verb"], event["objectRef"]["resource"], event["objectRef"]["name"]
            )
        }));
        if let Some(event) = events.into_iter().find(|event| {
            event["verb"] == "get"
                && event["objectRef"]["name"] == "webhook-probe"
                && event["stage"] == "ResponseComplete"
        }) {
            break event;
        }
    };
    assert_eq!(found["objectRef"]["resource"], "configmaps");
    assert_eq!(found["user"]["username"], "vigil-test-admin");
}
