//! `walhook.backfills`: the backfill rows, the table's shape, and the chunk
//! query (primary key > cursor, in key order, with the optional where_clause).
//!
//! Column values are read as their type's text output (`format('%s', col)`
//! calls the output function, as pgoutput does), so a row read here types to
//! the same JSON as the same row decoded from the WAL.

use std::sync::Arc;

use serde::Serialize;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::replication::lsn::Lsn;

/// A backfill to work on.
#[derive(Debug, Clone)]
pub struct Backfill {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub table_oid: u32,
    /// `source_table` as text (quoted and qualified as needed).
    pub table: String,
    pub where_clause: Option<String>,
    /// Text values of the last stored row's key columns.
    pub cursor: Option<Vec<String>>,
    pub rows_per_second: Option<i32>,
}

/// A column of the backfilled table.
#[derive(Debug, Clone)]
pub struct Column {
    /// Shared by every snapshot row of the table.
    pub name: Arc<str>,
    pub quoted: String,
    pub type_oid: u32,
    /// `format_type`, to cast cursor text back to the key column's type.
    pub type_name: String,
}

/// The table's columns (table order) and primary key (indexes into `columns`).
#[derive(Debug, Clone)]
pub struct TableShape {
    pub columns: Vec<Column>,
    pub key: Vec<usize>,
}

impl TableShape {
    /// The primary key's column names, in key order.
    pub fn key_names(&self) -> Vec<String> {
        self.key
            .iter()
            .map(|&i| self.columns[i].name.to_string())
            .collect()
    }
}

/// The oldest unfinished backfill.
pub async fn next(client: &Client) -> Result<Option<Backfill>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT id, subscription_id, source_table::oid, source_table::text, where_clause,
                    cursor::text, rows_per_second
               FROM walhook.backfills
              WHERE status IN ('pending', 'running')
              ORDER BY created_at, id
              LIMIT 1",
            &[],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let cursor: Option<String> = row.try_get(5)?;
    Ok(Some(Backfill {
        id: row.try_get(0)?,
        subscription_id: row.try_get(1)?,
        table_oid: row.try_get(2)?,
        table: row.try_get(3)?,
        where_clause: row.try_get(4)?,
        cursor: cursor.and_then(|c| serde_json::from_str(&c).ok()),
        rows_per_second: row.try_get(6)?,
    }))
}

/// Mark the backfill running; false when it is no longer pending or running.
pub async fn start(client: &Client, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "UPDATE walhook.backfills SET status = 'running'
              WHERE id = $1 AND status IN ('pending', 'running')",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// The backfill's status, None when the row is gone (its subscription was deleted).
pub async fn status(client: &Client, id: Uuid) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_opt("SELECT status FROM walhook.backfills WHERE id = $1", &[&id])
        .await?
        .map(|r| r.get(0)))
}

/// A chunk is stored: move the cursor past it and count its events. False when
/// the backfill stopped running meanwhile (cancelled).
pub async fn advance(
    client: &Client,
    id: Uuid,
    cursor: &[String],
    stored: i64,
) -> Result<bool, tokio_postgres::Error> {
    let cursor = serde_json::to_string(cursor).unwrap_or_else(|_| "null".into());
    let n = client
        .execute(
            "UPDATE walhook.backfills SET cursor = $2::text::jsonb, rows_sent = rows_sent + $3
              WHERE id = $1 AND status = 'running'",
            &[&id, &cursor, &stored],
        )
        .await?;
    Ok(n == 1)
}

/// End a running backfill as `done` or `failed` (with its error).
pub async fn finish(
    client: &Client,
    id: Uuid,
    status: &str,
    error: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE walhook.backfills SET status = $2, error = $3
              WHERE id = $1 AND status = 'running'",
            &[&id, &status, &error],
        )
        .await?;
    Ok(())
}

