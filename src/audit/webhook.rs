//! The audit webhook receiver: the API server's webhook backend (`--audit-webhook-config-file`) POSTs
//! `audit.k8s.io/v1` `EventList` batches here.
//!
//! ```text
//! Webhook::bind(WebhookConfig, mpsc::Sender<Vec<Value>>, IgnoredUsers, Arc<IngestCounters>) -> Result<Webhook, _>
//! webhook.local_addr()
//! webhook.run(shutdown_future).await
//! ```
//!
//! TLS only (rustls, ring), and every request authenticated: a client certificate signed by the configured CA,
//! or the static bearer token (no TokenReview, so no extra RBAC). Answers: 200 once the events are queued; 401
//! without valid credentials; 400 for a body that is not an audit EventList (counted as malformed first); 413
//! over the body limit; 503 with `Retry-After` when the pipeline queue is full — backpressure instead of
//! unbounded buffering. The API server's webhook backend drops what it cannot deliver, so this path cannot
//! replay after an outage; following the log files is the lossless path.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use super::counters::IngestCounters;
use super::event::parse_audit_line;
use super::users::IgnoredUsers;

/// Where the API server posts.
pub const PATH: &str = "/audit";

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// CA whose client certificates are accepted.
    pub client_ca: Option<PathBuf>,
    /// File holding the accepted bearer token.
    pub token_file: Option<PathBuf>,
    /// Larger bodies get 413.
    pub body_limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "the audit webhook needs a way to authenticate the API server: --webhook-client-ca or --webhook-token-file"
    )]
    NoAuthentication,
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How the peer of one connection authenticated.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// It presented a client certificate that rustls verified against the client CA.
    verified_certificate: bool,
}

struct Shared {
    token: Option<String>,
    pipeline: mpsc::Sender<Vec<Value>>,
    ignored: IgnoredUsers,
    counters: Arc<IngestCounters>,
}

pub struct Webhook {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
}

impl Webhook {
    pub async fn bind(
        config: WebhookConfig,
        pipeline: mpsc::Sender<Vec<Value>>,
        ignored: IgnoredUsers,
        counters: Arc<IngestCounters>,
    ) -> Result<Webhook, WebhookError> {
        if config.client_ca.is_none() && config.token_file.is_none() {
            return Err(WebhookError::NoAuthentication);
        }
        let token = match &config.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| WebhookError::Read {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            )
            .filter(|token| !token.is_empty()),
            None => None,
        };
        if config.client_ca.is_none() && token.is_none() {
            return Err(WebhookError::NoAuthentication);
        }
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(&config, token.is_some())?));
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| WebhookError::Listen {
                    addr: config.addr,
                    source,
                })?;
        let shared = Arc::new(Shared {
            token,
            pipeline,
            ignored,
            counters,
        });
        let router = Router::new()
            .route(PATH, post(receive))
            .layer(DefaultBodyLimit::max(config.body_limit))
            .with_state(shared);
        Ok(Webhook {
            listener,
            acceptor,
            router,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                () = &mut shutdown => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("audit webhook: accept failed: {error}");
                        continue;
                    }
                },
            };
            let acceptor = self.acceptor.clone();
            let router = self.router.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        tracing::debug!(%remote, "audit webhook: TLS handshake failed: {error}");
                        return;
                    }
                };
                let peer = Peer {
                    verified_certificate: tls.get_ref().1.peer_certificates().is_some(),
                };
                let service = hyper::service::service_fn(move |mut request: Request<_>| {
                    request.extensions_mut().insert(peer);
                    router.clone().call(request)
                });
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%remote, "audit webhook connection: {error}");
                }
            });
        }
    }
}

fn tls_config(
    config: &WebhookConfig,
    token_accepted: bool,
) -> Result<rustls::ServerConfig, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificates = read_certificates(&config.tls_cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.tls_key).map_err(|e| WebhookError::Pem {
        path: config.tls_key.clone(),
        reason: e.to_string(),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &config.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_certificates(ca)? {
                roots.add(certificate)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            // With a token as the other way in, a connection without a certificate is let through to the
            // request check.
            let verifier = if token_accepted {
                verifier.allow_unauthenticated().build()?
            } else {
                verifier.build()?
            };
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut tls = builder.with_single_cert(certificates, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, WebhookError> {
    let pem_error = |reason: String| WebhookError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(pem_error("no certificate in the file".to_string()));
    }
    Ok(certificates)
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verified_certificate = peer.is_some_and(|peer| peer.verified_certificate);
    if !verified_certificate && !bearer_token_matches(&headers, shared.token.as_deref()) {
        return (
            StatusCode::UNAUTHORIZED,
            "client certificate or bearer token required\n",
        )
            .into_response();
    }
    let events = match parse_audit_line(&body) {
        Ok(events) => events,
        Err(reason) => {
            shared.counters.malformed(reason, "audit webhook", 0);
            return (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response();
        }
    };
    let events: Vec<Value> = events
        .into_iter()
        .filter(|event| {
            let ignored = shared.ignored.ignores(event);
            if ignored {
                shared.counters.ignored_event();
            }
            !ignored
        })
        .collect();
    if events.is_empty() {
        return StatusCode::OK.into_response();
    }
    match shared.pipeline.try_send(events) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "the detection pipeline is full\n",
        )
            .into_response(),
    }
}

fn bearer_token_matches(headers: &HeaderMap, expected: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return false;
    };
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant time in the token's content, so response timing does not reveal a matching prefix.
    presented.len() == expected.len()
        && presented
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_token_matches(&headers, Some("secret")));
        headers.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        assert!(bearer_token_matches(&headers, Some("secret")));
        assert!(!bearer_token_matches(&headers, Some("secreT")));
        assert!(!bearer_token_matches(&headers, Some("secret2")));
        assert!(!bearer_token_matches(&headers, None));
    }
}
