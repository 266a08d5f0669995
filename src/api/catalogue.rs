//! `GET /v1/catalogue`: every event type the routes can produce, each with a
//! sample body built by the route's own templates from a made-up row of its
//! table (a value per column type), so a subscriber sees the shape before a
//! row ever changes.
//!
//! Per route: `<resource>.<suffix>` for insert, update and delete (its
//! `event_names`, else created/updated/deleted), one per `status_events`
//! value, the bulk delete event when set, and `<resource>.snapshot`; then the
//! `webhook.*` events walhook makes of `walhook.subscriptions` itself, and the
//! operational ones of `walhook.subscription_health` (`webhook.failing`,
//! `webhook.recovered`, `webhook.disabled`).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::{ApiError, ErrorBody};
use super::schema::{Catalogue, CatalogueEntry};
use super::{ApiState, read_conn};
use crate::mapping::health::{self, OPERATIONAL_EVENTS};
use crate::mapping::render_body;
use crate::mapping::routes::Route;
use crate::mapping::template::{Source, render_text};
use crate::replication::change::Row;

/// A made-up value of a column of this SQL type, as the decoder would give it.
fn sample_value(column: &str, sql_type: &str) -> Value {
    if sql_type.ends_with("[]") {
        return json!([]);
    }
    match sql_type {
        "smallint" | "integer" | "bigint" | "oid" => json!(1),
        "real" | "double precision" => json!(1.5),
        t if t.starts_with("numeric") => json!(1.5),
        "boolean" => json!(true),
        "json" | "jsonb" => json!({}),
        "uuid" => json!("79b3a1c2-0000-4000-8000-000000000001"),
        "date" => json!("2024-12-12"),
        "bytea" => json!("AAE="),
        t if t.starts_with("timestamp") => json!("2024-12-12T17:38:03.850Z"),
        _ => json!(format!("<{column}>")),
    }
}

/// A body built by `route` from `row`, as an event of this route would carry.
fn sample(route: &Route, row: &Row, at: DateTime<Utc>) -> Option<Value> {
    let row = route.visible(row);
    let source = Source::row(&row);
    let apiresource = render_text(&route.apiresource, &source, true);
    let payload = route.payload.render(&source);
    let body = render_body(&apiresource, at, &payload, 1084487).ok()?;
    serde_json::from_str(&body).ok()
}

fn entries(route: &Route, row: &Row, at: DateTime<Utc>) -> Vec<CatalogueEntry> {
    use crate::replication::change::Op;
    let body = sample(route, row, at);
    let entry =
        |suffix: &str, operation: &str, when: String, sample: Option<Value>| CatalogueEntry {
            event_type: format!("{}.{suffix}", route.resource),
            table: route.source_table.clone(),
            operation: operation.to_owned(),
            when,
            enabled: route.enabled,
            sample,
        };
    let mut out = vec![
        entry(
            route.suffix(Op::Insert),
            "insert",
            "a row is inserted".to_owned(),
            body.clone(),
        ),
        entry(
            route.suffix(Op::Update),
            "update",
            "a row is updated (a visible column changed)".to_owned(),
            body.clone(),
        ),
    ];
    let mut seen = BTreeSet::new();
    for (key, suffix) in &route.status_events {
        if seen.insert(suffix.clone()) {
            let column = route.status_column.as_deref().unwrap_or("status");
            let change = match key.split_once("->") {
                Some((old, new)) => format!("from {old} to {new}"),
                None => format!("to {key}"),
            };
            let keys: Vec<&str> = route
                .status_events
                .iter()
                .filter(|(_, s)| *s == suffix)
                .map(|(k, _)| k.as_str())
                .collect();
            let when = if keys.len() > 1 {
                format!("{column} changes: {}", keys.join(", "))
            } else {
                format!("{column} changes {change}")
            };
            out.push(entry(suffix, "status", when, body.clone()));
        }
    }
    out.push(entry(
        route.suffix(Op::Delete),
        "delete",
        "a row is deleted (the body carries its last known state)".to_owned(),
        body.clone(),
    ));
    if let Some(bulk) = &route.bulk_delete_event {
        out.push(entry(
            bulk,
            "bulk_delete",
            "a transaction deletes more than one row: one event listing them".to_owned(),
            None,
        ));
    }
    out.push(entry(
        "snapshot",
        "snapshot",
        "a backfill sends the row's current state".to_owned(),
        body,
    ));
    out
}

