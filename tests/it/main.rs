//! walhook's integration tests, as one test binary: each module below is what
//! was a test binary of its own, and `support` (throwaway PostgreSQL clusters,
//! the walhook process, a test receiver, polling helpers) is compiled once.
//! One shared cluster serves every module; each test gets its own database.
//!
//! `cargo test` runs them all; `cargo test --test it delivery::` runs one
//! module's.

mod support;

mod api;
mod api_control;
mod api_errors;
mod audit;
mod backfill;
mod bench_smoke;
mod cdc_core;
mod cdc_faults;
mod compose_files;
mod console;
mod deferrals;
mod delivery;
mod delivery_faults;
mod dev_quickstart;
mod directory_events;
mod filters;
mod health;
mod iam_events;
mod isolation;
mod operational_events;
mod operations;
mod pg_versions;
mod privileges;
mod promotion;
mod rate_limit;
mod receiver_hostility;
mod references;
mod schema;
mod sessions;
mod signing_interop;
mod slot_safety;
mod tls;
