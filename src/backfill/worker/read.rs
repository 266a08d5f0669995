//! Reading the backfilled table: a SQL session whose text output matches
//! pgoutput's, and a chunk's rows after the cursor as snapshot rows, typed as
//! the same rows decoded from the WAL would be.

use std::sync::Arc;

use tokio_postgres::Client;

use crate::backfill::window::key_of;
use crate::mapping::snapshot::SnapshotRow;
use crate::replication::change::Row;
use crate::replication::values::text_to_json;
use crate::store::backfills::{self, Backfill, TableShape};

/// Read the chunk after the cursor: its rows and the new cursor (None when empty).
pub(super) async fn read_chunk(
    client: &Client,
    backfill: &Backfill,
    shape: &TableShape,
    limit: i64,
) -> Result<(Vec<SnapshotRow>, Option<Vec<String>>), tokio_postgres::Error> {
    let cursor = backfill
        .cursor
        .as_ref()
        .filter(|c| c.len() == shape.key.len());
    let query = backfills::chunk_query(
        &backfill.table,
        shape,
        backfill.where_clause.as_deref(),
        cursor.is_some(),
    );
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    if let Some(cursor) = cursor {
        params.extend(
            cursor
                .iter()
                .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync)),
        );
    }
    params.push(&limit);
    let result = client.query(&query, &params).await?;
    let key = shape.key_names();
    let mut rows = Vec::with_capacity(result.len());
    let mut last = None;
    for record in &result {
        let mut row = Row::with_capacity(shape.columns.len());
        let mut texts = Vec::with_capacity(shape.columns.len());
        for (i, column) in shape.columns.iter().enumerate() {
            let text: Option<String> = record.try_get(i)?;
            let value = text.as_deref().map_or(serde_json::Value::Null, |t| {
                text_to_json(column.type_oid, t)
            });
            row.push(Arc::clone(&column.name), value);
            texts.push(text);
        }
        last = Some(
            shape
                .key
                .iter()
                .map(|&i| texts[i].clone().unwrap_or_default())
                .collect(),
        );
        rows.push(SnapshotRow {
            key: key_of(&key, &row),
            row,
        });
    }
    Ok((rows, last))
}

/// A SQL session whose text output matches what pgoutput sends (ISO dates).
pub(super) async fn connect(database: &crate::tls::ConnectConfig) -> Option<Client> {
    let client = match crate::store::connect(database).await {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, "backfill worker cannot connect");
            return None;
        }
    };
    let setup = client
        .batch_execute("SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'")
        .await;
    match setup {
        Ok(()) => Some(client),
        Err(error) => {
            tracing::warn!(%error, "backfill worker session setup failed");
            None
        }
    }
}