/// List the event catalogue
///
/// Every event type the routes can produce, with a sample body built by the
/// route's templates from a made-up row, then the `webhook.*` events.
#[utoipa::path(get, path = "/v1/catalogue", operation_id = "getCatalogue", tag = "events",
    responses(
        (status = 200, description = "The event types", body = Catalogue),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn catalogue(State(state): State<ApiState>) -> Result<Json<Catalogue>, ApiError> {
    let conn = read_conn(&state).await?;
    let rows = conn
        .query(
            "SELECT row_to_json(r)::text,
                    (SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod))
                                     ORDER BY a.attnum)::text
                       FROM pg_attribute a
                      WHERE a.attrelid = r.source_table AND a.attnum > 0 AND NOT a.attisdropped)
               FROM walhook.routes r ORDER BY r.source_table::text",
            &[],
        )
        .await?;
    let at = Utc::now();
    let mut data = Vec::new();
    for row in &rows {
        let route_row: Row =
            serde_json::from_str(row.get::<_, &str>(0)).map_err(|e| ApiError::internal(&e))?;
        let Ok(route) = Route::from_row(&route_row) else {
            continue; // an unusable route makes no events (the daemon logs it)
        };
        let columns: Vec<(String, String)> = row
            .get::<_, Option<&str>>(1)
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        let mut made_up = Row::with_capacity(columns.len());
        for (name, sql_type) in &columns {
            made_up.insert(name.as_str(), sample_value(name, sql_type));
        }
        data.extend(entries(&route, &made_up, at));
    }
    for (op, suffix) in [
        ("insert", "created"),
        ("update", "updated"),
        ("delete", "deleted"),
    ] {
        data.push(CatalogueEntry {
            event_type: format!("webhook.{suffix}"),
            table: "walhook.subscriptions".to_owned(),
            operation: op.to_owned(),
            when: format!("a webhook (subscription) is {suffix}; secrets and credentials redacted"),
            enabled: true,
            sample: None,
        });
    }
    data.extend(operational(at));
    Ok(Json(Catalogue { data }))
}

/// `webhook.failing`, `webhook.recovered` and `webhook.disabled`: changes of
/// a webhook's endpoint health, to the other `webhook.*` subscribers, with a
/// sample built from a made-up health row.
fn operational(at: DateTime<Utc>) -> Vec<CatalogueEntry> {
    let id = "6a1f4d0e-8c2a-4e59-9a57-2f3c1d7eb0a4";
    OPERATIONAL_EVENTS
        .iter()
        .map(|event| {
            let state = match *event {
                health::RECOVERED => "healthy",
                health::DISABLED => "disabled",
                _ => "failing",
            };
            let row: Row = [
                ("subscription_id", json!(id)),
                ("state", json!(state)),
                ("failing_since", json!("2024-12-12T17:30:00.000Z")),
                ("last_error", json!("HTTP 503")),
                ("consecutive_failures", json!(5)),
                ("last_failure_at", json!("2024-12-12T17:38:03.850Z")),
                ("last_success_at", json!("2024-12-12T17:40:00.000Z")),
            ]
            .into_iter()
            .collect();
            let payload = health::payload(&row, *event);
            let sample = render_body(&format!("/webhooks/{id}"), at, &payload, 1084487)
                .ok()
                .and_then(|body| serde_json::from_str(&body).ok());
            CatalogueEntry {
                event_type: event.event_type.to_owned(),
                table: "walhook.subscription_health".to_owned(),
                operation: "health".to_owned(),
                when: event.when.to_owned(),
                enabled: true,
                sample,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_values_follow_the_column_type() {
        assert_eq!(sample_value("id", "integer"), json!(1));
        assert_eq!(sample_value("tags", "text[]"), json!([]));
        assert_eq!(
            sample_value("at", "timestamp with time zone"),
            json!("2024-12-12T17:38:03.850Z")
        );
        assert_eq!(sample_value("amount", "numeric(10,2)"), json!(1.5));
        assert_eq!(
            sample_value("name", "character varying(20)"),
            json!("<name>")
        );
    }
}
