//! A few SQL connections for the API, opened on demand and reused.
//!
//! Each request takes a connection of its own, so its transaction (and the
//! transaction-local audit actor) is never shared with another request. At most
//! [`MAX_CONNECTIONS`] are open; a closed connection is dropped, not reused.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

use crate::store::ConnectError;
use crate::tls::ConnectConfig;

pub const MAX_CONNECTIONS: usize = 4;

pub struct Pool {
    database: ConnectConfig,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A connection lent to one request; back to the pool on drop.
pub struct Conn {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(database: ConnectConfig) -> Arc<Pool> {
        Arc::new(Pool {
            database,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        })
    }

    pub async fn get(self: &Arc<Self>) -> Result<Conn, ConnectError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let idle = loop {
            match self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                Some(client) if client.is_closed() => continue,
                other => break other,
            }
        };
        let client = match idle {
            Some(client) => client,
            None => crate::store::connect(&self.database).await?,
        };
        Ok(Conn {
            client: Some(client),
            pool: Arc::clone(self),
            _permit: permit,
        })
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take().filter(|c| !c.is_closed()) {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(client);
        }
    }
}
