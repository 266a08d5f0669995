//! A connection that prepares each of its statements once: for the writes
//! walhook makes on every batch (the event writer's insert, the recorder's
//! outcomes).
//!
//! A statement given as text is parsed, analysed and planned by PostgreSQL on
//! every execution, and costs a round trip of its own (Parse/Describe) before
//! the one that runs it. Profiled at 5,000 commits/s, that was a quarter of
//! the CPU the recorder's backend used. Prepared once, a statement is one
//! round trip (Bind/Execute). Statements belong to their connection: a new
//! connection starts with none.
//!
//! PostgreSQL may switch a prepared statement to a generic plan after five
//! executions and keep it, planned for the table sizes of that moment. So
//! only statements that read no table that grows are prepared here (the
//! writer's batch; the recorder's first attempts, which trust the reference
//! checks instead of joining `walhook.events`): a generic plan of a join
//! with `walhook.events`, made while it was nearly empty, scanned the whole
//! table on every later batch. Statements that join a growing table are sent as
//! text and planned on every execution (`plan_cache_mode =
//! force_custom_plan` is no substitute: it replans every statement of the
//! session). [`PreparedClient::statement`] checks the rule, in debug builds
//! (every test), with [`growing_table_read`].

use std::collections::HashMap;

use tokio_postgres::{Client, Statement};

/// A connection and the statements prepared on it so far.
pub struct PreparedClient {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl PreparedClient {
    pub fn new(client: Client) -> Self {
        PreparedClient {
            client,
            statements: HashMap::new(),
        }
    }

    /// `sql` prepared on this connection (prepared now, the first time).
    /// `sql` must read no table that grows ([`growing_table_read`]).
    pub async fn statement(
        &mut self,
        sql: &'static str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        debug_assert_eq!(
            growing_table_read(sql),
            None,
            "a prepared statement may keep a generic plan that scans this table: send it as text\n{sql}"
        );
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// The connection, for statements run once or rarely.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// `sql` prepared on this connection, or None when it reads a table
    /// that grows ([`growing_table_read`]): the caller sends it as text, so
    /// it is planned on each execution. Once prepared, a statement is found
    /// without reading `sql` again.
    pub async fn statement_if_preparable(
        &mut self,
        sql: &'static str,
    ) -> Result<Option<Statement>, tokio_postgres::Error> {
        if !self.statements.contains_key(sql) && growing_table_read(sql).is_some() {
            return Ok(None);
        }
        self.statement(sql).await.map(Some)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// The tables that grow with every event delivered.
const GROWING: [&str; 3] = [
    "walhook.events",
    "walhook.deliveries",
    "walhook.delivery_attempts",
];

const INSERT_INTO: &[u8] = b"INSERT INTO";

/// The first table of [`GROWING`] that `sql` reads, if any; inserting into
/// one is not reading it.
pub fn growing_table_read(sql: &str) -> Option<&'static str> {
    GROWING.into_iter().find(|table| {
        sql.match_indices(table).any(|(at, _)| {
            // the whole name, not a prefix of a longer one
            let whole =
                !sql[at + table.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
            let before = sql[..at].trim_end().as_bytes();
            let inserted_into = before.len() >= INSERT_INTO.len()
                && before[before.len() - INSERT_INTO.len()..].eq_ignore_ascii_case(INSERT_INTO);
            whole && !inserted_into
        })
    })
}

#[cfg(test)]
mod tests {
    use super::growing_table_read;

    #[test]
    fn reading_a_growing_table_is_found_and_inserting_into_one_is_not() {
        assert_eq!(
            growing_table_read("INSERT INTO walhook.events (id) VALUES ($1)"),
            None
        );
        assert_eq!(
            growing_table_read(
                "INSERT INTO walhook.deliveries AS d SELECT 1 FROM walhook.subscriptions"
            ),
            None
        );
        assert_eq!(
            growing_table_read(
                "insert into walhook.events SELECT 1 WHERE EXISTS (SELECT 1 FROM walhook.events e)"
            ),
            Some("walhook.events")
        );
        assert_eq!(
            growing_table_read("SELECT 1 FROM x JOIN walhook.deliveries d ON true"),
            Some("walhook.deliveries")
        );
        assert_eq!(
            growing_table_read("UPDATE walhook.delivery_attempts SET error = NULL"),
            Some("walhook.delivery_attempts")
        );
        assert_eq!(
            growing_table_read("SELECT 1 FROM walhook.events_archive"),
            None
        );
    }
}
