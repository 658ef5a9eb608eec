//! The HTTP endpoints of `vigil run`: `/metrics`, `/healthz` (the process is alive) and `/readyz` (rules loaded and
//! the audit source open).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct ServerState {
    pub registry: Arc<Registry>,
    /// The initial list of rules has been compiled.
    pub rules_loaded: Arc<AtomicBool>,
    /// The audit source (log file or webhook listener) is open.
    pub source_open: Arc<AtomicBool>,
}

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics encoding failed".to_string(),
        ),
    }
}

async fn readyz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    if state.rules_loaded.load(Ordering::Relaxed) && state.source_open.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "rules not loaded or audit source not open yet",
        )
    }
}
