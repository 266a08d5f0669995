//! The demo receiver of `walhook dev`: a real HTTP endpoint on loopback that
//! checks every delivery the way a careful consumer would — the Standard Webhooks
//! `v1` HMAC with the subscription secret, the `v1a` Ed25519 signature and the
//! RFC 9421 signature with keys fetched from walhook's JWKS endpoint — and
//! reports each delivery, verified or not, to the quickstart over a channel.
//! Verification itself is [`crate::delivery::verifier`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio::sync::mpsc;

use crate::delivery::verifier::Verifier;

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_type: String,
    pub apiresource: String,
    pub revision: String,
    pub attempt: String,
    /// `Ok(kid)` when all three signatures verified, else what failed.
    pub verdict: Result<String, String>,
}

struct Receiver {
    verifier: Verifier,
    deliveries: mpsc::UnboundedSender<Delivery>,
}

/// Serve on `listener` until the task is aborted.
pub fn spawn(
    listener: tokio::net::TcpListener,
    verifier: Verifier,
    deliveries: mpsc::UnboundedSender<Delivery>,
) -> tokio::task::JoinHandle<()> {
    let state = Arc::new(Receiver {
        verifier,
        deliveries,
    });
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// The URL the subscription should point at.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/webhooks")
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| -> Option<String> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let target_uri = format!(
        "http://{}{}",
        header("host").unwrap_or_default(),
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let verdict = receiver
        .verifier
        .verify("POST", &target_uri, &header, &body)
        .await
        .map(|v| v.kid)
        .map_err(|e| e.to_string());
    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |name: &str| match &payload[name] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let delivery = Delivery {
        event_type: header("webhook-event-type").unwrap_or_default(),
        apiresource: field("apiresource"),
        revision: field("revision"),
        attempt: header("webhook-attempt").unwrap_or_default(),
        verdict,
    };
    let status = if delivery.verdict.is_ok() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    };
    let _ = receiver.deliveries.send(delivery);
    status
}
