//! The stages of `walhook run` that run beside the slot loop (event writer,
//! dispatcher, backfill worker, deferred deliveries' materialiser, HTTP
//! server), and how the daemon learns that
//! one died: while the slot loop runs none should end.

use super::DaemonError;

/// The stages that run beside the slot loop, until one ends (taken out of
/// here when it does, so it is not awaited twice).
pub(super) struct Stages {
    pub(super) writer: Option<tokio::task::JoinHandle<()>>,
    pub(super) dispatch:
        Option<tokio::task::JoinHandle<Result<(), crate::delivery::dispatcher::DeliveryError>>>,
    pub(super) backfills: Option<tokio::task::JoinHandle<()>>,
    pub(super) materialiser: Option<tokio::task::JoinHandle<()>>,
    pub(super) http: Option<tokio::task::JoinHandle<Result<(), std::io::Error>>>,
}

impl Stages {
    /// Wait until a stage ends. While the slot loop runs none should: the
    /// one that did died, and this says which and why.
    pub(super) async fn first_to_end(&mut self) -> DaemonError {
        fn why<T, E: std::fmt::Display>(
            ended: Result<Result<T, E>, tokio::task::JoinError>,
        ) -> String {
            match ended {
                Ok(Ok(_)) => "it returned".to_owned(),
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            }
        }
        let ok = |r: Result<(), tokio::task::JoinError>| r.map(Ok::<(), String>);
        let (stage, why) = tokio::select! {
            ended = async { self.writer.as_mut().expect("running").await }, if self.writer.is_some() => {
                self.writer = None;
                ("event writer", why(ok(ended)))
            }
            ended = async { self.dispatch.as_mut().expect("running").await }, if self.dispatch.is_some() => {
                self.dispatch = None;
                ("dispatcher", why(ended))
            }
            ended = async { self.backfills.as_mut().expect("running").await }, if self.backfills.is_some() => {
                self.backfills = None;
                ("backfill worker", why(ok(ended)))
            }
            ended = async { self.materialiser.as_mut().expect("running").await }, if self.materialiser.is_some() => {
                self.materialiser = None;
                ("deferred deliveries' materialiser", why(ok(ended)))
            }
            ended = async { self.http.as_mut().expect("running").await }, if self.http.is_some() => {
                self.http = None;
                ("HTTP server", why(ended))
            }
            else => std::future::pending().await,
        };
        DaemonError::StageDied { stage, why }
    }
}
