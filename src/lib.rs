//! walhook: committed PostgreSQL row changes in, signed webhooks out.
//!
//! ```text
//!  PostgreSQL WAL ──(pgoutput, our replication client)──▶ replication
//!        ▲                                                   │ Change
//!        │ confirm LSN once stored                           ▼
//!        │                                                mapping (routes, templates)
//!        │                                                   │ Event
//!        └──────────────── store (walhook.events, deliveries) ◀┘
//!                                │ pending deliveries
//!                                ▼
//!                           delivery (sign, POST, retry) ──▶ receivers
//! ```
//!
//! Data flows one way; a stage never imports a later one. Durability lives in
//! PostgreSQL: the slot position is confirmed only past changes whose events are
//! committed in `walhook.events`, and delivery state is rows, not memory.
//! Backfills (`backfill`) read existing rows between two WAL watermarks and
//! hand them to the same writer as `<resource>.snapshot` events.
#![forbid(unsafe_code)]
pub mod api;
pub mod backfill;
pub mod config;
pub(crate) mod crypto;
pub mod daemon;
pub mod delivery;
pub mod dev;
pub(crate) mod error;
pub(crate) mod failpoint;
pub(crate) mod http;
pub mod local_cluster;
pub(crate) mod mapping;
pub(crate) mod pipeline;
pub(crate) mod reconnect;
pub mod replication;
pub mod status;
pub mod store;
pub(crate) mod telemetry;
pub mod tls;
