//! Events -> HTTP: the client, signatures, retry policy and dispatch workers.
pub mod signing;
