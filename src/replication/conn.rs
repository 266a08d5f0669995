//! STUB (owned by the connection helper): the replication connection.
use super::lsn::Lsn;
use super::protocol::ReplicationMessage;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("server error {code}: {message}")]
    Server {
        code: String,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Auth(String),
}

impl ConnError {
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ConnError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn is_transient(&self) -> bool {
        !matches!(self, ConnError::Auth(_))
    }
}

pub struct SystemInfo {
    pub system_id: String,
    pub timeline: u32,
    pub xlogpos: Lsn,
    pub dbname: Option<String>,
}

pub struct ReplicationConnection {}

impl ReplicationConnection {
    pub async fn connect(_config: &tokio_postgres::Config) -> Result<Self, ConnError> {
        todo!()
    }
    pub async fn simple_query(
        &mut self,
        _sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ConnError> {
        todo!()
    }
    pub async fn identify_system(&mut self) -> Result<SystemInfo, ConnError> {
        todo!()
    }
    pub async fn create_slot(&mut self, _slot: &str) -> Result<Lsn, ConnError> {
        todo!()
    }
    pub async fn start_replication(
        self,
        _slot: &str,
        _start: Lsn,
        _publication: &str,
    ) -> Result<ReplicationStream, ConnError> {
        todo!()
    }
}

pub struct ReplicationStream {}

impl ReplicationStream {
    pub async fn next_message(&mut self) -> Result<Option<ReplicationMessage>, ConnError> {
        todo!()
    }
    pub async fn send_status(
        &mut self,
        _written: Lsn,
        _flushed: Lsn,
        _applied: Lsn,
        _reply_requested: bool,
    ) -> Result<(), ConnError> {
        todo!()
    }
}
