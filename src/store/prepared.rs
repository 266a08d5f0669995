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
//! text and planned on every execution. (`plan_cache_mode =
//! force_custom_plan` also replanned the foreign-key checks PostgreSQL ran
//! for every inserted row before migration 0009: a third more CPU per
//! delivery.)

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
    pub async fn statement(
        &mut self,
        sql: &'static str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// The connection, for statements run once or rarely.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
