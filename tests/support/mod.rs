//! Shared test support: throwaway PostgreSQL clusters, the walhook process, a
//! test receiver and polling helpers. Each test binary includes it with
//! `mod support;`; not every binary uses every helper.
#![allow(dead_code, unused_imports, unsafe_code)]

pub mod cluster;
pub mod fake_peer;
pub mod process;
pub mod python;
pub mod receiver;

use std::time::{Duration, Instant};

pub use cluster::{Cluster, ClusterOptions, TestDb};
pub use process::{ChildProcess, migrate, walhook, walhook_run};
pub use receiver::Receiver;

/// Poll `check` until it returns Some or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
