//! STUB (owned by the delivery helper): the dispatcher.
use std::sync::Arc;

pub struct DispatcherConfig;
impl DispatcherConfig {
    pub fn new(_database: tokio_postgres::Config) -> Self {
        DispatcherConfig
    }
}
pub struct Dispatcher;
impl Dispatcher {
    pub fn new(_c: DispatcherConfig, _k: super::KeyRing, _w: Arc<tokio::sync::Notify>) -> Self {
        Dispatcher
    }
    pub async fn run(self, _s: tokio_util::sync::CancellationToken) -> Result<(), std::io::Error> {
        _s.cancelled().await;
        Ok(())
    }
}
