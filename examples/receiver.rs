//! A small webhook receiver that verifies every walhook signature: Standard
//! Webhooks `v1` (HMAC with the subscription secret) and `v1a` (Ed25519), and the
//! RFC 9421 HTTP Message Signature, with keys from walhook's JWKS.
//!
//! ```text
//! cargo run --example receiver -- --jwks-url http://127.0.0.1:9750/.well-known/jwks.json \
//!     --secret whsec_... --listen 127.0.0.1:8088
//! ```
//!
//! Answers 204 to a verified delivery, 400 when `webhook-timestamp` or `created`
//! is more than 5 minutes off, 503 when the JWKS cannot be fetched, 401 for any
//! other verification failure. The JWKS is fetched at start and again when a
//! signature names an unknown kid (a rotation). Deduplicate on `webhook-id` in a real receiver: delivery is at
//! least once.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::post;
use clap::Parser;
use walhook::delivery::signing::VerifyError;
use walhook::delivery::verifier::Verifier;

#[derive(Parser)]
#[command(about = "Example receiver verifying walhook's signatures")]
struct Args {
    /// walhook's JWKS, e.g. http://127.0.0.1:9750/.well-known/jwks.json
    #[arg(long)]
    jwks_url: String,
    /// The subscription's secret (walhook.subscriptions.secret), whsec_...
    #[arg(long, env = "WEBHOOK_SECRET")]
    secret: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: String,
    /// Scheme and authority walhook uses to reach this receiver (the URL in the
    /// subscription), when it differs from `http://<Host header>`, e.g. behind a
    /// TLS-terminating proxy: https://hooks.example.com
    #[arg(long)]
    public_base_url: Option<String>,
}

struct Receiver {
    verifier: Verifier,
    public_base_url: Option<String>,
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let base = match &receiver.public_base_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    let target_uri = format!("{base}{path}");
    let lookup = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let header = |name: &str| lookup(name).unwrap_or_else(|| "-".to_owned());
    let result = receiver
        .verifier
        .verify(method.as_str(), &target_uri, &lookup, &body)
        .await;
    match result {
        Ok(verified) => {
            tracing::info!(
                event_type = %header("webhook-event-type"),
                id = %header("webhook-id"),
                attempt = %header("webhook-attempt"),
                kid = %verified.kid,
                "verified event"
            );
            StatusCode::NO_CONTENT
        }
        Err(error @ VerifyError::Stale(_)) => {
            tracing::warn!(%error, id = %header("webhook-id"), "rejected delivery");
            StatusCode::BAD_REQUEST
        }
        Err(error @ VerifyError::JwksUnavailable(_)) => {
            tracing::warn!(%error, id = %header("webhook-id"), "cannot verify now");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(error) => {
            tracing::warn!(%error, id = %header("webhook-id"), "rejected delivery");
            StatusCode::UNAUTHORIZED
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let args = Args::parse();
    let verifier = Verifier::new(args.secret, args.jwks_url);
    let keys = verifier.refresh().await?;
    tracing::info!(count = keys, "loaded signing keys from the JWKS");
    let receiver = Arc::new(Receiver {
        verifier,
        public_base_url: args.public_base_url,
    });
    let app = Router::new().fallback(post(receive)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "receiver listening");
    axum::serve(listener, app).await?;
    Ok(())
}
