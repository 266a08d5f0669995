//! Events -> HTTP: the client, signatures, retry policy and dispatch workers.
pub mod attempt;
pub mod client;
pub mod dispatcher;
pub mod first_attempts;
pub mod positions;
pub mod recorder;
pub mod retry;
pub mod signing;
pub mod targets;
mod task;
pub mod verifier;

use std::sync::{Arc, RwLock};

/// The signing keys in use, current first; swapped whole when keys change.
pub type KeyRing = Arc<RwLock<Arc<Vec<signing::SigningKey>>>>;
