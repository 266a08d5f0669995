//! `walhook.routes` and `walhook.subscriptions` as the mapper needs them at
//! start-up (afterwards their changes reach the mapper through the stream), and
//! the publication those routes keep in step.

use tokio_postgres::Client;

use crate::mapping::Mapper;
use crate::mapping::routes::Route;
use crate::mapping::subscriptions::SubscriptionFilter;
use crate::replication::change::Row;

/// A mapper holding the configuration as it stands in the database now.
pub async fn load_mapper(client: &Client) -> Result<Mapper, tokio_postgres::Error> {
    let mut routes = Vec::new();
    for row in json_rows(client, "SELECT row_to_json(r)::text FROM walhook.routes r").await? {
        match Route::from_row(&row) {
            Ok(route) => routes.push(route),
            Err(error) => tracing::error!(%error, "ignoring unusable route"),
        }
    }
    let subscriptions = json_rows(
        client,
        "SELECT json_build_object('id', id, 'events', events, 'disabled', disabled)::text
           FROM walhook.subscriptions",
    )
    .await?
    .iter()
    .filter_map(SubscriptionFilter::from_row)
    .collect();
    Ok(Mapper::new(routes, subscriptions))
}

/// Register the publication walhook streams from: the database keeps its
/// tables in step with `walhook.routes` from now on.
pub async fn register_publication(
    client: &Client,
    publication: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT walhook.register_publication($1)", &[&publication])
        .await
        .map(drop)
}

/// Rows of a query returning one JSON object per row, as decoded rows.
async fn json_rows(client: &Client, sql: &str) -> Result<Vec<Row>, tokio_postgres::Error> {
    Ok(client
        .query(sql, &[])
        .await?
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter_map(|t| serde_json::from_str::<Row>(&t).ok())
        .collect())
}
