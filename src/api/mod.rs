//! The `/v1` management API: webhooks (rows of `walhook.subscriptions`), their
//! deliveries and events, and the audit log, as JSON on the daemon's HTTP
//! address.
//!
//! ```text
//!  client ──Bearer token──▶ require_token ──▶ handler ──▶ store (same tables as SQL)
//!                           (api_tokens,        │ writes: one transaction with
//!                            sha256 lookup)     │ walhook.actor = 'api:<token name>'
//!                                               ▼
//!                                   database rules decide; refusals → 400
//! ```
//!
//! One configuration, two doors: nothing here caches or duplicates what SQL
//! holds, so the API and SQL always see each other's changes, and a webhook
//! made here fires `webhook.created` through the replication stream like any
//! subscription. `/v1/openapi.json` needs no token; every other route does.
//!
//! Beside the webhooks: deliveries across webhooks and each one's attempts
//! (`all_deliveries`, `deliveries`), the event search and catalogue
//! (`catalogue`), backfills, and the status report, which the web console
//! (`console`, `GET /console`: static files that call this API with the
//! user's token) shows.

pub(crate) mod all_deliveries;
pub(crate) mod backfills;
pub(crate) mod catalogue;
pub mod console;
pub(crate) mod deliveries;
pub(crate) mod error;
pub(crate) mod history;
pub(crate) mod openapi;
pub(crate) mod pagination;
pub(crate) mod pool;
mod schema;
pub(crate) mod status;
pub(crate) mod webhook_input;
pub(crate) mod webhooks;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_postgres::Transaction;

use crate::store::{api_tokens, audit};
use crate::tls::ConnectConfig;
use error::ApiError;
use pool::{Conn, Pool};

#[derive(Clone)]
pub struct ApiState {
    pool: Arc<Pool>,
}

/// The name of the API token that authenticated the request.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Actor>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))
    }
}

/// The `/v1` routes, to be merged into the daemon's router.
pub fn router(database: ConnectConfig) -> Router {
    let state = ApiState {
        pool: Pool::new(database),
    };
    let protected = Router::new()
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .put(webhooks::update)
                .delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(history::deliveries))
        .route("/v1/events", get(deliveries::search))
        .route("/v1/events/{id}", get(history::event))
        .route("/v1/deliveries", get(all_deliveries::list))
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/v1/deliveries/{id}/attempts", get(deliveries::attempts))
        .route("/v1/deliveries/{id}/redeliver", post(history::redeliver))
        .route("/v1/audit", get(history::audit_log))
        .route(
            "/v1/backfills",
            get(backfills::list).post(backfills::create),
        )
        .route("/v1/backfills/{id}", get(backfills::get))
        .route("/v1/backfills/{id}/cancel", post(backfills::cancel))
        .route("/v1/status", get(status::status))
        .route("/v1/catalogue", get(catalogue::catalogue))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route(
            "/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .merge(protected)
        .fallback(|| async {
            let mut error = ApiError::not_found("route", "");
            error.body.message = "no such route; see /v1/openapi.json".to_owned();
            error.body.details.clear();
            error
        })
        .with_state(state)
}

/// 401 unless the request carries `Authorization: Bearer <live token>`.
async fn require_token(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        return ApiError::unauthorized(
            "missing bearer token: send Authorization: Bearer <token> (see walhook api-tokens create)",
        )
        .into_response();
    };
    let name = {
        let conn = match read_conn(&state).await {
            Ok(conn) => conn,
            Err(error) => return error.into_response(),
        };
        match api_tokens::authenticate(&conn, &token).await {
            Ok(Some(name)) => name,
            Ok(None) => {
                return ApiError::unauthorized("invalid or revoked API token").into_response();
            }
            Err(error) => return ApiError::unavailable(&error).into_response(),
        }
    };
    request.extensions_mut().insert(Actor(name));
    next.run(request).await
}

/// A connection for this request.
async fn read_conn(state: &ApiState) -> Result<Conn, ApiError> {
    state
        .pool
        .get()
        .await
        .map_err(|e| ApiError::unavailable(&e))
}

/// A transaction whose configuration changes the audit log attributes to
/// `api:<token name>`.
async fn write_tx<'a>(conn: &'a mut Conn, actor: &Actor) -> Result<Transaction<'a>, ApiError> {
    let tx = conn.transaction().await?;
    audit::set_actor(&tx, &format!("api:{}", actor.0)).await?;
    Ok(tx)
}
