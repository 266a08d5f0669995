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
//! How the statements are planned is the connection's [`Planning`]. By
//! default PostgreSQL switches a prepared statement to a generic plan after
//! five executions and keeps it: for the recorder's statement, one made while
//! `walhook.events` was nearly empty read the whole table on every later
//! batch (its backend took over a quarter of the machine at 5,000 events/s,
//! and more as the table grew), so the recorder plans every execution. The
//! writer's statement reads no growing table, and planning it per execution
//! (with a batch's arrays as constants) cost PostgreSQL a third more CPU per
//! event while draining, so it keeps PostgreSQL's choice.

use std::collections::HashMap;

use tokio_postgres::{Client, Statement};

/// How PostgreSQL plans a connection's prepared statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planning {
    /// PostgreSQL's default: custom plans first, then perhaps a generic plan
    /// kept for good.
    Cached,
    /// A custom plan on every execution (`plan_cache_mode =
    /// force_custom_plan`), seeing the parameters and the tables' current
    /// sizes, as for a statement given as text.
    EachExecution,
}

/// A connection and the statements prepared on it so far.
pub struct PreparedClient {
    client: Client,
    planning: Planning,
    statements: HashMap<&'static str, Statement>,
}

impl PreparedClient {
    pub fn new(client: Client, planning: Planning) -> Self {
        PreparedClient {
            client,
            planning,
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
        if self.statements.is_empty() && self.planning == Planning::EachExecution {
            self.client
                .batch_execute("SET plan_cache_mode = force_custom_plan")
                .await?;
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
