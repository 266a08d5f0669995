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
//! is more than 5 minutes off, 401 for any other verification failure. The
//! JWKS is fetched at start and again when a signature names an unknown kid (a
//! rotation). Deduplicate on `webhook-id` in a real receiver: delivery is at
//! least once.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::post;
use clap::Parser;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use walhook::delivery::signing::{
    PublicKey, VerifyError, parse_jwks, verify_http_signature, verify_standard_webhook,
};

const TOLERANCE_SECS: i64 = 5 * 60;

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
    jwks_url: String,
    secret: String,
    public_base_url: Option<String>,
    keys: RwLock<Arc<Vec<PublicKey>>>,
    http: reqwest::Client,
}

impl Receiver {
    async fn fetch_keys(&self) -> Result<(), String> {
        let jwks: serde_json::Value = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("fetching {}: {e}", self.jwks_url))?
            .json()
            .await
            .map_err(|e| format!("reading {}: {e}", self.jwks_url))?;
        let keys = parse_jwks(&jwks).map_err(|e| e.to_string())?;
        tracing::info!(count = keys.len(), "loaded signing keys from the JWKS");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    fn keys(&self) -> Arc<Vec<PublicKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn verify(
        &self,
        method: &Method,
        target_uri: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let lookup = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let keys = self.keys();
        verify_standard_webhook(
            &lookup,
            body,
            Some(&self.secret),
            &keys,
            now,
            TOLERANCE_SECS,
        )?;
        verify_http_signature(
            method.as_str(),
            target_uri,
            &lookup,
            body,
            &keys,
            now,
            TOLERANCE_SECS,
        )
    }
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
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let mut result = receiver.verify(&method, &target_uri, &headers, &body);
    if matches!(
        result,
        Err(VerifyError::UnknownKey(_) | VerifyError::NoMatchingEd25519)
    ) {
        // Perhaps a rotation since we last looked: refresh once and retry.
        if let Err(error) = receiver.fetch_keys().await {
            tracing::warn!(%error, "could not refresh the JWKS");
        }
        result = receiver.verify(&method, &target_uri, &headers, &body);
    }
    match result {
        Ok(()) => {
            tracing::info!(
                event_type = %header("webhook-event-type"),
                id = %header("webhook-id"),
                attempt = %header("webhook-attempt"),
                "verified event"
            );
            StatusCode::NO_CONTENT
        }
        Err(error @ VerifyError::Stale(_)) => {
            tracing::warn!(%error, id = %header("webhook-id"), "rejected delivery");
            StatusCode::BAD_REQUEST
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
    let receiver = Arc::new(Receiver {
        jwks_url: args.jwks_url,
        secret: args.secret,
        public_base_url: args.public_base_url,
        keys: RwLock::new(Arc::new(Vec::new())),
        http: reqwest::Client::new(),
    });
    receiver.fetch_keys().await.map_err(anyhow::Error::msg)?;
    let app = Router::new().fallback(post(receive)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "receiver listening");
    axum::serve(listener, app).await?;
    Ok(())
}
