//! Events -> HTTP: the client, signatures, retry policy and dispatch workers.
pub(crate) mod attempt;
pub(crate) mod breaker;
pub(crate) mod client;
pub(crate) mod deferrals;
pub(crate) mod dispatcher;
pub(crate) mod first_attempts;
pub(crate) mod health;
mod obligation;
pub(crate) mod positions;
pub(crate) mod rate;
pub(crate) mod recorder;
pub(crate) mod retry;
mod scheduler;
pub(crate) mod signers;
pub mod signing;
mod slow;
pub(crate) mod targets;
mod task;
pub mod verifier;

use std::sync::{Arc, RwLock};

/// The signing keys in use, current first; swapped whole when keys change.
pub type KeyRing = Arc<RwLock<Arc<Vec<signing::SigningKey>>>>;
