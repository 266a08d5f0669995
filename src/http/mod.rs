//! The daemon's HTTP endpoints: `/metrics`, `/.well-known/jwks.json`,
//! `/healthz` (the process is alive) and `/readyz` ("can serve": the database is
//! reachable and this instance streams the slot or waits as a standby, which
//! also delivers retries and serves the JWKS; the body names which, and the
//! `walhook_slot_streaming` gauge is 1 only on the instance that streams); and the `/v1` management API
//! (`crate::api`), which needs a bearer token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::delivery::KeyRing;
use crate::telemetry;

/// What this instance is doing with the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamState {
    Connecting = 0,
    Streaming = 1,
    /// Another instance holds the slot; this one waits to take over.
    Standby = 2,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Connecting => "connecting",
            StreamState::Streaming => "streaming",
            StreamState::Standby => "standby",
        }
    }
}

/// Health as seen by `/readyz`, updated by the daemon's tasks.
#[derive(Debug, Default)]
pub struct Health {
    database_ok: AtomicBool,
    stream: AtomicU8,
    /// Why the daemon is stopping: a stage died (it exits non-zero next).
    failed: std::sync::OnceLock<String>,
}

impl Health {
    pub fn set_database_ok(&self, ok: bool) {
        self.database_ok.store(ok, Ordering::Relaxed);
    }

    pub fn set_stream(&self, state: StreamState) {
        self.stream.store(state as u8, Ordering::Relaxed);
        telemetry::SLOT_STREAMING.set(i64::from(state == StreamState::Streaming));
    }

    pub fn stream(&self) -> StreamState {
        match self.stream.load(Ordering::Relaxed) {
            1 => StreamState::Streaming,
            2 => StreamState::Standby,
            _ => StreamState::Connecting,
        }
    }

    /// A stage died: `/readyz` says so until the process exits.
    pub fn set_failed(&self, why: String) {
        let _ = self.failed.set(why);
    }

    pub fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    pub fn ready(&self) -> bool {
        self.failed().is_none()
            && self.database_ok.load(Ordering::Relaxed)
            && self.stream() != StreamState::Connecting
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    keys: KeyRing,
}

/// The router, separate from serving so tests can call it directly.
pub fn router(health: Arc<Health>, keys: KeyRing) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { health, keys })
        .merge(crate::api::console::router())
}

/// Serve until shutdown, with the `/v1` API on `database`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    keys: KeyRing,
    database: crate::tls::ConnectConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(health, keys).merge(crate::api::router(database));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Bind the HTTP address, with an error that names it.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, std::io::Error> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} ({e}): choose another --http-addr"),
        )
    })
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::render(),
    )
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let keys = state
        .keys
        .read()
        .map(|k| Arc::clone(&k))
        .unwrap_or_default();
    let body = crate::delivery::signing::jwks(&keys).to_string();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let stream = state.health.stream().as_str();
    if let Some(why) = state.health.failed() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: stopping: {why}\n"),
        )
    } else if state.health.ready() {
        (StatusCode::OK, format!("ready: {stream}\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: database or slot ({stream})\n"),
        )
    }
}