/// Columns and primary key of the table.
pub async fn table_shape(client: &Client, oid: u32) -> Result<TableShape, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, quote_ident(a.attname), a.atttypid,
                    format_type(a.atttypid, a.atttypmod),
                    array_position(i.indkey::int2[], a.attnum)
               FROM pg_attribute a
               LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
              WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&oid],
        )
        .await?;
    let mut columns = Vec::with_capacity(rows.len());
    let mut key: Vec<(i32, usize)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        columns.push(Column {
            name: Arc::from(row.try_get::<_, &str>(0)?),
            quoted: row.try_get(1)?,
            type_oid: row.try_get(2)?,
            type_name: row.try_get(3)?,
        });
        if let Some(position) = row.try_get::<_, Option<i32>>(4)? {
            key.push((position, i));
        }
    }
    key.sort_unstable();
    Ok(TableShape {
        columns,
        key: key.into_iter().map(|(_, i)| i).collect(),
    })
}

/// The chunk query: every column as text, key > cursor ($1.. when `after`),
/// the where_clause, in key order, at most `$n` rows (the last parameter).
pub fn chunk_query(
    table: &str,
    shape: &TableShape,
    where_clause: Option<&str>,
    after: bool,
) -> String {
    let select = shape
        .columns
        .iter()
        .map(|c| {
            format!(
                "CASE WHEN t.{0} IS NULL THEN NULL ELSE format('%s', t.{0}) END",
                c.quoted
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let key = shape
        .key
        .iter()
        .map(|&i| format!("t.{}", shape.columns[i].quoted))
        .collect::<Vec<_>>()
        .join(", ");
    let mut conditions = Vec::new();
    if after {
        let params = shape
            .key
            .iter()
            .enumerate()
            .map(|(n, &i)| format!("${}::text::{}", n + 1, shape.columns[i].type_name))
            .collect::<Vec<_>>()
            .join(", ");
        conditions.push(format!("({key}) > ({params})"));
    }
    if let Some(clause) = where_clause {
        conditions.push(format!("({clause})"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let limit = if after { shape.key.len() + 1 } else { 1 };
    format!("SELECT {select} FROM {table} t{filter} ORDER BY {key} LIMIT ${limit}::int8")
}

/// Write a watermark into the WAL (in its own transaction); its position.
pub async fn emit_watermark(client: &Client, content: &str) -> Result<Lsn, tokio_postgres::Error> {
    let text: String = client
        .query_one(
            "SELECT pg_logical_emit_message(true, $1, $2)::text",
            &[&crate::replication::stream::BACKFILL_PREFIX, &content],
        )
        .await?
        .try_get(0)?;
    Ok(text.parse().unwrap_or_default())
}

/// The transactions in progress now (other than this session's), as
/// `xid8` text: a chunk read after they end cannot miss a change one of them
/// made before the low watermark and commits after the high one.
pub async fn transactions_in_progress(
    client: &Client,
) -> Result<Vec<String>, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT coalesce(array_agg(x::text), '{}')
               FROM pg_snapshot_xip(pg_current_snapshot()) AS x
              WHERE x IS DISTINCT FROM pg_current_xact_id_if_assigned()",
            &[],
        )
        .await?
        .try_get(0)
}

/// Those of `xids` still in progress.
pub async fn still_in_progress(
    client: &Client,
    xids: &[String],
) -> Result<Vec<String>, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT coalesce(array_agg(x), '{}') FROM unnest($1::text[]) AS x
              WHERE pg_xact_status(x::xid8) = 'in progress'",
            &[&xids],
        )
        .await?
        .try_get(0)
}

/// How many of these events are stored.
pub async fn count_stored(client: &Client, ids: &[Uuid]) -> Result<i64, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    client
        .query_one(
            "SELECT count(*) FROM walhook.events WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
        .try_get(0)
}

/// Start a backfill; its id. The database refuses a table without route or
/// primary key and a bad where_clause, with a message naming the cause.
pub async fn create(
    client: &Client,
    subscription: Uuid,
    table: &str,
    where_clause: Option<&str>,
    rows_per_second: Option<i32>,
) -> Result<Uuid, tokio_postgres::Error> {
    client
        .query_one(
            "INSERT INTO walhook.backfills (subscription_id, source_table, where_clause, rows_per_second)
             VALUES ($1, $2::text::regclass, $3, $4) RETURNING id",
            &[&subscription, &table, &where_clause, &rows_per_second],
        )
        .await?
        .try_get(0)
}

/// One backfill as `walhook status` and `walhook backfill` show it.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillStatus {
    pub id: String,
    pub subscription_id: String,
    pub source_table: String,
    pub status: String,
    pub rows_sent: i64,
    /// The table's estimated row count (planner statistics), when known.
    pub estimated_rows: Option<i64>,
    /// RFC 3339, UTC.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
}

const STATUS_COLUMNS: &str = r#"
SELECT b.id::text, b.subscription_id::text, b.source_table::text, b.status, b.rows_sent,
       CASE WHEN c.reltuples >= 0 AND b.where_clause IS NULL THEN c.reltuples::int8 END,
       to_char(b.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(b.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       b.error
  FROM walhook.backfills b
  LEFT JOIN pg_class c ON c.oid = b.source_table"#;

fn status_row(row: &tokio_postgres::Row) -> Result<BackfillStatus, tokio_postgres::Error> {
    Ok(BackfillStatus {
        id: row.try_get(0)?,
        subscription_id: row.try_get(1)?,
        source_table: row.try_get(2)?,
        status: row.try_get(3)?,
        rows_sent: row.try_get(4)?,
        estimated_rows: row.try_get(5)?,
        started_at: row.try_get(6)?,
        finished_at: row.try_get(7)?,
        error: row.try_get(8)?,
    })
}

/// One backfill's progress.
pub async fn progress(
    client: &Client,
    id: Uuid,
) -> Result<Option<BackfillStatus>, tokio_postgres::Error> {
    client
        .query_opt(&format!("{STATUS_COLUMNS} WHERE b.id = $1"), &[&id])
        .await?
        .as_ref()
        .map(status_row)
        .transpose()
}

/// Unfinished backfills and those finished in the last hour.
pub async fn recent(client: &Client) -> Result<Vec<BackfillStatus>, tokio_postgres::Error> {
    client
        .query(
            &format!(
                "{STATUS_COLUMNS}
                  WHERE b.status IN ('pending', 'running')
                     OR b.finished_at > now() - interval '1 hour'
                  ORDER BY b.created_at"
            ),
            &[],
        )
        .await?
        .iter()
        .map(status_row)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> TableShape {
        let col = |name: &str, type_name: &str| Column {
            name: name.into(),
            quoted: format!("\"{name}\""),
            type_oid: 25,
            type_name: type_name.into(),
        };
        TableShape {
            columns: vec![col("a", "integer"), col("b", "text"), col("c", "uuid")],
            key: vec![2, 0],
        }
    }

    #[test]
    fn the_chunk_query_walks_the_key_after_the_cursor() {
        assert_eq!(
            chunk_query("s.t", &shape(), Some("b <> 'x'"), true),
            "SELECT CASE WHEN t.\"a\" IS NULL THEN NULL ELSE format('%s', t.\"a\") END, \
             CASE WHEN t.\"b\" IS NULL THEN NULL ELSE format('%s', t.\"b\") END, \
             CASE WHEN t.\"c\" IS NULL THEN NULL ELSE format('%s', t.\"c\") END \
             FROM s.t t WHERE (t.\"c\", t.\"a\") > ($1::text::uuid, $2::text::integer) \
             AND (b <> 'x') ORDER BY t.\"c\", t.\"a\" LIMIT $3::int8"
        );
        let first = chunk_query("s.t", &shape(), None, false);
        assert!(
            first.ends_with("FROM s.t t ORDER BY t.\"c\", t.\"a\" LIMIT $1::int8"),
            "{first}"
        );
    }
}
